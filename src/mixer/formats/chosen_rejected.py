"""``chosen_rejected``: generic preference pairs, whatever shape the sides come in.

Each of ``chosen`` / ``rejected`` may be a message list (``[{role, content}]``, keys and
role names configurable), a single message object, or a plain string (one assistant turn).
``prompt`` (optional) may be a string (one user turn) or a message list; it is put in front
of both sides. The result always holds full conversations on both sides; validation then
removes pairs whose prompt turns differ, whose answers are identical, or that do not end on
an assistant turn, each with a reason.
"""

from __future__ import annotations

import polars as pl

from mixer.formats.base import FormatConfig, FormatContext, register_format, require_columns
from mixer.formats.common import turn
from mixer.formats.messages import DEFAULT_ROLE_MAP, convert_turns
from mixer.formats.text_values import as_text, column_text
from mixer.records import empty_removed
from mixer.steps.base import StepResult


class ChosenRejectedConfig(FormatConfig):
    chosen: str = "chosen"
    rejected: str = "rejected"
    prompt: str | None = None
    system: str | None = None  # optional system-prompt column, put first when non-empty
    role_key: str = "role"
    content_key: str = "content"
    role_map: dict[str, str] = {}


def as_messages(raw: pl.DataFrame, column: str, role_key: str, content_key: str, role_map: dict[str, str], text_role: str) -> pl.Expr:
    """A raw column as canonical messages: list of objects, one object, or a string."""
    dtype = raw.schema[column]
    if isinstance(dtype, pl.List):
        return convert_turns(raw, column, role_key, content_key, role_map)
    if isinstance(dtype, pl.Struct):
        fields = {f.name for f in dtype.fields}
        missing = {role_key, content_key} - fields
        if missing:
            raise ValueError(f"column {column!r} objects lack key(s) {sorted(missing)}; they have {sorted(fields)}")
        mapping = {**DEFAULT_ROLE_MAP, **role_map}
        types = {f.name: f.dtype for f in dtype.fields}
        role = as_text(pl.col(column).struct.field(role_key), types[role_key], f"{column}.{role_key}").str.to_lowercase().replace(mapping)
        return pl.concat_list(turn(role, as_text(pl.col(column).struct.field(content_key), types[content_key], f"{column}.{content_key}")))
    return pl.concat_list(turn(text_role, column_text(column)))


def pair_frame(raw: pl.DataFrame, ctx: FormatContext, chosen: pl.Expr, rejected: pl.Expr, meta: pl.Expr | None = None) -> pl.DataFrame:
    return raw.select(
        ctx.id_expr().alias("id"),
        pl.lit(ctx.source).alias("source"),
        chosen.alias("chosen"),
        rejected.alias("rejected"),
        (meta if meta is not None else pl.lit(None, dtype=pl.Utf8)).alias("meta"),
    )


def build_pairs(raw: pl.DataFrame, cfg: ChosenRejectedConfig, ctx: FormatContext, fmt: str, meta: pl.Expr | None = None) -> pl.DataFrame:
    require_columns(raw, [cfg.chosen, cfg.rejected] + [c for c in (cfg.prompt,) if c], fmt)
    args = (cfg.role_key, cfg.content_key, cfg.role_map, "assistant")
    chosen, rejected = as_messages(raw, cfg.chosen, *args), as_messages(raw, cfg.rejected, *args)
    head: list[pl.Expr] = []
    if cfg.system and cfg.system in raw.columns:
        sys = column_text(cfg.system).fill_null("")
        head.append(pl.when(sys.str.strip_chars() != "").then(pl.concat_list(turn("system", sys))).otherwise(pl.concat_list(turn("system", sys)).list.head(0)))
    if cfg.prompt:
        head.append(as_messages(raw, cfg.prompt, cfg.role_key, cfg.content_key, cfg.role_map, "user"))
    if head:
        chosen, rejected = pl.concat_list(*head, chosen), pl.concat_list(*head, rejected)
    return pair_frame(raw, ctx, chosen, rejected, meta)


@register_format("chosen_rejected", ChosenRejectedConfig, kind="preference")
def chosen_rejected(raw: pl.DataFrame, cfg: ChosenRejectedConfig, ctx: FormatContext) -> StepResult:
    return StepResult(build_pairs(raw, cfg, ctx, "chosen_rejected"), empty_removed())
