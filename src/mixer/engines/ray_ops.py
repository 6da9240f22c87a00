"""What Ray workers run on one block: plain polars functions, importable without Ray.

Each op is a small picklable object ``op(frame, offset) -> StepResult | Mapped`` where
``offset`` is the position of the block's first row in the whole frame. The ops call the
same stage code as the local engine (``format_source``, ``validate``, a step's ``map`` and
``apply``), so no step is written twice.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa

from mixer.engines.base import source_counts
from mixer.engines.ray_frame import from_arrow
from mixer.records import REMOVED_SCHEMA, conform, empty_removed
from mixer.removed_content import with_content
from mixer.spec import SourceSpec, Spec
from mixer.steps.base import Decision, Mapped, Step, StepContext, StepResult, fetch_view


@contextmanager
def driver_dir(cwd: str | None) -> Iterator[None]:
    """Run in the driver's working directory when this node has it, so that relative paths
    (spec roots, ``_origin`` strings, ledger details) read exactly as in a local build."""
    here = os.getcwd()
    moved = bool(cwd) and cwd != here and os.path.isdir(cwd)  # type: ignore[arg-type]
    if moved:
        os.chdir(cwd)  # type: ignore[arg-type]
    try:
        yield
    finally:
        if moved:
            os.chdir(here)


def run_block(op: Any, table: pa.Table, start: int, length: int, offset: int, cwd: str | None = None) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """The task body: slice the block, run ``op``, return (kept, removed ledger, meta).

    The ledger (with the removed records' text) stays in the object store for the task that
    writes ``removed.parquet``; ``meta["ledger"]`` carries its five compact columns (ids,
    sources, reasons, details) for the driver's counts."""
    frame = from_arrow(table, start, length)
    with driver_dir(cwd):
        res = op(frame, offset)
    kept = res.kept
    meta = {"rows": kept.height, "counts": source_counts(kept) if "source" in kept.columns else {},
            "info": res.info, "nbytes": int(kept.estimated_size()), "node": node_id(),
            "ledger": res.removed.select(list(REMOVED_SCHEMA)).to_arrow()}
    keys = getattr(res, "keys", None)
    if keys is not None:
        meta["keys"] = keys.to_arrow()
    return kept.to_arrow(), res.removed.to_arrow(), meta


def node_id() -> str | None:
    """The Ray node running this task (None outside Ray): lets tests see work was spread."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except ImportError:  # pragma: no cover - ops also run without Ray
        return None


def load_task(src: SourceSpec, spec: Spec, cwd: str | None = None) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """Read one source where the task runs (the files must be visible there)."""
    from mixer.engines.storage import load_source_anywhere

    with driver_dir(cwd):
        loaded = load_source_anywhere(src, spec if os.getcwd() == cwd else portable(spec))
    meta = {"rows": loaded.raw.height, "inputs": loaded.inputs, "nbytes": int(loaded.raw.estimated_size())}
    return loaded.raw.to_arrow(), loaded.removed.to_arrow(), meta


def portable(spec: Spec) -> Spec:
    """The spec with an absolute root, for nodes that lack the driver's working directory."""
    return dataclasses.replace(spec, root=spec.root.resolve())


@dataclass
class FormatOp:
    src: SourceSpec
    spec: Spec
    cwd: str | None = None

    def __call__(self, frame: pl.DataFrame, offset: int) -> StepResult:
        from mixer.stages import format_source

        return format_source(frame, self.src, self.spec if os.getcwd() == self.cwd else portable(self.spec))


@dataclass
class ValidateOp:
    def __call__(self, frame: pl.DataFrame, offset: int) -> StepResult:
        from mixer.engines.local import validate_batch

        return validate_batch(frame)


def _ctx_here(ctx: StepContext, cwd: str | None) -> StepContext:
    if os.getcwd() != cwd and ctx.spec_dir is not None:
        return dataclasses.replace(ctx, spec_dir=ctx.spec_dir.resolve())
    return ctx


@dataclass
class MapOp:
    """A step's ``map`` on one block (the step comes prepared from the driver)."""

    step: Step
    ctx: StepContext
    cwd: str | None = None

    def __call__(self, frame: pl.DataFrame, offset: int) -> Mapped:
        m = self.step.map(frame, _ctx_here(self.ctx, self.cwd))
        if not self.step.is_global:
            m.kept = conform(m.kept)
        m.removed = with_content(m.removed, frame)
        return m


@dataclass
class ApplyOp:
    """A step's ``apply`` on one block, with the driver's decision."""

    step: Step
    decision: Decision
    ctx: StepContext
    cwd: str | None = None

    def __call__(self, frame: pl.DataFrame, offset: int) -> StepResult:
        kept, removed = self.step.apply(frame, self.decision, _ctx_here(self.ctx, self.cwd))
        return StepResult(conform(kept), with_content(removed, frame))


@dataclass
class FetchOp:
    """A step's second pass on one block (``StepContext.fetch``): ``fn(frame)`` as the rows."""

    fn: Any
    columns: list[str] | None = None
    rows: Any = None  # sorted stage positions (numpy), or None for every row

    def __call__(self, frame: pl.DataFrame, offset: int) -> StepResult:
        return StepResult(self.fn(fetch_view(frame, offset, self.columns, self.rows)), empty_removed())
