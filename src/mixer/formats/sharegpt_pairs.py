"""``sharegpt_pairs``: ShareGPT-style preference data, as in LLaMA-Factory's
``dpo_en_demo.json``: ``conversations: [{from, value}]`` holds the prompt turns, ``chosen``
and ``rejected`` are single ``{from, value}`` answers, and an optional ``system`` field the
system prompt. Both sides become the prompt turns plus their answer.
"""

from __future__ import annotations

import polars as pl

from mixer.formats.base import FormatContext, register_format
from mixer.formats.chosen_rejected import ChosenRejectedConfig, build_pairs
from mixer.records import empty_removed
from mixer.steps.base import StepResult


class ShareGPTPairsConfig(ChosenRejectedConfig):
    prompt: str | None = "conversations"
    system: str | None = "system"
    role_key: str = "from"
    content_key: str = "value"


@register_format("sharegpt_pairs", ShareGPTPairsConfig, kind="preference")
def sharegpt_pairs(raw: pl.DataFrame, cfg: ShareGPTPairsConfig, ctx: FormatContext) -> StepResult:
    return StepResult(build_pairs(raw, cfg, ctx, "sharegpt_pairs"), empty_removed())
