"""What the near-duplicate steps share: keep policies, the ledger rows, the cluster table
written beside the build, and the rule that upsampled copies (``id~k``) are never
duplicates of each other (only the first copy of a record takes part; the others follow
its fate)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from mixer.records import base_id, message_lists, removed_from, text_of
from mixer.steps.base import Lookup

KeepPolicy = Literal["first", "priority", "longest"]
SNIPPET_CHARS = 200


def representatives(frame: pl.DataFrame) -> np.ndarray:
    """Rows that take part: the first row of every base id."""
    return np.flatnonzero(frame.select(base_id().is_first_distinct()).to_series().to_numpy())


def keep_rank(sources: pl.Series, lengths: np.ndarray, policy: KeepPolicy, source_order: list[str],
              priority: list[str] | None = None) -> np.ndarray:
    """A total order over records; the lowest in a cluster is kept.

    first: spec order of sources, then row order. priority: the listed sources first, in
    list order, then the rest in spec order. longest: the longest compared text, ties by
    ``first``."""
    seen = list(dict.fromkeys(source_order + sources.unique(maintain_order=True).to_list()))
    src_rank = sources.replace_strict({s: i for i, s in enumerate(seen)}, return_dtype=pl.Int64).to_numpy()
    row = np.arange(len(sources))
    if policy == "first":
        primary = np.zeros(len(sources), dtype=np.int64)
    elif policy == "priority":
        prio = {s: i for i, s in enumerate(priority or [])}
        primary = sources.replace_strict(prio, default=len(prio), return_dtype=pl.Int64).to_numpy()
    elif policy == "longest":
        primary = -np.asarray(lengths, dtype=np.int64)
    else:  # pragma: no cover - validated by the config
        raise ValueError(f"unknown keep policy {policy!r}")
    rank = np.empty(len(sources), dtype=np.int64)
    rank[np.lexsort((row, src_rank, primary))] = np.arange(len(sources))
    return rank


def outcome_frame(frame: pl.DataFrame, rows: np.ndarray, kept: np.ndarray, size: np.ndarray,
                  scores: dict[str, np.ndarray]) -> pl.DataFrame:
    """One row per record in a cluster of 2+ (``rows`` of ``frame``): id, source, the kept
    record's id and source (``kept`` indexes ``rows``), cluster size and scores."""
    sub = frame.select("id", "source")[rows]  # select first: gathering whole records is costly
    cols: dict[str, Any] = {
        "kept_id": sub["id"].to_numpy()[kept],
        "kept_source": sub["source"].to_numpy()[kept],
        "cluster_size": size,
        "_rep": rows,
        **scores,
    }
    out = sub.with_columns(**{k: pl.Series(k, v) for k, v in cols.items()})
    return out.filter(pl.col("cluster_size") > 1)


def empty_outcome(scores: dict[str, np.ndarray] | list[str]) -> pl.DataFrame:
    """An outcome frame without rows (no cluster found)."""
    schema = {"id": pl.Utf8, "source": pl.Utf8, "kept_id": pl.Utf8, "kept_source": pl.Utf8,
              "cluster_size": pl.Int64, "_rep": pl.Int64, **{k: pl.Float64 for k in scores}}
    return pl.DataFrame(schema=schema)


def removals(outcome: pl.DataFrame) -> Lookup:
    """The removed representatives of ``outcome`` by base id, for ``split`` (found once,
    in ``decide``; every batch then looks its rows up)."""
    gone = outcome.filter(pl.col("id") != pl.col("kept_id")).with_columns(base_id().alias("_base"))
    return Lookup.of(gone.drop("id", "source", "_rep", strict=False), "_base")


