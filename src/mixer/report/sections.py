"""The report's ledger sections: removals by step and reason, duplicates (which source lost
records to which, the dedup steps' cluster summaries and largest clusters), and
contamination (the decontamination step's benchmark matrix and top matches). Each section
appears only when the build has something to show."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import polars as pl

from mixer.report.render import frame_table

DUP_REASONS = ("exact_duplicate", "near_duplicate")
_KEPT = r"duplicate of (\S+) \(([^)]+)\)"


def removals(removed: pl.DataFrame, rank: dict[str, tuple[int, int, int]] | None = None) -> pl.DataFrame:
    """step, reason, then one column of counts per source, and the total; steps in
    pipeline order when ``rank`` (from ``charts.stage_rank``) is given."""
    if removed.height == 0:
        return pl.DataFrame({"step": [], "reason": [], "total": []}, schema={"step": pl.Utf8, "reason": pl.Utf8, "total": pl.Int64})
    counts = removed.group_by("step", "reason", "source").len()
    sources = removed["source"].unique(maintain_order=True).to_list()
    wide = counts.pivot(on="source", index=["step", "reason"], values="len").fill_null(0)
    wide = wide.with_columns(pl.sum_horizontal(sources).alias("total"))
    steps = removed["step"].unique(maintain_order=True).to_list()
    rank = rank or {}
    pos = {s: rank.get(s.split(":")[0], (2, i, i)) for i, s in enumerate(steps)}
    order = pl.DataFrame({"step": steps, "_o": [sorted(pos.values()).index(pos[s]) for s in steps]})
    return wide.join(order, on="step").sort("_o", "total", descending=[False, True]).select("step", "reason", *sources, "total")


def duplicates(removed: pl.DataFrame) -> dict[str, pl.DataFrame] | None:
    """Duplicate removals: per step/reason and source; which source kept the original
    (rows: removed from, columns: kept in); the kept records with the most copies removed."""
    dups = removed.filter(pl.col("reason").is_in(DUP_REASONS))
    if dups.height == 0:
        return None
    dups = dups.with_columns(
        pl.col("detail").str.extract(_KEPT, 1).alias("kept_id"),
        pl.col("detail").str.extract(_KEPT, 2).alias("kept_source"),
    )
    summary = dups.group_by("step", "reason", "source").len().rename({"len": "removed"}).sort("step", "reason", "source")
    pairs = dups.drop_nulls("kept_source").group_by("source", "kept_source").len()
    matrix = (pairs.pivot(on="kept_source", index="source", values="len").fill_null(0).rename({"source": "removed from \\ kept in"})
              if pairs.height else pl.DataFrame())
    top = (dups.drop_nulls("kept_id").group_by("kept_id", "kept_source").agg(pl.len().alias("copies_removed"), pl.col("reason").first())
           .sort("copies_removed", "kept_id", descending=[True, False]).head(10))
    return {"summary": summary, "matrix": matrix, "top": top}


def dedup_steps(manifest: dict[str, Any]) -> pl.DataFrame | None:
    """One row per dedup step of the manifest with its cluster summary, when it has one."""
    rows = []
    for e in manifest.get("steps", []):
        info = e.get("info")
        if not isinstance(info, dict) or not ({"clusters", "duplicates", "cross_source"} & set(info)):
            continue
        params = info.get("params", {}) if isinstance(info.get("params"), dict) else {}
        rows.append({
            "step": e["step"], "scope": e["scope"],
            "removed": int(sum(sum(r.values()) for r in e.get("removed", {}).values())),
            "clusters": info.get("clusters"), "largest cluster": info.get("largest_cluster"),
            "cluster sizes": ", ".join(f"{k}: {v}" for k, v in (info.get("cluster_sizes") or {}).items()) or "-",
            "source pairs (kept <- removed)": ", ".join(f"{k}: {v}" for k, v in (info.get("by_source_pair") or info.get("cross_source") or {}).items()) or "-",
            "params": ", ".join(f"{k}={v}" for k, v in params.items() if k in ("threshold", "shingle", "verify", "keep", "num_perm", "bands", "rows")) or "-",
        })
    return pl.DataFrame(rows, infer_schema_length=None) if rows else None


def largest_clusters(build_path: Path, n: int = 8) -> pl.DataFrame | None:
    """The biggest near-duplicate clusters from the cluster tables the dedup steps wrote."""
    files = sorted((build_path / "dedup").glob("*.clusters.parquet")) if (build_path / "dedup").is_dir() else []
    parts = []
    for f in files:
        t = pl.read_parquet(f)
        if t.height and {"cluster", "cluster_size", "kept", "id"} <= set(t.columns):
            kept = t.filter(pl.col("kept"))
            snippet = pl.col("snippet").str.slice(0, 90) if "snippet" in t.columns else pl.lit("")
            parts.append(kept.select(pl.lit(f.name.split(".")[0]).alias("step"), pl.col("id").alias("kept"), "source",
                                     pl.col("cluster_size").alias("size"), snippet.alias("text (kept)")))
    if not parts:
        return None
    return pl.concat(parts).sort("size", "kept", descending=[True, False]).head(n)


def duplicates_html(build_path: Path, removed: pl.DataFrame, manifest: dict[str, Any]) -> str | None:
    d = duplicates(removed)
    steps = dedup_steps(manifest)
    if d is None and steps is None:
        return None
    parts = []
    if steps is not None:
        parts.append(frame_table(steps, "dedup steps (manifest)"))
    if d is not None:
        parts.append(frame_table(d["summary"], "duplicates removed, per step and source (ledger)"))
        if d["matrix"].height:
            parts.append(frame_table(d["matrix"], "which source kept the original (rows: removed from; columns: kept in)", "duplicates-matrix"))
        parts.append(frame_table(d["top"], "kept records with the most removed copies"))
    clusters = largest_clusters(build_path)
    if clusters is not None:
        parts.append(frame_table(clusters, "largest near-duplicate clusters (dedup/*.clusters.parquet)"))
    return "".join(parts)


def contamination_html(build_path: Path, removed: pl.DataFrame, manifest: dict[str, Any]) -> str | None:
    """The decontamination step's findings: ``contamination.json`` (benchmark x source
    matrix), the top matches, and the ledger rows it removed."""
    parts = []
    f = build_path / "contamination.json"
    if f.exists():
        try:
            rep = json.loads(f.read_text())
        except ValueError:
            rep = None
        if isinstance(rep, dict) and isinstance(rep.get("matrix"), list):
            p = rep.get("params", {})
            parts.append(f"<p>rule <b>{html.escape(str(p.get('rule')))}</b>, n={p.get('n')}, threshold {p.get('threshold')}, "
                         f"roles {html.escape(_words(p.get('roles')))}, action <b>{html.escape(str(p.get('action')))}</b>: "
                         f"{rep.get('matched_records', 0):,} records matched, {rep.get('removed', 0):,} removed.</p>")
            cols = ["source", "benchmark", "instances", "instances_hit", "pct_instances", "records", "template_records", "source_records"]
            matrix = pl.DataFrame(rep["matrix"], infer_schema_length=None)
            if matrix.height:
                matrix = matrix.select([c for c in cols if c in matrix.columns]).sort(pl.col("source") == "(all)", "source", "benchmark")
                parts.append(frame_table(matrix.rename({"pct_instances": "% of benchmark hit"}, strict=False),
                                         "benchmark instances overlapped, per source", "contamination-matrix"))
            bench = benchmarks_checked(rep)
            if bench is not None:
                parts.append(frame_table(bench, "every benchmark checked (0% included; short instances are matched whole)", "contamination-benchmarks"))
            for d in rep.get("dropped_sources") or []:
                parts.append(f"<p>dropped source <b>{html.escape(str(d.get('source')))}</b>: overlaps {d.get('pct')}% of "
                             f"{html.escape(str(d.get('benchmark')))} (limit {d.get('limit')}%)</p>")
        elif rep is not None:
            parts.append("<pre>" + html.escape(json.dumps(rep, indent=2)[:20000]) + "</pre>")
    m = build_path / "contamination_matches.parquet"
    if m.exists():
        matches = pl.read_parquet(m)
        keep = [c for c in ("id", "source", "benchmark", "instance_id", "coverage", "short", "record_hits", "instance_hits") if c in matches.columns]
        if matches.height and "coverage" in matches.columns:
            top = matches.sort("coverage", descending=True).head(10)
            if "instance_text" in top.columns:
                top = top.with_columns(pl.col("instance_text").str.slice(0, 120).alias("instance (start)"))
                keep.append("instance (start)")
            parts.append(frame_table(top.select(keep), "top matches by coverage"))
    rows = removed.filter(pl.col("reason").str.contains("(?i)contamin"))
    if rows.height:
        parts.append(frame_table(rows.group_by("step", "reason", "source").len().rename({"len": "removed"}).sort("step", "reason", "source"),
                                 "records removed as contaminated (ledger)"))
    return "".join(parts) or None


def benchmarks_checked(rep: dict[str, Any]) -> pl.DataFrame | None:
    """One row per benchmark the step checked, matched or not: instances, short ones, and
    the share of instances any record overlapped (the ``(all)`` row of the matrix)."""
    benches = rep.get("benchmarks")
    if not benches:
        return None
    table = pl.DataFrame(benches, infer_schema_length=None)
    overall = [r for r in rep.get("matrix", []) if r.get("source") == "(all)"]
    hits = pl.DataFrame(overall, infer_schema_length=None) if overall else None
    cols = {"instances_hit": pl.Int64, "short_instances_hit": pl.Int64, "pct_instances": pl.Float64, "records": pl.Int64}
    if hits is None or not set(cols) <= set(hits.columns):
        hits = pl.DataFrame({"benchmark": [], **{c: [] for c in cols}}, schema={"benchmark": pl.Utf8, **cols})
    out = table.join(hits.select("benchmark", *cols), on="benchmark", how="left").with_columns(
        [pl.col(c).fill_null(0) for c in cols])
    return out.rename({"pct_instances": "% of benchmark hit", "records": "records matched"})


def removal_examples_html(build: Any, per_reason: int = 2, max_chars: int = 500) -> str | None:
    """A few removed records per reason with their text, and what they were measured
    against (the kept duplicate, the benchmark instance), so a reader can judge the filter."""
    removed = build.removed
    if removed.height == 0:
        return None
    from mixer.build_dir import record_text

    picks = removed.with_row_index("_i").filter(pl.int_range(pl.len()).over("step", "reason") < per_reason).sort("_i")
    cards = []
    for row in picks.iter_rows(named=True):
        text = record_text(row) or ("(no text: not drawn by the sample)" if row["reason"] == "not_sampled" else "(no text: removed before it was parsed into messages)")
        other = build.counterpart(row)
        extra = ""
        if other.get("counterpart_id"):
            extra = (f"<div class='vs'>kept record <code>{html.escape(other['counterpart_id'])}</code>"
                     f"{' (' + html.escape(str(other['similarity'])) + ')' if other.get('similarity') else ''}:"
                     f"<pre>{html.escape(_cut(other.get('counterpart_text') or '', max_chars))}</pre></div>")
        elif other.get("benchmark"):
            extra = (f"<div class='vs'>{html.escape(str(other['benchmark']))} instance {html.escape(str(other.get('instance_id')))}, "
                     f"coverage {other.get('coverage')}{', short instance' if other.get('short') else ''}:"
                     f"<pre>{html.escape(_cut(other.get('instance_text') or '(not recorded)', max_chars))}</pre></div>")
        cards.append(f"<div class='example'><b>{html.escape(row['reason'])}</b> <small>({html.escape(row['step'])})</small> "
                     f"<code>{html.escape(row['id'])}</code> <small>{html.escape(row['source'])}</small>"
                     f"<div class='detail'>{html.escape(row['detail'] or '')}</div><pre>{html.escape(_cut(text, max_chars))}</pre>{extra}</div>")
    return "<p class='note'>The first records removed for each step and reason, with their text.</p>" + "".join(cards)


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n] + f" … [{len(text) - n:,} more characters]"


def _words(value: Any) -> str:
    """A list as ``a, b`` (never a Python repr in the page)."""
    return ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
