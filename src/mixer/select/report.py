"""What a selection did, read back from a build: records claimed per task, score
distributions of selected against unselected records, and the source composition of the
selection against the pool (``mixer select-report``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mixer.build_dir import BuildDir

QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def select_dirs(build: BuildDir) -> list[str]:
    return sorted(p.name for p in build.path.glob("select*") if (p / "scores.parquet").exists())


def _quantiles(s: pl.Series) -> dict[str, float] | None:
    s = s.drop_nans().drop_nulls()
    s = s.filter(s.is_finite()) if s.len() else s
    if s.len() == 0:
        return None
    q = np.quantile(s.to_numpy(), QUANTILES)
    return {f"p{int(p * 100)}": round(float(v), 4) for p, v in zip(QUANTILES, q, strict=True)}


def _histogram(values: np.ndarray, lo: float, hi: float, bins: int) -> list[int]:
    values = values[np.isfinite(values)]
    return np.histogram(values, bins=bins, range=(lo, hi))[0].astype(int).tolist() if values.size else [0] * bins


def selection_report(build: str | Path, which: str | None = None, bins: int = 12) -> dict[str, Any]:
    """The report as JSON-able data (``which``: ``select``, ``select-2``...; default the first)."""
    b = BuildDir(build)
    dirs = select_dirs(b)
    if not dirs:
        raise FileNotFoundError(f"{b.path}: no select step output (select/scores.parquet) in this build")
    which = which or dirs[0]
    if which not in dirs:
        raise FileNotFoundError(f"{b.path}: no {which}/ ; selections here: {', '.join(dirs)}")
    d = b.path / which
    table = pl.read_parquet(d / "scores.parquet")
    info = json.loads((d / "selection.json").read_text())
    sel = table.filter("selected")
    tasks = [c.removeprefix("score:") for c in table.columns if c.startswith("score:")]
    out: dict[str, Any] = {"build": str(b.path), "step": which, "method": info.get("method"), "budget": info.get("budget"),
                           "pool": table.height, "selected": sel.height, "notes": info.get("notes", [])}
    claimed = []
    for task, n in sel.group_by("task", maintain_order=True).len().iter_rows():
        row = {"task": task, "claimed": n, "targets": info.get("tasks", {}).get(task or "", {}).get("targets")}
        if task is not None and tasks:
            row["score"] = _quantiles(sel.filter(pl.col("task") == task)["score"])
        claimed.append(row)
    out["claimed"] = sorted(claimed, key=lambda r: (r["task"] is None, str(r["task"])))
    if tasks:
        dists = {}
        for t in tasks:
            col = table[f"score:{t}"]
            finite = col.filter(col.is_finite())
            lo, hi = (float(finite.min()), float(finite.max())) if finite.len() else (0.0, 1.0)
            if hi <= lo:
                hi = lo + 1e-6
            dists[t] = {
                "selected": _quantiles(sel[f"score:{t}"]),
                "unselected": _quantiles(table.filter(~pl.col("selected"))[f"score:{t}"]),
                "claimed_by_task": _quantiles(sel.filter(pl.col("task") == t)[f"score:{t}"]),
                "histogram": {"range": [round(lo, 4), round(hi, 4)],
                              "selected": _histogram(sel[f"score:{t}"].to_numpy(), lo, hi, bins),
                              "unselected": _histogram(table.filter(~pl.col("selected"))[f"score:{t}"].to_numpy(), lo, hi, bins)},
            }
        out["scores"] = dists
    out["composition"] = composition(table)
    if "topic" in table.columns:
        out["topics"] = composition(table, "topic")
    return out


def composition(table: pl.DataFrame, by: str = "source") -> list[dict[str, Any]]:
    """Per source (or topic): pool count and share, selected count and share, and their
    ratio (lift: above 1, the selection over-represents it)."""
    pool = table.group_by(by).agg(pl.len().alias("pool"), pl.col("selected").sum().alias("selected"))
    n_pool, n_sel = table.height, int(table["selected"].sum())
    pool = pool.with_columns(
        (pl.col("pool") / max(n_pool, 1)).alias("pool_share"),
        (pl.col("selected") / max(n_sel, 1)).alias("selected_share"),
    ).with_columns((pl.col("selected_share") / pl.col("pool_share")).alias("lift"))
    rows = pool.sort("selected", by, descending=[True, False]).to_dicts()
    for r in rows:
        for k in ("pool_share", "selected_share", "lift"):
            r[k] = round(float(r[k]), 4)
        r["selected"] = int(r["selected"])
    return rows
