"""``wizardlm``: Evol-Instruct ``conversations: [{from, value}]``, strictly human/gpt alternating.

The reference script asserts an even number of turns and ``human`` at even positions,
``gpt`` at odd ones, and crashes otherwise; here each violation is a ledger row instead:
``odd_turns``, ``unexpected_speaker`` (a speaker other than human/gpt) or ``role_order``,
with the speakers in the detail. The file's own ``idx`` goes to ``meta.raw_id``.
"""

from __future__ import annotations

import polars as pl

from mixer.formats.base import FormatConfig, FormatContext, register_format, require_columns
from mixer.formats.common import raw_id_meta, removed_rows
from mixer.formats.messages import convert_turns, records_from
from mixer.steps.base import StepResult


class WizardLMConfig(FormatConfig):
    column: str = "conversations"
    role_key: str = "from"
    content_key: str = "value"
    user: str = "human"
    assistant: str = "gpt"
    id_field: str | None = "idx"


@register_format("wizardlm", WizardLMConfig)
def wizardlm(raw: pl.DataFrame, cfg: WizardLMConfig, ctx: FormatContext) -> StepResult:
    require_columns(raw, [cfg.column], "wizardlm")
    speakers = pl.col(cfg.column).list.eval(pl.element().struct.field(cfg.role_key).cast(pl.Utf8).fill_null("null"))
    joined = speakers.list.join(",")
    n = pl.col(cfg.column).list.len()
    known = speakers.list.eval(pl.element().is_in([cfg.user, cfg.assistant])).list.all()
    strict = joined.str.contains(f"^{cfg.user},{cfg.assistant}(?:,{cfg.user},{cfg.assistant})*$")
    reason = (
        pl.when(n.fill_null(0) == 0).then(pl.lit("no_messages"))
        .when(n % 2 == 1).then(pl.lit("odd_turns"))
        .when(~known).then(pl.lit("unexpected_speaker"))
        .when(~strict).then(pl.lit("role_order"))
        .otherwise(pl.lit(None, dtype=pl.Utf8))
    )
    tagged = raw.with_columns(reason.alias("_reason"), pl.format("speakers [{}]", speakers.list.join(", ")).alias("_detail"))
    good = tagged.filter(pl.col("_reason").is_null())
    role_map = {cfg.user: "user", cfg.assistant: "assistant"}
    msgs = convert_turns(good, cfg.column, cfg.role_key, cfg.content_key, role_map)
    kept = records_from(good, ctx, msgs, raw_id_meta(good, cfg.id_field))
    removed = removed_rows(tagged.filter(pl.col("_reason").is_not_null()), ctx, "wizardlm", pl.col("_reason"), pl.col("_detail"))
    return StepResult(kept, removed)
