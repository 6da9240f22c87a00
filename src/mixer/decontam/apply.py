"""Actions on matches: remove records, report only, or drop whole sources (Tulu 3 style).

Every removed record gets a ledger row naming the best match (benchmark, instance id,
coverage) and how many instances it hit; a dropped source's rows name the benchmark whose
overlap crossed the limit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import Field

from mixer.decontam.core import MatchParams, MatchResult, find_matches
from mixer.decontam.index import EvalIndex
from mixer.decontam.report import benchmark_totals, match_rows, matrix
from mixer.evalsets import EvalSetSpec
from mixer.records import empty_removed, removed_from

STEP = "decontaminate"


class DecontamConfig(MatchParams):
    """Parameters of the ``decontaminate`` step (YAML) and command."""

    evals: list[str | EvalSetSpec] = Field(
        default_factory=lambda: ["tulu2"], description="benchmark names, suites (tulu2, tulu2+), name:split, or file specs"
    )
    eval_dir: str | None = Field(None, description="local folder with one sub-folder per benchmark; hub when unset")
    action: Literal["remove", "report"] = "remove"
    drop_source_above: float | None = Field(
        None, ge=0, le=100, description="drop a whole source overlapping more than this % of any benchmark (Tulu 3: 2)"
    )
    report_source_above: float | None = Field(
        None, ge=0, le=100,
        description="list every (source, benchmark) pair overlapping more than this % of the benchmark in the report's contaminated_sources, without dropping the source (Tulu 3: 2)",
    )
    exempt_sources: list[str] = Field(
        default_factory=list, description="sources whose matches are reported but never removed (Tulu 3: the hardcoded identity prompts, one of which is a TruthfulQA question)"
    )
    template_min: int = Field(10, ge=2, description="a record hitting this many instances of one benchmark is flagged as a template match")


@dataclass
class Outcome:
    kept: pl.DataFrame
    removed: pl.DataFrame
    matches: pl.DataFrame
    report: dict
    info: dict = field(default_factory=dict)


def load_evals(cfg: DecontamConfig, base: Path | None = None) -> pl.DataFrame:
    from mixer import evalsets

    eval_dir = cfg.eval_dir
    if eval_dir is not None and base is not None and not Path(eval_dir).expanduser().is_absolute():
        eval_dir = str(base / eval_dir)
    return evalsets.load_many(cfg.evals, data_dir=eval_dir, base=base)


def decontaminate(
    frame: pl.DataFrame, evals: pl.DataFrame, cfg: DecontamConfig, index: EvalIndex | None = None, progress: Any = True
) -> Outcome:
    """Match, decide, and build the ledger and the report."""
    t0 = time.perf_counter()
    res = find_matches(frame, evals, cfg, index=index, progress=progress)
    return decide(frame, evals, cfg, res, t0)


def decide(frame: pl.DataFrame, evals: pl.DataFrame, cfg: DecontamConfig, res: MatchResult, t0: float | None = None) -> Outcome:
    """From matches to the ledger and the report; needs only ``id`` and ``source`` of
    ``frame`` (so an engine that matched in parallel can call it on a thin frame)."""
    t0 = time.perf_counter() if t0 is None else t0
    matches = match_rows(frame, evals, res.pairs)
    totals = benchmark_totals(evals, res.index.short_inst)
    mat = matrix(matches, frame, totals, cfg.template_min)

    dropped = [d for d in _contaminated_sources(mat, cfg.drop_source_above) if d["source"] not in cfg.exempt_sources]
    drop_src = pl.DataFrame(dropped, schema={"source": pl.Utf8, "benchmark": pl.Utf8, "pct": pl.Float64, "limit": pl.Float64})
    in_dropped = pl.col("source").is_in(drop_src["source"].implode())
    removed_parts = []
    if drop_src.height:
        gone = frame.filter(in_dropped).join(drop_src, on="source", how="left")
        detail = pl.struct(pl.col("benchmark"), pl.col("pct").round(3), pl.col("limit")).struct.json_encode()
        removed_parts.append(removed_from(gone, STEP, "contaminated_source", detail))
    if cfg.action == "remove" and matches.height:
        best = _best_match(matches).filter(~in_dropped & ~pl.col("source").is_in(cfg.exempt_sources))
        removed_parts.append(removed_from(best, STEP, "contaminated", pl.col("detail")))
    removed = pl.concat(removed_parts) if removed_parts else empty_removed()
    kept = frame.filter(~pl.col("id").is_in(removed["id"].implode())) if removed.height else frame

    report = {
        "params": {**cfg.model_dump(mode="json", exclude={"evals"}), "n": cfg.size, "evals": [_spec_name(e) for e in cfg.evals]},
        "index": res.index.describe(),
        "records": frame.height,
        "distinct_records": res.distinct or frame.height,
        "tokens": res.tokens,
        "sources": {r["source"]: r["len"] for r in frame.group_by("source", maintain_order=True).len().iter_rows(named=True)},
        "benchmarks": totals.to_dicts(),
        "matrix": mat.to_dicts(),
        "matched_records": int(matches["rec"].n_unique()) if matches.height else 0,
        "matches": matches.height,
        "dropped_sources": dropped,
        "contaminated_sources": _over(mat, cfg.report_source_above),
        "removed": removed.height,
        "exempt_matched_records": int(matches.filter(pl.col("source").is_in(cfg.exempt_sources))["rec"].n_unique()) if matches.height else 0,
        "timings": {**{k: round(v, 3) for k, v in res.timings.items()}, "total_s": round(time.perf_counter() - t0, 3)},
    }
    info = {k: report[k] for k in ("index", "matched_records", "matches", "removed", "dropped_sources", "contaminated_sources", "timings")}
    info["pct_instances"] = {
        r["benchmark"]: r["pct_instances"] for r in report["matrix"] if r["source"] == "(all)"
    }
    # Every benchmark checked (0% ones too) and the per-source overlaps: the dataset card
    # and `mixer contamination` print the full table from the manifest.
    info["benchmarks"] = report["benchmarks"]
    info["matrix"] = mat.select("source", "benchmark", "pct_instances", "records", "short_instances_hit", "template_records").to_dicts()
    return Outcome(kept=kept, removed=removed, matches=matches, report=report, info=info)


def _spec_name(e) -> str:
    return e if isinstance(e, str) else (e.name if e.path is None else f"{e.name} ({e.path})")


def _contaminated_sources(mat: pl.DataFrame, limit: float | None) -> list[dict]:
    if limit is None or mat.height == 0:
        return []
    worst = (
        mat.filter((pl.col("source") != "(all)") & (pl.col("pct_instances") > limit))
        .sort(["pct_instances", "benchmark"], descending=[True, False])
        .unique("source", keep="first", maintain_order=True)
    )
    return [{"source": r["source"], "benchmark": r["benchmark"], "pct": r["pct_instances"], "limit": limit} for r in worst.iter_rows(named=True)]


def _over(mat: pl.DataFrame, limit: float | None) -> list[dict]:
    """Every (source, benchmark) pair over ``limit`` percent of the benchmark's instances."""
    if limit is None or mat.height == 0:
        return []
    over = mat.filter((pl.col("source") != "(all)") & (pl.col("pct_instances") > limit)).sort(["source", "benchmark"])
    return [{"source": r["source"], "benchmark": r["benchmark"], "pct": r["pct_instances"], "limit": limit} for r in over.iter_rows(named=True)]


def _best_match(matches: pl.DataFrame) -> pl.DataFrame:
    """One row per matched record: its highest-coverage match and what else it hit."""
    per_bench = (
        matches.group_by(["id", "benchmark"], maintain_order=True)
        .agg(pl.len().alias("k"))
        .group_by("id", maintain_order=True)
        .agg(pl.format("{}={}", pl.col("benchmark"), pl.col("k")).str.join(";").alias("benchmarks"), pl.col("k").sum().alias("instances_hit"))
    )
    best = (
        matches.sort(["coverage", "short", "inst"], descending=[True, False, False])
        .unique("id", keep="first", maintain_order=True)
        .join(per_bench, on="id", how="left")
        .sort("rec")
    )
    detail = pl.struct(
        "benchmark", "instance_id", pl.col("coverage").cast(pl.Float64).round(3), "short", "instances_hit", "benchmarks"
    ).struct.json_encode()
    return best.select("id", "source", detail.alias("detail"))
