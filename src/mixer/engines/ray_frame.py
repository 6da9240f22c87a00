"""A frame that lives in a Ray cluster: Arrow blocks in the object store, in canonical order.

A ``Block`` is a view ``(ref, start, length)`` of an Arrow table in the object store, so a
big table (a loaded source) can be cut into many blocks without copying. Block order is
the canonical record order (sources in spec order, then row order); every distributed
stage keeps it, which is what makes the Ray build's output identical to the local one.
The driver holds only the refs, row counts and per-source counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import ray

from mixer.engines.base import add_counts, source_counts
from mixer.records import conform, empty_records


@dataclass(frozen=True)
class Block:
    ref: Any  # ray.ObjectRef[pa.Table]
    start: int
    length: int


@dataclass
class RayFrame:
    blocks: list[Block]
    counts: dict[str, int] = field(default_factory=dict)  # rows per source (the ledger's view)
    kind: str = "sft"  # "sft", "preference" or "raw" (before the format)

    @property
    def rows(self) -> int:
        return sum(b.length for b in self.blocks)

    def offsets(self) -> np.ndarray:
        """Position of each block's first row in the whole frame."""
        return np.concatenate([[0], np.cumsum([b.length for b in self.blocks])[:-1]]).astype(np.int64) if self.blocks else np.zeros(0, np.int64)


def to_arrow(frame: pl.DataFrame) -> pa.Table:
    return frame.to_arrow()


def from_arrow(table: pa.Table, start: int = 0, length: int | None = None) -> pl.DataFrame:
    """A polars view of rows ``start:start+length`` of an Arrow table."""
    if start or (length is not None and length != table.num_rows):
        table = table.slice(start, length)
    out = pl.from_arrow(table, rechunk=False)
    return out.to_frame() if isinstance(out, pl.Series) else out


def put_frame(frame: pl.DataFrame, block_rows: int, kind: str | None = None) -> RayFrame:
    """Ship a driver-side frame into the object store as one table cut into views."""
    ref = ray.put(to_arrow(frame))
    counts = source_counts(frame) if "source" in frame.columns else {}
    return RayFrame(views(ref, frame.height, block_rows), counts, kind or _kind(frame))


def views(ref: Any, rows: int, block_rows: int) -> list[Block]:
    """Consecutive views of at most ``block_rows`` rows (one empty view for an empty table)."""
    if rows == 0:
        return [Block(ref, 0, 0)]
    step = max(1, int(block_rows))
    return [Block(ref, s, min(step, rows - s)) for s in range(0, rows, step)]


def collect(frame: RayFrame, columns: list[str] | None = None) -> pl.DataFrame:
    """The whole frame (or some columns) in this process, in canonical order."""
    tables = ray.get([b.ref for b in frame.blocks])
    parts = []
    for b, t in zip(frame.blocks, tables, strict=True):
        if columns is not None:
            t = t.select(columns)
        parts.append(from_arrow(t, b.start, b.length))
    if not parts:
        return empty_records(frame.kind if frame.kind != "raw" else "sft")
    out = pl.concat(parts, how="vertical_relaxed") if len(parts) > 1 else parts[0]
    return out.rechunk()


def iter_blocks(frame: RayFrame) -> Iterator[pl.DataFrame]:
    """The frame block by block, in canonical order, one block in this process at a time."""
    for b in frame.blocks:
        yield from_arrow(ray.get(b.ref), b.start, b.length)


def collect_records(frame: RayFrame) -> pl.DataFrame:
    return conform(collect(frame))


def concat(frames: list[RayFrame]) -> RayFrame:
    blocks = [b for f in frames for b in f.blocks if b.length] or [b for f in frames for b in f.blocks][:1]
    kinds = {f.kind for f in frames}
    return RayFrame(blocks, add_counts([f.counts for f in frames]), kinds.pop() if len(kinds) == 1 else "sft")


def _kind(frame: pl.DataFrame) -> str:
    if "messages" in frame.columns:
        return "sft"
    if "chosen" in frame.columns:
        return "preference"
    return "raw"


def to_dataset(frame: RayFrame) -> Any:
    """The frame as a ``ray.data.Dataset`` (same blocks, same order), for users who want to
    continue in Ray Data (write to a lake, tokenize, ...) without collecting to the driver."""
    import ray.data

    @ray.remote
    def _slice(table: pa.Table, start: int, length: int) -> pa.Table:
        return table.slice(start, length)

    refs = [_slice.remote(b.ref, b.start, b.length) for b in frame.blocks if b.length]  # views -> own tables
    return ray.data.from_arrow_refs(refs)
