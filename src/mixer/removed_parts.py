"""A stage's ledger rows spilled to Arrow IPC files by the local engine once they pass its
memory budget, so that a step that removes nearly every record (``sample: {n: 10000}`` of
20M records) never holds its ledger: the pipeline counts the rows per (source, reason) and
copies them into ``removed.parquet`` one file at a time.

``removed_counts`` and ``removed_batches`` read a stage's ledger whether it is a polars
frame (small stages, other engines) or ``RemovedParts``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl


@dataclass
class RemovedParts:
    """Ledger rows as consecutive Arrow IPC files, with their counts per (source, reason)."""

    files: list[Path] = field(default_factory=list)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def height(self) -> int:
        return sum(self.counts.values())

    def batches(self) -> Iterator[pl.DataFrame]:
        for f in self.files:
            yield pl.read_ipc(f)

    def collect(self) -> pl.DataFrame:
        return pl.concat(list(self.batches()), how="vertical_relaxed")

    def discard(self) -> None:
        for f in self.files:
            f.unlink(missing_ok=True)


def counts_of(frame: pl.DataFrame) -> dict[tuple[str, str], int]:
    """Rows per (source, reason) of a ledger frame."""
    if frame.height == 0:
        return {}
    return {(s, r): int(n) for s, r, n in frame.group_by("source", "reason").len().iter_rows()}


def removed_counts(removed: pl.DataFrame | RemovedParts) -> dict[tuple[str, str], int]:
    """Rows per (source, reason), sorted."""
    counts = removed.counts if isinstance(removed, RemovedParts) else counts_of(removed)
    return dict(sorted(counts.items()))


def removed_batches(removed: pl.DataFrame | RemovedParts) -> Iterator[pl.DataFrame]:
    if isinstance(removed, RemovedParts):
        yield from removed.batches()
    elif removed.height:
        yield removed
