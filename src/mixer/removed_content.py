"""Keep the text of every removed record in the ledger, so a removal can be audited by
reading it (``mixer why``, ``mixer show --removed``, the report's examples); records a
sample did not draw are the exception (``NO_CONTENT``).

``with_content(removed, batch)`` attaches the message columns of a stage's input batch to
the ledger rows that batch gave, by id; the engines call it wherever a step removes rows
(``map`` or ``apply`` on a batch, a gathered step on its whole input), so the text is
taken from the batch already in hand.
"""

from __future__ import annotations

import polars as pl

from mixer.records import MESSAGES, REMOVED_SCHEMA

# Records a sample did not draw keep no text in the ledger: nothing in their text is the
# reason, their id names them in the source, and a draw of 10,000 from 20M records would
# otherwise copy the whole source into removed.parquet.
NO_CONTENT = ("not_sampled",)
CONTENT_COLUMNS = {"sft": ("messages",), "preference": ("chosen", "rejected")}


def removed_schema(kind: str) -> dict[str, pl.DataType]:
    """The ledger's columns in a build of ``kind``: the five ledger fields and the content."""
    return {**REMOVED_SCHEMA, **{c: MESSAGES for c in CONTENT_COLUMNS[kind]}}


def with_content(removed: pl.DataFrame, batch: pl.DataFrame) -> pl.DataFrame:
    """``removed`` plus the removed records' message columns, taken from ``batch`` (the
    rows the stage read)."""
    cols = [c for c in ("messages", "chosen", "rejected") if c in batch.columns]
    if removed.height == 0 or not cols:
        return removed
    wanted = removed.filter(~pl.col("reason").is_in(list(NO_CONTENT)))["id"]
    content = batch.select("id", *cols).filter(pl.col("id").is_in(wanted.implode()))
    content = content.unique("id", keep="first", maintain_order=True)
    return removed.drop([c for c in cols if c in removed.columns]).join(content, on="id", how="left", maintain_order="left")


def conform_removed(removed: pl.DataFrame, kind: str) -> pl.DataFrame:
    """Cast to ``removed_schema(kind)``: rows removed before there were messages (load,
    format) get null content."""
    schema = removed_schema(kind)
    missing = [pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c not in removed.columns]
    return removed.with_columns(missing).select([pl.col(c).cast(t) for c, t in schema.items()])
