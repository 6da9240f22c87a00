"""``science``: the Tulu science-literature file (``input`` / ``output`` / ``dataset``).

One user and one assistant turn. The ``dataset`` field (evidence_inference, qasper,
scierc, scifact, scitldr) becomes the sub-source tag ``meta.subsource`` (the reference
wrote it as ``science.<dataset>``), so statistics and ``sample: {by: subsource}`` can tell
the five parts apart while the record stays in one source.
"""

from __future__ import annotations

import polars as pl

from mixer.formats.alpaca import two_turns
from mixer.formats.base import FormatConfig, FormatContext, register_format, require_columns
from mixer.formats.common import meta_json, text
from mixer.formats.messages import records_from
from mixer.records import empty_removed
from mixer.steps.base import StepResult


class ScienceConfig(FormatConfig):
    input: str = "input"
    output: str = "output"
    subsource: str | None = "dataset"


@register_format("science", ScienceConfig)
def science(raw: pl.DataFrame, cfg: ScienceConfig, ctx: FormatContext) -> StepResult:
    require_columns(raw, [cfg.input, cfg.output], "science")
    meta = None
    if cfg.subsource:
        require_columns(raw, [cfg.subsource], "science")
        meta = meta_json(subsource=pl.col(cfg.subsource).cast(pl.Utf8))
        ctx.info["subsources"] = dict(sorted(raw[cfg.subsource].cast(pl.Utf8).value_counts().iter_rows()))
    return StepResult(records_from(raw, ctx, two_turns(text(cfg.input), text(cfg.output)), meta), empty_removed())
