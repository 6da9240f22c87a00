"""``minhash``: remove near-duplicates across the whole mix with MinHash LSH.

Records are normalized and shingled (``mixer.dedup.shingle``), signed with datasketch-
compatible MinHash signatures and banded. Clusters are connected components of the LSH
candidate graph, whose edges are verified by exact Jaccard of the shingle sets (default),
by the signature estimate, or not at all. With verification, bands and rows are chosen to
favour recall (missed pairs weigh 0.9 in datasketch's optimisation), since false candidates
are cut afterwards; exact checks run on spanning forests of the candidate graph, which
gives the clusters of checking every candidate at a fraction of the cost.

One record per cluster is kept by the keep policy (first in spec order, a source priority
list, or the longest); every other one gets a ledger row naming the kept record, the
estimated (and, verified, the exact) Jaccard similarity to it and the cluster size. Upsampled
copies of one record (``id~k``) never count as duplicates of each other. The cluster table
goes to ``BUILD/dedup/minhash.clusters.parquet`` and the parameters to
``BUILD/dedup/minhash.json`` (``mixer dedup --against`` and ``mixer dedup-report`` read them).

    mix:
      - minhash: {threshold: 0.8, shingle: word, ngram: 5, text: all, keep: first}
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from mixer.dedup import clusters as cl
from mixer.dedup.lsh import candidate_probability, lsh_params, pair_lookup, verify_components
from mixer.dedup.near import (
    MinHashParams,
    candidate_edges,
    compute_signatures,
    resolve,
    signature_similarity,
)
from mixer.dedup.progress import progress_task
from mixer.dedup.shingle import Shingling
from mixer.records import empty_removed
from mixer.steps.base import Step, StepConfig, StepContext, StepResult, register


class MinHashConfig(StepConfig):
    text: Literal["all", "user", "assistant"] = "all"
    shingle: Literal["word", "char"] = "word"
    ngram: int = Field(5, ge=1, le=64)
    nfkc: bool = True
    lowercase: bool = True
    strip_punctuation: bool = True
    num_perm: int = Field(128, ge=2, le=4096)
    threshold: float = Field(0.8, gt=0.0, lt=1.0)
    bands: int | None = Field(None, ge=1)
    rows: int | None = Field(None, ge=1)
    seed: int = 1
    verify: Literal["none", "signature", "exact"] = "exact"
    # weight of missed pairs when bands/rows are chosen for the threshold; None: 0.9 when
    # candidates are verified (recall is cheap then), else datasketch's balanced 0.5
    false_negative_weight: float | None = Field(None, gt=0.0, lt=1.0)
    keep: cl.KeepPolicy = "first"
    priority: list[str] = Field(default_factory=list)
    threads: int | None = Field(None, ge=1)
    memory_mb: int = Field(2048, ge=1)

    @model_validator(mode="after")
    def _check(self) -> MinHashConfig:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both bands and rows, or neither (then they are chosen for the threshold)")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands*rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        if self.keep == "priority" and not self.priority:
            raise ValueError("keep: priority needs a priority list of source names")
        return self

    def params(self) -> MinHashParams:
        fn = self.false_negative_weight
        if fn is None:
            fn = 0.9 if self.verify != "none" else 0.5
        b, r = lsh_params(self.threshold, self.num_perm, self.bands, self.rows, 1.0 - fn, fn)
        shingling = Shingling(self.shingle, self.ngram, self.nfkc, self.lowercase, self.strip_punctuation)
        return MinHashParams(shingling, self.text, self.num_perm, self.seed, self.threshold, b, r)


@register
class MinHashDedup(Step):
    name = "minhash"
    Config = MinHashConfig
    scopes = ("source", "mix")

    def run(self, frame: pl.DataFrame, ctx: StepContext) -> StepResult:
        cfg: MinHashConfig = self.config
        params = cfg.params()
        timings: dict[str, float] = {}
        t = time.perf_counter()
        reps = cl.representatives(frame)
        sub = frame if len(reps) == frame.height else frame[reps]  # no copy without upsampled rows
        spill_root = ctx.work_dir / "dedup" / "spill" if ctx.work_dir is not None else None
        sigs = compute_signatures(sub, params, cfg.threads, cfg.memory_mb, spill_root, progress=ctx.progress,
                                  keep_sets=cfg.verify == "exact")
        timings["signatures"] = time.perf_counter() - t
        try:
            t = time.perf_counter()
            edges = candidate_edges(sigs, ctx.progress, cfg.threads)
            candidates = len(edges)
            timings["lsh"] = time.perf_counter() - t
            t = time.perf_counter()
            rank = cl.keep_rank(sub["source"], sigs.lengths, cfg.keep, ctx.source_order, cfg.priority)
            checks, exact = 0, np.zeros(0)
            if cfg.verify != "none" and len(edges):
                est = signature_similarity(sigs.sig, edges[:, 0], edges[:, 1])
                if cfg.verify == "signature":
                    edges = edges[est >= cfg.threshold]
                else:
                    edges, exact, checks = _exact_verify(sub.height, edges, est, rank, sigs.sets, cfg.threshold,
                                                         cfg.num_perm, ctx.progress)
            timings["verify"] = time.perf_counter() - t
            t = time.perf_counter()
            found = resolve(sub.height, edges, rank, candidates)
            members = np.flatnonzero(found.size > 1)
            scores = {"similarity": np.ones(len(members))}
            gone = found.kept_of[members] != members
            scores["similarity"][gone] = np.round(
                signature_similarity(sigs.sig, members[gone], found.kept_of[members][gone]), 4)
            if cfg.verify == "exact":
                # mostly checked already: the forests prefer edges to the record that is kept
                a, b = members[gone], found.kept_of[members][gone]
                known, jac = pair_lookup(edges, exact, a, b)
                jac[~known] = sigs.sets.jaccard(a[~known], b[~known])
                scores["jaccard"] = np.ones(len(members))
                scores["jaccard"][gone] = np.round(jac, 4)
        finally:
            sigs.close()
        outcome = cl.outcome_frame(
            frame, reps[members], _local(found.kept_of[members], members), found.size[members], scores,
        ) if len(members) else cl.empty_outcome(scores)
        detail = ledger_detail(cfg)
        kept, removed = cl.split(frame, outcome, self.name, "near_duplicate", detail) if outcome.height else (frame, empty_removed())
        timings["cluster"] = time.perf_counter() - t
        table = cl.cluster_table(frame, outcome, cfg.text, self.name)
        files = cl.write_side_files(ctx.work_dir, self.name, table, {"method": self.name, **params.to_json()})
        info = run_info(params, cfg, frame.height, len(reps), candidates, checks, len(edges), outcome, removed.height, timings, files)
        return StepResult(kept, removed, info)


def ledger_detail(cfg: MinHashConfig) -> pl.Expr:
    """The ``detail`` of a removed record: the kept id, the similarity, the cluster size."""
    detail = pl.format("near-duplicate of {} ({}), estimated Jaccard {}", "kept_id", "kept_source", pl.col("similarity").round(3))
    if cfg.verify == "exact":
        detail = pl.format("{}, exact Jaccard {}", detail, pl.col("jaccard").round(3))
    return pl.format("{}, cluster of {}", detail, "cluster_size")


def run_info(params: Any, cfg: MinHashConfig, records: int, compared: int, candidates: int, checks: int, verified: int,
             outcome: pl.DataFrame, removed_rows: int, timings: dict[str, float], files: Any) -> dict[str, Any]:
    """The step's manifest entry (the same for every engine)."""
    return {
        "params": {"bands": params.bands, "rows": params.rows, "num_perm": params.num_perm,
                   "threshold": params.threshold, "shingle": f"{params.shingling.kind}-{params.shingling.n}",
                   "verify": cfg.verify, "keep": cfg.keep,
                   "p_candidate_at_threshold": round(candidate_probability(params.threshold, params.bands, params.rows), 4)},
        "records": records,
        "compared": int(compared),
        "candidate_edges": int(candidates),
        **({"exact_checks": int(checks)} if cfg.verify == "exact" else {}),
        "verified_edges": int(verified),
        **cl.summary(outcome),
        "removed_rows": removed_rows,
        "seconds": {k: round(v, 3) for k, v in timings.items()},
        **({"files": files} if files else {}),
    }


