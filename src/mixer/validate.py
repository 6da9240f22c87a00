"""Structural checks every record passes after its format: text-typed turns (a value that
was not text, e.g. a number or an image part, carries a not-text marker from
``mixer.json_values`` / ``mixer.formats.text_values`` and is removed as ``wrong_type``
naming the field and type), known roles, no empty turns,
an optional leading system turn, then user/assistant alternation starting with user and
ending with assistant. Preference pairs must also share their prompt turns.

Vectorized: each conversation's roles become a letter string ("SUAUA") checked by regex.
"""

from __future__ import annotations

import polars as pl

from mixer.json_values import NOT_TEXT_PATTERN
from mixer.records import ROLES, kind_of, removed_from
from mixer.steps.base import StepResult

_LETTER = {"system": "S", "user": "U", "assistant": "A"}
_ORDER = r"^S?(UA)+$"


def _not_text(col: str) -> pl.Expr:
    """What the first not-text marker in a message list says (role or content), or null."""
    parts = pl.col(col).list.eval(pl.concat_list(pl.element().struct.field("role"), pl.element().struct.field("content")).explode())
    return parts.list.eval(pl.element().str.extract(NOT_TEXT_PATTERN, 1).drop_nulls()).list.first()


def _problem(col: str) -> pl.Expr:
    """Reason for the first structural problem of a message list column, or null."""
    roles = pl.col(col).list.eval(pl.element().struct.field("role"))
    contents = pl.col(col).list.eval(pl.element().struct.field("content"))
    unknown = roles.list.eval(pl.element().is_in(list(ROLES)).not_() | pl.element().is_null()).list.any()
    empty = contents.list.eval(pl.element().fill_null("").str.strip_chars() == "").list.any()
    letters = roles.list.eval(pl.element().replace_strict(_LETTER, default="?")).list.join("")
    return (
        pl.when(pl.col(col).is_null() | (pl.col(col).list.len() == 0)).then(pl.lit("no_messages"))
        .when(_not_text(col).is_not_null()).then(pl.lit("wrong_type"))
        .when(unknown).then(pl.lit("unknown_role"))
        .when(empty).then(pl.lit("empty_message"))
        .when(~letters.str.contains(_ORDER)).then(pl.lit("role_order"))
        .otherwise(pl.lit(None, dtype=pl.Utf8))
    )


def _detail(col: str) -> pl.Expr:
    roles = pl.col(col).list.eval(pl.element().struct.field("role").fill_null("null"))
    return pl.when(_not_text(col).is_not_null()).then(pl.format("{}: {}", pl.lit(col), _not_text(col))).otherwise(pl.format("{}: roles [{}]", pl.lit(col), roles.list.join(", ")))


def validate(frame: pl.DataFrame) -> StepResult:
    """Split a freshly formatted frame into well-formed records and removed ones."""
    if kind_of(frame) == "sft":
        reason, detail = _problem("messages"), _detail("messages")
    else:
        prompt_c = pl.col("chosen").list.head(pl.col("chosen").list.len() - 1)
        prompt_r = pl.col("rejected").list.head(pl.col("rejected").list.len() - 1)
        same_answer = pl.col("chosen").list.last().struct.field("content") == pl.col("rejected").list.last().struct.field("content")
        reason = (
            pl.when(_problem("chosen").is_not_null()).then(_problem("chosen"))
            .when(_problem("rejected").is_not_null()).then(_problem("rejected"))
            .when(prompt_c != prompt_r).then(pl.lit("prompt_mismatch"))
            .when(same_answer).then(pl.lit("identical_responses"))
            .otherwise(pl.lit(None, dtype=pl.Utf8))
        )
        detail = pl.concat_str([_detail("chosen"), pl.lit("; "), _detail("rejected")])
    tagged = frame.with_columns(reason.alias("_reason"), detail.alias("_detail"))
    bad = tagged.filter(pl.col("_reason").is_not_null())
    kept = tagged.filter(pl.col("_reason").is_null()).drop("_reason", "_detail")
    removed = removed_from(bad, "validate", pl.col("_reason"), pl.col("_detail"))
    return StepResult(kept, removed)
