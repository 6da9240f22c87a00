"""The record schema every part of mixer shares, and polars expressions over it.

SFT records: ``id``, ``source``, ``messages: list<struct<role, content>>``, ``meta`` (JSON
string, may be null). Preference records: ``id``, ``source``, ``chosen`` and ``rejected``
message lists sharing the prompt turns, ``meta``. Frames, never lists of dicts, flow between
steps; the helpers below build and read them column-wise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import polars as pl

ROLES = ("system", "user", "assistant")
MESSAGE = pl.Struct({"role": pl.Utf8, "content": pl.Utf8})
MESSAGES = pl.List(MESSAGE)

SFT_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Utf8,
    "source": pl.Utf8,
    "messages": MESSAGES,
    "meta": pl.Utf8,
}
PREF_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Utf8,
    "source": pl.Utf8,
    "chosen": MESSAGES,
    "rejected": MESSAGES,
    "meta": pl.Utf8,
}
REMOVED_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Utf8,
    "source": pl.Utf8,
    "step": pl.Utf8,
    "reason": pl.Utf8,
    "detail": pl.Utf8,
}


def kind_of(frame: pl.DataFrame) -> str:
    """``"sft"`` or ``"preference"``, from the columns present."""
    if "messages" in frame.columns:
        return "sft"
    if "chosen" in frame.columns and "rejected" in frame.columns:
        return "preference"
    raise ValueError(f"frame has neither messages nor chosen/rejected: {frame.columns}")


def empty_records(kind: str = "sft") -> pl.DataFrame:
    return pl.DataFrame(schema=SFT_SCHEMA if kind == "sft" else PREF_SCHEMA)


def empty_removed() -> pl.DataFrame:
    return pl.DataFrame(schema=REMOVED_SCHEMA)


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast to the canonical schema and column order (adds a null ``meta`` when missing)."""
    schema = SFT_SCHEMA if kind_of(frame) == "sft" else PREF_SCHEMA
    if "meta" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias("meta"))
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()])


def detached(frame: pl.DataFrame) -> pl.DataFrame:
    """A copy of ``frame`` that owns its data. A few rows taken from a batch (keys, ledger
    rows, a fetch pass's snippets) can keep much of the batch's memory alive in polars;
    held across the batches of a stage, that grows with the input (at 10M records the
    minhash snippet pass went from 4 GB to 12 GB). An Arrow round trip copies the values."""
    if not frame.height:
        return frame
    return pl.from_arrow(frame.to_arrow(compat_level=pl.CompatLevel.oldest()))  # type: ignore[return-value]


def sft_frame(
    ids: Sequence[str],
    source: str | Sequence[str],
    messages: Sequence[Sequence[dict]],
    meta: Sequence[str | None] | None = None,
) -> pl.DataFrame:
    """Build an SFT frame from parallel columns (the list of messages per record)."""
    n = len(ids)
    src = [source] * n if isinstance(source, str) else list(source)
    return pl.DataFrame(
        {
            "id": list(ids),
            "source": src,
            "messages": [list(m) for m in messages],
            "meta": list(meta) if meta is not None else [None] * n,
        },
        schema=SFT_SCHEMA,
    )


def removed_frame(
    ids: Iterable[str] | pl.Series,
    source: str | Iterable[str] | pl.Series,
    step: str,
    reason: str | Iterable[str] | pl.Series,
    detail: str | Iterable[str | None] | pl.Series | None = None,
) -> pl.DataFrame:
    """Build a ledger frame; scalars broadcast over ``ids``."""
    ids = pl.Series("id", ids, dtype=pl.Utf8) if not isinstance(ids, pl.Series) else ids.alias("id")
    n = len(ids)

    def col(name: str, value) -> pl.Series:
        if value is None or isinstance(value, str):
            return pl.Series(name, [value] * n, dtype=pl.Utf8)
        s = value if isinstance(value, pl.Series) else pl.Series(name, list(value), dtype=pl.Utf8)
        return s.cast(pl.Utf8).alias(name)

    return pl.DataFrame(
        [ids.cast(pl.Utf8), col("source", source), col("step", step), col("reason", reason), col("detail", detail)]
    )


def removed_from(frame: pl.DataFrame, step: str, reason: str | pl.Expr, detail: str | pl.Expr | None = None) -> pl.DataFrame:
    """Ledger rows for every row of ``frame`` (reason/detail may be expressions over it)."""
    r = pl.lit(reason) if isinstance(reason, str) else reason
    d = pl.lit(detail, dtype=pl.Utf8) if detail is None or isinstance(detail, str) else detail
    return frame.select(
        pl.col("id"),
        pl.col("source"),
        pl.lit(step).alias("step"),
        r.cast(pl.Utf8).alias("reason"),
        d.cast(pl.Utf8).alias("detail"),
    )


# ---------------------------------------------------------------- text views over messages


def _msgs(column: str = "messages") -> pl.Expr:
    return pl.col(column)


def turns_text(roles: Sequence[str] | None = None, column: str = "messages", sep: str = "\n") -> pl.Expr:
    """Concatenated content of the turns whose role is in ``roles`` (all turns when None)."""
    m = _msgs(column)
    if roles is not None:
        m = m.list.eval(pl.element().filter(pl.element().struct.field("role").is_in(list(roles))))
    return m.list.eval(pl.element().struct.field("content")).list.join(sep)


def user_text(column: str = "messages") -> pl.Expr:
    return turns_text(["user"], column)


def assistant_text(column: str = "messages") -> pl.Expr:
    return turns_text(["assistant"], column)


def all_text(column: str = "messages") -> pl.Expr:
    return turns_text(None, column)


def text_of(frame: pl.DataFrame, which: str = "all") -> pl.Series:
    """Text view of each record: ``which`` in {all, user, assistant}; preference records use
    the prompt turns plus both final answers."""
    roles = {"all": None, "user": ["user"], "assistant": ["assistant"]}[which]
    if kind_of(frame) == "sft":
        return frame.select(turns_text(roles).alias("text")).to_series()
    return frame.select(
        pl.concat_str([turns_text(roles, "chosen"), turns_text(roles, "rejected")], separator="\n").alias("text")
    ).to_series()


def message_lists(frame: pl.DataFrame) -> list[str]:
    """Names of the message-list columns of this frame (messages, or chosen+rejected)."""
    return ["messages"] if kind_of(frame) == "sft" else ["chosen", "rejected"]


def base_id(column: str = "id") -> pl.Expr:
    """The id a record had before upsampling: ``sample: {repeat: k}`` names copies
    ``{id}~{k}``. Dedup steps treat copies of one record as intended, never as duplicates."""
    return pl.col(column).str.replace(r"~\d+$", "")
