"""``lima``: LIMA conversations to alternating user/assistant turns.

``GAIR/lima`` stores ``conversations`` as a list of strings that alternate user/assistant by
position; an odd last string (a question without answer) is dropped, as in the reference,
and the record notes it in ``meta.dropped_trailing_message``. LIMA's own ``source`` field
(stackexchange, wikihow, ...) becomes ``meta.subsource``.

LLaMA-Factory's ``lima.json`` holds the same data Alpaca-style: earlier turns in
``history: [[user, assistant], ...]``, the last turn in ``instruction`` (+ ``input``) and
``output``. ``layout: auto`` picks whichever the file has.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from mixer.formats.alpaca import plain_prompt, two_turns
from mixer.formats.base import FormatConfig, FormatContext, register_format, require_columns
from mixer.formats.common import meta_json, text, turn
from mixer.formats.messages import records_from
from mixer.formats.text_values import as_text
from mixer.records import empty_removed
from mixer.steps.base import StepResult


class LimaConfig(FormatConfig):
    layout: Literal["auto", "conversations", "history"] = "auto"
    column: str = "conversations"
    subsource: str | None = "source"


def _inner(dtype: pl.DataType) -> pl.DataType:
    return dtype.inner if isinstance(dtype, pl.List) else pl.Utf8  # type: ignore[return-value]


def alternating(column: str, dtype: pl.DataType = pl.List(pl.Utf8)) -> pl.Expr:
    """A list of strings -> messages, even positions user, odd assistant, odd tail cut."""
    c = pl.col(column)
    role = pl.when(pl.int_range(pl.len()) % 2 == 0).then(pl.lit("user")).otherwise(pl.lit("assistant"))
    return c.list.head(c.list.len() // 2 * 2).list.eval(turn(role, as_text(pl.element(), _inner(dtype), f"{column}[]")))


def history_turns(column: str, dtype: pl.DataType = pl.List(pl.List(pl.Utf8))) -> pl.Expr:
    """``[[user, assistant], ...]`` -> flat messages."""
    item = _inner(_inner(dtype))
    pair = pl.concat_list(
        turn("user", as_text(pl.element().list.get(0, null_on_oob=True), item, f"{column}[][0]")),
        turn("assistant", as_text(pl.element().list.get(1, null_on_oob=True), item, f"{column}[][1]")),
    )
    return pl.col(column).list.eval(pair).list.eval(pl.element().explode())


@register_format("lima", LimaConfig)
def lima(raw: pl.DataFrame, cfg: LimaConfig, ctx: FormatContext) -> StepResult:
    layout = cfg.layout
    if layout == "auto":
        layout = "conversations" if cfg.column in raw.columns else "history"
    if layout == "conversations":
        require_columns(raw, [cfg.column], "lima")
        odd = pl.col(cfg.column).list.len() % 2 == 1
        fields = {"dropped_trailing_message": odd}
        if cfg.subsource and cfg.subsource in raw.columns:
            fields["subsource"] = pl.col(cfg.subsource).cast(pl.Utf8)
        ctx.info["dropped_trailing_messages"] = int(raw.select(odd.sum()).item())
        return StepResult(records_from(raw, ctx, alternating(cfg.column, raw.schema[cfg.column]), meta_json(**fields)), empty_removed())
    require_columns(raw, ["instruction", "output"], "lima")
    inp = text("input") if "input" in raw.columns else pl.lit("")
    last = two_turns(plain_prompt(text("instruction"), inp), text("output"))
    msgs = pl.concat_list(history_turns("history", raw.schema["history"]), last) if "history" in raw.columns and raw.schema["history"] != pl.Null else last
    return StepResult(records_from(raw, ctx, msgs), empty_removed())
