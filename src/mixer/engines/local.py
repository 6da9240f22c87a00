"""The local engine: every stage runs in this process on polars frames (the default).

It is the reference the other engines are checked against. Steps written as pieces run
batch by batch: ``map`` on every batch (on ``threads`` threads, results taken in batch
order), ``decide`` once on the keys (``reduce``d whenever more than ``key_rows`` of them
are held), ``apply`` on every batch. The output does not depend on ``batch_rows`` or
``threads``. Steps not yet split (``Step.splits()`` false) run on the whole frame.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import polars as pl

from mixer.engines.base import source_counts
from mixer.infos import merge_infos
from mixer.io import Loaded
from mixer.records import conform, empty_records, empty_removed
from mixer.spec import SourceSpec, Spec, StepSpec
from mixer.stages import check_removed_ids, format_source, make_step
from mixer.steps.base import Step, StepContext, StepResult
from mixer.validate import validate

T = TypeVar("T")
R = TypeVar("R")


class LocalEngine:
    name = "local"

    def __init__(self, batch_rows: int = 65_536, threads: int = 1, key_rows: int = 4_000_000):
        if batch_rows < 1 or threads < 1 or key_rows < 1:
            raise ValueError("batch_rows, threads and key_rows must be at least 1")
        self.batch_rows = batch_rows
        self.threads = threads
        self.key_rows = key_rows

    def load(self, src: SourceSpec, spec: Spec) -> Loaded:
        from mixer.engines.storage import load_source_anywhere

        return load_source_anywhere(src, spec)

    def format(self, raw: pl.DataFrame, src: SourceSpec, spec: Spec) -> StepResult:
        return format_source(raw, src, spec)

    def validate(self, frame: pl.DataFrame) -> StepResult:
        return validate(frame)

    def run_step(self, step: StepSpec, frame: pl.DataFrame, ctx: StepContext) -> StepResult:
        obj = make_step(step)
        if obj.splits():
            res = run_pieces(obj, batches(frame, self.batch_rows), ctx, self._map, self.key_rows)
        else:
            res = obj.run(frame, ctx)
        check_removed_ids(frame, res.removed, f"{ctx.scope}/{step.name}")
        res.kept = conform(res.kept)
        return res

    def _map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``fn`` over ``items``, results in order (threads overlap polars/numpy kernels)."""
        items = list(items)
        if self.threads == 1 or len(items) < 2:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(min(self.threads, len(items))) as pool:
            return list(pool.map(fn, items))

    def concat(self, frames: list[pl.DataFrame]) -> pl.DataFrame:
        return pl.concat(frames, how="vertical") if frames else empty_records()

    def rows(self, frame: pl.DataFrame) -> int:
        return frame.height

    def counts(self, frame: pl.DataFrame) -> dict[str, int]:
        return source_counts(frame)

    def collect(self, frame: pl.DataFrame) -> pl.DataFrame:
        return frame

    def close(self) -> None:
        return None


def batches(frame: pl.DataFrame, rows: int) -> list[pl.DataFrame]:
    """Consecutive slices of at most ``rows`` rows (one empty batch for an empty frame)."""
    if frame.height == 0:
        return [frame]
    return [frame.slice(a, rows) for a in range(0, frame.height, rows)]


def run_pieces(step: Step, parts: list[pl.DataFrame], ctx: StepContext, pmap: Callable[[Callable[[Any], Any], list[Any]], list[Any]] = lambda f, xs: [f(x) for x in xs],
               key_rows: int = 4_000_000) -> StepResult:
    """One stage of a split step over batches in canonical order; the ledger lists the
    rows ``map`` removed, then those ``apply`` removed, each in canonical order."""
    step.prepare(ctx)
    mapped = pmap(lambda b: step.map(b, ctx), parts)
    info = merge_infos([m.info for m in mapped], step.info_rules)
    removed = [m.removed for m in mapped if m.removed.height]
    if step.is_global:
        held: list[pl.DataFrame] = []
        n = 0
        for m in mapped:
            if m.keys is None:
                continue
            held.append(m.keys)
            n += m.keys.height
            if n > key_rows:
                held = [step.reduce(pl.concat(held), ctx)]
                n = held[0].height
        keys = pl.concat(held) if held else pl.DataFrame()

        def fetch(fn: Callable[[pl.DataFrame], pl.DataFrame]) -> pl.DataFrame:
            return pl.concat(pmap(fn, [m.kept for m in mapped]), how="vertical_relaxed")

        decision = step.decide(keys, dataclasses.replace(ctx, fetch=fetch), info)
        applied = pmap(lambda m: step.apply(m.kept, decision, ctx), mapped)
        kept = [k for k, _ in applied]
        removed += [r for _, r in applied if r.height]
        info = decision.info
    else:
        kept = [m.kept for m in mapped]
    return StepResult(pl.concat(kept, how="vertical_relaxed") if len(kept) > 1 else kept[0],
                      pl.concat(removed) if removed else empty_removed(), info)
