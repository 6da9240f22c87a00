"""``openorca``: Open-Orca ``system_prompt`` / ``question`` / ``response`` to system, user,
assistant turns. An empty or blank system prompt is left out (the reference script kept it
as an empty system turn, which chat templates then render as an empty block). The file's
``id`` (e.g. ``flan.1234``) goes to ``meta.raw_id``.
"""

from __future__ import annotations

import polars as pl

from mixer.formats.base import FormatConfig, FormatContext, register_format, require_columns
from mixer.formats.common import raw_id_meta, text, turn
from mixer.formats.messages import records_from
from mixer.records import empty_removed
from mixer.steps.base import StepResult


class OpenOrcaConfig(FormatConfig):
    system: str = "system_prompt"
    question: str = "question"
    response: str = "response"
    id_field: str | None = "id"


@register_format("openorca", OpenOrcaConfig)
def openorca(raw: pl.DataFrame, cfg: OpenOrcaConfig, ctx: FormatContext) -> StepResult:
    require_columns(raw, [cfg.question, cfg.response], "openorca")
    sys = text(cfg.system) if cfg.system in raw.columns else pl.lit("")
    qa = [turn("user", text(cfg.question)), turn("assistant", text(cfg.response))]
    msgs = pl.when(sys.str.strip_chars() != "").then(pl.concat_list(turn("system", sys), *qa)).otherwise(pl.concat_list(*qa))
    ctx.info["with_system_prompt"] = int(raw.select((sys.str.strip_chars() != "").sum()).item())
    return StepResult(records_from(raw, ctx, msgs, raw_id_meta(raw, cfg.id_field)), empty_removed())