def _exact_verify(n: int, edges: np.ndarray, est: np.ndarray, rank: np.ndarray, sets, threshold: float,
                  num_perm: int, progress: Any = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Candidate edges whose shingle sets really have Jaccard >= threshold: (edges, their
    Jaccard, checks made). Checked on the spanning forests of ``lsh.verify_components``
    (the same clusters as checking them all), preferring edges that touch the record a
    cluster will keep, so the kept-vs-removed similarity is mostly known afterwards.
    Candidates whose signature estimate lies more than 4.5 standard errors below the
    threshold are dropped unchecked (a true pair does that with probability ~3e-6)."""
    margin = 4.5 * np.sqrt(threshold * (1 - threshold) / num_perm)
    likely = est >= threshold - margin
    edges, est = edges[likely], est[likely]
    weight = np.minimum(rank[edges[:, 0]], rank[edges[:, 1]]) + (1.0 - est) * 0.5

    def check(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        jac = sets.jaccard(a, b)
        return jac >= threshold, jac

    with progress_task("minhash: exact Jaccard", len(edges), progress) as advance:
        return verify_components(n, edges, weight, check, advance)


def _local(kept_rows: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Positions of ``kept_rows`` within ``members`` (kept records are always members)."""
    return np.searchsorted(members, kept_rows)
