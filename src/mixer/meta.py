"""The ``meta`` column: one JSON object per record (or null), edited by parsing, never by
splicing text.

Why a JSON string and not a struct column: meta keys differ by source and by step (a
FLAN submix, a truncation note, selection scores), so a struct's fields would change from
build to build and two builds (or a build and an ordinary dataset) would no longer
concatenate. ``decode`` turns it into a struct column when you want one.
"""

from __future__ import annotations

import io

import numpy as np
import orjson
import polars as pl


def with_meta(frame: pl.DataFrame, key: str, payload: pl.Series, rows: pl.Series | None = None) -> pl.DataFrame:
    """``frame`` with ``meta[key] = payload`` (JSON text per row) on ``rows`` (a boolean
    mask; all rows when None). Rows with no meta get a fresh object column-wise; the others
    are parsed, so setting a key twice replaces it instead of repeating it."""
    mask = np.ones(frame.height, dtype=bool) if rows is None else rows.fill_null(False).to_numpy()
    meta = frame["meta"]
    empty = (meta.is_null() | meta.str.strip_chars().is_in(["", "{}", "null"])).to_numpy()
    fresh = pl.concat_str([pl.lit("{" + orjson.dumps(key).decode() + ":"), payload, pl.lit("}")], ignore_nulls=False)
    out = frame.select(pl.when(pl.Series(mask & empty)).then(fresh).otherwise(pl.col("meta")).alias("meta")).to_series().to_list()
    parse = np.flatnonzero(mask & ~empty)
    if parse.size:
        for i, m, p in zip(parse.tolist(), meta.gather(parse).to_list(), payload.gather(parse).to_list(), strict=True):
            out[i] = _set(m, key, p)
    return frame.with_columns(pl.Series("meta", out, dtype=pl.Utf8))


def _set(meta: str, key: str, payload: str) -> str:
    d = orjson.loads(meta)
    if not isinstance(d, dict):
        d = {"meta": d}
    d[key] = orjson.loads(payload)
    return orjson.dumps(d).decode()


def decode(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with ``meta`` as a struct column (the union of keys; null where absent)."""
    if frame["meta"].is_null().all():
        return frame
    lines = frame.select(pl.concat_str([pl.lit('{"meta":'), pl.col("meta").fill_null("null"), pl.lit("}")]).str.join("\n")).item()
    decoded = pl.read_ndjson(io.BytesIO(lines.encode()), infer_schema_length=None)["meta"]
    return frame.with_columns(decoded)
