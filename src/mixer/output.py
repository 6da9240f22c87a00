"""Writing a build's records as they are produced, and finding them again.

Records arrive in batches of any size; they are written as parquet with row groups of
exactly ``ROW_GROUP`` rows and shards of ``shard_rows`` rows, so the bytes depend only on
the rows, never on how they were batched (byte-identical rebuilds whatever the engine,
batch size or threads). A build with one shard has ``mixture.parquet``; a bigger one has
``mixture-00000-of-00003.parquet`` ... in order, each listed and hashed in the manifest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from mixer.arrow_out import to_table

ROW_GROUP = 50_000
SHARD_ROWS = 2_000_000
_SHARD = re.compile(r"^mixture(?:-\d{5}-of-\d{5})?\.parquet$")


@dataclass
class Written:
    """What was written of a mixture: file names (shards, then jsonl), rows, rows per source
    and per file."""

    files: list[str]
    rows: int
    counts: dict[str, int]
    file_rows: dict[str, int]


class ShardWriter:
    """Parquet shards ``{stem}.parquet`` or ``{stem}-00000-of-0000N.parquet`` in ``folder``."""

    def __init__(self, folder: Path, stem: str, empty: pl.DataFrame, shard_rows: int | None = SHARD_ROWS, row_group: int = ROW_GROUP):
        """``shard_rows`` None: one file whatever the size."""
        if shard_rows is not None and shard_rows % row_group:
            raise ValueError("shard_rows must be a multiple of row_group")
        self.folder, self.stem = Path(folder), stem
        self.shard_rows, self.row_group = shard_rows, row_group
        self.schema = to_table(empty).schema  # string / list, as ordinary datasets have
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._in_shard = 0
        self.paths: list[Path] = []
        self.rows = 0
        self.counts: dict[str, int] = {}

    def write(self, frame: pl.DataFrame) -> None:
        if frame.height == 0:
            return
        if "source" in frame.columns:
            for s, n in frame.group_by("source").len().iter_rows():
                self.counts[s] = self.counts.get(s, 0) + int(n)
        self.rows += frame.height
        self._pending.append(frame.to_arrow().cast(self.schema))
        self._pending_rows += frame.height
        while self._pending_rows >= self.row_group:
            self._flush(self.row_group)

    def _flush(self, rows: int) -> None:
        table = pa.concat_tables(self._pending)
        head, rest = table.slice(0, rows), table.slice(rows)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows
        if self._writer is None or (self.shard_rows is not None and self._in_shard >= self.shard_rows):
            self._open()
        assert self._writer is not None
        # one contiguous chunk per row group: the writer's page breaks follow the input's
        # chunks, which must not leak into the bytes
        self._writer.write_table(head.combine_chunks(), row_group_size=rows)
        self._in_shard += rows

    def _open(self) -> None:
        if self._writer is not None:
            self._writer.close()
        path = self.folder / f"{self.stem}-{len(self.paths):05d}.parquet.part"
        self.paths.append(path)
        self._writer = pq.ParquetWriter(path, self.schema, compression="zstd", write_statistics=True)
        self._in_shard = 0

    def close(self) -> list[str]:
        """Finish the last shard and give the shards their final names (in order)."""
        if self._pending_rows:
            self._flush(self._pending_rows)
        if self._writer is None:
            self._open()  # no rows: one empty file with the schema
        assert self._writer is not None
        self._writer.close()
        self._writer = None
        n = len(self.paths)
        names = [f"{self.stem}.parquet"] if n == 1 else [f"{self.stem}-{i:05d}-of-{n:05d}.parquet" for i in range(n)]
        for p, name in zip(self.paths, names, strict=True):
            p.rename(self.folder / name)
        self.paths = [self.folder / name for name in names]
        return names


def write_all(batches: Iterable[pl.DataFrame], folder: Path, stem: str, empty: pl.DataFrame, shard_rows: int | None = SHARD_ROWS) -> ShardWriter:
    """Every batch into shards; the writer's ``paths``, ``rows`` and ``counts`` tell what was written."""
    w = ShardWriter(folder, stem, empty, shard_rows)
    for b in batches:
        w.write(b)
    w.close()
    return w


def mixture_files(build: Path, manifest: dict[str, Any] | None = None) -> list[Path]:
    """The mixture's parquet shards of a build folder, in order."""
    build = Path(build)
    names = [n for n in (manifest or {}).get("files", {}) if _SHARD.match(n)]
    if not names:
        names = [p.name for p in build.glob("mixture*.parquet") if _SHARD.match(p.name)]
    return [build / n for n in sorted(names)]


def iter_mixture(build: Path, manifest: dict[str, Any] | None = None, batch_rows: int = ROW_GROUP) -> Iterator[pl.DataFrame]:
    """The mixture batch by batch (at most ``batch_rows`` rows each), in order: a mixture of
    any size in bounded memory."""
    for path in mixture_files(build, manifest):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            yield pl.from_arrow(batch)  # type: ignore[misc]


def read_mixture(build: Path, manifest: dict[str, Any] | None = None) -> pl.DataFrame:
    """The whole mixture as one frame (small builds; stream ``mixture_files`` otherwise)."""
    files = mixture_files(build, manifest)
    if not files:
        raise FileNotFoundError(f"{build}: no mixture parquet file")
    return pl.read_parquet(files) if len(files) > 1 else pl.read_parquet(files[0])
