"""Decontamination from records to matches: settings, training segments, chunked query.

``find_matches`` is the whole engine: it builds the eval index once, streams the
training records through it in chunks of bounded size, and returns every
(record, instance) pair that meets the rule, with its coverage.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from mixer.decontam.index import EvalIndex, Settings
from mixer.evalsets import EvalSetSpec
from mixer.records import kind_of
from mixer.steps.base import StepConfig

DEFAULT_N = {"tulu3": 8, "ngram": 13, "exact": 8}


class MatchParams(StepConfig):
    """How to match (shared by the ``decontaminate`` step and the command)."""

    rule: Literal["tulu3", "ngram", "exact"] = Field(
        "tulu3",
        description="tulu3: >threshold of an instance's tokens lie in n-grams one record shares; "
        "ngram: any shared n-gram (GPT-3 style); exact: the whole normalized prompt is contained",
    )
    n: int | None = Field(None, ge=1, le=64, description="n-gram size (default 8 for tulu3/exact, 13 for ngram)")
    threshold: float = Field(0.5, ge=0.0, lt=1.0, description="tulu3: coverage must be above this")
    min_ngrams: int = Field(1, ge=1, description="ngram: shared n-grams needed for a match")
    roles: list[Literal["system", "user", "assistant"]] = Field(default_factory=lambda: ["user"])
    eval_text: Literal["prompt", "answer", "both"] = "prompt"
    short: Literal["contain", "skip"] = Field(
        "contain", description="instances with fewer tokens than n: contained whole in one turn, or skipped"
    )
    short_min_tokens: int = Field(1, ge=1, description="short instances below this many tokens are skipped")
    unicode: bool = Field(True, description="NFKC-normalize non-ASCII text before tokenizing")
    chunk_tokens: int = Field(8_000_000, ge=1000, description="training tokens per chunk (memory bound)")
    threads: int = Field(0, ge=0, description="chunks matched at once (0: one per CPU); memory grows with it")
    dedup: bool = Field(True, description="match each distinct set of checked turns once; identical records share the result")

    @model_validator(mode="after")
    def _check(self) -> MatchParams:
        if self.rule == "exact" and self.eval_text != "prompt":
            raise ValueError("rule 'exact' matches whole prompts: eval_text must be 'prompt'")
        return self

    @property
    def size(self) -> int:
        return self.n or DEFAULT_N[self.rule]

    def settings(self) -> Settings:
        return Settings(n=self.size, short=self.short, short_min=self.short_min_tokens, exact=self.rule == "exact")


@dataclass
class MatchResult:
    pairs: pl.DataFrame  # rec, inst, coverage, n_ngrams, short
    index: EvalIndex
    timings: dict[str, float] = field(default_factory=dict)
    tokens: int = 0
    distinct: int = 0  # records actually tokenized and matched (after dedup)


def message_columns(frame: pl.DataFrame, roles: list[str]) -> list[str]:
    """SFT: messages. Preference: chosen (shared prompt turns), plus rejected when answers count."""
    if kind_of(frame) == "sft":
        return ["messages"]
    return ["chosen"] if set(roles) <= {"user", "system"} else ["chosen", "rejected"]


def segments(frame: pl.DataFrame, roles: list[str]) -> tuple[pl.Series, np.ndarray]:
    """The selected turns of every record (one segment each) and each one's record row."""
    parts = []
    for col in message_columns(frame, roles):
        parts.append(
            frame.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("rec"), pl.col(col).alias("m"))
            .explode("m")
            .filter(pl.col("m").struct.field("role").is_in(roles))
            .select("rec", pl.col("m").struct.field("content").alias("text"))
        )
    seg = pl.concat(parts) if len(parts) > 1 else parts[0]
    return seg["text"], seg["rec"].to_numpy()


def chunk_bounds(frame: pl.DataFrame, roles: list[str], chunk_tokens: int) -> list[tuple[int, int]]:
    """Record ranges holding about ``chunk_tokens`` tokens each (about 5 bytes a token)."""
    cols = message_columns(frame, roles)
    size = pl.sum_horizontal(
        [pl.col(c).list.eval(pl.element().struct.field("content").str.len_bytes()).list.sum().fill_null(0) for c in cols]
    )
    nbytes = frame.select(size.cast(pl.Int64)).to_series().to_numpy()
    csum = np.cumsum(nbytes)
    budget = chunk_tokens * 5
    bounds, a = [], 0
    while a < frame.height:
        base = csum[a - 1] if a else 0
        b = int(np.searchsorted(csum, base + budget, side="right"))
        b = min(max(b, a + 1), frame.height)
        bounds.append((a, b))
        a = b
    return bounds


