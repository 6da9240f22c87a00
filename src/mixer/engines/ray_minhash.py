"""``minhash`` on the Ray engine: signatures per block, LSH by a shuffle of band keys.

The decision is the local step's, computed from the same pieces:

1. driver: ids and sources of every record (compact) give the representatives (first row
   of each base id, so upsampled copies never match each other);
2. per block (distributed): shingles, signatures, band keys, text lengths of its
   representatives (``mixer.dedup.near.compute_signatures``); signatures stay in the
   object store, band keys are split by key into partitions;
3. per partition (distributed): records sharing a band key become candidate edges with
   the local star + chain rule (``lsh.band_edges``), so the edge set is the local one;
4. driver: deduplicated edges, verification (signature rows or texts of the edge
   endpoints only are fetched), connected components and the keep rule
   (``near.resolve``), ledger rows and the cluster side table, as in the local step.

What is not distributed: step 1, step 4's components over the (compact) edge list, and
the ledger. A 10M-record pool holds ~10M ids and ~8 bytes per edge on the driver.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import ray

from mixer.dedup import clusters as cl
from mixer.dedup import lsh
from mixer.dedup.jaccard import pair_jaccard, sorted_unique, unique_sets
from mixer.dedup.lsh import pair_lookup
from mixer.dedup.near import MinHashParams, compute_signatures, normalized_texts, resolve
from mixer.dedup.shingle import hash_shingles
from mixer.dedup.signatures import similarity
from mixer.engines.ray_engine import RayEngine, _get
from mixer.engines.ray_frame import RayFrame, from_arrow
from mixer.engines.ray_ops import POS
from mixer.records import empty_removed
from mixer.spec import StepSpec
from mixer.steps.base import StepContext, StepResult


@dataclass
class SignBlock:
    """Map side: signatures of a block's representatives, band keys split by key."""

    params: MinHashParams
    partitions: int
    memory_mb: int

    def __call__(self, table: pa.Table, start: int, length: int, local: np.ndarray, r0: int) -> list[Any]:
        frame = from_arrow(table, start, length)
        sub = frame[local] if len(local) != frame.height else frame
        sigs = compute_signatures(sub, self.params, threads=1, memory_mb=self.memory_mb)
        sig = np.ascontiguousarray(sigs.sig)
        r = np.arange(r0, r0 + len(local), dtype=np.int64)
        live = np.flatnonzero(sigs.nonempty)
        bands = sigs.keys.shape[0]
        band = np.repeat(np.arange(bands, dtype=np.int16), len(live))
        keys = np.asarray(sigs.keys)[:, live].reshape(-1)
        rr = np.tile(r[live], bands)
        part = (keys % np.uint64(self.partitions)).astype(np.int64) if self.partitions > 1 else np.zeros(len(keys), np.int64)
        outs: list[Any] = [sig, sigs.lengths.astype(np.int64)]
        for p in range(self.partitions):
            sel = part == p
            outs.append((band[sel], keys[sel], rr[sel]))
        return outs


