"""``exact_dedup``: remove records whose normalized conversation equals an earlier one.

Normalization: lowercase, whitespace runs collapsed to one space, ends stripped; turns are
tagged with their role so a question never equals the same text as an answer. The first
record in canonical order (sources in spec order, then row order) is kept and every
removed record names it in ``detail``.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from mixer.records import base_id, message_lists, removed_from
from mixer.steps.base import Step, StepConfig, StepContext, StepResult, register


class ExactConfig(StepConfig):
    text: Literal["all", "user", "assistant"] = "all"
    lowercase: bool = True


def normalized_key(frame: pl.DataFrame, text: str = "all", lowercase: bool = True) -> pl.Expr:
    """One string per record that is equal iff the records are duplicates."""
    roles = {"all": None, "user": ["user"], "assistant": ["assistant"]}[text]
    parts = []
    for col in message_lists(frame):
        m = pl.col(col)
        if roles is not None:
            m = m.list.eval(pl.element().filter(pl.element().struct.field("role").is_in(roles)))
        content = pl.element().struct.field("content").str.replace_all(r"\s+", " ").str.strip_chars()
        if lowercase:
            content = content.str.to_lowercase()
        parts.append(m.list.eval(pl.concat_str([pl.element().struct.field("role"), pl.lit("\x1f"), content])).list.join("\x1e"))
    return pl.concat_str(parts, separator="\x1d") if len(parts) > 1 else parts[0]


@register
class ExactDedup(Step):
    name = "exact_dedup"
    Config = ExactConfig

    def run(self, frame: pl.DataFrame, ctx: StepContext) -> StepResult:
        keyed = frame.with_columns(normalized_key(frame, self.config.text, self.config.lowercase).alias("_key"))
        keyed = keyed.with_columns(base_id().alias("_base")).with_columns(
            pl.col("_base").first().over("_key").alias("_kept_id"), pl.col("source").first().over("_key").alias("_kept_source")
        )
        dup = pl.col("_kept_id") != pl.col("_base")
        removed = removed_from(keyed.filter(dup), self.name, "exact_duplicate", pl.format("duplicate of {} ({})", "_kept_id", "_kept_source"))
        kept = keyed.filter(~dup).drop("_key", "_base", "_kept_id", "_kept_source")
        cross = keyed.filter(dup & (pl.col("source") != pl.col("_kept_source")))
        pairs = cross.group_by("_kept_source", "source").len().sort("_kept_source", "source")
        info = {"duplicates": removed.height, "cross_source": {f"{a} <- {b}": n for a, b, n in pairs.iter_rows()}}
        return StepResult(kept, removed, info)
