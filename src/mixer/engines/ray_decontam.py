"""``decontaminate`` on the Ray engine: the eval index is broadcast, matching runs per block.

The eval index (``mixer.decontam.index.EvalIndex``) is built once on the driver and put in
the object store; every block task tokenizes its records and queries that one index
(``find_matches`` with the index given). Matching is per record, so the (record, instance)
pairs of the blocks, shifted by each block's position, are exactly the whole frame's. The
decision (best match per record, contaminated sources, the report) needs only ids, sources
and the pairs, and runs on the driver with the local code.

Not distributed: building the index (eval sets are small: the Tulu 2 suite is ~30k
instances) and the report.
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
from mixer.engines.ray_ops import POS
from mixer.records import empty_removed, removed_from
from mixer.spec import StepSpec
from mixer.steps.base import StepContext, StepResult


@dataclass
class MatchBlock:
    """Map side: (record, instance) pairs of one block, records numbered in the whole frame."""

    params: Any  # DecontamConfig

    def __call__(self, table: pa.Table, start: int, length: int, offset: int, index: Any) -> tuple[pa.Table, int]:
        from mixer.decontam.core import find_matches

        frame = from_arrow(table, start, length)
        res = find_matches(frame, index.evals, self.params, index=index, progress=False)
        pairs = res.pairs.with_columns((pl.col("rec").cast(pl.Int64) + offset).alias("rec"))
        return pairs.to_arrow(), res.tokens


def match_task(op: MatchBlock, table: pa.Table, start: int, length: int, offset: int, index: Any) -> tuple[pa.Table, int]:
    return op(table, start, length, offset, index)


_match = ray.remote(match_task)


def run_decontam(engine: RayEngine, step: StepSpec, frame: RayFrame, ctx: StepContext) -> StepResult:
    from mixer.decontam import report as report_io
    from mixer.decontam.apply import load_evals
    from mixer.decontam.core import MatchResult
    from mixer.decontam.index import EvalIndex

    cfg = step.config
    t0 = time.perf_counter()
    evals = load_evals(cfg, base=ctx.spec_dir)
    index = EvalIndex(evals, cfg.settings(), cfg.eval_text, cfg.unicode)
    timings = {"index_s": time.perf_counter() - t0}
    t1 = time.perf_counter()
    index_ref = ray.put(index)
    op = ray.put(MatchBlock(cfg))
    blocks, offsets = engine._live(frame)
    outs = [_match.options(num_returns=2, num_cpus=engine.cpus_per_task).remote(op, b.ref, b.start, b.length, int(o), index_ref)
            for b, o in zip(blocks, offsets, strict=True)]
    tables = _get([o[0] for o in outs])
    tokens = int(sum(_get([o[1] for o in outs])))
    pairs = pl.concat([from_arrow(t) for t in tables]) if tables else None
    if pairs is None or pairs.height == 0:
        from mixer.decontam.core import _apply_rule

        empty = index.query(index.vocab.encode(pl.Series([], dtype=pl.Utf8)), np.zeros(0, np.int64))
        pairs = _apply_rule(empty, index, cfg) if pairs is None else pairs
    timings["match_s"] = time.perf_counter() - t1
    res = MatchResult(pairs=pairs.sort(["rec", "inst"]), index=index, timings=timings, tokens=tokens)
    proxy = engine.compact(frame, ["id", "source"])
    out = decide(proxy, evals, cfg, res, t0)
    if out["removed"].height:
        gone = proxy.filter(pl.col("id").is_in(out["removed"]["id"].implode()))
        kept = engine._drop(frame, gone[POS].to_numpy(), gone["source"])
    else:
        kept = frame
    info = out["info"]
    if ctx.work_dir is not None:
        report_io.write(ctx.work_dir, out["report"], out["matches"])
        info["files"] = [report_io.REPORT_FILE, report_io.MATCHES_FILE]
    return StepResult(kept, out["removed"], info)


def decide(frame: pl.DataFrame, evals: pl.DataFrame, cfg: Any, res: Any, t0: float) -> dict[str, Any]:
    """``mixer.decontam.apply.decontaminate`` after its matching, on ids and sources only.

    Kept in step with the local function by the engine tests (same ledger, same report)."""
    from mixer.decontam.apply import STEP, _best_match, _contaminated_sources, _spec_name
    from mixer.decontam.report import benchmark_totals, match_rows, matrix

    matches = match_rows(frame, evals, res.pairs)
    totals = benchmark_totals(evals, res.index.short_inst)
    mat = matrix(matches, frame, totals, cfg.template_min)
    dropped = _contaminated_sources(mat, cfg.drop_source_above)
    drop_src = pl.DataFrame(dropped, schema={"source": pl.Utf8, "benchmark": pl.Utf8, "pct": pl.Float64, "limit": pl.Float64})
    in_dropped = pl.col("source").is_in(drop_src["source"].implode())
    removed_parts = []
    if drop_src.height:
        gone = frame.filter(in_dropped).join(drop_src, on="source", how="left")
        detail = pl.struct(pl.col("benchmark"), pl.col("pct").round(3), pl.col("limit")).struct.json_encode()
        removed_parts.append(removed_from(gone, STEP, "contaminated_source", detail))
    if cfg.action == "remove" and matches.height:
        best = _best_match(matches).filter(~in_dropped)
        removed_parts.append(removed_from(best, STEP, "contaminated", pl.col("detail")))
    removed = pl.concat(removed_parts) if removed_parts else empty_removed()
    report = {
        "params": {**cfg.model_dump(mode="json", exclude={"evals"}), "n": cfg.size, "evals": [_spec_name(e) for e in cfg.evals]},
        "index": res.index.describe(),
        "records": frame.height,
        "tokens": res.tokens,
        "sources": {r["source"]: r["len"] for r in frame.group_by("source", maintain_order=True).len().iter_rows(named=True)},
        "benchmarks": totals.to_dicts(),
        "matrix": mat.to_dicts(),
        "matched_records": int(matches["rec"].n_unique()) if matches.height else 0,
        "matches": matches.height,
        "dropped_sources": dropped,
        "removed": removed.height,
        "timings": {**{k: round(v, 3) for k, v in res.timings.items()}, "total_s": round(time.perf_counter() - t0, 3)},
    }
    info = {k: report[k] for k in ("index", "matched_records", "matches", "removed", "dropped_sources", "timings")}
    info["pct_instances"] = {r["benchmark"]: r["pct_instances"] for r in report["matrix"] if r["source"] == "(all)"}
    return {"removed": removed, "matches": matches, "report": report, "info": info}
