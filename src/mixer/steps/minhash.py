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

import os
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import Field, model_validator

from mixer.cpus import parallel_map, usable_cpus
from mixer.dedup import clusters as cl
from mixer.dedup.jaccard import pair_jaccard, ranges, sorted_unique, unique_inverse, unique_sets
from mixer.dedup.lsh import (
    band_keys,
    candidate_probability,
    component_groups,
    lsh_params,
    pair_lookup,
    verify_components,
)
from mixer.dedup.near import (
    MinHashParams,
    approx_bytes,
    band_candidates,
    chunk_bounds,
    normalized_texts,
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
    keeps_rows = True
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
        row of each base id in the whole input, which is always one of those. The batch
        goes on with the signature (``_mh_sig``) and, verified exactly, the sorted unique
        shingle set (``_mh_set``) of its signed rows, so that ``decide`` reads the edge
        endpoints' instead of computing them again; ``apply`` drops them."""
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
        sigs = np.zeros((len(rows), params.num_perm), np.uint32)
        set_parts: list[tuple[np.ndarray, np.ndarray]] = []

        def work(bound: tuple[int, int]) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, Any]:
            i0, i1 = bound
            texts, lens = normalized_texts(sub.slice(i0, i1 - i0), params)
            offsets, hashes = hash_shingles(texts, params.shingling)
            sig = minhash(hashes, offsets, perms)
            sets = unique_sets(hashes, offsets) if cfg.verify == "exact" else None
            return i0, i1, lens, np.diff(offsets) > 0, band_keys(sig, params.bands, params.rows), sig, sets

        for i0, i1, lens, ne, bk, sig, sets in parallel_map(work, chunk_bounds(approx_bytes(sub), 2_000_000), threads_for(ctx, cfg.threads)):
            at = rows[i0:i1]
            lengths[at], nonempty[at], keys[:, at] = lens, ne, bk
            sigs[i0:i1] = sig
            if sets is not None:
                set_parts.append(sets)
        out = batch.select("id", "source", base_id().alias("_base")).with_columns(
            pl.Series("_first", first), pl.Series("_len", lengths), pl.Series("_ne", nonempty),
            *[pl.Series(f"_b{j}", keys[j]) for j in range(params.bands)],
        )
        kept = batch.with_columns(_beside(first, sigs, set_parts if cfg.verify == "exact" else None))
        return Mapped(kept, keys=out, info={"signed": len(rows)})

    def decide(self, keys: pl.LazyFrame, ctx: StepContext, info: dict[str, Any]) -> Decision:
        """Candidate edges from equal band keys; signatures (and, verified exactly, shingle
        sets) of the edge endpoints only, from a second pass over the batches (``ctx.fetch``);
        clusters, the keep policy, the cluster table and the removals by base id."""
        cfg: MinHashConfig = self.config  # type: ignore[assignment]
        params = cfg.params()
        timings: dict[str, float] = {}
        t = time.perf_counter()
        if not keys.collect_schema().len():  # no batch reached the step
            keys = pl.LazyFrame(schema={"id": pl.Utf8, "source": pl.Utf8, "_base": pl.Utf8, "_first": pl.Boolean, "_len": pl.Int64,
                                        "_ne": pl.Boolean, **{f"_b{j}": pl.UInt64 for j in range(params.bands)}})
        # the keys are collected a few columns at a time (a spilled scan reads only those)
        bases = keys.select("_first", "_base").collect()
        records = bases.height
        # one row per base id: the first row of each (copies follow their record)
        rep = bases.select(pl.col("_first") & pl.col("_base").is_first_distinct()).to_series()
        copies = bases["_base"].filter(~rep)  # the other rows' base ids: they leave with their record
        del bases
        rep_rows = np.flatnonzero(rep.to_numpy())  # each representative's row in the stage (second passes take rows by it)
        reps = keys.select("id", "source", "_len", "_ne").collect().filter(rep)
        n = reps.height
        bands = np.zeros((params.bands, n), np.uint64)
        for j in range(params.bands):  # band by band: the key columns are never copied whole
            bands[j] = keys.select(f"_b{j}").collect().to_series().filter(rep).to_numpy()
        del keys, rep  # handed over by the engine: freed here
        rank = cl.keep_rank(reps["source"], reps["_len"].to_numpy(), cfg.keep, ctx.source_order, cfg.priority) if n else np.zeros(0, np.int64)
        nonempty = reps["_ne"].to_numpy() if n else np.zeros(0, bool)
        # ids and sources wait on disk (millions of strings at 10M) until the outcome needs them
        parked = _Parked(reps.select("id", "source"), _folder(ctx))
        del reps
        edges = band_candidates(bands, nonempty, ctx.progress, cfg.threads)
        del bands, nonempty
        candidates = len(edges)
        timings["lsh"] = time.perf_counter() - t
        t = time.perf_counter()
        # groups of about VERIFY_EDGES edges, at most MAX_GROUPS of them (two open files each)
        edges, groups = component_groups(n, edges, max(VERIFY_EDGES, -(-len(edges) // MAX_GROUPS)))
        ends = sorted_unique(edges.ravel()) if len(edges) else np.zeros(0, np.int64)
        group_of = np.zeros(len(ends), np.int64)
        edge_group = np.repeat(np.arange(len(groups)), [e - s for s, e in groups])
        for side in (0, 1):
            group_of[np.searchsorted(ends, edges[:, side])] = edge_group
        del edge_group
        store = _fetch_endpoints(ctx, rep_rows[ends], _Endpoints(ends, group_of, len(groups), params.num_perm, cfg.verify == "exact", _folder(ctx),
                                                             cfg.threads or usable_cpus()))
        timings["endpoints"] = time.perf_counter() - t
        t = time.perf_counter()
        checks, kept_edges, exact = 0, [], []
        with progress_task("minhash: verify" if cfg.verify != "none" else "minhash: groups", len(edges), ctx.progress) as advance:
            for g, (s, e) in enumerate(groups):
                group = edges[s:e]
                if cfg.verify == "signature":
                    group = group[store.load(g).estimate(group[:, 0], group[:, 1]) >= cfg.threshold]
                    advance(e - s)
                elif cfg.verify == "exact":
                    group, jac, made = _exact_verify(group, rank, store.load(g), cfg.threshold, cfg.num_perm, advance)
                    exact.append(jac)
                    checks += made
                else:  # unverified: every candidate is an edge, no group is read
                    advance(e - s)
                kept_edges.append(group)
        edges = np.concatenate(kept_edges) if kept_edges else np.zeros((0, 2), np.int64)
        exact = np.concatenate(exact) if exact else np.zeros(0)
        timings["verify"] = time.perf_counter() - t
        t = time.perf_counter()
        found = resolve(n, edges, rank, candidates)
        members = np.flatnonzero(found.size > 1)
        gone = found.kept_of[members] != members
        a, b = members[gone], found.kept_of[members][gone]
        scores = {"similarity": np.ones(len(members))}
        if cfg.verify == "exact":
            scores["jaccard"] = np.ones(len(members))
            known, jac = pair_lookup(edges, exact, a, b)  # mostly: the forests prefer edges to the kept record
        # the removed record and the one kept for it are in one component, so in one group
        pair_group = group_of[np.searchsorted(ends, a)] if len(a) else np.zeros(0, np.int64)
        sim = np.zeros(len(a))
        for g in np.unique(pair_group):
            at = np.flatnonzero(pair_group == g)
            there = store.load(int(g))
            sim[at] = there.estimate(a[at], b[at])
            if cfg.verify == "exact":
                unknown = at[~known[at]]
                jac[unknown] = there.jaccard(a[unknown], b[unknown])
            del there
        scores["similarity"][gone] = np.round(sim, 4)
        if cfg.verify == "exact":
            scores["jaccard"][gone] = np.round(jac, 4)
        outcome = cl.outcome_frame(parked.read(), members, np.searchsorted(members, found.kept_of[members]), found.size[members], scores) \
            if len(members) else cl.empty_outcome(scores)
        del store
        snippets = _fetch_snippets(ctx, rep_rows[outcome["_rep"].to_numpy()], cfg.text)
        table = cl.snippet_table(outcome, snippets, self.name)
        files = cl.write_side_files(ctx.work_dir, self.name, table, {"method": self.name, **params.to_json()})
        removed = outcome.filter(pl.col("id") != pl.col("kept_id"))
        # rows that leave: the removed representatives and every copy of them
        removed_rows = removed.height + (int(copies.is_in(removed.select(base_id())["id"].implode()).sum()) if removed.height else 0)
        timings["cluster"] = time.perf_counter() - t
        out = run_info(params, cfg, records, n, candidates, checks, len(edges), outcome, removed_rows, timings, files)
        return Decision(cl.removals(removed), out)

    def apply(self, batch: pl.DataFrame, decision: Decision, ctx: StepContext) -> tuple[pl.DataFrame, pl.DataFrame]:
        batch = batch.drop("_mh_sig", "_mh_set", strict=False)
        return cl.split(batch, decision.data, self.name, "near_duplicate", ledger_detail(self.config))  # type: ignore[arg-type]


class _Group:
    """Signatures (and shingle sets) of one group's edge endpoints, in memory while the group
    is worked on; ``estimate`` and ``jaccard`` take record numbers. The sets of a group
    larger than ``SETS_IN_MEMORY`` stay in their file (``set_file``) and are read for the
    pairs asked about, a slice of pairs at a time."""

    def __init__(self, ends: np.ndarray, pos: np.ndarray, sig: np.ndarray, starts: np.ndarray, sizes: np.ndarray,
                 values: np.ndarray | None, set_file: Any = None, threads: int = 1):
        self.ends, self.pos, self.sig, self.threads = ends, pos, sig, threads
        self.starts, self.sizes, self.values, self.set_file = starts, sizes, values, set_file

    def _rows(self, records: np.ndarray) -> np.ndarray:
        return self.pos[np.searchsorted(self.ends, records)]

    def estimate(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Signature estimates, in slices (two gathered (pairs x num_perm) blocks at once
        would take gigabytes), ``threads`` slices at a time."""
        out = np.zeros(len(a))

        def one(k: int) -> None:
            out[k:k + ESTIMATE_PAIRS] = similarity(self.sig[self._rows(a[k:k + ESTIMATE_PAIRS])], self.sig[self._rows(b[k:k + ESTIMATE_PAIRS])])

        list(parallel_map(one, list(range(0, len(a), ESTIMATE_PAIRS)), self.threads))
        return out

    def jaccard(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ra, rb = self._rows(a), self._rows(b)
        if self.values is not None:
            return pair_jaccard(self.starts, self.sizes, self.values, ra, rb, self.threads)
        out = np.zeros(len(a))
        for k in range(0, len(a), ESTIMATE_PAIRS):
            rows, inv = unique_inverse(np.concatenate([ra[k:k + ESTIMATE_PAIRS], rb[k:k + ESTIMATE_PAIRS]]))
            starts, values = _read_rows(self.set_file, self.starts[rows], self.sizes[rows])
            half = len(inv) // 2
            out[k:k + ESTIMATE_PAIRS] = pair_jaccard(starts, self.sizes[rows], values, inv[:half], inv[half:], self.threads)
        return out


class _Endpoints:
    """The edge endpoints' signatures and shingle sets, written group by group to files of
    the build's temp folder as the second pass yields them; ``load(g)`` reads one group
    into memory (a group holds whole components, so every pair asked about is in one).
    Read whole per group rather than mapped: random access to a mapped file pulls its
    neighbours' pages in too, and the resident set grows to the whole file."""

    def __init__(self, ends: np.ndarray, group_of: np.ndarray, groups: int, num_perm: int, with_sets: bool, folder: Path | None,
                 threads: int = 1):
        self.ends, self.group_of, self.threads = ends, group_of, threads
        self.num_perm, self.with_sets = num_perm, with_sets
        self.sig_files = [tempfile.TemporaryFile(dir=folder) for _ in range(groups)]
        self.set_files = [tempfile.TemporaryFile(dir=folder) for _ in range(groups)] if with_sets else []
        self.count = np.zeros(groups, np.int64)  # endpoints written per group
        self.written = np.zeros(groups, np.int64)  # set members written per group
        n = len(ends)
        self.pos = np.full(n, -1, np.int64)  # an endpoint's row in its group's files
        self.starts, self.sizes = np.zeros(n, np.int64), np.zeros(n, np.int64)  # its set there

    def add(self, where: np.ndarray, sig: np.ndarray, set_off: np.ndarray | None, set_values: np.ndarray | None) -> None:
        """Rows for the endpoints ``where``, appended to their groups' files."""
        group = self.group_of[where]
        order = np.argsort(group, kind="stable")
        sorted_group = group[order]
        for g in np.unique(group):
            rows = order[np.searchsorted(sorted_group, g):np.searchsorted(sorted_group, g, side="right")]
            at = where[rows]
            self.pos[at] = self.count[g] + np.arange(len(rows))
            self.count[g] += len(rows)
            self.sig_files[g].write(np.ascontiguousarray(sig[rows], dtype=np.uint32).tobytes())
            if set_off is not None and set_values is not None:
                lens = set_off[rows + 1] - set_off[rows]
                self.starts[at] = self.written[g] + np.concatenate([[0], np.cumsum(lens)[:-1]])
                self.sizes[at] = lens
                self.set_files[g].write(set_values[ranges(set_off[rows], lens)].astype(np.uint32, copy=False).tobytes())
                self.written[g] += int(lens.sum())

    def load(self, g: int) -> _Group:
        """Group ``g``'s signatures and sets, read into memory."""
        mine = np.flatnonzero(self.group_of == g)
        count = int(self.count[g])
        sig = _read(self.sig_files[g], np.uint32, count * self.num_perm).reshape(count, self.num_perm)
        starts, sizes = np.zeros(count, np.int64), np.zeros(count, np.int64)
        starts[self.pos[mine]], sizes[self.pos[mine]] = self.starts[mine], self.sizes[mine]
        in_file = self.with_sets and int(self.written[g]) * 4 > SETS_IN_MEMORY
        values = _read(self.set_files[g], np.uint32, int(self.written[g])) if self.with_sets and not in_file else None
        if in_file:
            self.set_files[g].flush()
        return _Group(self.ends[mine], self.pos[mine], sig, starts, sizes, values, self.set_files[g] if in_file else None, self.threads)


def _read(f: Any, dtype: type, count: int) -> np.ndarray:
    f.flush()
    f.seek(0)
    return np.fromfile(f, dtype=dtype, count=count) if count else np.zeros(0, dtype)


def _read_rows(f: Any, starts: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sets at ``starts`` (``sizes`` uint32 words each) of file ``f``, read one by one
    (positioned reads: the resident set holds these rows only): (starts, values) packed."""
    packed = np.zeros(len(sizes), np.int64)
    if len(sizes) > 1:
        np.cumsum(sizes[:-1], out=packed[1:])
    values = np.zeros(int(sizes.sum()), np.uint32)
    view, fd = memoryview(values).cast("B"), f.fileno()
    for at, start, size in zip((packed * 4).tolist(), (starts * 4).tolist(), (sizes * 4).tolist(), strict=True):
        if size and os.preadv(fd, [view[at:at + size]], start) != size:
            raise OSError(f"minhash: short read of a shingle set in the build's temp folder ({f.name})")
    return packed, values


class _Parked:
    """A frame written to an anonymous file in the build's temp folder (kept in memory when
    there is none), read back when needed."""

    def __init__(self, frame: pl.DataFrame, folder: Path | None):
        self.frame: pl.DataFrame | None = frame
        self.file: Any = None
        if folder is not None:
            self.file = tempfile.TemporaryFile(dir=folder)
            frame.write_ipc(self.file)
            self.frame = None

    def read(self, columns: list[str] | None = None) -> pl.DataFrame:
        if self.frame is not None:
            return self.frame if columns is None else self.frame.select(columns)
        self.file.seek(0)
        return pl.read_ipc(self.file, columns=columns)


def endpoint_rows(with_sets: bool, batch: pl.DataFrame) -> pl.DataFrame:
    """The second pass: the signature and (when asked) the shingle set that ``map`` put
    beside the rows."""
    return batch.select(pl.col("_mh_sig").alias("sig"), *([pl.col("_mh_set").alias("set")] if with_sets else []))


def _beside(signed: np.ndarray, sigs: np.ndarray, set_parts: list[tuple[np.ndarray, np.ndarray]] | None) -> list[pl.Series]:
    """The ``_mh_sig`` (and ``_mh_set``) columns of a batch, set at its ``signed`` rows (the
    others, upsampled copies, are null)."""
    cols = [pl.Series("_mh_sig", _spread(pa.FixedSizeListArray.from_arrays(pa.array(sigs.reshape(-1), pa.uint32()), sigs.shape[1]), signed))]
    if set_parts is not None:
        sets = pa.concat_arrays([pa.LargeListArray.from_arrays(pa.array(off, pa.int64()), pa.array(values, pa.uint32()))
                                 for off, values in set_parts]) if set_parts else pa.array([], pa.large_list(pa.uint32()))
        cols.append(pl.Series("_mh_set", _spread(sets, signed)))
    return cols


def _spread(values: pa.Array, signed: np.ndarray) -> pa.Array:
    """``values`` (one per signed row) placed at the ``signed`` rows, nulls elsewhere."""
    if signed.all():
        return values
    where = np.cumsum(signed) - 1
    return values.take(pa.array(where, mask=~signed))


def snippet_rows(which: str, batch: pl.DataFrame) -> pl.DataFrame:
    """The second pass for the cluster table: a snippet of the rows' compared text."""
    return pl.DataFrame([text_of(batch, which).str.slice(0, cl.SNIPPET_CHARS).alias("snippet") if batch.height
                         else pl.Series("snippet", [], pl.Utf8)])


ESTIMATE_PAIRS = 65_536  # candidate pairs whose signatures (or sets read from a file) are compared at once
SETS_IN_MEMORY = 512 * 2**20  # a group's shingle sets are read whole up to these bytes, else pair by pair
VERIFY_EDGES = 1_000_000  # candidate edges per group of whole components (and per chunk of one larger component)
MAX_GROUPS = 256


def _folder(ctx: StepContext) -> Path | None:
    return ctx.work_dir if ctx.work_dir is not None and ctx.work_dir.is_dir() else None


def _fetch_endpoints(ctx: StepContext, rows: np.ndarray, store: _Endpoints) -> _Endpoints:
    """Signatures (and shingle sets) of the endpoints, at the stage's ``rows`` (in
    ``store.ends`` order), put beside the batches by ``map``, into ``store``, from one pass
    over the batches that hold them, whose results are taken one batch at a time."""
    if not len(rows):
        return store
    if ctx.fetch is None:
        raise RuntimeError("minhash: the engine gave no second pass over the batches (StepContext.fetch)")
    columns = ["_mh_sig", *(["_mh_set"] if store.with_sets else [])]
    done = 0
    for got in ctx.fetch(partial(endpoint_rows, store.with_sets), columns=columns, rows=rows):
        if not got.height:
            continue
        sig = np.asarray(got["sig"].to_numpy(), dtype=np.uint32).reshape(got.height, store.num_perm)
        set_off, set_values = _list_arrays(got["set"]) if store.with_sets else (None, None)
        store.add(np.arange(done, done + got.height), sig, set_off, set_values)
        done += got.height
    if done != len(rows):
        raise RuntimeError(f"minhash: the second pass gave {done} of {len(rows)} edge endpoints")
    return store


def _list_arrays(column: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(offsets from 0, values) of a list column."""
    arr = column.to_arrow()
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    off = arr.offsets.to_numpy().astype(np.int64)
    return off - off[0], arr.values.to_numpy(zero_copy_only=False)[off[0]:off[-1]]


def _fetch_snippets(ctx: StepContext, rows: np.ndarray, which: str) -> pl.Series:
    """Snippets of the cluster table's records, at the stage's sorted ``rows`` (a pass over
    the batches that hold them), in that order."""
    if len(rows) == 0:
        return pl.Series("snippet", [], pl.Utf8)
    if ctx.fetch is None:
        raise RuntimeError("minhash: the engine gave no second pass over the batches (StepContext.fetch)")
    got = fetched(ctx.fetch(partial(snippet_rows, which), rows=rows))["snippet"]
    if len(got) != len(rows):
        raise RuntimeError(f"minhash: the second pass gave {len(got)} of {len(rows)} snippets")
    return got


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


def _exact_verify(edges: np.ndarray, rank: np.ndarray, there: _Group, threshold: float, num_perm: int,
                  advance: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Candidate edges (of one group of whole components) whose shingle sets really have
    Jaccard >= threshold: (edges, their Jaccard, checks made). Checked on the spanning
    forests of ``lsh.verify_components`` (the same clusters as checking them all),
    preferring edges that touch the record a cluster will keep, so the kept-vs-removed
    similarity is mostly known afterwards. Candidates whose signature estimate lies more
    than 4.5 standard errors below the threshold are dropped unchecked (a true pair does
    that with probability ~3e-6). Records are numbered within the group, so the work
    arrays follow the group, not the whole graph."""
    margin = 4.5 * np.sqrt(threshold * (1 - threshold) / num_perm)
    est = there.estimate(edges[:, 0], edges[:, 1])
    likely = est >= threshold - margin
    advance(int((~likely).sum()))
    edges, est = edges[likely], est[likely]
    nodes, inv = unique_inverse(edges.ravel())
    weight = np.minimum(rank[edges[:, 0]], rank[edges[:, 1]]) + (1.0 - est) * 0.5
    del edges, est

    def check(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        jac = there.jaccard(nodes[a], nodes[b])
        return jac >= threshold, jac

    passed, jac, checks = verify_components(len(nodes), inv.reshape(-1, 2), weight, check, advance, VERIFY_EDGES)
    return nodes[passed], jac, checks
