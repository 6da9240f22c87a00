"""``mixer report BUILD``: one self-contained HTML file (plus the charts as PNG files).

Sections: per-source table, length statistics and histograms, composition, a removal
waterfall with the ledger's reasons, duplicates and contamination when the build has
any, and the build's provenance (spec, versions).
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from mixer.build_dir import BuildDir
from mixer.report import charts, sections
from mixer.report.render import cards, figure, frame_table, page
from mixer.stats import Stats, build_lengths, stats_from_lengths
from mixer.stats.table import stats_html, tokenizer_label


@dataclass
class Report:
    title: str
    html: str
    charts: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG


def sources_frame(manifest: dict[str, Any], stats: Stats | None) -> pl.DataFrame:
    """source, format, read, removed, kept, share of records, tokens and their share."""
    rows = []
    total_kept = max(1, int(manifest.get("records", 0)))
    tok = stats.tokens_per_source() if stats else {}
    total_tok = max(1, sum(t["total"] for t in tok.values()))
    for name, info in manifest.get("sources", {}).items():
        removed = info.get("removed", {})
        top = ", ".join(f"{r} {n:,}" for r, n in sorted(removed.items(), key=lambda x: -x[1])[:3]) or "-"
        row = {"source": name, "format": info.get("format", "-"), "read": info.get("read", 0),
               "removed": sum(removed.values()), "kept": info.get("kept", 0),
               "% of records": 100 * info.get("kept", 0) / total_kept}
        if stats:
            t = tok.get(name, {}).get("total", 0)
            row |= {stats.unit: t, f"% of {stats.unit}": 100 * t / total_tok}
        row["top removal reasons"] = top
        rows.append(row)
    frame = pl.DataFrame(rows, infer_schema_length=None)
    total = {c: (frame[c].sum() if frame[c].dtype.is_numeric() else "") for c in frame.columns}
    total["source"] = "total"
    return pl.concat([frame, pl.DataFrame([total], schema=frame.schema)])


def build_report(build: BuildDir | str | Path, tokenizer: str | None = None, progress: Any = None) -> Report:
    """Compute everything the report shows (tokens counted once, then cached)."""
    b = build if isinstance(build, BuildDir) else BuildDir(build)
    m = b.manifest
    lengths, counter = build_lengths(b, tokenizer, progress)
    stats = stats_from_lengths(lengths, counter, b.kind, b.sources)
    pngs = {
        "lengths.png": charts.png_bytes(charts.length_histograms(lengths, stats.unit, stats.thresholds, b.sources)),
        "waterfall.png": charts.png_bytes(charts.waterfall(m)),
        "composition.png": charts.png_bytes(charts.composition(m, {s: t["total"] for s, t in stats.tokens_per_source().items()}, stats.unit)),
    }
    unit_note = f"{tokenizer_label(stats.tokenizer)} tokens" if stats.unit == "tokens" else "whitespace words (no tokenizer: pass --tokenizer)"
    summary = cards([("records", f"{m.get('records', 0):,}"), ("removed", f"{m.get('removed', 0):,}"),
                     ("sources", str(len(b.sources))), (f"{stats.unit} (content)", f"{stats.total['tokens_sum'] or 0:,}"),
                     (f"mean {stats.unit} / record", f"{stats.total['tokens_mean'] or 0:,.0f}")])
    body = [
        ("sources", "Sources", summary + frame_table(sources_frame(m, stats), "per source: read, removed, kept", "sources-table", total_last=True)
         + figure(pngs["composition.png"], "records and tokens per source", "Share of the mix per source.", "composition-chart")),
        ("lengths", "Lengths", f'<p class="note">Counted in {html.escape(unit_note)}, message content only: no chat template, '
         "no special tokens (the Tulu tables' convention). Turn means are per message of that role; '&gt;N' is the share "
         "of records with more than N content tokens, a lower bound on what training at length N truncates.</p>"
         + stats_html(stats) + figure(pngs["lengths.png"], "length histograms per source", "Tokens per record per source.", "lengths-chart")),
        ("removals", "Removals", figure(pngs["waterfall.png"], "removal waterfall", "From records read to records kept, step by step (manifest ledger).", "waterfall-chart")
         + frame_table(sections.removals(b.removed, charts.stage_rank(m)), "removed records by step and reason (removed.parquet)", "removals-table")),
    ]
    examples = sections.removal_examples_html(b)
    if examples:
        body.append(("examples", "Removed examples", examples))
    dup = sections.duplicates_html(b.path, b.removed, m)
    if dup:
        body.append(("duplicates", "Duplicates", dup))
    con = sections.contamination_html(b.path, b.removed, m)
    if con:
        body.append(("contamination", "Contamination", con))
    versions = pl.DataFrame({"library": list(m.get("versions", {})), "version": [str(v) for v in m.get("versions", {}).values()]})
    prov = (f"<p>spec <code>{html.escape(str(m.get('spec_path')))}</code>, hash <code>{html.escape(str(m.get('spec_hash')))}</code>, "
            f"seed {m.get('seed')}, built in {m.get('seconds', 0):.1f} s</p>"
            f"<details><summary>spec</summary><pre>{html.escape(json.dumps(m.get('spec', {}), indent=2))}</pre></details>"
            + frame_table(versions, "library versions"))
    body.append(("build", "Build", prov))
    created = time.strftime("%Y-%m-%d %H:%M", time.localtime(m.get("created_unix", time.time())))
    meta = f"{b.path} · {m.get('kind', 'sft')} · built {created} · {unit_note}"
    title = f"mixer report: {m.get('name', b.path.name)}"
    return Report(title, page(title, meta, body), pngs)


def write_report(build: BuildDir | str | Path, out_dir: str | Path | None = None, tokenizer: str | None = None,
                 progress: Any = None) -> Path:
    """Write ``report.html`` and the PNG charts into ``out_dir`` (default ``BUILD/report``)."""
    b = build if isinstance(build, BuildDir) else BuildDir(build)
    rep = build_report(b, tokenizer, progress)
    out = Path(out_dir) if out_dir is not None else b.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    for name, png in rep.charts.items():
        (out / name).write_bytes(png)
    path = out / "report.html"
    path.write_text(rep.html, encoding="utf-8")
    return path


__all__ = ["Report", "build_report", "write_report", "sources_frame"]