def split(frame: pl.DataFrame, gone: Lookup, step: str, reason: str, detail: pl.Expr) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kept, ledger): every row whose base id belongs to a removed representative goes
    (``gone``: ``removals``). Only id and source of the rows that go are taken with the
    removals' columns (joining whole records copied the frame twice: 1M records, +3 GB)."""
    at = gone.find(frame.select(base_id()).to_series())
    hit = at >= 0
    mask = pl.Series(hit)
    tagged = pl.concat([frame.filter(mask).select("id", "source"), gone.rows(at[hit])], how="horizontal").rechunk()
    return frame.filter(~mask), removed_from(tagged, step, reason, detail)


def cluster_table(frame: pl.DataFrame, outcome: pl.DataFrame, which: str, method: str) -> pl.DataFrame:
    """The side table of every cluster: members, who was kept, scores, and a text snippet."""
    if outcome.height == 0:
        return outcome.select("id", "source").with_columns(
            pl.lit(method).alias("method"), pl.lit(None, pl.Utf8).alias("cluster"), pl.lit(True).alias("kept"),
            pl.lit(None, pl.Utf8).alias("kept_source"), pl.lit(0, pl.Int64).alias("cluster_size"),
            pl.lit(None, pl.Utf8).alias("snippet"),
        )
    rows, msgs, chunk = outcome["_rep"].to_numpy(), frame.select(message_lists(frame)), 65_536
    snippets = pl.concat([text_of(msgs[rows[s : s + chunk]], which).str.slice(0, SNIPPET_CHARS)
                          for s in range(0, len(rows), chunk)])  # by chunks: 1M members' full texts are GBs
    return snippet_table(outcome, snippets, method)


def snippet_table(outcome: pl.DataFrame, snippets: pl.Series, method: str) -> pl.DataFrame:
    """The cluster table from an outcome and the snippet of each of its rows."""
    if outcome.height == 0:
        return cluster_table(pl.DataFrame(), outcome, "all", method)
    return outcome.with_columns(
        pl.lit(method).alias("method"),
        pl.col("kept_id").alias("cluster"),
        (pl.col("id") == pl.col("kept_id")).alias("kept"),
        snippets.alias("snippet"),
    ).drop("_rep", "kept_id").sort(["cluster_size", "cluster", "kept"], descending=[True, False, True], maintain_order=True)


def side_file(work_dir: Path | None, stem: str, suffix: str) -> Path | None:
    """``work_dir/dedup/<stem><suffix>``, numbered when a spec runs the step twice."""
    if work_dir is None:
        return None
    folder = Path(work_dir) / "dedup"
    folder.mkdir(parents=True, exist_ok=True)
    path, k = folder / f"{stem}{suffix}", 2
    while path.exists():
        path, k = folder / f"{stem}-{k}{suffix}", k + 1
    return path


def write_side_files(work_dir: Path | None, stem: str, table: pl.DataFrame, params: dict[str, Any]) -> dict[str, str]:
    path = side_file(work_dir, stem, ".clusters.parquet")
    if path is None:
        return {}
    table.write_parquet(path, compression="zstd")
    meta = path.with_name(path.name.replace(".clusters.parquet", ".json"))
    meta.write_text(json.dumps(params, indent=2, sort_keys=True))
    root = Path(work_dir)
    return {"clusters": str(path.relative_to(root)), "params": str(meta.relative_to(root))}


def summary(outcome: pl.DataFrame) -> dict[str, Any]:
    """Counts for the manifest: clusters, removed, size histogram, cross-source overlaps."""
    gone = outcome.filter(pl.col("id") != pl.col("kept_id"))
    clusters = outcome.filter(pl.col("id") == pl.col("kept_id"))
    sizes = clusters.group_by("cluster_size").len().sort("cluster_size")
    pairs = gone.group_by("kept_source", "source").len().sort("kept_source", "source")
    return {
        "clusters": clusters.height,
        "removed": gone.height,
        "largest_cluster": int(clusters["cluster_size"].max() or 0) if clusters.height else 0,
        "cluster_sizes": {str(s): int(n) for s, n in sizes.iter_rows()},
        "by_source_pair": {f"{a} <- {b}": int(n) for a, b, n in pairs.iter_rows()},
    }
