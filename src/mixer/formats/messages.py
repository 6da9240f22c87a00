"""``messages``: records that already hold a list of turns, under any key names.

Covers OpenAI-style ``messages: [{role, content}]`` and look-alikes through ``column``,
``role_key``, ``content_key`` and a ``role_map`` (e.g. ``{human: user, gpt: assistant}``).
Roles left unknown after mapping are removed by the pipeline's validation, with a reason.
"""

from __future__ import annotations

import polars as pl

from mixer.formats.base import FormatConfig, FormatContext, register_format, require_columns
from mixer.formats.text_values import as_text
from mixer.records import empty_removed
from mixer.steps.base import StepResult

DEFAULT_ROLE_MAP = {
    "human": "user", "user": "user", "prompter": "user",
    "gpt": "assistant", "chatgpt": "assistant", "assistant": "assistant", "model": "assistant", "bot": "assistant",
    "system": "system",
}


class MessagesConfig(FormatConfig):
    column: str = "messages"
    role_key: str = "role"
    content_key: str = "content"
    role_map: dict[str, str] = {}


def convert_turns(raw: pl.DataFrame, column: str, role_key: str, content_key: str, role_map: dict[str, str]) -> pl.Expr:
    """Expression turning a raw list<struct> column into canonical messages (vectorized)."""
    mapping = {**DEFAULT_ROLE_MAP, **role_map}
    inner = raw.schema[column]
    if not isinstance(inner, pl.List) or not isinstance(inner.inner, pl.Struct):
        raise ValueError(f"column {column!r} must be a list of objects, got {inner}")
    fields = {f.name for f in inner.inner.fields}
    missing = {role_key, content_key} - fields
    if missing:
        raise ValueError(f"turns in column {column!r} lack key(s) {sorted(missing)}; they have {sorted(fields)}")
    types = {f.name: f.dtype for f in inner.inner.fields}
    role = as_text(pl.element().struct.field(role_key), types[role_key], f"{column}[].{role_key}")
    content = as_text(pl.element().struct.field(content_key), types[content_key], f"{column}[].{content_key}")
    return pl.col(column).list.eval(pl.struct(role.str.to_lowercase().replace(mapping).alias("role"), content.alias("content")))


def records_from(raw: pl.DataFrame, ctx: FormatContext, messages: pl.Expr, meta: pl.Expr | None = None) -> pl.DataFrame:
    return raw.select(
        ctx.id_expr().alias("id"),
        pl.lit(ctx.source).alias("source"),
        messages.alias("messages"),
        (meta if meta is not None else pl.lit(None, dtype=pl.Utf8)).alias("meta"),
    )


@register_format("messages", MessagesConfig)
def messages(raw: pl.DataFrame, cfg: MessagesConfig, ctx: FormatContext) -> StepResult:
    require_columns(raw, [cfg.column], "messages")
    expr = convert_turns(raw, cfg.column, cfg.role_key, cfg.content_key, cfg.role_map)
    return StepResult(records_from(raw, ctx, expr), empty_removed())