def band_reduce(*parts: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Reduce side: candidate edges of the band-key groups in this partition (local rule)."""
    parts = tuple(p for p in parts if len(p[0]))
    if not parts:
        return np.zeros((0, 2), dtype=np.int64)
    band = np.concatenate([p[0] for p in parts])
    keys = np.concatenate([p[1] for p in parts])
    r = np.concatenate([p[2] for p in parts])
    out = []
    for j in np.unique(band):
        sel = np.flatnonzero(band == j)
        order = np.argsort(r[sel], kind="stable")  # record order, as the local step sees it
        out.append(lsh.band_edges(keys[sel][order], r[sel][order]))
    return lsh.unique_edges(np.concatenate(out))


@dataclass
class ShingleSets:
    """Map side of exact verification: sorted unique shingle hashes of some block rows."""

    params: MinHashParams

    def __call__(self, table: pa.Table, start: int, length: int, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frame = from_arrow(table, start, length)[local]
        texts, _ = normalized_texts(frame, self.params)
        off, hashes = hash_shingles(texts, self.params.shingling)
        return unique_sets(hashes, off)


def sets_task(op: ShingleSets, table: pa.Table, start: int, length: int, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return op(table, start, length, local)


def sign_task(op: SignBlock, table: pa.Table, start: int, length: int, local: np.ndarray, r0: int) -> list[Any]:
    return op(table, start, length, local, r0)


def take_rows(arr: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.asarray(arr)[idx]


_sign = ray.remote(sign_task)
_reduce = ray.remote(band_reduce)
_take = ray.remote(take_rows)
_sets = ray.remote(sets_task)


@ray.remote
def _jaccard(sets: tuple[np.ndarray, np.ndarray, np.ndarray], ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    return pair_jaccard(*sets, ia, ib)


def run_minhash(engine: RayEngine, step: StepSpec, frame: RayFrame, ctx: StepContext) -> StepResult:
    from mixer.steps.minhash import MinHashConfig, _exact_verify, ledger_detail, run_info

    cfg: MinHashConfig = step.config  # type: ignore[assignment]
    params = cfg.params()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    proxy = engine.compact(frame, ["id", "source"])  # _pos, id, source (canonical order)
    reps = cl.representatives(proxy)
    offsets = frame.offsets()
    which = np.searchsorted(offsets, reps, side="right") - 1
    parts = engine._partitions(frame)
    op = ray.put(SignBlock(params, parts, cfg.memory_mb))
    sig_refs, len_refs, band_refs, rep_start = [], [], [], []
    r0 = 0
    for i, b in enumerate(frame.blocks):
        local = reps[which == i] - offsets[i]
        if len(local) == 0:
            continue
        out = _sign.options(num_returns=parts + 2, num_cpus=engine.cpus_per_task).remote(op, b.ref, b.start, b.length, local, r0)
        sig_refs.append(out[0])
        len_refs.append(out[1])
        band_refs.append(out[2:])
        rep_start.append(r0)
        r0 += len(local)
    lengths = np.concatenate(_get(len_refs)) if len_refs else np.zeros(0, np.int64)
    timings["signatures"] = time.perf_counter() - t

    t = time.perf_counter()
    reduces = [_reduce.options(num_cpus=engine.cpus_per_task).remote(*[bands[p] for bands in band_refs]) for p in range(parts)] if band_refs else []
    found_edges = _get(reduces)
    edges = lsh.unique_edges(np.concatenate(found_edges)) if found_edges else np.zeros((0, 2), np.int64)
    candidates = len(edges)
    timings["lsh"] = time.perf_counter() - t

    signatures = _SigRows(sig_refs, np.asarray(rep_start, dtype=np.int64))
    t = time.perf_counter()
    sub = proxy[reps]
    rank = cl.keep_rank(sub["source"], lengths, cfg.keep, ctx.source_order, cfg.priority)
    checks, exact, sets = 0, np.zeros(0), None
    if cfg.verify != "none" and len(edges):
        est = signatures.similarity(edges[:, 0], edges[:, 1])
        if cfg.verify == "signature":
            edges = edges[est >= cfg.threshold]
        else:  # the local step's own forest-based check, on sets computed where the records are
            sets = _SetRows(engine, frame, reps, params, edges.reshape(-1))
            edges, exact, checks = _exact_verify(len(reps), edges, est, rank, sets, cfg.threshold, cfg.num_perm)
    timings["verify"] = time.perf_counter() - t

    t = time.perf_counter()
    found = resolve(len(reps), edges, rank, candidates)
    members = np.flatnonzero(found.size > 1)
    scores = {"similarity": np.ones(len(members))}
    gone = found.kept_of[members] != members
    scores["similarity"][gone] = np.round(signatures.similarity(members[gone], found.kept_of[members][gone]), 4)
    if cfg.verify == "exact":
        a, b = members[gone], found.kept_of[members][gone]
        known, jac = pair_lookup(edges, exact, a, b)
        if (~known).any():
            sets = sets or _SetRows(engine, frame, reps, params, np.concatenate([a, b]))
            jac[~known] = sets.jaccard(a[~known], b[~known])
        scores["jaccard"] = np.ones(len(members))
        scores["jaccard"][gone] = np.round(jac, 4)
    outcome = cl.outcome_frame(
        proxy, reps[members], np.searchsorted(members, found.kept_of[members]), found.size[members], scores,
    ) if len(members) else cl.empty_outcome(scores)
    detail = ledger_detail(cfg)
    if outcome.height:
        kept_proxy, removed = cl.split(proxy, outcome, step.name, "near_duplicate", detail)
        gone_rows = proxy.filter(~pl.col(POS).is_in(kept_proxy[POS].implode()))
        kept = engine._drop(frame, gone_rows[POS].to_numpy(), gone_rows["source"])
    else:
        kept, removed = frame, empty_removed()
    timings["cluster"] = time.perf_counter() - t
    table = _cluster_table(engine, frame, outcome, cfg.text, step.name)
    files = cl.write_side_files(ctx.work_dir, step.name, table, {"method": step.name, **params.to_json()})
    info = run_info(params, cfg, proxy.height, len(reps), candidates, checks, len(edges), outcome, removed.height, timings, files)
    return StepResult(kept, removed, info)


class _SigRows:
    """Signature rows fetched on demand from the blocks that hold them (never all of them)."""

    def __init__(self, refs: list[Any], starts: np.ndarray):
        self.refs, self.starts = refs, starts

    def rows(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sorted unique rows, their signature matrix), one fetch task per block."""
        uniq = sorted_unique(np.asarray(r, dtype=np.int64))
        which = np.searchsorted(self.starts, uniq, side="right") - 1
        pieces = [_take.remote(self.refs[i], uniq[which == i] - self.starts[i]) for i in np.unique(which)]
        got = _get(pieces)
        return uniq, (np.concatenate(got) if got else np.zeros((0, 0), np.uint32))

    def similarity(self, a: np.ndarray, b: np.ndarray, batch: int = 262_144) -> np.ndarray:
        """Estimated Jaccard of pairs, computed in batches (bounded temporary memory)."""
        if len(a) == 0:
            return np.zeros(0)
        uniq, sig = self.rows(np.concatenate([a, b]))
        ia, ib = np.searchsorted(uniq, a), np.searchsorted(uniq, b)
        out = np.empty(len(a), dtype=np.float64)
        for s in range(0, len(a), batch):
            out[s : s + batch] = similarity(sig[ia[s : s + batch]], sig[ib[s : s + batch]])
        return out


class _SetRows:
    """Exact shingle sets of some representatives, computed in the block tasks that hold the
    records (normalizing and hashing is the costly part) and kept on the driver for the
    pair Jaccards (``mixer.dedup.jaccard.pair_jaccard``, as the local step's set store)."""

    def __init__(self, engine: RayEngine, frame: RayFrame, reps: np.ndarray, params: MinHashParams, rows: np.ndarray):
        self.rows = sorted_unique(np.asarray(rows, dtype=np.int64))
        positions = reps[self.rows]
        offsets = frame.offsets()
        which = np.searchsorted(offsets, positions, side="right") - 1
        op = ray.put(ShingleSets(params))
        refs = []
        for i in np.unique(which):
            b = frame.blocks[i]
            refs.append(_sets.options(num_cpus=engine.cpus_per_task).remote(op, b.ref, b.start, b.length, positions[which == i] - offsets[i]))
        parts = _get(refs)
        sizes = [np.diff(off) for off, _ in parts]
        self.sizes = np.concatenate(sizes) if sizes else np.zeros(0, np.int64)
        self.values = np.concatenate([v for _, v in parts]) if parts else np.zeros(0, np.uint32)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64) if len(self.sizes) else np.zeros(0, np.int64)
        self.cpus = engine.cpus_per_task

    def jaccard(self, a: np.ndarray, b: np.ndarray, batch: int = 100_000) -> np.ndarray:
        """Exact Jaccard of pairs, in batches of ``batch`` pairs (bounded memory); with more
        than one batch, the sets are broadcast once and the batches run as tasks."""
        ia, ib = np.searchsorted(self.rows, a), np.searchsorted(self.rows, b)
        if len(a) <= batch:
            return pair_jaccard(self.starts, self.sizes, self.values, ia, ib)
        sets = ray.put((self.starts, self.sizes, self.values))
        refs = [_jaccard.options(num_cpus=self.cpus).remote(sets, ia[s : s + batch], ib[s : s + batch]) for s in range(0, len(a), batch)]
        return np.concatenate(_get(refs))


def _cluster_table(engine: RayEngine, frame: RayFrame, outcome: pl.DataFrame, text: str, method: str) -> pl.DataFrame:
    if outcome.height == 0:
        return cl.cluster_table(pl.DataFrame(), outcome, text, method)
    pos = outcome["_rep"].to_numpy()
    rows = sorted_unique(pos)
    small = engine.take(frame, rows)
    return cl.cluster_table(small, outcome.with_columns(pl.Series("_rep", np.searchsorted(rows, pos))), text, method)


__all__ = ["run_minhash", "band_reduce", "SignBlock"]
