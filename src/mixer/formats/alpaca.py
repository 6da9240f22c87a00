"""``alpaca``: instruction / input / output triples to one user and one assistant turn.

``template: plain`` renders ``instruction`` alone, or ``instruction + "\\n\\n" + input`` when
the input is non-empty. Field names are configurable (GPTeacher uses ``response``).
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from mixer.formats.base import FormatConfig, FormatContext, register_format, require_columns
from mixer.formats.messages import records_from
from mixer.records import empty_removed
from mixer.steps.base import StepResult


class AlpacaConfig(FormatConfig):
    instruction: str = "instruction"
    input: str | None = "input"
    output: str = "output"
    template: Literal["plain"] = "plain"


def _text(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Utf8).fill_null("")


def plain_prompt(instruction: pl.Expr, inp: pl.Expr) -> pl.Expr:
    has_input = inp.str.strip_chars() != ""
    return pl.when(has_input).then(pl.concat_str([instruction, pl.lit("\n\n"), inp])).otherwise(instruction)


def two_turns(prompt: pl.Expr, answer: pl.Expr) -> pl.Expr:
    """[{user: prompt}, {assistant: answer}] as a messages expression."""
    return pl.concat_list(
        pl.struct(pl.lit("user").alias("role"), prompt.alias("content")),
        pl.struct(pl.lit("assistant").alias("role"), answer.alias("content")),
    )


@register_format("alpaca", AlpacaConfig)
def alpaca(raw: pl.DataFrame, cfg: AlpacaConfig, ctx: FormatContext) -> StepResult:
    require_columns(raw, [cfg.instruction, cfg.output], "alpaca")
    inp = _text(cfg.input) if cfg.input and cfg.input in raw.columns else pl.lit("")
    prompt = plain_prompt(_text(cfg.instruction), inp)
    return StepResult(records_from(raw, ctx, two_turns(prompt, _text(cfg.output))), empty_removed())
