"""Formats of the Tulu 3 SFT components whose raw layout the generic formats do not cover.

- ``wildchat`` (``allenai/WildChat-1M``): ``conversation: [{role, content, ...}]`` plus the
  ``model`` that answered; Tulu 3 took the GPT-4 conversations, so ``models`` keeps rows
  whose model name starts with one of the given prefixes (default ``gpt-4``), and the rest
  go to the ledger as ``model_not_selected`` naming the model.
- ``wildjailbreak`` (``allenai/wildjailbreak``, TSV): ``vanilla`` / ``adversarial`` prompt and
  ``completion``; the prompt is the adversarial one when there is one (the adversarial
  rows carry the vanilla prompt they were made from), and ``data_type`` goes to
  ``meta.data_type``.
- ``openmathinstruct2`` (``nvidia/OpenMathInstruct-2``): ``problem`` / ``generated_solution``;
  ``problem_sources`` keeps the named parts (Tulu 3: the GSM8K ones), the rest go to the
  ledger as ``problem_source``.
"""

from __future__ import annotations

import polars as pl

from mixer.formats.alpaca import two_turns
from mixer.formats.base import FormatConfig, FormatContext, register_format, require_columns
from mixer.formats.common import meta_json, removed_rows, text
from mixer.formats.messages import convert_turns, records_from
from mixer.records import empty_removed
from mixer.steps.base import StepResult


class WildChatConfig(FormatConfig):
    column: str = "conversation"
    model_column: str = "model"
    models: list[str] = ["gpt-4"]  # prefixes of the model names to keep; [] keeps all


@register_format("wildchat", WildChatConfig)
def wildchat(raw: pl.DataFrame, cfg: WildChatConfig, ctx: FormatContext) -> StepResult:
    require_columns(raw, [cfg.column, *([cfg.model_column] if cfg.models else [])], "wildchat")
    removed = empty_removed()
    if cfg.models:
        model = text(cfg.model_column)
        keep = pl.any_horizontal([model.str.starts_with(p) for p in cfg.models])
        removed = removed_rows(raw.filter(~keep), ctx, "wildchat", "model_not_selected", pl.format("model '{}'", model))
        raw = raw.filter(keep)
    meta = meta_json(model=text(cfg.model_column)) if cfg.model_column in raw.columns else None
    return StepResult(records_from(raw, ctx, convert_turns(raw, cfg.column, "role", "content", {}), meta), removed)


class WildJailbreakConfig(FormatConfig):
    vanilla: str = "vanilla"
    adversarial: str = "adversarial"
    completion: str = "completion"
    data_type: str = "data_type"


@register_format("wildjailbreak", WildJailbreakConfig)
def wildjailbreak(raw: pl.DataFrame, cfg: WildJailbreakConfig, ctx: FormatContext) -> StepResult:
    require_columns(raw, [cfg.vanilla, cfg.completion], "wildjailbreak")
    adv = text(cfg.adversarial).str.strip_chars() if cfg.adversarial in raw.columns else pl.lit("")
    prompt = pl.when(adv != "").then(adv).otherwise(text(cfg.vanilla).str.strip_chars())
    meta = meta_json(data_type=text(cfg.data_type)) if cfg.data_type in raw.columns else None
    return StepResult(records_from(raw, ctx, two_turns(prompt, text(cfg.completion).str.strip_chars()), meta), empty_removed())


class OpenMathInstruct2Config(FormatConfig):
    problem: str = "problem"
    solution: str = "generated_solution"
    source_column: str = "problem_source"
    problem_sources: list[str] = []  # e.g. [gsm8k, augmented_gsm8k]; [] keeps all


@register_format("openmathinstruct2", OpenMathInstruct2Config)
def openmathinstruct2(raw: pl.DataFrame, cfg: OpenMathInstruct2Config, ctx: FormatContext) -> StepResult:
    require_columns(raw, [cfg.problem, cfg.solution, *([cfg.source_column] if cfg.problem_sources else [])], "openmathinstruct2")
    removed = empty_removed()
    if cfg.problem_sources:
        keep = text(cfg.source_column).is_in(cfg.problem_sources)
        removed = removed_rows(raw.filter(~keep), ctx, "openmathinstruct2", "problem_source", pl.format("problem_source '{}'", text(cfg.source_column)))
        raw = raw.filter(keep)
    meta = meta_json(problem_source=text(cfg.source_column)) if cfg.source_column in raw.columns else None
    return StepResult(records_from(raw, ctx, two_turns(text(cfg.problem).str.strip_chars(), text(cfg.solution).str.strip_chars()), meta), removed)
