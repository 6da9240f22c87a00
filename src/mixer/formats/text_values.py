"""Raw fields as message text, by their type: never ``str()`` of a number, object or list.

- strings stay as they are (strings holding a not-text marker from ``mixer.json_values``
  keep it, so validation removes their record);
- content parts (a list of objects with ``type`` and ``text``) are joined with
  ``PART_SEP`` when every part is text, else the value is not text;
- numbers, booleans, objects and other lists become a not-text marker naming the field and
  its JSON type; validation removes the record with reason ``wrong_type``.

Null stays null (an empty turn, removed by validation as ``empty_message``).
"""

from __future__ import annotations

import polars as pl

from mixer.json_values import PART_SEP, not_text


def json_name(dtype: pl.DataType) -> str:
    """The JSON type a polars dtype came from, for ledger details."""
    if dtype.is_integer():
        return "integer"
    if dtype.is_float() or dtype.is_decimal():
        return "number"
    if dtype == pl.Boolean:
        return "boolean"
    if isinstance(dtype, pl.Struct):
        return "object"
    if isinstance(dtype, (pl.List, pl.Array)):
        return "array"
    return str(dtype)


def _is_parts(dtype: pl.DataType) -> bool:
    return isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct) and {"type", "text"} <= {f.name for f in dtype.inner.fields}


def as_text(expr: pl.Expr, dtype: pl.DataType, field: str) -> pl.Expr:
    """``expr`` (of type ``dtype``) as text, by the rules above; ``field`` names it in details."""
    if dtype == pl.Utf8:
        return expr
    if dtype == pl.Null:
        return expr.cast(pl.Utf8)
    none = pl.lit(None, dtype=pl.Utf8)
    if _is_parts(dtype):
        kinds = expr.list.eval(pl.element().struct.field("type").cast(pl.Utf8))
        other = kinds.list.eval(pl.element().filter(pl.element() != "text")).list.first()
        joined = expr.list.eval(pl.element().struct.field("text").cast(pl.Utf8)).list.join(PART_SEP)
        marker = pl.format(not_text(f"field {field!r} has a '{{}}' content part"), other)
        return pl.when(expr.is_null()).then(none).when(other.is_not_null()).then(marker).otherwise(joined)
    return pl.when(expr.is_null()).then(none).otherwise(pl.lit(not_text(f"field {field!r} is {json_name(dtype)}")))


def column_text(col: str) -> pl.Expr:
    """A raw column as text, typed when the frame is known (polars resolves the dtype)."""
    return pl.col(col).map_batches(lambda s: s.to_frame().select(as_text(pl.col(s.name), s.dtype, col)).to_series(), return_dtype=pl.Utf8)
