"""``sharegpt``: ``conversations: [{from, value}]`` with human/gpt roles, optionally split.

human/user -> user, gpt/chatgpt -> assistant, system -> system; other speakers (e.g. bing)
are left as they are and removed by validation with ``unknown_role``. ``drop_speakers:
[system, bing]`` drops a whole conversation that has such a turn (the Tulu V2 rule), with a
ledger row naming the speaker and the turn.

``split: {max_tokens: 4096, tokenizer: ...}`` is the Tulu/Vicuna splitter: an odd trailing
message is dropped; each message costs its token count (with the tokenizer's special
tokens, as the reference counted) + 6; human/gpt pairs are packed greedily into chunks of at
most ``max_tokens``; a single pair over the limit is skipped; a chunk whose roles do not
alternate user/assistant from a user turn is dropped. Chunks get ids ``{source}:{row}.{m}``
with ``m`` the index of their first message, and ``meta`` holds the span and token count.
Unlike the reference, which can silently lose the last pair of a conversation (it only
emits a chunk when the next pair overflows, or at the last pair when it fits), every pair
ends up in a record or in a ledger row (``pair_too_long``, ``role_order``).
"""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from mixer.formats.base import FormatConfig, FormatContext, register_format, require_columns
from mixer.formats.common import format_step, raw_id_meta, removed_rows
from mixer.formats.messages import convert_turns, records_from
from mixer.records import empty_removed, removed_from
from mixer.steps.base import StepResult
from mixer.token_count import count_tokens, resolve_tokenizer


class SplitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_tokens: int = Field(gt=0)
    tokenizer: str | None = None  # default: the spec's tokenizer
    message_overhead: int = Field(6, ge=0)
    add_special_tokens: bool = True


class ShareGPTConfig(FormatConfig):
    column: str = "conversations"
    role_key: str = "from"
    content_key: str = "value"
    role_map: dict[str, str] = {}
    drop_speakers: list[str] = []
    split: SplitConfig | None = None
    id_field: str | None = None  # raw id column copied to meta.raw_id


def pack(costs: list[int], max_tokens: int) -> list[tuple[str, int, int, int]]:
    """Greedy pair packing: ``(kind, start, end, tokens)`` pieces covering every full pair,
    kind ``chunk`` or ``too_long``."""
    n = len(costs) // 2 * 2
    pieces: list[tuple[str, int, int, int]] = []
    start = cur = 0
    for i in range(0, n, 2):
        pair = costs[i] + costs[i + 1]
        if pair > max_tokens:
            if i > start:
                pieces.append(("chunk", start, i, cur))
            pieces.append(("too_long", i, i + 2, pair))
            start, cur = i + 2, 0
            continue
        if cur + pair > max_tokens:
            pieces.append(("chunk", start, i, cur))
            start, cur = i, 0
        cur += pair
    if start < n:
        pieces.append(("chunk", start, n, cur))
    return pieces


