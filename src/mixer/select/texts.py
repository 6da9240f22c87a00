"""What gets embedded: a pool record as its templated conversation, a target example as its
eval-style prompt plus gold answer, rendered the same way so the two are comparable.

``tulu`` is the Tulu 2 training format (``<|user|>\\n...``, assistant turns closed by EOS;
see ``mixer_train.template``), what RDS+ embeds with the base LM. ``plain`` joins the turn texts
with newlines, the natural input of a sentence-embedding model.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from mixer.records import MESSAGES, message_lists

Template = Literal["tulu", "plain"]


def render(messages: pl.Expr, template: Template, eos: str = "") -> pl.Expr:
    """One string per conversation (vectorized over the column)."""
    role = pl.element().struct.field("role")
    content = pl.element().struct.field("content").fill_null("").str.strip_chars()
    if template == "plain":
        return messages.list.eval(content).list.join("\n")
    turn = pl.concat_str(
        [pl.lit("<|"), role, pl.lit("|>\n"), content, pl.when(role == "assistant").then(pl.lit(eos)).otherwise(pl.lit(""))]
    )
    return messages.list.eval(turn).list.join("\n")


def pool_texts(frame: pl.DataFrame, template: Template, eos: str = "") -> list[str]:
    """The text of each record (preference records: the chosen conversation)."""
    col = message_lists(frame)[0]
    return frame.select(render(pl.col(col), template, eos).alias("t"))["t"].to_list()


def target_texts(targets: pl.DataFrame, template: Template, eos: str = "") -> list[str]:
    """``prompt`` (+ ``answer`` when present) of each target, as a user/assistant exchange."""
    user = pl.struct(pl.lit("user").alias("role"), pl.col("prompt").alias("content"))
    asst = pl.struct(pl.lit("assistant").alias("role"), pl.col("answer").alias("content"))
    msgs = (
        pl.when(pl.col("answer").is_null())
        .then(pl.concat_list(user))
        .otherwise(pl.concat_list(user, asst))
        .cast(MESSAGES)
    )
    return targets.select(render(msgs, template, eos).alias("t"))["t"].to_list()


# A rough keyword tagger, only for reports ("did the selection move toward code and math?").
# Code wins over math: code is full of digits and operators.
CODE_RE = (
    r"(?i)```|\bdef \w+\s*\(|\bfunction\s*\w*\s*\(|\bclass \w+\s*[:({]|#include|\bimport \w+|console\.log"
    r"|\bprint\(|\breturn\b.*;|\b(python|javascript|java|c\+\+|c#|sql|html|css|bash|regex|typescript|ruby"
    r"|golang|php|swift|kotlin|programming|program|code|function|algorithm|compile\w*|array)\b"
)
MATH_RE = (
    r"(?i)\b(calculate|compute|solve|equations?|arithmetic|sum of|product of|percent(age)?|probability"
    r"|square root|multipl(y|ied)|divided by|mathemat\w*|algebra\w*|geometr\w*|remainder|how many)\b"
    r"|\d\s*[-+*/×÷^]\s*\d+\s*=\s*-?\d"
)


def topic(frame_text: pl.Expr) -> pl.Expr:
    """``code``, ``math`` or ``other`` per text (keyword heuristic, see CODE_RE / MATH_RE)."""
    return (
        pl.when(frame_text.str.contains(CODE_RE)).then(pl.lit("code"))
        .when(frame_text.str.contains(MATH_RE)).then(pl.lit("math"))
        .otherwise(pl.lit("other"))
    )
