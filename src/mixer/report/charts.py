"""The report's pictures, drawn with matplotlib (Agg, no display) and returned as figures.

Lengths: one histogram per source on log-spaced bins, with the truncation thresholds.
Waterfall: records read, what each step removed (or a repeat added), records kept.
Composition: each source's share of records and, when counted, of tokens.

Figures are built without pyplot: no global state, no backend switch (a notebook keeps its
inline backend and shows a returned figure), nothing to close.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import polars as pl
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

BLUE, RED, GREEN, GREY = "#3b6ea5", "#c8553d", "#5a9e6f", "#8d99ae"


def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def length_histograms(lengths: pl.DataFrame, unit: str = "tokens", thresholds: list[int] | None = None,
                      sources: list[str] | None = None, ncols: int = 3) -> Figure:
    """Tokens per record, one panel per source (and one for the whole mix)."""
    sources = sources or lengths["source"].unique(maintain_order=True).to_list()
    panels = [("all sources", lengths["tokens"].to_numpy())] + [
        (s, lengths.filter(pl.col("source") == s)["tokens"].to_numpy()) for s in sources]
    top = max(2, int(lengths["tokens"].max() or 1))
    low = max(1, int(lengths["tokens"].min() or 1))
    bins = np.unique(np.geomspace(low, top + 1, 40).round()) if top + 1 > low else np.array([low, low + 1])
    rows = -(-len(panels) // ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.0 * rows))
    axes = fig.subplots(rows, ncols, squeeze=False)
    # Only the thresholds inside the data's range are drawn; the others are named as off-scale.
    shown = [t for t in thresholds or [] if low <= t <= top]
    for ax, (name, values) in zip(axes.flat, panels, strict=False):
        ax.hist(np.maximum(values, 1), bins=bins, color=BLUE if name != "all sources" else GREY, edgecolor="white", linewidth=0.3)
        ax.set_xscale("log")
        ax.set_xlim(bins[0], bins[-1])
        # 1-2-5 ticks when the range spans few decades, so every panel has labelled ticks.
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if bins[-1] / bins[0] < 1000 else (1.0,)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        for t in shown:
            ax.axvline(t, color=RED, linestyle="--", linewidth=0.8)
        med = float(np.median(values)) if len(values) else 0.0
        ax.set_title(f"{name}  (n={len(values):,}, median {med:,.0f})", fontsize=9)
        ax.set_xlabel(f"{unit} per record (log scale)", fontsize=8)
        ax.set_ylabel("records", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    off = [t for t in thresholds or [] if t not in shown]
    marks = (f"dashed lines: {', '.join(f'{t:,}' for t in shown)}" if shown else "") + \
        ("; " if shown and off else "") + (f"every record is under {min(off):,}" if off and all(t > top for t in off) else "")
    fig.suptitle(f"Length distribution per source ({unit}" + (f"; {marks}" if marks else "") + ")", fontsize=10)
    fig.tight_layout()
    return fig


def stage_rank(manifest: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    """Pipeline order of step labels: (mix step?, stage index within its scope, first seen).
    Source steps share a label across sources (``format:x`` -> ``format``)."""
    rank: dict[str, tuple[int, int, int]] = {}
    local: dict[str, int] = {}
    for e in manifest.get("steps", []):
        pos = local[e["scope"]] = local.get(e["scope"], -1) + 1
        name = e["step"].split(":")[0]
        label = f"mix: {name}" if e["scope"] == "mix" else name
        key = (int(e["scope"] == "mix"), pos, len(rank))
        rank[label] = min(rank.get(label, key), key)
    return rank


def waterfall_steps(manifest: dict[str, Any]) -> list[tuple[str, int]]:
    """(label, signed change) per step, merged across sources; mix steps kept apart."""
    out: dict[str, int] = {}
    rank = stage_rank(manifest)
    for e in manifest.get("steps", []):
        name = e["step"].split(":")[0]
        label = f"mix: {name}" if e["scope"] == "mix" else name
        removed = sum(sum(r.values()) for r in e.get("removed", {}).values())
        added = sum(e.get("added", {}).values()) if isinstance(e.get("added"), dict) else 0
        if removed:
            out[label] = out.get(label, 0) - removed
        if added:
            out[f"{label} repeat"] = out.get(f"{label} repeat", 0) + added
            rank[f"{label} repeat"] = rank[label]
    return sorted(out.items(), key=lambda kv: rank[kv[0]])


def waterfall(manifest: dict[str, Any]) -> Figure:
    """Read -> each step's removals (and repeats) -> kept, as floating bars."""
    read = sum(int(s.get("read", 0)) for s in manifest.get("sources", {}).values())
    steps = waterfall_steps(manifest)
    labels = ["read"] + [s for s, _ in steps] + ["kept"]
    fig = Figure(figsize=(max(6.0, 0.9 * len(labels) + 2), 3.6))
    ax = fig.subplots()
    level = read
    ax.bar(0, read, color=GREY)
    ax.text(0, read, f"{read:,}", ha="center", va="bottom", fontsize=8)
    least = max(read, kept_records(manifest)) * 0.006  # a 1-record step still shows as a bar
    for i, (_, delta) in enumerate(steps, start=1):
        bottom = level + min(delta, 0)
        ax.bar(i, max(abs(delta), least), bottom=bottom, color=RED if delta < 0 else GREEN)
        ax.text(i, level + max(delta, 0), f"{delta:+,}", ha="center", va="bottom", fontsize=8)
        level += delta
    kept = int(manifest.get("records", level))
    ax.bar(len(labels) - 1, kept, color=BLUE)
    ax.text(len(labels) - 1, kept, f"{kept:,}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("records", fontsize=8)
    ax.set_title("Where records went: read, removed per step (red), repeated (green), kept", fontsize=10)
    ax.margins(y=0.12)
    fig.tight_layout()
    return fig


def kept_records(manifest: dict[str, Any]) -> int:
    return int(manifest.get("records", 0))


def composition(manifest: dict[str, Any], tokens: dict[str, int] | None = None, unit: str = "tokens") -> Figure:
    """Share of the mix per source: records, and tokens when counted."""
    names = list(manifest.get("sources", {}))
    kept = np.array([manifest["sources"][n].get("kept", 0) for n in names], dtype=float)
    panels = [("records", kept)] + ([(unit, np.array([tokens.get(n, 0) for n in names], dtype=float))] if tokens else [])
    fig = Figure(figsize=(5.2 * len(panels), 0.45 * len(names) + 1.4))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (what, values) in zip(axes.flat, panels, strict=False):
        total = values.sum() or 1.0
        y = np.arange(len(names))[::-1]
        ax.barh(y, values, color=BLUE if what == "records" else GREEN)
        for yi, v in zip(y, values, strict=True):
            ax.text(v, yi, f" {v:,.0f} ({100 * v / total:.1f}%)", va="center", fontsize=8)
        ax.set_yticks(y, names, fontsize=8)
        ax.set_title(f"{what} per source", fontsize=10)
        ax.margins(x=0.35)
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return fig
