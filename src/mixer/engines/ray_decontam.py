"""``decontaminate`` on the Ray engine: the eval index is broadcast, matching runs per block.

1. With ``dedup`` (the default), records whose checked turns are identical are matched
   once, as in ``find_matches``: a hash shuffle of those texts (map per block, reduce per
   partition) finds every later copy and the record it copies; only those pairs of
   positions come back to the driver.
2. The eval index (``mixer.decontam.index.EvalIndex``) is built once on the driver and put
   in the object store; every block task matches its distinct records against that one
   index (``find_matches`` with the index given, one thread per task).
3. The copies take their original's matches, and ``mixer.decontam.apply.decide`` (the
   local decision: best match, contaminated sources, ledger, report) runs on the driver
   over ids, sources and the pairs.

Not distributed: building the index (eval sets are small: the Tulu 2 suite is ~30k
instances) and the decision.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import ray

from mixer.engines.ray_engine import RayEngine, _get
from mixer.engines.ray_frame import RayFrame, from_arrow
from mixer.engines.ray_ops import POS, split_by_hash
from mixer.spec import StepSpec
from mixer.steps.base import StepContext, StepResult


def checked_key(frame: pl.DataFrame, roles: list[str]) -> pl.Expr:
    """The text ``find_matches`` deduplicates on (``mixer.decontam.core.distinct_records``)."""
    from mixer.decontam.core import message_columns

    keys = [
        pl.col(c).list.eval(pl.element().filter(pl.element().struct.field("role").is_in(roles)).struct.field("content").fill_null(""))
        .list.join("\x00")
        for c in message_columns(frame, roles)
    ]
    return pl.concat_str(keys, separator="\x01") if len(keys) > 1 else keys[0]


@dataclass
class CheckedKeys:
    """Map side of the distinct shuffle: ``_pos, _key`` split by hash of the key."""

    roles: list[str]
    partitions: int

    def __call__(self, table: pa.Table, start: int, length: int, offset: int) -> list[pa.Table]:
        frame = from_arrow(table, start, length)
        keyed = frame.select(pl.int_range(offset, offset + frame.height, dtype=pl.Int64).alias(POS), checked_key(frame, self.roles).alias("_key"))
        return split_by_hash(keyed, "_key", self.partitions)


def copies_reduce(*parts: pa.Table) -> pa.Table:
    """Reduce side: ``(_pos, _first)`` for every record whose checked text appeared earlier."""
    frames = [from_arrow(p) for p in parts if p.num_rows]
    if not frames:
        return pl.DataFrame(schema={POS: pl.Int64, "_first": pl.Int64}).to_arrow()
    keyed = pl.concat(frames).sort(POS).with_columns(pl.col(POS).first().over("_key").alias("_first"))
    return keyed.filter(pl.col(POS) != pl.col("_first")).select(POS, "_first").to_arrow()


@dataclass
class MatchBlock:
    """Map side of matching: pairs of a block's distinct records, numbered in the whole frame."""

    params: Any  # DecontamConfig, with dedup off (done globally) and one thread

    def __call__(self, table: pa.Table, start: int, length: int, offset: int, skip: np.ndarray, index: Any) -> tuple[pa.Table, int]:
        from mixer.decontam.core import find_matches

        frame = from_arrow(table, start, length)
        rows = np.setdiff1d(np.arange(frame.height), skip, assume_unique=True)
        work = frame[rows] if len(skip) else frame
        res = find_matches(work, index.evals, self.params, index=index, progress=False)
        pos = (rows + offset).astype(np.int64)
        pairs = res.pairs.with_columns(pl.Series("rec", pos[res.pairs["rec"].to_numpy().astype(np.int64)], dtype=pl.Int64))
        return pairs.to_arrow(), res.tokens


def map_split(op: Any, table: pa.Table, start: int, length: int, offset: int) -> list[pa.Table]:
    return op(table, start, length, offset)


def match_task(op: MatchBlock, table: pa.Table, start: int, length: int, offset: int, skip: np.ndarray, index: Any) -> tuple[pa.Table, int]:
    return op(table, start, length, offset, skip, index)


