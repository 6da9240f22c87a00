"""From per-record lengths to the numbers people judge a mixture by, per source and total.

Percentiles interpolate linearly (numpy's default); "over N" is strictly more than N
tokens of content, a lower bound on what a max length of N truncates (the chat template
adds a few tokens per turn). Turn means are per message of that role (Tulu tables).
"""

from __future__ import annotations

import polars as pl

THRESHOLDS = (2048, 4096, 8192)
QUANTILES = {"p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95}
TOTAL = "total"


def _per_turn(role: str) -> pl.Expr:
    turns, toks = pl.col(f"{role}_turns").sum(), pl.col(f"{role}_tokens").sum()
    return pl.when(turns > 0).then(toks / turns).otherwise(None).alias(f"{role}_turn_tokens_mean")


def aggregations(preference: bool, thresholds: tuple[int, ...] = THRESHOLDS) -> list[pl.Expr]:
    t = pl.col("tokens")
    out = [
        pl.len().cast(pl.Int64).alias("instances"),
        pl.col("rounds").mean().alias("rounds_mean"),
        _per_turn("user"), _per_turn("assistant"), _per_turn("system"),
        t.mean().alias("tokens_mean"),
        *[t.quantile(q, interpolation="linear").alias(f"tokens_{k}") for k, q in QUANTILES.items()],
        t.max().cast(pl.Int64).alias("tokens_max"),
        t.sum().cast(pl.Int64).alias("tokens_sum"),
        *[((t > n).mean() * 100).alias(f"over_{n}_pct") for n in thresholds],
        *[pl.col(f"{r}_tokens").sum().cast(pl.Int64).alias(f"{r}_tokens_sum") for r in ("user", "assistant", "system")],
    ]
    if preference:
        out += [pl.col(f"{c}_tokens").mean().alias(f"{c}_tokens_mean") for c in ("prompt", "chosen", "rejected")]
        out += [pl.col(f"{c}_tokens").sum().cast(pl.Int64).alias(f"{c}_tokens_sum") for c in ("prompt", "chosen", "rejected")]
        # Verbosity bias: the share of pairs whose chosen answer is longer than the rejected one.
        out.append(((pl.col("chosen_tokens") > pl.col("rejected_tokens")).mean() * 100).alias("chosen_longer_pct"))
    return out


def summarize(lengths: pl.DataFrame, order: list[str] | None = None, thresholds: tuple[int, ...] = THRESHOLDS) -> pl.DataFrame:
    """One row per source (in ``order`` when given) and a last row ``total``."""
    aggs = aggregations("chosen_tokens" in lengths.columns, thresholds)
    per = lengths.group_by("source").agg(aggs)
    rank = {s: i for i, s in enumerate(order or [])}
    per = per.with_columns(pl.col("source").replace_strict(rank, default=len(rank), return_dtype=pl.Int64).alias("_o")).sort("_o", "source").drop("_o")
    total = lengths.select(aggs).with_columns(pl.lit(TOTAL).alias("source")).select(per.columns)
    return pl.concat([per, total.cast(per.schema)], how="vertical")


def turn_distribution(lengths: pl.DataFrame) -> dict[str, dict[str, int]]:
    """Per source and total: how many records have k rounds."""
    out: dict[str, dict[str, int]] = {}
    for src, k, n in lengths.group_by("source", "rounds").len().sort("source", "rounds").iter_rows():
        out.setdefault(src, {})[str(k)] = int(n)
    out[TOTAL] = {str(k): int(n) for k, n in lengths.group_by("rounds").len().sort("rounds").iter_rows()}
    return out
