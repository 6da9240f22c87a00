"""``sharegpt``: ``conversations: [{from, value}]`` with human/gpt roles.

human/user -> user, gpt/chatgpt -> assistant, system -> system; other speakers (e.g. bing)
are left as they are and removed by validation with ``unknown_role``.
"""

from __future__ import annotations

import polars as pl

from mixer.formats.base import FormatConfig, FormatContext, register_format, require_columns
from mixer.formats.messages import convert_turns, records_from
from mixer.records import empty_removed
from mixer.steps.base import StepResult


class ShareGPTConfig(FormatConfig):
    column: str = "conversations"
    role_key: str = "from"
    content_key: str = "value"
    role_map: dict[str, str] = {}


@register_format("sharegpt", ShareGPTConfig)
def sharegpt(raw: pl.DataFrame, cfg: ShareGPTConfig, ctx: FormatContext) -> StepResult:
    require_columns(raw, [cfg.column], "sharegpt")
    expr = convert_turns(raw, cfg.column, cfg.role_key, cfg.content_key, cfg.role_map)
    return StepResult(records_from(raw, ctx, expr), empty_removed())
