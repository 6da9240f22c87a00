"""What Ray workers run on one block: plain polars functions, importable without Ray.

Each op is a small picklable object ``op(frame, offset) -> StepResult`` where ``offset`` is
the position of the block's first row in the whole frame. The ops call the same stage code
as the local engine (``format_source``, ``validate``, ``run_step``), so a row-local stage
gives, block by block, exactly what it gives on the whole frame.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from mixer.engines.base import source_counts
from mixer.engines.ray_frame import from_arrow
from mixer.records import base_id, conform, empty_removed
from mixer.spec import SourceSpec, Spec, StepSpec
from mixer.steps.base import StepContext, StepResult

POS = "_pos"


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
    """The task body: slice the block, run ``op``, return (kept, removed ledger, meta)."""
    frame = from_arrow(table, start, length)
    with driver_dir(cwd):
        res = op(frame, offset)
    kept = res.kept
    meta = {"rows": kept.height, "counts": source_counts(kept) if "source" in kept.columns else {},
            "info": res.info, "nbytes": int(kept.estimated_size()), "node": node_id()}
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
        from mixer.pipeline import format_source

        return format_source(frame, self.src, self.spec if os.getcwd() == self.cwd else portable(self.spec))


@dataclass
class ValidateOp:
    def __call__(self, frame: pl.DataFrame, offset: int) -> StepResult:
        from mixer.validate import validate

        return validate(frame)


@dataclass
class StepOp:
    step: StepSpec
    ctx: StepContext
    cwd: str | None = None

    def __call__(self, frame: pl.DataFrame, offset: int) -> StepResult:
        from mixer.pipeline import run_step

        ctx = self.ctx
        if os.getcwd() != self.cwd and ctx.spec_dir is not None:
            ctx = dataclasses.replace(ctx, spec_dir=ctx.spec_dir.resolve())
        res = run_step(self.step, frame, ctx)
        res.kept = conform(res.kept)
        return res


@dataclass
class DropRows:
    """Remove rows at block-local positions; the ledger rows are made on the driver."""

    local: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __call__(self, frame: pl.DataFrame, offset: int) -> StepResult:
        if len(self.local) == 0:
            return StepResult(frame, empty_removed())
        mask = np.ones(frame.height, dtype=bool)
        mask[self.local] = False
        return StepResult(frame.filter(pl.Series(mask)), empty_removed())


@dataclass
class TakeRows:
    """Keep only rows at block-local positions (to fetch a few whole records)."""

    local: np.ndarray

    def __call__(self, frame: pl.DataFrame, offset: int) -> StepResult:
        return StepResult(frame[self.local], empty_removed())


@dataclass
class Columns:
    """A compact view of some columns plus the global position (for driver-side decisions)."""

    columns: list[str]

    def __call__(self, frame: pl.DataFrame, offset: int) -> StepResult:
        cols = [c for c in self.columns if c in frame.columns]
        out = frame.select(pl.int_range(offset, offset + frame.height, dtype=pl.Int64).alias(POS), *cols)
        return StepResult(out, empty_removed())


# ------------------------------------------------------------------ exact dedup shuffle


@dataclass
class ExactKeys:
    """Map side of exact dedup: ``_pos, id, source, _base, _key`` split by hash of the key."""

    text: str
    lowercase: bool
    partitions: int

    def __call__(self, table: pa.Table, start: int, length: int, offset: int) -> list[pa.Table]:
        from mixer.steps.exact import normalized_key

        frame = from_arrow(table, start, length)
        keyed = frame.select(
            pl.int_range(offset, offset + frame.height, dtype=pl.Int64).alias(POS),
            "id", "source", base_id().alias("_base"),
            normalized_key(frame, self.text, self.lowercase).alias("_key"),
        )
        return split_by_hash(keyed, "_key", self.partitions)


def split_by_hash(frame: pl.DataFrame, column: str, partitions: int) -> list[pa.Table]:
    """``partitions`` tables; rows with equal ``column`` land in the same one."""
    if partitions == 1:
        return [frame.to_arrow()]
    part = frame.select((pl.col(column).hash(seed=7) % partitions).alias("_p"))["_p"].to_numpy()
    return [frame.filter(pl.Series(part == p)).to_arrow() for p in range(partitions)]


def exact_reduce(*parts: pa.Table) -> pa.Table:
    """Reduce side: in each key group the earliest row's base id is kept; every row with
    another base id is a duplicate (copies of a kept record stay, as in ``exact_dedup``)."""
    frames = [from_arrow(p) for p in parts if p.num_rows]
    if not frames:
        return _dups_schema().to_arrow()
    keyed = pl.concat(frames).sort(POS)
    keyed = keyed.with_columns(
        pl.col("_base").first().over("_key").alias("kept_id"), pl.col("source").first().over("_key").alias("kept_source")
    )
    return keyed.filter(pl.col("kept_id") != pl.col("_base")).select(POS, "id", "source", "kept_id", "kept_source").to_arrow()


def _dups_schema() -> pl.DataFrame:
    return pl.DataFrame(schema={POS: pl.Int64, "id": pl.Utf8, "source": pl.Utf8, "kept_id": pl.Utf8, "kept_source": pl.Utf8})
