"""Check new records against a finished build: ``mixer dedup --against BUILD FILE``.

New records are first matched against the build's kept records (their first copies): band
keys joined by sorting, all at once. Those without a match then go, in file order, through a
``datasketch.MinHashLSH`` index fed our signatures (they are datasketch MinHashes, scheme
affine32): each queries it and is inserted when it matches nothing, so later records of the
same file are checked against it (the index grows incrementally). A candidate counts when it
passes verification (exact Jaccard of shingle sets by default, else the signature estimate);
candidates are tried in order of estimated similarity, and a duplicate names the first that
passes. Parameters come from the build's
``dedup/minhash.json`` when it has one, so the check matches how the build was deduplicated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mixer.dedup import clusters as cl
from mixer.dedup.near import MinHashParams, compute_signatures
from mixer.dedup.signatures import permutations
from mixer.records import conform, kind_of, removed_frame


@dataclass
class AgainstResult:
    kept: pl.DataFrame  # new records that are not duplicates, in file order
    removed: pl.DataFrame  # ledger rows (REMOVED_SCHEMA) for the duplicates
    matches: pl.DataFrame  # id, source, duplicate_of, duplicate_source, where, similarity, jaccard
    params: MinHashParams


def build_params(build: Path) -> MinHashParams | None:
    """The parameters the build's ``minhash`` step used, if it ran one."""
    path = Path(build) / "dedup" / "minhash.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    data.pop("method", None)
    return MinHashParams.from_json(data)


def load_records(path: Path, fmt: str | None = None, source: str | None = None, fmt_config: dict | None = None) -> pl.DataFrame:
    """Records from a file: already in the record schema (parquet/jsonl with ``messages``
    or ``chosen``/``rejected``), or raw rows converted by a named format (with its options
    ``fmt_config``, as under ``format:`` in a spec)."""
    from mixer.formats.base import FormatContext, get_format
    from mixer.io import load_files

    source = source or Path(path).stem
    loaded = load_files([str(Path(path).resolve())], Path.cwd(), source)
    raw = loaded.raw
    if fmt is None and ("messages" in raw.columns or {"chosen", "rejected"} <= set(raw.columns)):
        if "id" not in raw.columns:
            raw = raw.with_columns((pl.lit(f"{source}:") + pl.col("_row").cast(pl.Utf8)).alias("id"))
        if "source" not in raw.columns:
            raw = raw.with_columns(pl.lit(source).alias("source"))
        return conform(raw.drop([c for c in raw.columns if c.startswith("_")]))
    spec = get_format(fmt or "messages")
    res = spec.fn(raw, spec.config(**(fmt_config or {})), FormatContext(source))
    return conform(res.kept)


def _build_candidates(keys: np.ndarray, old: np.ndarray, new: np.ndarray, cap: int = 64) -> np.ndarray:
    """(new row, build row) pairs sharing a band key, by sorted joins per band (at most
    ``cap`` build records per band bucket, the earliest ones)."""
    from mixer.dedup.jaccard import ranges, sorted_unique

    parts = []
    for j in range(keys.shape[0]):
        k_old = np.asarray(keys[j])[old]
        order = np.argsort(k_old, kind="stable")
        sk = k_old[order]
        q = np.asarray(keys[j])[new]
        lo = np.searchsorted(sk, q, side="left")
        cnt = np.minimum(np.searchsorted(sk, q, side="right") - lo, cap)
        parts.append(np.stack([np.repeat(new, cnt), old[order[ranges(lo, cnt)]]], axis=1))
    if not parts:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(parts)
    packed = sorted_unique(pairs[:, 0].astype(np.uint64) << np.uint64(32) | pairs[:, 1].astype(np.uint64))
    return np.stack([(packed >> np.uint64(32)).astype(np.int64), (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)], axis=1)


