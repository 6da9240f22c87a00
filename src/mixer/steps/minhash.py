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

import tempfile
import time
from functools import partial
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import Field, model_validator

from mixer.dedup import clusters as cl
from mixer.dedup.jaccard import pair_jaccard, sorted_unique, unique_sets
from mixer.dedup.lsh import (
    band_keys,
    candidate_probability,
    lsh_params,
    pair_lookup,
    verify_components,
)
from mixer.dedup.mapped import MappedArray
from mixer.dedup.near import (
    MinHashParams,
    approx_bytes,
    band_candidates,
    chunk_bounds,
    normalized_texts,
    parallel_map,
    resolve,
)
from mixer.dedup.progress import progress_task
from mixer.dedup.shingle import Shingling, hash_shingles
from mixer.dedup.signatures import minhash, permutations, similarity
from mixer.records import base_id, text_of
from mixer.steps.base import (
    Decision,
    Mapped,
    Step,
    StepConfig,
    StepContext,
    fetched,
    register,
    threads_for,
)


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
    info_rules = {"signed": "sum"}

    @property
    def is_global(self) -> bool:
        return True

    def map(self, batch: pl.DataFrame, ctx: StepContext) -> Mapped:
        """Keys: ``id, source, _base``, the compared text's length, whether it has shingles,
        and one band key per band (``_b0`` ...). Only the first row of each base id in the
        batch is signed (upsampled copies follow their record); ``decide`` uses the first
        row of each base id in the whole input, which is always one of those."""
        cfg: MinHashConfig = self.config  # type: ignore[assignment]
        params = cfg.params()
        first = batch.select(base_id().is_first_distinct()).to_series().to_numpy()
        rows = np.flatnonzero(first)
        sub = batch if len(rows) == batch.height else batch[rows]
        n = batch.height
        lengths = np.zeros(n, np.int64)
        nonempty = np.zeros(n, bool)
        keys = np.zeros((params.bands, n), np.uint64)
        perms = permutations(params.num_perm, params.seed)

        def work(bound: tuple[int, int]) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
            i0, i1 = bound
            texts, lens = normalized_texts(sub.slice(i0, i1 - i0), params)
            offsets, hashes = hash_shingles(texts, params.shingling)
            return i0, i1, lens, np.diff(offsets) > 0, band_keys(minhash(hashes, offsets, perms), params.bands, params.rows)

        for i0, i1, lens, ne, bk in parallel_map(work, chunk_bounds(approx_bytes(sub), 2_000_000), threads_for(ctx, cfg.threads)):
            at = rows[i0:i1]
            lengths[at], nonempty[at], keys[:, at] = lens, ne, bk
        out = batch.select("id", "source", base_id().alias("_base")).with_columns(
            pl.Series("_first", first), pl.Series("_len", lengths), pl.Series("_ne", nonempty),
            *[pl.Series(f"_b{j}", keys[j]) for j in range(params.bands)],
        )
        return Mapped(batch, keys=out, info={"signed": len(rows)})

    def decide(self, keys: pl.DataFrame, ctx: StepContext, info: dict[str, Any]) -> Decision:
        """Candidate edges from equal band keys; signatures (and, verified exactly, shingle
        sets) of the edge endpoints only, from a second pass over the batches (``ctx.fetch``);
        clusters, the keep policy, the cluster table and the removals by base id."""
        cfg: MinHashConfig = self.config  # type: ignore[assignment]
        params = cfg.params()
        timings: dict[str, float] = {}
        t = time.perf_counter()
        if not keys.width:  # no batch reached the step
            keys = pl.DataFrame(schema={"id": pl.Utf8, "source": pl.Utf8, "_base": pl.Utf8, "_first": pl.Boolean, "_len": pl.Int64,
                                        "_ne": pl.Boolean, **{f"_b{j}": pl.UInt64 for j in range(params.bands)}})
        records = keys.height
        # one row per base id: the first row of each (copies follow their record)
        rep = keys.select(pl.col("_first") & pl.col("_base").is_first_distinct()).to_series()
        reps = keys.select("id", "source", "_len", "_ne").filter(rep)
        n = reps.height
        bands = np.zeros((params.bands, n), np.uint64)
        for j in range(params.bands):  # band by band: the key columns are never copied whole
            bands[j] = keys[f"_b{j}"].filter(rep).to_numpy()
        bases = keys["_base"]
        del keys, rep  # handed over by the engine: only the base ids are needed again
        edges = band_candidates(bands, reps["_ne"].to_numpy() if n else np.zeros(0, bool), ctx.progress, cfg.threads)
        del bands
        candidates = len(edges)
        timings["lsh"] = time.perf_counter() - t
        t = time.perf_counter()
        ends = sorted_unique(edges.ravel()) if len(edges) else np.zeros(0, np.int64)
        ids = reps["id"].gather(ends) if len(ends) else pl.Series("id", [], pl.Utf8)
        sig, sets = _fetch_endpoints(ctx, ids, params, cfg.text, cfg.verify == "exact")
        timings["endpoints"] = time.perf_counter() - t
        t = time.perf_counter()

        def local(rows: np.ndarray) -> np.ndarray:
            return np.searchsorted(ends, rows)

        def estimate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            """Signature estimates in slices: two gathered (pairs x num_perm) blocks of all
            candidates at once would take gigabytes."""
            out = np.zeros(len(a))
            for k in range(0, len(a), ESTIMATE_PAIRS):
                ka, kb = local(a[k:k + ESTIMATE_PAIRS]), local(b[k:k + ESTIMATE_PAIRS])
                out[k:k + ESTIMATE_PAIRS] = similarity(sig.array[ka], sig.array[kb])
            sig.release()
            return out

        rank = cl.keep_rank(reps["source"], reps["_len"].to_numpy(), cfg.keep, ctx.source_order, cfg.priority) if n else np.zeros(0, np.int64)
        checks, exact = 0, np.zeros(0)
        if cfg.verify != "none" and len(edges):
            est = estimate(edges[:, 0], edges[:, 1])
            if cfg.verify == "signature":
                edges = edges[est >= cfg.threshold]
            else:
                assert sets is not None
                edges, exact, checks = _exact_verify(n, edges, est, rank, lambda a, b: sets.jaccard(local(a), local(b)),
                                                     cfg.threshold, cfg.num_perm, ctx.progress)
        timings["verify"] = time.perf_counter() - t
        t = time.perf_counter()
        found = resolve(n, edges, rank, candidates)
        members = np.flatnonzero(found.size > 1)
        gone = found.kept_of[members] != members
        a, b = members[gone], found.kept_of[members][gone]
        scores = {"similarity": np.ones(len(members))}
        scores["similarity"][gone] = np.round(estimate(a, b), 4)
        if cfg.verify == "exact":
            # mostly checked already: the forests prefer edges to the record that is kept
            assert sets is not None
            known, jac = pair_lookup(edges, exact, a, b)
            jac[~known] = sets.jaccard(local(a[~known]), local(b[~known]))
            scores["jaccard"] = np.ones(len(members))
            scores["jaccard"][gone] = np.round(jac, 4)
        outcome = cl.outcome_frame(reps, members, np.searchsorted(members, found.kept_of[members]), found.size[members], scores) \
            if len(members) else cl.empty_outcome(scores)
        sig, sets = None, None  # type: ignore[assignment]  # freed before the snippet pass
        snippets = _fetch_snippets(ctx, outcome["id"], params, cfg.text)
        table = cl.snippet_table(outcome, snippets, self.name)
        files = cl.write_side_files(ctx.work_dir, self.name, table, {"method": self.name, **params.to_json()})
        removed = outcome.filter(pl.col("id") != pl.col("kept_id"))
        # rows that leave: the removed representatives and every copy of them
        removed_rows = int(bases.is_in(removed.select(base_id())["id"].implode()).sum()) if removed.height else 0
        timings["cluster"] = time.perf_counter() - t
        out = run_info(params, cfg, records, n, candidates, checks, len(edges), outcome, removed_rows, timings, files)
        return Decision(removed, out)

    def apply(self, batch: pl.DataFrame, decision: Decision, ctx: StepContext) -> tuple[pl.DataFrame, pl.DataFrame]:
        return cl.split(batch, decision.data, self.name, "near_duplicate", ledger_detail(self.config))  # type: ignore[arg-type]


