"""The local engine: every stage runs in this process on polars frames (the default).

It is the reference the other engines are checked against; it only forwards to the stage
functions of ``mixer.pipeline`` so that ``build(spec)`` without an engine behaves exactly
as it always did.
"""

from __future__ import annotations

import polars as pl

from mixer.engines.base import source_counts
from mixer.io import Loaded
from mixer.records import conform, empty_records
from mixer.spec import SourceSpec, Spec, StepSpec
from mixer.steps.base import StepContext, StepResult
from mixer.validate import validate


class LocalEngine:
    name = "local"

    def load(self, src: SourceSpec, spec: Spec) -> Loaded:
        from mixer.engines.storage import load_source_anywhere

        return load_source_anywhere(src, spec)

    def format(self, raw: pl.DataFrame, src: SourceSpec, spec: Spec) -> StepResult:
        from mixer.pipeline import format_source

        return format_source(raw, src, spec)

    def validate(self, frame: pl.DataFrame) -> StepResult:
        return validate(frame)

    def run_step(self, step: StepSpec, frame: pl.DataFrame, ctx: StepContext) -> StepResult:
        from mixer.pipeline import run_step

        res = run_step(step, frame, ctx)
        res.kept = conform(res.kept)
        return res

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
