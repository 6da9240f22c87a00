"""``mixer dedup-report BUILD``: what the near-duplicate steps of a build found.

Reads the cluster tables the steps wrote (``BUILD/dedup/*.clusters.parquet``) and the
manifest: cluster size distribution, the largest clusters with examples, and duplicates
per pair of sources (which source's records were removed as copies of which).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

SIZE_BINS = [(2, 2), (3, 3), (4, 5), (6, 10), (11, 20), (21, 50), (51, 100), (101, None)]


def cluster_tables(build: Path) -> dict[str, pl.DataFrame]:
    """Step name (file stem) -> its cluster table, in file name order."""
    folder = Path(build) / "dedup"
    return {p.name.removesuffix(".clusters.parquet"): pl.read_parquet(p)
            for p in sorted(folder.glob("*.clusters.parquet"))}


def _label(lo: int, hi: int | None) -> str:
    return str(lo) if hi == lo else (f"{lo}-{hi}" if hi else f"{lo}+")


def _inputs(build: Path, step: str) -> dict[str, int]:
    """Records per source entering the step, from the manifest (empty when unknown)."""
    mf = Path(build) / "manifest.json"
    if not mf.exists():
        return {}
    name, _, nth = step.partition("-")  # "minhash-2": the second minhash step
    found = [e for e in json.loads(mf.read_text()).get("steps", []) if e.get("step") == name]
    k = int(nth) - 1 if nth.isdigit() else 0
    return {s: int(v) for s, v in found[k].get("in", {}).items()} if k < len(found) else {}


def summarize(table: pl.DataFrame, top: int = 5, examples: int = 3, inputs: dict[str, int] | None = None) -> dict[str, Any]:
    """JSON-able report of one cluster table."""
    kept = table.filter(pl.col("kept"))
    gone = table.filter(~pl.col("kept"))
    sizes = kept["cluster_size"]
    dist = []
    for lo, hi in SIZE_BINS:
        sel = (sizes >= lo) & (sizes <= hi) if hi else sizes >= lo
        n = int(sel.sum())
        if n:
            dist.append({"size": _label(lo, hi), "clusters": n, "records": int(sizes.filter(sel).sum())})
    score = "jaccard" if "jaccard" in table.columns else "similarity"
    largest = []
    for row in kept.sort(["cluster_size", "cluster"], descending=[True, False]).head(top).iter_rows(named=True):
        members = gone.filter(pl.col("cluster") == row["cluster"]).sort(score, descending=True, nulls_last=True)
        largest.append({
            "cluster": row["cluster"], "size": row["cluster_size"],
            "kept": {"id": row["id"], "source": row["source"], "snippet": row["snippet"]},
            "sources": dict(members.group_by("source").len().sort("source").iter_rows()),
            "examples": [{"id": m["id"], "source": m["source"], score: m[score], "snippet": m["snippet"]}
                         for m in members.head(examples).iter_rows(named=True)],
        })
    pairs = gone.group_by("kept_source", "source").len().sort("len", "kept_source", "source", descending=[True, False, False])
    inputs = inputs or {}
    return {
        "clusters": kept.height,
        "removed": gone.height,
        "records_in_clusters": table.height,
        "size_distribution": dist,
        "largest": largest,
        "source_pairs": [
            {"kept_source": a, "removed_source": b, "duplicates": n,
             **({"share_of_removed_source": round(n / inputs[b], 4)} if inputs.get(b) else {})}
            for a, b, n in pairs.iter_rows()
        ],
        "removed_by_source": {s: {"removed": n, **({"of": inputs[s]} if s in inputs else {})}
                              for s, n in gone.group_by("source").len().sort("source").iter_rows()},
    }


def build_report(build: Path, top: int = 5, examples: int = 3) -> dict[str, Any]:
    tables = cluster_tables(build)
    if not tables:
        raise FileNotFoundError(f"{build}: no dedup/*.clusters.parquet (the build ran no minhash or semantic step)")
    return {name: summarize(t, top, examples, _inputs(build, name)) for name, t in tables.items()}
