"""Expressions the format modules share: text columns, turns, JSON ``meta``, ledger rows.

Formats build records column-wise with these so that a conversion stays a polars
expression over the raw frame, not a loop over Python dicts.
"""

from __future__ import annotations

import polars as pl

from mixer.formats.base import FormatContext
from mixer.formats.text_values import column_text
from mixer.records import removed_from


def text(col: str) -> pl.Expr:
    """A raw field as text by its type (``mixer.formats.text_values``), null as empty
    (validation then removes empty turns and not-text values)."""
    return column_text(col).fill_null("")


def turn(role: str | pl.Expr, content: pl.Expr) -> pl.Expr:
    r = pl.lit(role) if isinstance(role, str) else role
    return pl.struct(r.alias("role"), content.alias("content"))


def meta_json(**fields: pl.Expr) -> pl.Expr:
    """One JSON object per row, e.g. ``{"submix": "flan_fsopt"}``; steps read keys back with
    ``pl.col("meta").str.json_path_match("$.key")``."""
    return pl.struct([e.alias(k) for k, e in fields.items()]).struct.json_encode()


def raw_id_meta(raw: pl.DataFrame, column: str | None) -> pl.Expr | None:
    """``{"raw_id": ...}`` when the raw data carries its own id, so records trace back."""
    if column and column in raw.columns:
        return meta_json(raw_id=pl.col(column).cast(pl.Utf8))
    return None


def format_step(name: str) -> str:
    """The ``step`` value of ledger rows written by format ``name``."""
    return f"format:{name}"


def removed_rows(frame: pl.DataFrame, ctx: FormatContext, fmt: str, reason: str | pl.Expr, detail: pl.Expr | str | None, id_expr: pl.Expr | None = None) -> pl.DataFrame:
    """Ledger rows for raw rows a format drops (ids ``{source}:{row}`` unless given)."""
    tagged = frame.with_columns((id_expr if id_expr is not None else ctx.id_expr()).alias("id"), pl.lit(ctx.source).alias("source"))
    return removed_from(tagged, format_step(fmt), reason, detail)


def origin_path() -> pl.Expr:
    """The file part of ``_origin`` (``path:line``, ``path#index`` or ``repo/file#index``)."""
    return pl.col("_origin").str.replace(r"(?::\d+|#\d+)$", "")