def _drop_speakers(raw: pl.DataFrame, cfg: ShareGPTConfig, ctx: FormatContext) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split off conversations that contain a speaker from ``drop_speakers``."""
    if not cfg.drop_speakers:
        return raw, empty_removed()
    speakers = pl.col(cfg.column).list.eval(pl.element().struct.field(cfg.role_key).cast(pl.Utf8).str.to_lowercase())
    hit = speakers.list.eval(pl.element().is_in([s.lower() for s in cfg.drop_speakers]).arg_true()).list.first()
    tagged = raw.with_columns(hit.alias("_hit"), speakers.alias("_speakers"))
    bad = tagged.filter(pl.col("_hit").is_not_null())
    detail = pl.format("speaker '{}' at turn {}", pl.col("_speakers").list.get(pl.col("_hit")), pl.col("_hit"))
    return tagged.filter(pl.col("_hit").is_null()).drop("_hit", "_speakers"), removed_rows(bad, ctx, "sharegpt", "dropped_speaker", detail)


@register_format("sharegpt", ShareGPTConfig)
def sharegpt(raw: pl.DataFrame, cfg: ShareGPTConfig, ctx: FormatContext) -> StepResult:
    require_columns(raw, [cfg.column], "sharegpt")
    raw, dropped = _drop_speakers(raw, cfg, ctx)
    expr = convert_turns(raw, cfg.column, cfg.role_key, cfg.content_key, cfg.role_map)
    if cfg.split is None:
        return StepResult(records_from(raw, ctx, expr, raw_id_meta(raw, cfg.id_field)), dropped)
    kept, removed = split_conversations(raw.select("_row", expr.alias("messages"), *([cfg.id_field] if cfg.id_field in raw.columns else [])), cfg, ctx)
    return StepResult(kept, pl.concat([dropped, removed]))


def split_conversations(frame: pl.DataFrame, cfg: ShareGPTConfig, ctx: FormatContext) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Token-budget splitting. Only the packing is a per-conversation loop, over integer
    costs; slicing messages, the alternation check and ledger rows are polars expressions."""
    sp = cfg.split
    assert sp is not None
    tokenizer = resolve_tokenizer(sp.tokenizer or ctx.tokenizer, ctx.spec_dir, "sharegpt split")
    lengths = frame["messages"].list.len().fill_null(0)
    contents = frame.select(pl.col("messages").list.eval(pl.element().struct.field("content"))).explode("messages")["messages"]
    costs = count_tokens(contents.to_list(), tokenizer, sp.add_special_tokens) + sp.message_overhead
    cols: dict[str, list] = {"_k": [], "_kind": [], "_s": [], "_e": [], "_t": []}
    pos = 0
    for k, n in enumerate(lengths.to_list()):
        for kind, a, b, t in pack(costs[pos : pos + n].tolist() if n else [], sp.max_tokens):
            for key, v in zip(cols, (k, kind, a, b, t), strict=True):
                cols[key].append(v)
        pos += max(n, 1)  # explode keeps one (null) row for an empty list
    pieces = pl.DataFrame(cols, schema={"_k": pl.Int64, "_kind": pl.Utf8, "_s": pl.Int64, "_e": pl.Int64, "_t": pl.Int64})
    base = frame.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("_k"))
    rid = pl.col(cfg.id_field).cast(pl.Utf8) if cfg.id_field in frame.columns else pl.lit(None, dtype=pl.Utf8)
    p = pieces.join(base, on="_k", how="left").with_columns(
        pl.format("{}:{}.{}", pl.lit(ctx.source), "_row", "_s").alias("id"),
        pl.col("messages").list.slice(pl.col("_s"), pl.col("_e") - pl.col("_s")).alias("messages"),
        rid.alias("_rid"),
    )
    letters = pl.col("messages").list.eval(pl.element().struct.field("role").replace_strict({"user": "U", "assistant": "A"}, default="?")).list.join("")
    p = p.with_columns(
        pl.when(pl.col("_kind") == "too_long").then(pl.lit("pair_too_long"))
        .when(~letters.str.contains("^(UA)+$")).then(pl.lit("role_order"))
        .otherwise(pl.lit(None, dtype=pl.Utf8)).alias("_reason")
    )
    span = pl.format("messages {}-{}", "_s", pl.col("_e") - 1)
    roles = pl.col("messages").list.eval(pl.element().struct.field("role").fill_null("null")).list.join(", ")
    detail = pl.when(pl.col("_reason") == "pair_too_long").then(pl.format("{}: {} tokens > max_tokens {}", span, "_t", pl.lit(sp.max_tokens))).otherwise(pl.format("{}: roles [{}]", span, roles))
    good = p.filter(pl.col("_reason").is_null())
    meta = pl.struct(pl.col("_rid").alias("raw_id"), pl.concat_list("_s", "_e").alias("span"), pl.col("_t").alias("tokens")).struct.json_encode()
    kept = good.select("id", pl.lit(ctx.source).alias("source"), "messages", meta.alias("meta"))
    bad = p.filter(pl.col("_reason").is_not_null())
    removed = removed_from(bad.with_columns(pl.lit(ctx.source).alias("source")), format_step("sharegpt"), pl.col("_reason"), detail)
    empty = base.filter(pl.col("_k").is_in(pieces["_k"].implode()).not_())
    n_msgs = pl.format("{} message(s): no user/assistant pair", pl.col("messages").list.len().fill_null(0))
    removed = pl.concat([removed, removed_rows(empty, ctx, "sharegpt", "no_pairs", n_msgs)])
    ctx.info["split"] = {"tokenizer": tokenizer, "max_tokens": sp.max_tokens, "chunks": kept.height, "dropped_trailing_messages": int((lengths % 2).sum())}
    return kept, removed
