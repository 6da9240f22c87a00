"""Keep the text of every removed record in the ledger, so a removal can be audited by
reading it (``mixer why``, ``mixer show --removed``, the report's examples).

``with_content(removed, before)`` attaches the message columns of the stage's input frame
to that stage's ledger rows, by id; it works on one batch at a time (the rows a stage
removed and the frame it read), so a streaming pipeline can call it per batch.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from mixer.records import MESSAGES, REMOVED_SCHEMA

CONTENT_COLUMNS = {"sft": ("messages",), "preference": ("chosen", "rejected")}


def removed_schema(kind: str) -> dict[str, pl.DataType]:
    """The ledger's columns in a build of ``kind``: the five ledger fields and the content."""
    return {**REMOVED_SCHEMA, **{c: MESSAGES for c in CONTENT_COLUMNS[kind]}}


def with_content(removed: pl.DataFrame, before: Any, engine: Any = None) -> pl.DataFrame:
    """``removed`` plus the removed records' message columns, taken from ``before`` (the
    stage's input: a polars frame, or an engine's distributed frame, from which only the
    removed records are fetched)."""
    if removed.height == 0:
        return removed
    cols = [c for c in ("messages", "chosen", "rejected") if c in _columns(before)]
    if not cols:
        return removed
    ids = removed["id"].implode()
    if isinstance(before, pl.DataFrame):
        content = before.select("id", *cols).filter(pl.col("id").is_in(ids))
    else:
        content = _fetch(before, ids, cols, engine)
    content = content.unique("id", keep="first", maintain_order=True)
    return removed.drop([c for c in cols if c in removed.columns]).join(content, on="id", how="left", maintain_order="left")


def conform_removed(removed: pl.DataFrame, kind: str) -> pl.DataFrame:
    """Cast to ``removed_schema(kind)``: rows removed before there were messages (load,
    format) get null content."""
    schema = removed_schema(kind)
    missing = [pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c not in removed.columns]
    return removed.with_columns(missing).select([pl.col(c).cast(t) for c, t in schema.items()])


def _columns(frame: Any) -> list[str]:
    if isinstance(frame, pl.DataFrame):
        return frame.columns
    kind = getattr(frame, "kind", None)
    return list(CONTENT_COLUMNS.get(kind, ())) if kind else []


def _fetch(frame: Any, ids: pl.Series, cols: list[str], engine: Any) -> pl.DataFrame:
    """The removed records of a distributed frame: ids (and positions) to the driver, then
    only those records (an engine with ``compact`` and ``take``), else the columns whole."""
    if engine is not None and hasattr(engine, "compact") and hasattr(engine, "take"):
        index = engine.compact(frame, ["id"])
        pos = index.filter(pl.col("id").is_in(ids)).get_column(index.columns[0]).to_numpy()
        return engine.take(frame, pos).select("id", *cols)
    from mixer.engines.ray_frame import collect

    return collect(frame, ["id", *cols]).filter(pl.col("id").is_in(ids))
