"""``hardcoded``: a prompt/output table (the Tulu identity examples) with optional repeat.

Each row becomes one user and one assistant turn. ``repeat: k`` emits every row k times;
copies get ids ``{source}:{row}~{j}`` (the first copy keeps ``{source}:{row}``), the same
names ``sample: {repeat: k}`` gives, so ids stay unique and dedup steps treat the copies
as intended repeats rather than duplicates (the reference gave all ten copies one id).
Column names default to the headers of ``hard_coded_examples.xlsx``.
"""

from __future__ import annotations

import polars as pl
from pydantic import Field

from mixer.formats.alpaca import two_turns
from mixer.formats.base import FormatConfig, FormatContext, register_format, require_columns
from mixer.formats.common import text
from mixer.formats.messages import records_from
from mixer.records import empty_removed
from mixer.steps.base import StepResult


class HardcodedConfig(FormatConfig):
    prompt: str = "Prompt"
    output: str = "Output"
    repeat: int = Field(1, ge=1)


@register_format("hardcoded", HardcodedConfig)
def hardcoded(raw: pl.DataFrame, cfg: HardcodedConfig, ctx: FormatContext) -> StepResult:
    require_columns(raw, [cfg.prompt, cfg.output], "hardcoded")
    one = records_from(raw, ctx, two_turns(text(cfg.prompt), text(cfg.output)))
    if cfg.repeat == 1:
        return StepResult(one, empty_removed())
    copies = [one] + [one.with_columns(pl.format("{}~{}", "id", pl.lit(j)).alias("id")) for j in range(1, cfg.repeat)]
    kept = pl.concat(copies).with_columns(pl.int_range(pl.len()).alias("_o"))
    # Copies of one row sit together, rows keep their order.
    kept = kept.sort(pl.col("_o") % one.height, pl.col("_o")).drop("_o")
    return StepResult(kept, empty_removed())