def find_matches(
    frame: pl.DataFrame, evals: pl.DataFrame, params: MatchParams, index: EvalIndex | None = None, progress: Any = True
) -> MatchResult:
    """Every (record row, eval row) pair meeting ``params.rule``. ``progress``: True (a bar
    for big jobs), False, or a shared rich ``Progress`` to add a task to."""
    t0 = time.perf_counter()
    if index is None:
        index = EvalIndex(evals, params.settings(), params.eval_text, params.unicode)
    timings = {"index_s": time.perf_counter() - t0}
    t1 = time.perf_counter()
    work, groups = distinct_records(frame, params.roles) if params.dedup else (frame, None)
    bounds = chunk_bounds(work, params.roles, params.chunk_tokens) if work.height else []

    def one(ab: tuple[int, int]) -> tuple[pl.DataFrame, int]:
        a, b = ab
        texts, seg_rec = segments(work.slice(a, b - a), params.roles)
        tok = index.vocab.encode(texts, params.unicode)
        return _apply_rule(index.query(tok, seg_rec, rec_offset=a), index, params), len(tok.ids)

    found: list[pl.DataFrame] = []
    n_tokens = 0
    threads = max(1, min(params.threads or os.cpu_count() or 1, len(bounds)))
    with _progress(progress, frame.height > 20_000, len(bounds)) as advance, ThreadPoolExecutor(threads) as pool:
        # polars and numpy release the GIL in their kernels, so chunks overlap on CPUs
        for pairs, k in pool.map(one, bounds):
            found.append(pairs)
            n_tokens += k
            advance()
    if found:
        pairs = pl.concat(found)
    else:
        pairs = _apply_rule(index.query(index.vocab.encode(pl.Series([], dtype=pl.Utf8)), np.zeros(0, np.int64)), index, params)
    if groups is not None:
        pairs = pairs.rename({"rec": "u"}).join(groups, on="u").drop("u").select("rec", *[c for c in pairs.columns if c != "rec"])
    timings["match_s"] = time.perf_counter() - t1
    return MatchResult(pairs=pairs.sort(["rec", "inst"]), index=index, timings=timings, tokens=n_tokens, distinct=work.height)


def distinct_records(frame: pl.DataFrame, roles: list[str]) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Records with distinct checked turns (first of each kind) and ``u -> rec`` for the
    rest; ``None`` when every record is distinct. Exact: grouped on the texts themselves."""
    if frame.height < 2:
        return frame, None
    keys = [
        pl.col(c).list.eval(pl.element().filter(pl.element().struct.field("role").is_in(roles)).struct.field("content").fill_null(""))
        .list.join("\x00")
        for c in message_columns(frame, roles)
    ]
    key = pl.concat_str(keys, separator="\x01") if len(keys) > 1 else keys[0]
    g = (
        frame.select(key.alias("k"))
        .with_row_index("rec")
        .group_by("k", maintain_order=True)
        .agg(pl.col("rec").cast(pl.Int64))
        .drop("k")
    )
    if g.height == frame.height:
        return frame, None
    work = frame[g["rec"].list.first()]
    groups = g.with_row_index("u").with_columns(pl.col("u").cast(pl.Int64)).explode("rec")
    return work, groups


def _apply_rule(pairs: pl.DataFrame, index: EvalIndex, params: MatchParams) -> pl.DataFrame:
    inst_len = pl.Series(index.inst_len).gather(pairs["inst"].cast(pl.Int64)) if pairs.height else pl.Series([], dtype=pl.Int64)
    pairs = pairs.with_columns((pairs["covered"] / inst_len.cast(pl.Float64).clip(1)).clip(0, 1).alias("coverage"))
    if params.rule == "tulu3":
        keep = pl.col("short") | (pl.col("coverage") > params.threshold)
    elif params.rule == "ngram":
        keep = pl.col("short") | (pl.col("n_ngrams") >= params.min_ngrams)
    else:
        keep = pl.lit(True)
    return pairs.filter(keep).select("rec", "inst", pl.col("coverage").cast(pl.Float32), "n_ngrams", "short")


class _progress:
    """Progress over chunks: a task on the build's shared rich Progress when given one
    (a second live display would clash with it), else a bar of our own for big jobs."""

    def __init__(self, progress: Any, big: bool, total: int):
        self.shared = progress if hasattr(progress, "add_task") else None
        self.own = None
        self.enabled = self.shared is not None or (bool(progress) and big)
        self.total = total

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        if self.shared is not None:
            task = self.shared.add_task("decontaminate: chunks", total=self.total, scope="  decontaminate")
            self.task = task
            return lambda: self.shared.advance(task)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.own = Progress("decontaminate", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True)
        self.own.start()
        task = self.own.add_task("chunks", total=self.total)
        return lambda: self.own.advance(task)

    def __exit__(self, *exc):
        if self.shared is not None and self.enabled:
            self.shared.remove_task(self.task)
        if self.own is not None:
            self.own.stop()
        return False


__all__ = ["EvalSetSpec", "MatchParams", "MatchResult", "find_matches", "segments"]
