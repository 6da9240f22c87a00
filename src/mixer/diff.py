"""What changed between two builds: records that entered or left, per source and reason,
records whose content changed under the same id, spec changes, statistics side by side.

A record that entered B was either removed in A (its A ledger reason says why it was out)
or never read by A ("new"); one that left is explained by B's ledger, or "not read".
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from mixer.build_dir import BuildDir
from mixer.records import message_lists

NEW, NOT_READ = "new", "not read"


def _content_hash(frame: pl.DataFrame) -> pl.Expr:
    cols = message_lists(frame)
    return pl.struct(cols).hash().alias("_h") if len(cols) > 1 else pl.col(cols[0]).hash().alias("_h")


def _explain(ids: pl.DataFrame, ledger: pl.DataFrame, missing: str) -> pl.DataFrame:
    """Attach the ledger's step/reason/detail for each id (``missing`` when it has none)."""
    first = ledger.unique("id", keep="first", maintain_order=True).select("id", "step", "reason", "detail")
    return ids.join(first, on="id", how="left").with_columns(pl.col("reason").fill_null(missing))


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(d, list):
        if all(isinstance(x, dict) and len(x) == 1 for x in d):  # steps: key them by name
            out = {}
            for i, x in enumerate(d):
                (name, v), = x.items()
                out.update(_flatten(v, f"{prefix}[{i}:{name}]"))
            return out or {prefix: []}
        return {prefix: d}
    return {prefix: d}


def spec_changes(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every spec setting that differs."""
    fa, fb = _flatten(a), _flatten(b)
    out = []
    for k in sorted(set(fa) | set(fb)):
        if fa.get(k, "<unset>") != fb.get(k, "<unset>"):
            out.append(f"{k}: {fa.get(k, '<unset>')!r} -> {fb.get(k, '<unset>')!r}")
    return out


@dataclass
class BuildDiff:
    a: BuildDir
    b: BuildDir
    entered: pl.DataFrame  # id, source, step, reason (why it was not in A), detail
    left: pl.DataFrame  # id, source, step, reason (why it is not in B), detail
    changed: pl.DataFrame  # id, source: same id, different messages
    spec: list[str] = field(default_factory=list)
    stats: pl.DataFrame | None = None  # per source, A and B side by side

    @property
    def per_source(self) -> pl.DataFrame:
        """source, kept in A, kept in B, entered, left, changed."""
        def counts(frame: pl.DataFrame, name: str) -> pl.DataFrame:
            return frame.group_by("source").agg(pl.len().cast(pl.Int64).alias(name))

        sources = list(dict.fromkeys(self.a.sources + self.b.sources))
        base = pl.DataFrame({"source": sources})
        for frame, name in ((self.a.frame, "kept_a"), (self.b.frame, "kept_b"), (self.entered, "entered"),
                            (self.left, "left"), (self.changed, "changed")):
            base = base.join(counts(frame, name), on="source", how="left")
        return base.fill_null(0).with_columns((pl.col("kept_b") - pl.col("kept_a")).alias("delta"))

    @property
    def by_reason(self) -> pl.DataFrame:
        """direction (entered/left), source, reason, records."""
        parts = [f.group_by("source", "reason").len().with_columns(pl.lit(d).alias("direction"))
                 for f, d in ((self.entered, "entered"), (self.left, "left"))]
        return pl.concat(parts).select("direction", "source", "reason", pl.col("len").cast(pl.Int64).alias("records")).sort(
            "direction", "source", "records", descending=[False, False, True])

    @property
    def identical(self) -> bool:
        return not (self.entered.height or self.left.height or self.changed.height)

    def _repr_html_(self) -> str:
        from mixer.report.render import frame_table

        parts = [f"<h4>{html.escape(str(self.a.path))} &rarr; {html.escape(str(self.b.path))}</h4>",
                 frame_table(self.per_source, "per source"), frame_table(self.by_reason, "entered / left by reason")]
        if self.spec:
            parts.append("<p><b>spec changes</b></p><ul>" + "".join(f"<li><code>{html.escape(c)}</code></li>" for c in self.spec) + "</ul>")
        if self.stats is not None:
            parts.append(frame_table(arrows(self.stats), "statistics, A -> B"))
        return "<div>" + "".join(parts) + "</div>"


def diff_builds(a: BuildDir | str | Path, b: BuildDir | str | Path, tokenizer: str | None = None, with_stats: bool = True,
                progress: Any = None) -> BuildDiff:
    """Compare two finished builds; ``with_stats`` counts both with one tokenizer."""
    a = a if isinstance(a, BuildDir) else BuildDir(a)
    b = b if isinstance(b, BuildDir) else BuildDir(b)
    fa = a.frame.select("id", "source", _content_hash(a.frame))
    fb = b.frame.select("id", "source", _content_hash(b.frame))
    entered = _explain(fb.join(fa, on="id", how="anti").select("id", "source"), a.removed.drop("source"), NEW)
    left = _explain(fa.join(fb, on="id", how="anti").select("id", "source"), b.removed.drop("source"), NOT_READ)
    both = fa.join(fb, on="id", how="inner", suffix="_b")
    changed = both.filter(pl.col("_h") != pl.col("_h_b")).select("id", "source")
    d = BuildDiff(a, b, entered, left, changed, spec_changes(a.manifest.get("spec", {}), b.manifest.get("spec", {})))
    if with_stats:
        d.stats = side_by_side(a, b, tokenizer, progress)
    return d


def arrows(stats: pl.DataFrame) -> pl.DataFrame:
    """The side-by-side frame with one ``A -> B`` text column per statistic (for display)."""
    from mixer.report.render import fmt

    names = [c[:-2] for c in stats.columns if c.endswith("_a")]
    cols = {"source": stats["source"].to_list()}
    for n in names:
        cols[n.replace("_pct", " %").replace("_", " ")] = [
            fmt(a) if a == b else f"{fmt(a)} -> {fmt(b)}" for a, b in zip(stats[f"{n}_a"].to_list(), stats[f"{n}_b"].to_list(), strict=True)]
    return pl.DataFrame(cols)


STAT_COLUMNS = ("instances", "rounds_mean", "tokens_mean", "tokens_p50", "tokens_p95", "over_4096_pct")


def side_by_side(a: BuildDir, b: BuildDir, tokenizer: str | None = None, progress: Any = None) -> pl.DataFrame:
    """source, then each statistic for A and B (``tokens_mean_a``, ``tokens_mean_b``, ...)."""
    from mixer.stats import stats_for_build

    tok = tokenizer or a.manifest.get("tokenizer") or b.manifest.get("tokenizer")
    if tok and not tokenizer:
        from mixer.stats import resolve_for_build

        tok = resolve_for_build(a if a.manifest.get("tokenizer") else b, None)
    sa, sb = stats_for_build(a, tok, progress=progress), stats_for_build(b, tok, progress=progress)
    cols = [c for c in STAT_COLUMNS if c in sa.frame().columns]
    fa = sa.frame().select("source", *[pl.col(c).alias(f"{c}_a") for c in cols])
    fb = sb.frame().select("source", *[pl.col(c).alias(f"{c}_b") for c in cols])
    out = fa.join(fb, on="source", how="full", coalesce=True, maintain_order="left_right")
    return out.select("source", *[x for c in cols for x in (f"{c}_a", f"{c}_b")])