class _Sets:
    """Shingle sets of the edge endpoints (sorted unique uint32 hashes), one flat array in a
    mapped file, compared in slices whose pages are released after each."""

    def __init__(self, starts: np.ndarray, sizes: np.ndarray, values: MappedArray):
        self.starts, self.sizes, self.values = starts, sizes, values

    def jaccard(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.zeros(len(a))
        for k in range(0, len(a), JACCARD_PAIRS):
            out[k:k + JACCARD_PAIRS] = pair_jaccard(self.starts, self.sizes, self.values.array, a[k:k + JACCARD_PAIRS], b[k:k + JACCARD_PAIRS])
            self.values.release()
        return out


def endpoint_rows(ids: pl.Series, params: MinHashParams, which: str, with_sets: bool, batch: pl.DataFrame) -> pl.DataFrame:
    """The second pass: for the rows of ``batch`` named in ``ids``, the signature and the
    sorted unique shingle set (when asked) of the compared text."""
    sel = batch.filter(pl.col("id").is_in(ids.implode()))
    texts, _ = normalized_texts(sel, params)
    offsets, hashes = hash_shingles(texts, params.shingling)
    sig = minhash(hashes, offsets, permutations(params.num_perm, params.seed))
    cols = [sel["id"], pl.Series("sig", sig.reshape(-1), dtype=pl.UInt32).reshape((sel.height, params.num_perm)) if sel.height
            else pl.Series("sig", [], dtype=pl.Array(pl.UInt32, params.num_perm))]
    if with_sets:
        set_off, values = unique_sets(hashes, offsets)
        cols.append(pl.Series("set", pa.LargeListArray.from_arrays(pa.array(set_off, pa.int64()), pa.array(values, pa.uint32()))))
    return pl.DataFrame(cols)


def snippet_rows(ids: pl.Series, which: str, batch: pl.DataFrame) -> pl.DataFrame:
    """The second pass for the cluster table: a snippet of the compared text of ``ids``."""
    sel = batch.filter(pl.col("id").is_in(ids.implode()))
    return pl.DataFrame([sel["id"], text_of(sel, which).str.slice(0, cl.SNIPPET_CHARS).alias("snippet") if sel.height
                         else pl.Series("snippet", [], pl.Utf8)])


ESTIMATE_PAIRS = 65_536  # candidate pairs whose signatures are compared at once
JACCARD_PAIRS = 65_536  # pairs whose shingle sets are compared before their pages are released


def _fetch_endpoints(ctx: StepContext, ids: pl.Series, params: MinHashParams, which: str,
                     with_sets: bool) -> tuple[MappedArray, _Sets | None]:
    """Signatures (and shingle sets) of the endpoints ``ids``, in their order, in mapped
    files of the build's temp folder (``mixer.dedup.mapped``), from one pass over the
    batches whose results are taken one batch at a time."""
    n = len(ids)
    folder = ctx.work_dir if ctx.work_dir is not None and ctx.work_dir.is_dir() else None
    sig = MappedArray.zeros((n, params.num_perm), np.uint32, folder)
    starts, sizes = np.zeros(n, np.int64), np.zeros(n, np.int64)
    f = tempfile.TemporaryFile(dir=folder)
    written = 0
    if n:
        if ctx.fetch is None:
            raise RuntimeError("minhash: the engine gave no second pass over the batches (StepContext.fetch)")
        order = ids.to_frame("id").with_row_index("_k")
        for got in ctx.fetch(partial(endpoint_rows, ids, params, which, with_sets)):
            if not got.height:
                continue
            where = got.select("id").join(order, on="id", how="left", maintain_order="left")["_k"].to_numpy().astype(np.int64)
            sig.array[where] = np.asarray(got["sig"].to_numpy(), dtype=np.uint32).reshape(got.height, params.num_perm)
            if with_sets:
                at = 0
                for c in _chunks(got["set"]):
                    off = c.offsets.to_numpy().astype(np.int64)
                    rows = where[at : at + len(c)]
                    starts[rows], sizes[rows] = written + off[:-1] - off[0], np.diff(off)
                    f.write(c.values.to_numpy(zero_copy_only=False)[off[0] : off[-1]].astype(np.uint32, copy=False).tobytes())
                    written += int(off[-1] - off[0])
                    at += len(c)
            sig.release()
    if not with_sets:
        f.close()
        return sig, None
    return sig, _Sets(starts, sizes, MappedArray.of_file(f, written, np.uint32))


def _chunks(column: pl.Series) -> list[pa.Array]:
    arr = column.to_arrow()
    return list(arr.chunks) if isinstance(arr, pa.ChunkedArray) else [arr]


def _fetch_snippets(ctx: StepContext, ids: pl.Series, params: MinHashParams, which: str) -> pl.Series:
    """Snippets of the cluster table's records (a pass for those ids only), in ``ids`` order."""
    if len(ids) == 0:
        return pl.Series("snippet", [], pl.Utf8)
    if ctx.fetch is None:
        raise RuntimeError("minhash: the engine gave no second pass over the batches (StepContext.fetch)")
    got = fetched(ctx.fetch(partial(snippet_rows, ids, which)))
    return pl.DataFrame({"id": ids}).join(got, on="id", how="left", maintain_order="left")["snippet"]


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


def _exact_verify(n: int, edges: np.ndarray, est: np.ndarray, rank: np.ndarray, jaccard, threshold: float,
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
        jac = jaccard(a, b)
        return jac >= threshold, jac

    with progress_task("minhash: exact Jaccard", len(edges), progress) as advance:
        return verify_components(n, edges, weight, check, advance)
