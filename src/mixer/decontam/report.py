"""Contamination report: per-match rows and the source x benchmark matrix.

Per match, ``record_hits`` (instances of that benchmark the record hits) tells a template
match (one record, hundreds of MMLU moral_scenarios items) from a leaked item (one record,
one instance), and ``instance_hits`` how many records reached that instance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

REPORT_FILE = "contamination.json"
MATCHES_FILE = "contamination_matches.parquet"


def match_rows(frame: pl.DataFrame, evals: pl.DataFrame, pairs: pl.DataFrame) -> pl.DataFrame:
    """``id, source, benchmark, instance_id, coverage, n_ngrams, short, record_hits,
    instance_hits, instance_text`` (+ ``rec``/``inst`` row numbers) for every match; the
    instance's prompt (first 2,000 characters) lets a reader judge the match."""
    recs = frame.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("rec"), "id", "source")
    insts = evals.select(pl.int_range(pl.len(), dtype=pl.Int32).alias("inst"), "benchmark", "instance_id",
                         pl.col("prompt").str.slice(0, 2000).alias("instance_text"))
    m = pairs.join(recs, on="rec", how="left").join(insts, on="inst", how="left")
    return m.with_columns(
        pl.len().over(["rec", "benchmark"]).cast(pl.Int32).alias("record_hits"),
        pl.len().over("inst").cast(pl.Int32).alias("instance_hits"),
    ).select(
        "id", "source", "benchmark", "instance_id", "coverage", "n_ngrams", "short",
        "record_hits", "instance_hits", "instance_text", "rec", "inst",
    )


def benchmark_totals(evals: pl.DataFrame, short_inst: np.ndarray) -> pl.DataFrame:
    short = np.zeros(evals.height, dtype=bool)
    short[short_inst] = True
    return (
        evals.select("benchmark", pl.Series("is_short", short))
        .group_by("benchmark", maintain_order=True)
        .agg(pl.len().alias("instances"), pl.col("is_short").sum().alias("short_instances"))
    )


def matrix(matches: pl.DataFrame, frame: pl.DataFrame, totals: pl.DataFrame, template_min: int) -> pl.DataFrame:
    """One row per (source, benchmark) with any match, plus an ``(all)`` row per benchmark."""

    def agg(df: pl.DataFrame, by: list[str]) -> pl.DataFrame:
        return df.group_by(by, maintain_order=True).agg(
            pl.col("inst").n_unique().alias("instances_hit"),
            pl.col("inst").filter(pl.col("short")).n_unique().alias("short_instances_hit"),
            pl.col("rec").n_unique().alias("records"),
            pl.col("rec").filter(pl.col("record_hits") >= template_min).n_unique().alias("template_records"),
        )

    per_source = agg(matches, ["source", "benchmark"])
    overall = agg(matches, ["benchmark"]).with_columns(pl.lit("(all)").alias("source"))
    rows = pl.concat([per_source, overall.select(per_source.columns)])
    sizes = frame.group_by("source").agg(pl.len().alias("source_records"))
    sizes = pl.concat([sizes, pl.DataFrame({"source": ["(all)"], "source_records": [frame.height]}, schema=sizes.schema)])
    return (
        rows.join(totals, on="benchmark", how="left")
        .join(sizes, on="source", how="left")
        .with_columns((100.0 * pl.col("instances_hit") / pl.col("instances")).round(3).alias("pct_instances"))
        .sort(["source", "benchmark"])
    )


def write(out_dir: Path, report: dict, matches: pl.DataFrame) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    matches.drop("rec", "inst", strict=False).write_parquet(out_dir / MATCHES_FILE)


def read(path: Path) -> tuple[dict, pl.DataFrame | None]:
    """A report from a build folder (or the json itself), with its matches when present."""
    folder = path if path.is_dir() else path.parent
    f = path / REPORT_FILE if path.is_dir() else path
    if not f.exists():
        raise FileNotFoundError(f"no {REPORT_FILE} in {folder} (was the build run with a decontaminate step?)")
    m = folder / MATCHES_FILE
    return json.loads(f.read_text()), (pl.read_parquet(m) if m.exists() else None)


def render(report: dict, console=None, top: int = 0, matches: pl.DataFrame | None = None) -> None:
    """Print the matrix as one row per (source, benchmark) with overlap (it stays readable
    with many sources and benchmarks), then the top matches when asked."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    p = report["params"]
    rule = f"rule {p['rule']}, n={p['n']}" + (f", coverage > {p['threshold']}" if p["rule"] == "tulu3" else "")
    t = Table(title=f"contamination ({rule}, short: {p['short']})")
    # Short headers (explained below the table) so no header is cut in an 80-column terminal.
    for c, j in (("source", "left"), ("recs", "right"), ("benchmark", "left"), ("insts", "right"),
                 ("hit", "right"), ("%", "right"), ("short", "right"), ("match", "right"), ("tmpl", "right")):
        t.add_column(c, justify=j, min_width=len(c))  # type: ignore[arg-type]
    # Every benchmark checked gets an (all) row, 0% included, so a clean result is visible too.
    hit = {r["benchmark"] for r in report["matrix"] if r["source"] == "(all)"}
    zero = [{"source": "(all)", "source_records": report["records"], "benchmark": b["benchmark"], "instances": b["instances"],
             "instances_hit": 0, "pct_instances": 0.0, "short_instances_hit": 0, "records": 0, "template_records": 0}
            for b in report.get("benchmarks", []) if b["benchmark"] not in hit]
    rows = sorted(report["matrix"] + zero, key=lambda r: (r["source"] == "(all)", r["source"], r["benchmark"]))
    for r in rows:
        t.add_row(
            r["source"], str(r["source_records"]), r["benchmark"], str(r["instances"]), str(r["instances_hit"]),
            f"{r['pct_instances']:.2f}", str(r["short_instances_hit"]), str(r["records"]), str(r["template_records"]),
            style="bold" if r["source"] == "(all)" else None,
        )
    if not rows:
        t.add_row("(none)", str(report["records"]), "-", "-", "0", "0.00", "0", "0", "0")
    console.print(t)
    console.print(
        f"recs: records of the source; insts: instances of the benchmark; hit: instances overlapped; short: of those, "
        f"instances under {p['n']} tokens matched whole (containment); match: training records matching; "
        f"tmpl: records hitting >= {p['template_min']} instances of the benchmark (template matches)"
    )
    for d in report.get("dropped_sources") or []:
        console.print(f"dropped source [bold]{d['source']}[/]: overlaps {d['pct']:.2f}% of {d['benchmark']} (limit {d['limit']}%)")
    console.print(f"{report['matched_records']} records matched, {report['removed']} removed (action: {p['action']})")
    if top and matches is not None and matches.height:
        mt = Table(title=f"top {top} matches by coverage")
        for c in ("id", "source", "benchmark", "instance_id", "coverage", "short", "record_hits", "instance_hits", "instance (start)"):
            mt.add_column(c)
        for r in matches.sort(["coverage", "record_hits"], descending=[True, False]).head(top).iter_rows(named=True):
            short = "[yellow]yes: matched whole[/]" if r["short"] else "no"
            start = " ".join((r.get("instance_text") or "").split())[:60]
            mt.add_row(r["id"], r["source"], r["benchmark"], r["instance_id"], f"{r['coverage']:.3f}", short, str(r["record_hits"]),
                       str(r["instance_hits"]), escape(start))
        console.print(mt)
