"""The engine seam: how the pipeline runs its stages, separated from what the stages are.

``mixer.pipeline.build`` decides the order of stages and keeps the ledger; an engine decides
where a stage runs and what a "frame" between stages is. The local engine's frame is a list
of batches spilled to the build's temp folder (``mixer.engines.local.Parts``). The Ray
engine's frame is a list of Arrow blocks in the cluster's object store
(``mixer.engines.ray_frame.RayFrame``); only compact results (counts, the ledger's five
columns, keys) come back to the driver, and workers write the output.

Both engines run the same step pieces (``mixer.steps.base``) and must give the same
mixture, ``removed.parquet`` and ledger for the same spec; a step not yet split into pieces
runs gathered (its whole-frame ``run``) instead of being approximated.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import polars as pl

from mixer.io import Loaded
from mixer.spec import SourceSpec, Spec, StepSpec
from mixer.steps.base import StepContext, StepResult


class EngineError(RuntimeError):
    """The engine could not run a stage (cluster unreachable, a worker failed, ...)."""


@runtime_checkable
class Engine(Protocol):
    """What ``build`` needs from an engine. ``Frame`` is engine-specific (see module doc)."""

    name: str

    def begin(self, work_dir: Path) -> None:
        """The build's temp folder (the local engine spills batches there)."""

    def load(self, src: SourceSpec, spec: Spec) -> Loaded:
        """Raw rows of a source; ``Loaded.raw`` is this engine's frame."""

    def format(self, raw: Any, src: SourceSpec, spec: Spec) -> StepResult:
        """The source's format over its raw frame; ``kept`` is a frame, ``removed`` a polars ledger."""

    def validate(self, frame: Any) -> StepResult:
        """Structural checks (``mixer.validate``)."""

    def run_step(self, step: StepSpec, frame: Any, ctx: StepContext) -> StepResult:
        """One source or mix step; ``kept`` comes back conformed to the record schema."""

    def concat(self, frames: list[Any]) -> Any:
        """Sources in spec order, as one frame (the mix)."""

    def rows(self, frame: Any) -> int: ...

    def counts(self, frame: Any) -> dict[str, int]:
        """Rows per source (sources with no rows are absent, as in the ledger)."""

    def batches(self, frame: Any) -> Iterator[pl.DataFrame]:
        """The records in canonical order, a bounded batch at a time (to write the output).

        An engine whose workers write the output instead has ``write_mixture(frame, folder,
        kind, jsonl) -> mixer.output.Written`` and ``removed_sink(folder, kind)`` (the Ray
        engine), and no ``batches``."""

    def collect(self, frame: Any) -> pl.DataFrame:
        """The frame as one polars DataFrame in this process, in canonical order."""

    def close(self) -> None: ...


def source_counts(frame: pl.DataFrame) -> dict[str, int]:
    """Rows per source of a polars frame, sorted by source; empty frames give ``{}``."""
    if frame.height == 0:
        return {}
    return {s: int(n) for s, n in frame.group_by("source").len().sort("source").iter_rows()}


def add_counts(parts: list[dict[str, int]]) -> dict[str, int]:
    """Sum per-block source counts (keys sorted, zeros dropped, like ``source_counts``)."""
    out: dict[str, int] = {}
    for p in parts:
        for k, v in p.items():
            out[k] = out.get(k, 0) + int(v)
    return {k: out[k] for k in sorted(out) if out[k]}
