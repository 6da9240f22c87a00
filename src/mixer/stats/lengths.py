"""Per-record length columns: the one table every statistic, chart and diff is read from.

Counts are of message content only (no chat template, no special tokens), the convention
of the Tulu papers' tables. SFT: per role turns and tokens; ``tokens`` is the sum over all
messages, system included. Preference: the prompt turns are counted once (from
``chosen``), then the final chosen and rejected answers; ``tokens`` is the longer of the
two training sequences, prompt + max(chosen, rejected), which is what a max length cuts.
"""

from __future__ import annotations

import polars as pl

from mixer.records import kind_of
from mixer.stats.count import Progress, TokenCounter

ROLE_COLS = ("system", "user", "assistant")
SFT_COLUMNS = ["id", "source", "messages_n", "rounds", "user_turns", "assistant_turns", "system_turns",
               "user_tokens", "assistant_tokens", "system_tokens", "tokens"]
PREF_COLUMNS = SFT_COLUMNS + ["prompt_tokens", "chosen_tokens", "rejected_tokens"]


def _explode(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """One row per message: record index, position, whether it is the last, role, content."""
    return (
        frame.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("rec"), pl.col(column).alias("m"))
        .with_columns(pl.col("m").list.len().alias("n"))
        .explode("m")
        .drop_nulls("m")
        .with_columns(pl.int_range(pl.len()).over("rec").alias("pos"))
        .select("rec", (pl.col("pos") == pl.col("n") - 1).alias("last"),
                pl.col("m").struct.field("role").alias("role"), pl.col("m").struct.field("content").alias("content"))
    )


def _role_sums() -> list[pl.Expr]:
    out = []
    for role in ROLE_COLS:
        is_role = pl.col("role") == role
        out.append(is_role.sum().cast(pl.Int64).alias(f"{role}_turns"))
        out.append(pl.col("tok").filter(is_role).sum().cast(pl.Int64).alias(f"{role}_tokens"))
    return out


def record_lengths(frame: pl.DataFrame, counter: TokenCounter | None = None, progress: Progress | None = None) -> pl.DataFrame:
    """One row per record of ``frame`` (same order) with its turn and token counts."""
    counter = counter or TokenCounter()
    if kind_of(frame) == "sft":
        return _sft_lengths(frame, counter, progress)
    return _pref_lengths(frame, counter, progress)


def _base(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("rec"), "id", "source")


def _fill(out: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    return out.with_columns([pl.col(c).fill_null(0).cast(pl.Int64) for c in cols if c not in ("id", "source")]).select(cols)


def _sft_lengths(frame: pl.DataFrame, counter: TokenCounter, progress: Progress | None) -> pl.DataFrame:
    msgs = _explode(frame, "messages")
    msgs = msgs.with_columns(pl.Series("tok", counter.count(msgs["content"], progress), dtype=pl.Int64))
    per = msgs.group_by("rec").agg(pl.len().alias("messages_n"), *_role_sums(), pl.col("tok").sum().alias("tokens"))
    out = _base(frame).join(per, on="rec", how="left").sort("rec")
    out = out.with_columns(pl.col("assistant_turns").alias("rounds"))
    return _fill(out, SFT_COLUMNS)


def _pref_lengths(frame: pl.DataFrame, counter: TokenCounter, progress: Progress | None) -> pl.DataFrame:
    chosen = _explode(frame, "chosen")
    rejected = _explode(frame, "rejected").filter(pl.col("last"))
    texts = pl.concat([chosen["content"], rejected["content"]])
    tok = counter.count(texts, progress)
    chosen = chosen.with_columns(pl.Series("tok", tok[: chosen.height], dtype=pl.Int64))
    rejected = rejected.select("rec", pl.Series("rejected_tokens", tok[chosen.height :], dtype=pl.Int64))
    per = chosen.group_by("rec").agg(
        pl.len().alias("messages_n"), *_role_sums(),
        pl.col("tok").filter(~pl.col("last")).sum().alias("prompt_tokens"),
        pl.col("tok").filter(pl.col("last")).sum().alias("chosen_tokens"),
    )
    out = _base(frame).join(per, on="rec", how="left").join(rejected, on="rec", how="left").sort("rec")
    out = _fill(out.with_columns(pl.col("assistant_turns").alias("rounds")), [c for c in PREF_COLUMNS if c != "tokens"] + ["rec"])
    return out.with_columns(
        (pl.col("prompt_tokens") + pl.max_horizontal("chosen_tokens", "rejected_tokens")).alias("tokens")
    ).select(PREF_COLUMNS)


def empty_lengths(kind: str = "sft") -> pl.DataFrame:
    cols = SFT_COLUMNS if kind == "sft" else PREF_COLUMNS
    return pl.DataFrame({c: pl.Series(c, [], dtype=pl.Utf8 if c in ("id", "source") else pl.Int64) for c in cols})


__all__ = ["record_lengths", "empty_lengths", "SFT_COLUMNS", "PREF_COLUMNS"]
