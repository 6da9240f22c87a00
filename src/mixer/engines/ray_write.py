"""A Ray build's outputs, written by workers: the driver sends block refs, never records.

``mixer.output.ShardWriter`` defines the bytes: shards of ``SHARD_ROWS`` rows in row groups
of exactly ``ROW_GROUP`` rows. A shard's rows are known on the driver from the blocks' row
counts alone (shard ``k`` holds rows ``k*SHARD_ROWS`` up to the next multiple), so each
shard is one task that reads the block views it covers from the object store, one at a
time, and writes them with that same writer: the bytes equal the local engine's. The
ledger (``removed.parquet``, one file) is written by one actor, fed the ledger blocks in the
order the stages hand them over; the driver keeps only their compact columns for the counts.

The tasks prefer the driver's node, where the build's temp folder is; a task that lands on
a node without that folder writes to a temp folder of its own and returns the file's bytes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import ray

from mixer.engines.ray_frame import Block, from_arrow
from mixer.output import ShardWriter
from mixer.records import conform, empty_records, empty_removed
from mixer.removed_content import conform_removed


def shard_views(blocks: list[Block], shard_rows: int) -> list[list[Block]]:
    """The block views cut at every multiple of ``shard_rows`` (one list per shard; one
    empty list when there are no rows: an empty shard is still written)."""
    shards: list[list[Block]] = [[]]
    filled = 0
    for b in blocks:
        start, left = b.start, b.length
        while left:
            if filled == shard_rows:
                shards.append([])
                filled = 0
            take = min(left, shard_rows - filled)
            shards[-1].append(Block(b.ref, start, take))
            start, left, filled = start + take, left - take, filled + take
    return shards


def write_file(folder: str, stem: str, kind: str, views: list[Block], row_group: int, jsonl: bool = False) -> dict[str, Any]:
    """Task body: the views, in order, as ``{stem}.parquet`` (and ``{stem}.jsonl``) in ``folder``."""
    here = Path(folder) if os.path.isdir(folder) else Path(tempfile.mkdtemp(prefix="mixer-out-"))
    writer = ShardWriter(here, stem, empty_records(kind), shard_rows=None, row_group=row_group)
    with open(here / f"{stem}.jsonl", "wb") if jsonl else contextlib.nullcontext() as js:
        for v in views:
            frame = conform(from_arrow(ray.get(v.ref), v.start, v.length))
            writer.write(frame)
            if js is not None:
                frame.write_ndjson(js)
    names = writer.close()
    if jsonl:
        names.append(f"{stem}.jsonl")
    meta: dict[str, Any] = {"rows": writer.rows, "counts": writer.counts, "files": names}
    if here != Path(folder):  # this node does not see the build folder: the bytes go back
        meta["bytes"] = {n: (here / n).read_bytes() for n in names}
        shutil.rmtree(here, ignore_errors=True)
    return meta


_write = ray.remote(write_file)


def write_files(folder: Path, jobs: list[tuple[str, str, list[Block], int, bool]], cpus: float) -> list[dict[str, Any]]:
    """Run ``write_file`` for every job, near the driver; put returned bytes in ``folder``."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    near = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    refs = [_write.options(num_cpus=cpus, scheduling_strategy=near).remote(str(folder), *job) for job in jobs]
    metas = ray.get(refs)
    for m in metas:
        for name, data in m.pop("bytes", {}).items():
            (folder / name).write_bytes(data)
    return metas


@ray.remote(num_cpus=0)
class _LedgerWriter:
    """``removed.parquet`` written as the stages hand their ledgers over, in order (an
    actor's calls from one caller run in order), so ledger blocks leave the store early."""

    def __init__(self, folder: str, kind: str, row_group: int):
        self.folder, self.kind = Path(folder), kind
        self.here = self.folder if os.path.isdir(folder) else Path(tempfile.mkdtemp(prefix="mixer-out-"))
        self.writer = ShardWriter(self.here, "removed", conform_removed(empty_removed(), kind), shard_rows=None, row_group=row_group)

    def append(self, views: list[Block]) -> int:
        for v in views:
            self.writer.write(conform_removed(from_arrow(ray.get(v.ref), v.start, v.length), self.kind))
        return sum(v.length for v in views)

    def close(self) -> dict[str, bytes]:
        """The file's bytes when this node does not see the build folder, else nothing."""
        names = self.writer.close()
        if self.here == self.folder:
            return {}
        out = {n: (self.here / n).read_bytes() for n in names}
        shutil.rmtree(self.here, ignore_errors=True)
        return out


class LedgerSink:
    """``removed.parquet`` of a Ray build: the stages' ledgers as they are handed over (their
    compact columns here for the counts; their blocks, with the records' text, go from the
    object store to a writer actor near the driver)."""

    def __init__(self, engine: Any, folder: Path, kind: str, row_group: int):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        near = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        self.engine, self.folder = engine, folder
        self.writer = _LedgerWriter.options(scheduling_strategy=near).remote(str(folder), kind, row_group)
        self.pending: list[Any] = []
        self.by_reason: dict[str, dict[str, int]] = {}
        self.rows = 0

    def append(self, frame: pl.DataFrame) -> None:
        views = self.engine.take_ledger(frame)
        if frame.height == 0:
            return
        for src, reason, n in frame.group_by("source", "reason").len().iter_rows():
            self.by_reason.setdefault(src, {})[reason] = self.by_reason.get(src, {}).get(reason, 0) + int(n)
        self.rows += frame.height
        # a ledger made here (load, a gathered step) goes to the object store as it is
        views = views if views is not None else [Block(ray.put(frame.to_arrow()), 0, frame.height)]
        self.pending.append(self.writer.append.remote(views))

    def close(self) -> None:
        written = sum(ray.get(self.pending))
        if written != self.rows:
            raise RuntimeError(f"the ledger writer wrote {written} rows of {self.rows}")
        for name, data in ray.get(self.writer.close.remote()).items():
            (self.folder / name).write_bytes(data)
        ray.kill(self.writer)
        self.pending = []
        self.by_reason = {s: dict(sorted(r.items())) for s, r in sorted(self.by_reason.items())}