_split = ray.remote(map_split)
_copies = ray.remote(copies_reduce)
_match = ray.remote(match_task)


def run_decontam(engine: RayEngine, step: StepSpec, frame: RayFrame, ctx: StepContext) -> StepResult:
    from mixer.decontam import report as report_io
    from mixer.decontam.apply import decide, load_evals
    from mixer.decontam.core import MatchResult, _apply_rule
    from mixer.decontam.index import EvalIndex

    cfg = step.config
    t0 = time.perf_counter()
    evals = load_evals(cfg, base=ctx.spec_dir)
    index = EvalIndex(evals, cfg.settings(), cfg.eval_text, cfg.unicode)
    timings = {"index_s": time.perf_counter() - t0}
    t1 = time.perf_counter()
    blocks, offsets = engine._live(frame)
    copies = _copies_of(engine, frame, cfg.roles) if getattr(cfg, "dedup", False) and frame.rows >= 2 else pl.DataFrame(schema={POS: pl.Int64, "_first": pl.Int64})
    copy_pos = copies[POS].to_numpy()
    index_ref = ray.put(index)
    op = ray.put(MatchBlock(cfg.model_copy(update={k: v for k, v in (("dedup", False), ("threads", 1)) if k in type(cfg).model_fields})))
    outs = []
    for b, o in zip(blocks, offsets, strict=True):
        skip = copy_pos[(copy_pos >= o) & (copy_pos < o + b.length)] - o
        outs.append(_match.options(num_returns=2, num_cpus=engine.cpus_per_task).remote(op, b.ref, b.start, b.length, int(o), skip, index_ref))
    tables = _get([x[0] for x in outs])
    tokens = int(sum(_get([x[1] for x in outs])))
    found = [from_arrow(t) for t in tables if t.num_rows]
    if found:
        pairs = pl.concat(found)
    else:
        pairs = _apply_rule(index.query(index.vocab.encode(pl.Series([], dtype=pl.Utf8)), np.zeros(0, np.int64)), index, cfg).with_columns(pl.col("rec").cast(pl.Int64))
    if copies.height and pairs.height:  # copies take their original's matches
        extra = copies.join(pairs.rename({"rec": "_first"}), on="_first").drop("_first").rename({POS: "rec"})
        pairs = pl.concat([pairs, extra.select(pairs.columns)])
    timings["match_s"] = time.perf_counter() - t1
    res = MatchResult(pairs=pairs.sort(["rec", "inst"]), index=index, timings=timings, tokens=tokens,
                      distinct=frame.rows - copies.height if getattr(cfg, "dedup", False) and frame.rows >= 2 else frame.rows)
    proxy = engine.compact(frame, ["id", "source"])
    out = decide(proxy, evals, cfg, res, t0)
    if out.removed.height:
        gone = proxy.filter(pl.col("id").is_in(out.removed["id"].implode()))
        kept = engine._drop(frame, gone[POS].to_numpy(), gone["source"])
    else:
        kept = frame
    if ctx.work_dir is not None:
        report_io.write(ctx.work_dir, out.report, out.matches)
        out.info["files"] = [report_io.REPORT_FILE, report_io.MATCHES_FILE]
    return StepResult(kept, out.removed, out.info)


def _copies_of(engine: RayEngine, frame: RayFrame, roles: list[str]) -> pl.DataFrame:
    """(position, position of the first record with the same checked text), by a shuffle."""
    blocks, offsets = engine._live(frame)
    parts = engine._partitions(frame)
    op = ray.put(CheckedKeys(list(roles), parts))
    maps = [_split.options(num_returns=parts, num_cpus=engine.cpus_per_task).remote(op, b.ref, b.start, b.length, int(o))
            for b, o in zip(blocks, offsets, strict=True)]
    maps = [m if isinstance(m, list) else [m] for m in maps]
    reduces = [_copies.options(num_cpus=engine.cpus_per_task).remote(*[m[p] for m in maps]) for p in range(parts)]
    return pl.concat([from_arrow(t) for t in _get(reduces)]).sort(POS)
