"""``hh_rlhf``: Anthropic HH transcripts (``chosen`` / ``rejected`` strings of
``\\n\\nHuman: ...`` / ``\\n\\nAssistant: ...`` turns) to preference pairs.

The Tulu 2.5 rule: both transcripts are cut into turns and compared turn by turn; the
turns before the first difference are the shared prompt and the differing turn is each
side's answer, so both sides share the prompt and differ only in their final assistant
turn. Turns after the first difference are discarded (``meta.discarded_turns`` says how
many). Pairs where the transcripts are identical (``identical_transcripts``), where one is
a prefix of the other (``no_differing_turn``), or where they first differ at a human turn
(``differs_at_user_turn``) are removed with the turn index in the detail; a transcript that
is not text (a number, object, list) is removed as ``wrong_type``.

Vectorized: turns are split with regex replacements, then compared via explode + join.
"""

from __future__ import annotations

import polars as pl

from mixer.formats.base import FormatConfig, FormatContext, register_format, require_columns
from mixer.formats.chosen_rejected import pair_frame
from mixer.formats.common import meta_json, removed_rows
from mixer.formats.text_values import column_text
from mixer.json_values import NOT_TEXT_PATTERN
from mixer.steps.base import StepResult

SEP = "\x1e"


class HHConfig(FormatConfig):
    chosen: str = "chosen"
    rejected: str = "rejected"


def turns(column: str) -> pl.Expr:
    """A transcript as a list of "U<content>" / "A<content>" strings."""
    t = (
        column_text(column).fill_null("")
        .str.replace_all(r"(?:^|\n\n)Human: ?", SEP + "U")
        .str.replace_all(r"(?:^|\n\n)Assistant: ?", SEP + "A")
    )
    return t.str.split(SEP).list.slice(1)  # drop whatever precedes the first speaker tag


def as_messages(column: pl.Expr) -> pl.Expr:
    role = pl.element().str.slice(0, 1).replace_strict({"U": "user", "A": "assistant"})
    return column.list.eval(pl.struct(role.alias("role"), pl.element().str.slice(1).str.strip_chars().alias("content")))


def first_difference(frame: pl.DataFrame) -> pl.DataFrame:
    """Per ``_i``: index of the first turn where the two sides differ (null if none)."""
    def flat(col: str) -> pl.DataFrame:
        return frame.select("_i", pl.col(col).alias("t")).explode("t").with_columns(pl.int_range(pl.len()).over("_i").alias("pos"))

    both = flat("_c").join(flat("_r"), on=["_i", "pos"], how="inner", suffix="_r")
    diff = both.filter(pl.col("t").ne_missing(pl.col("t_r"))).group_by("_i").agg(pl.col("pos").min().alias("_d"))
    return frame.join(diff, on="_i", how="left")


@register_format("hh_rlhf", HHConfig, kind="preference")
def hh_rlhf(raw: pl.DataFrame, cfg: HHConfig, ctx: FormatContext) -> StepResult:
    require_columns(raw, [cfg.chosen, cfg.rejected], "hh_rlhf")
    not_text = pl.coalesce(*(column_text(c).str.extract(NOT_TEXT_PATTERN, 1) for c in (cfg.chosen, cfg.rejected)))
    f = raw.with_columns(pl.int_range(pl.len()).alias("_i"), turns(cfg.chosen).alias("_c"), turns(cfg.rejected).alias("_r"), not_text.alias("_wrong"))
    f = first_difference(f)
    lc, lr = pl.col("_c").list.len(), pl.col("_r").list.len()
    shorter = pl.min_horizontal(lc, lr)
    d = pl.coalesce(pl.col("_d"), pl.when(lc != lr).then(shorter))  # a prefix differs where the shorter ends
    f = f.with_columns(d.alias("_d"))
    answer_c, answer_r = pl.col("_c").list.get(pl.col("_d"), null_on_oob=True), pl.col("_r").list.get(pl.col("_d"), null_on_oob=True)
    reason = (
        pl.when(pl.col("_wrong").is_not_null()).then(pl.lit("wrong_type"))
        .when(pl.col("_d").is_null()).then(pl.lit("identical_transcripts"))
        .when(answer_c.is_null() | answer_r.is_null()).then(pl.lit("no_differing_turn"))
        .when(~answer_c.str.starts_with("A") | ~answer_r.str.starts_with("A")).then(pl.lit("differs_at_user_turn"))
        .otherwise(pl.lit(None, dtype=pl.Utf8))
    )
    f = f.with_columns(reason.alias("_reason"))
    bad = f.filter(pl.col("_reason").is_not_null())
    turn_detail = pl.format("chosen {} turns, rejected {} turns, first difference at turn {}", lc, lr, pl.col("_d").cast(pl.Utf8).fill_null("none"))
    detail = pl.coalesce(pl.col("_wrong"), turn_detail)
    removed = removed_rows(bad, ctx, "hh_rlhf", pl.col("_reason"), detail)
    good = f.filter(pl.col("_reason").is_null())
    keep = pl.col("_d") + 1
    meta = meta_json(first_difference_turn=pl.col("_d"), discarded_turns=pl.max_horizontal(lc, lr) - keep)
    pairs = pair_frame(good, ctx, as_messages(pl.col("_c").list.head(keep)), as_messages(pl.col("_r").list.head(keep)), meta)
    return StepResult(pairs, removed)
