"""``max_tokens``: a maximum length per record, in tokens of a named tokenizer.

A record's length is the sum over its messages of (content tokens + ``message_overhead``),
so the overhead can stand for a chat template's role tags. Preference pairs count their
longer side. ``action: drop`` removes records over the limit (reason ``too_long``, detail
with the count, the limit and the tokenizer). ``action: truncate`` (SFT only) keeps the
longest prefix that ends on an assistant turn and fits, so a cut never splits a turn or
leaves a question unanswered; the record stays in the mix, so the cut is recorded in the
step's ``info`` (counts, tokens removed) and in ``meta.truncated`` (messages and tokens
before the cut). A record whose first exchange alone is too long is dropped.
"""

from __future__ import annotations

from typing import Literal

import polars as pl
from pydantic import Field

from mixer.infos import SUM
from mixer.meta import with_meta
from mixer.records import kind_of, message_lists, removed_from
from mixer.steps.base import Mapped, Step, StepConfig, StepContext, register
from mixer.token_count import count_tokens, resolve_tokenizer


class MaxTokensConfig(StepConfig):
    max_tokens: int = Field(gt=0)
    tokenizer: str | None = None  # default: the spec's tokenizer
    action: Literal["drop", "truncate"] = "drop"
    message_overhead: int = Field(0, ge=0)
    add_special_tokens: bool = False


def message_costs(frame: pl.DataFrame, column: str, tokenizer: str, overhead: int, special: bool) -> pl.DataFrame:
    """One row per message: ``_i`` (record), ``_p`` (position), ``role``, ``cost``, ``cum``."""
    flat = (
        frame.select(pl.int_range(pl.len()).alias("_i"), pl.col(column))
        .explode(column)
        .with_columns(pl.int_range(pl.len()).over("_i").alias("_p"))
        .unnest(column)
        .filter(pl.col("role").is_not_null() | pl.col("content").is_not_null())
    )
    cost = count_tokens(flat["content"].to_list(), tokenizer, special) + overhead
    return flat.with_columns(pl.Series("cost", cost)).with_columns(pl.col("cost").cum_sum().over("_i").alias("cum"))


@register
class MaxTokens(Step):
    name = "max_tokens"
    Config = MaxTokensConfig
    info_rules = {"dropped": SUM, "truncated": SUM, "tokens_removed": SUM, "truncated_ids": "head:20"}

    def map(self, frame: pl.DataFrame, ctx: StepContext) -> Mapped:
        c: MaxTokensConfig = self.config  # type: ignore[assignment]
        tok = resolve_tokenizer(c.tokenizer or ctx.tokenizer, ctx.spec_dir, "max_tokens")
        if c.action == "truncate" and kind_of(frame) != "sft":
            raise ValueError("max_tokens: action 'truncate' applies to SFT records; preference pairs can only be dropped")
        base = {"tokenizer": tok, "max_tokens": c.max_tokens, "action": c.action}
        if frame.height == 0:
            return Mapped(frame, info={**base, "dropped": 0, "truncated": 0})
        totals = pl.DataFrame({"_i": range(frame.height)}, schema={"_i": pl.Int64})
        costs = {}
        for col in message_lists(frame):
            costs[col] = message_costs(frame, col, tok, c.message_overhead, c.add_special_tokens)
            per = costs[col].group_by("_i").agg(pl.col("cost").sum().alias(col))
            totals = totals.join(per.with_columns(pl.col("_i").cast(pl.Int64)), on="_i", how="left")
        total = pl.max_horizontal([pl.col(col).fill_null(0) for col in costs])
        tagged = frame.with_columns(totals.sort("_i").select(total.alias("_tokens"))["_tokens"], pl.int_range(pl.len()).alias("_i"))
        over = pl.col("_tokens") > c.max_tokens
        if c.action == "truncate":
            return self._truncate(tagged, costs["messages"], c, base)
        detail = pl.format("{} tokens > max_tokens {} ({})", "_tokens", pl.lit(c.max_tokens), pl.lit(tok))
        removed = removed_from(tagged.filter(over), self.name, "too_long", detail)
        return Mapped(tagged.filter(~over).drop("_tokens", "_i"), removed, info={**base, "dropped": removed.height, "truncated": 0})

    def _truncate(self, tagged: pl.DataFrame, costs: pl.DataFrame, c: MaxTokensConfig, base: dict) -> Mapped:
        cut = (
            costs.filter((pl.col("role") == "assistant") & (pl.col("cum") <= c.max_tokens))
            .group_by("_i").agg(pl.col("_p").max().alias("_last"), pl.col("cum").max().alias("_kept_tokens"))
            .with_columns(pl.col("_i").cast(pl.Int64))
        )
        t = tagged.with_columns(pl.col("_i").cast(pl.Int64)).join(cut, on="_i", how="left")
        over = pl.col("_tokens") > c.max_tokens
        drop = over & pl.col("_last").is_null()
        cutting = over & pl.col("_last").is_not_null()
        note = pl.struct(pl.col("messages").list.len().alias("messages"), pl.col("_tokens").alias("tokens")).struct.json_encode()
        kept = t.filter(~drop)
        notes = kept.select(note.alias("_note"), cutting.alias("_cut"))
        kept = with_meta(kept, "truncated", notes["_note"], notes["_cut"]).with_columns(
            pl.when(cutting).then(pl.col("messages").list.head(pl.col("_last") + 1)).otherwise(pl.col("messages")).alias("messages"),
        )
        detail = pl.format("{} tokens > max_tokens {} and the first exchange alone does not fit ({})", "_tokens", pl.lit(c.max_tokens), pl.lit(base["tokenizer"]))
        removed = removed_from(t.filter(drop), self.name, "too_long", detail)
        n_cut = t.filter(cutting)
        info = {
            **base, "dropped": removed.height, "truncated": n_cut.height,
            "tokens_removed": int((n_cut["_tokens"] - n_cut["_kept_tokens"]).sum() or 0),
            "truncated_ids": n_cut["id"].head(20).to_list(),
        }
        return Mapped(kept.drop("_tokens", "_i", "_last", "_kept_tokens"), removed, info=info)
