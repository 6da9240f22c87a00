"""``ultrafeedback_binarized``: ``HuggingFaceH4/ultrafeedback_binarized`` (``train_prefs``).

``chosen`` and ``rejected`` are already full message lists (prompt turn + answer); the
``prompt`` string must equal the first user turn of the chosen side, else the pair is
removed as ``prompt_mismatch``. ``score_chosen`` / ``score_rejected`` / ``prompt_id`` go
to ``meta`` so a later margin filter can use them.
"""

from __future__ import annotations

import polars as pl

from mixer.formats.base import FormatConfig, FormatContext, register_format, require_columns
from mixer.formats.chosen_rejected import ChosenRejectedConfig, build_pairs
from mixer.formats.common import meta_json, removed_rows
from mixer.records import empty_removed
from mixer.steps.base import StepResult


class UltraFeedbackConfig(FormatConfig):
    chosen: str = "chosen"
    rejected: str = "rejected"
    prompt: str | None = "prompt"  # checked against the first user turn, not prepended
    meta_fields: list[str] = ["prompt_id", "score_chosen", "score_rejected"]


@register_format("ultrafeedback_binarized", UltraFeedbackConfig, kind="preference")
def ultrafeedback(raw: pl.DataFrame, cfg: UltraFeedbackConfig, ctx: FormatContext) -> StepResult:
    require_columns(raw, [cfg.chosen, cfg.rejected], "ultrafeedback_binarized")
    present = [f for f in cfg.meta_fields if f in raw.columns]
    meta = meta_json(**{f: pl.col(f) for f in present}) if present else None
    removed = empty_removed()
    if cfg.prompt and cfg.prompt in raw.columns:
        first_user = pl.col(cfg.chosen).list.eval(
            pl.element().filter(pl.element().struct.field("role") == "user").struct.field("content")
        ).list.first()
        bad = (first_user != pl.col(cfg.prompt).cast(pl.Utf8)).fill_null(True)
        removed = removed_rows(raw.filter(bad), ctx, "ultrafeedback_binarized", "prompt_mismatch", "prompt field differs from the chosen side's first user turn")
        raw = raw.filter(~bad)
    pairs = build_pairs(raw, ChosenRejectedConfig(chosen=cfg.chosen, rejected=cfg.rejected), ctx, "ultrafeedback_binarized", meta)
    return StepResult(pairs, removed)