def check_against(build_frame: pl.DataFrame, new: pl.DataFrame, params: MinHashParams,
                  verify: str = "exact", threads: int | None = None, build_name: str = "build",
                  progress: Any = None) -> AgainstResult:
    """Find the records of ``new`` that near-duplicate a build record or an earlier new one.

    Against the build, candidates come from sorted joins of band keys (vectorized, so a
    build of millions costs seconds); among the new records, a ``datasketch.MinHashLSH``
    index grows record by record in file order."""
    from datasketch import MinHash, MinHashLSH

    if kind_of(build_frame) != kind_of(new):
        raise ValueError(f"the build holds {kind_of(build_frame)} records but the file {kind_of(new)} records")
    reps = cl.representatives(build_frame)
    old = build_frame if len(reps) == build_frame.height else build_frame[reps]
    both = pl.concat([conform(old), conform(new)])
    n_old = old.height
    sigs = compute_signatures(both, params, threads, keep_sets=verify == "exact", progress=progress)
    dup_of = np.full(new.height, -1, dtype=np.int64)
    est = np.zeros(new.height)
    exact = np.full(new.height, np.nan)

    def scores(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sim = (sigs.sig[a] == sigs.sig[b]).mean(axis=1) if len(a) else np.zeros(0)
        return sim, (sigs.sets.jaccard(a, b) if verify == "exact" else sim)

    try:
        # 1. against the build, all new records at once; per new record the candidates are
        #    tried in order of estimated similarity, a round at a time, until one passes
        live = np.flatnonzero(sigs.nonempty)
        pairs = _build_candidates(sigs.keys, live[live < n_old], live[live >= n_old])
        sim = (sigs.sig[pairs[:, 0]] == sigs.sig[pairs[:, 1]]).mean(axis=1) if len(pairs) else np.zeros(0)
        if verify != "none":  # far below the threshold: a true match does that with p ~ 3e-6
            likely = sim >= params.threshold - 4.5 * np.sqrt(params.threshold * (1 - params.threshold) / params.num_perm)
            pairs, sim = pairs[likely], sim[likely]
        order = np.lexsort((pairs[:, 1], -sim, pairs[:, 0]))  # per new record: best estimate, then earliest
        pairs, sim = pairs[order], sim[order]
        start = np.ones(len(pairs), dtype=bool)
        start[1:] = pairs[1:, 0] != pairs[:-1, 0]
        rank = np.arange(len(pairs)) - np.maximum.accumulate(np.where(start, np.arange(len(pairs)), 0))
        for r in range(int(rank.max()) + 1 if len(rank) else 0):
            try_now = np.flatnonzero((rank == r) & (dup_of[pairs[:, 0] - n_old] < 0))
            if len(try_now) == 0:
                break
            _, score = scores(pairs[try_now, 0], pairs[try_now, 1])
            ok = try_now[score >= params.threshold] if verify != "none" else try_now
            j = pairs[ok, 0] - n_old
            dup_of[j], est[j] = pairs[ok, 1], sim[ok]
            if verify == "exact":
                exact[j] = score[score >= params.threshold]
        # 2. the rest, incrementally, in file order
        perms = permutations(params.num_perm, params.seed)
        lsh = MinHashLSH(threshold=params.threshold, num_perm=params.num_perm, params=(params.bands, params.rows))
        for j in np.flatnonzero((dup_of < 0) & sigs.nonempty[n_old:]):
            row = n_old + int(j)
            m = MinHash(seed=params.seed, hashvalues=sigs.sig[row], permutations=perms, scheme="affine32")
            cands = np.array(sorted(lsh.query(m)), dtype=np.int64)
            if len(cands):
                sim, score = scores(np.full(len(cands), row), cands)
                good = np.flatnonzero(score >= params.threshold) if verify != "none" else np.arange(len(cands))
                if len(good):
                    b = good[np.argmax(score[good])]  # ties: the earliest (candidates are sorted)
                    dup_of[j], est[j] = cands[b], sim[b]
                    if verify == "exact":
                        exact[j] = score[b]
                    continue
            lsh.insert(row, m, check_duplication=False)
    finally:
        sigs.close()
    gone = np.flatnonzero(dup_of >= 0)
    target = dup_of[gone]
    ids = both["id"].to_numpy()
    sources = both["source"].to_numpy()
    matches = pl.DataFrame({
        "id": new["id"].to_numpy()[gone], "source": new["source"].to_numpy()[gone],
        "duplicate_of": ids[target] if len(gone) else [], "duplicate_source": sources[target] if len(gone) else [],
        "where": np.where(target < n_old, build_name, "this file") if len(gone) else [],
        "similarity": np.round(est[gone], 4), "jaccard": np.round(exact[gone], 4),
    }, schema={"id": pl.Utf8, "source": pl.Utf8, "duplicate_of": pl.Utf8, "duplicate_source": pl.Utf8,
               "where": pl.Utf8, "similarity": pl.Float64, "jaccard": pl.Float64})
    detail = matches.select(pl.format("near-duplicate of {} ({}, {}), estimated Jaccard {}", "duplicate_of",
                                      "duplicate_source", "where", pl.col("similarity").round(3))).to_series()
    if verify == "exact" and matches.height:
        detail = detail + matches.select(pl.format(", exact Jaccard {}", pl.col("jaccard").round(3))).to_series()
    removed = removed_frame(matches["id"], matches["source"], "minhash", "near_duplicate", detail)
    mask = np.ones(new.height, dtype=bool)
    mask[gone] = False
    return AgainstResult(new.filter(pl.Series(mask)), removed, matches, params)
