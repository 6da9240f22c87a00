"""The local engine: every stage runs in this process, batch by batch (the default).

A frame between stages is a ``Parts``: consecutive batches in canonical order, each an
Arrow IPC file in the build's temp folder (``spill/``) once the engine has one (``begin``),
else a polars frame in memory. A stage reads one batch at a time, so the records held are
about ``batch_rows`` x ``threads`` batches, whatever the size of the source.

Steps written as pieces run as ``map`` on every batch (on ``threads`` threads, results
taken in batch order), ``decide`` once on the keys (``reduce``d whenever more than
``key_rows`` of them are held, and spilled to ``spill/`` when the reduce leaves too many;
``decide`` scans them from there) and ``apply`` on every batch. Formats that are row-local
run per batch, the others on the whole source; steps not yet split into pieces
(``Step.splits()`` false) run gathered, on the whole frame. The output does not depend on
``batch_rows`` or ``threads``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import itertools
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mixer.cpus import usable_cpus
from mixer.engines.base import add_counts, source_counts
from mixer.infos import MergeError, format_rules, merge_infos
from mixer.io import Loaded
from mixer.records import conform, detached, empty_records, empty_removed
from mixer.removed_content import with_content
from mixer.removed_parts import RemovedParts, counts_of
from mixer.spec import SourceSpec, Spec, StepSpec
from mixer.stages import check_removed_ids, format_source, make_step
from mixer.steps.base import Step, StepContext, StepResult, fetch_view
from mixer.validate import validate


@dataclass(frozen=True, eq=False)
class View:
    """Rows of a spilled batch, read back by position: what a stage that only drops rows
    kept of the batch (``Step.keeps_rows``), so that it is not written again. ``rows`` are
    increasing positions in the file's batch of ``size`` rows; ``columns`` the ones kept
    (None: all)."""

    path: Path
    rows: np.ndarray
    size: int
    columns: tuple[str, ...] | None = None


Part = pl.DataFrame | Path | View


@dataclass
class Parts:
    """A frame as consecutive batches (files or frames), with its row counts per source."""

    parts: list[Part] = field(default_factory=list)
    rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    kind: str = "sft"

    def batches(self) -> Iterator[pl.DataFrame]:
        for p in self.parts:
            yield read_part(p)


def read_part(p: Part, columns: list[str] | None = None) -> pl.DataFrame:
    """A batch, or only its ``columns`` (a spilled batch reads those alone)."""
    if isinstance(p, Path):
        return pl.read_ipc(p, columns=columns)
    if isinstance(p, View):
        cols = list(columns) if columns is not None else list(p.columns) if p.columns is not None else None
        frame = pl.read_ipc(p.path, columns=cols)
        return (frame.select(cols) if cols is not None else frame)[p.rows]
    return p if columns is None else p.select(columns)


def file_of(p: Part) -> Path | None:
    """The spilled file a batch lives in (a view's is its source batch's)."""
    return p.path if isinstance(p, View) else p if isinstance(p, Path) else None


def rows_kept(batch: pl.DataFrame, kept: pl.DataFrame) -> np.ndarray | None:
    """Positions in ``batch`` of the rows of ``kept``, for a ``kept`` made by dropping rows
    (and columns) of ``batch``: its columns there with the same types, its ids found in
    exactly as many rows. None when it is not such a frame."""
    if "id" not in kept.columns or any(batch.schema.get(c) != t for c, t in kept.schema.items()):
        return None
    if kept.height == batch.height:
        return np.arange(batch.height)
    rows = np.flatnonzero(batch["id"].is_in(kept["id"].implode()).to_numpy())
    return rows if len(rows) == kept.height else None


KEY_BYTES = 160  # a key row held for decide (ids, hashes, band keys), roughly
LEDGER_ROW_BYTES = 160  # a ledger row without text, as held (five strings)
# a stage's ledger rows held before they go to a spill file: larger files gain nothing, and
# at the default budget (4 GiB) an eighth took 512 MB of `sample: {n}`'s 1.27 GB on 25 GB
LEDGER_HELD = 64 * 2**20
RECORD_BYTES = 16_384  # a record in flight in a stage (input, output, temporaries), generously
# how spilled batches are written: uncompressed writes and reads 3-4x faster than lz4 (a
# 32k-record batch: 0.10 s against 0.35 s), at about 1.6x lz4's size and 4x zstd's on disk;
# "auto" writes uncompressed while the spill folder's disk has AUTO_FREE_BYTES free, else zstd
SPILL_COMPRESSION = ("auto", "uncompressed", "lz4", "zstd")
AUTO_FREE_BYTES = 20 * 2**30
# a stage that drops rows reads the rest back from its input's file (``View``) while they are
# at least this share of the file; below it they are written anew (disk: the file is kept)
VIEW_SHARE = 0.5


def parse_memory(text: str | int) -> int:
    """``"4G"``, ``"512M"`` or a number of MiB -> MiB."""
    if isinstance(text, int):
        return text
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
    try:
        return max(1, int(float(t[:-1]) * units[t[-1]])) if t and t[-1] in units else max(1, int(t))
    except ValueError:
        raise ValueError(f"--memory: expected a size such as 4G or 512M, got {text!r}") from None


def default_memory() -> int:
    """A quarter of the machine's memory, at most 4 GiB (MiB)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        total = 8192
    return int(min(4096, max(512, total // 4)))


def default_threads() -> int:
    """Batches in flight at once: the CPUs this process may use, at most 4 (polars and numpy
    release the GIL, so batches overlap; the batch size shrinks to keep the memory)."""
    return min(4, usable_cpus())


class LocalEngine:
    """``memory`` (MiB, or "4G") sizes the batches and the keys held for ``decide``: half for
    keys, a quarter for the batches in flight, an eighth (at most ``LEDGER_HELD``) for a
    stage's ledger rows before they spill; ``batch_rows``/``key_rows``/``ledger_bytes`` override it; ``threads``
    defaults to the CPUs (at most 4). ``spill_compression``: auto (default: uncompressed,
    the fastest, while the disk has room, then zstd), uncompressed, lz4 or zstd (smallest)."""

    name = "local"

    def __init__(self, batch_rows: int | None = None, threads: int | None = None, key_rows: int | None = None, memory: int | str | None = None,
                 ledger_bytes: int | None = None, spill_compression: str = "auto"):
        if spill_compression not in SPILL_COMPRESSION:
            raise ValueError(f"spill compression: expected one of {', '.join(SPILL_COMPRESSION)}, got {spill_compression!r}")
        mb = parse_memory(memory) if memory is not None else default_memory()
        threads = threads if threads is not None else default_threads()
        batch_rows = batch_rows if batch_rows is not None else int(min(65_536, max(1024, mb * 2**20 // 4 // (threads * RECORD_BYTES))))
        key_rows = key_rows if key_rows is not None else int(max(100_000, mb * 2**20 // 2 // KEY_BYTES))
        if batch_rows < 1 or threads < 1 or key_rows < 1:
            raise ValueError("batch_rows, threads and key_rows must be at least 1")
        self.memory_mb = mb
        self.batch_rows = batch_rows
        self.threads = threads
        self.key_rows = key_rows
        self.ledger_bytes = ledger_bytes if ledger_bytes is not None else min(mb * 2**20 // 8, LEDGER_HELD)
        self.spill_compression = spill_compression
        self.spill_dir: Path | None = None
        self._n = itertools.count()

    def begin(self, work_dir: Path) -> None:
        """Spill batches under ``work_dir/spill`` (the build's temp folder) from now on."""
        self.spill_dir = Path(work_dir) / "spill"
        self.spill_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ frames

    def _part(self, frame: pl.DataFrame) -> Part:
        if self.spill_dir is None:
            return frame
        path = self.spill_dir / f"{next(self._n):07d}.arrow"
        frame.write_ipc(path, compression=self._compression())  # type: ignore[arg-type]
        return path

    def _keep(self, src: Part, batch: pl.DataFrame, kept: pl.DataFrame) -> Part:
        """What a stage that only drops rows kept of the batch ``src``: the batch itself when
        nothing went, a ``View`` of its file when rows went (nothing written), else a new
        spilled batch. A view keeps its whole file on disk, so one that would keep less
        than ``VIEW_SHARE`` of it is written instead (a sample of n from a large source
        leaves a small file, not the source's)."""
        rows = rows_kept(batch, kept) if file_of(src) is not None else None
        if rows is None:
            return self._part(kept)
        same_columns = kept.columns == batch.columns
        if same_columns and len(rows) == batch.height:
            return src
        path, size = (src.path, src.size) if isinstance(src, View) else (src, batch.height)
        if len(rows) < VIEW_SHARE * size:
            return self._part(kept)
        if isinstance(src, View):
            return View(path, src.rows[rows], size, src.columns if same_columns else tuple(kept.columns))
        return View(path, rows, size, None if same_columns else tuple(kept.columns))  # type: ignore[arg-type]

    def _compression(self) -> str:
        """How the next spilled file is written (``auto``: by the disk's free space now)."""
        if self.spill_compression != "auto":
            return self.spill_compression
        free = shutil.disk_usage(self.spill_dir).free if self.spill_dir is not None else 0
        return "uncompressed" if free >= AUTO_FREE_BYTES else "zstd"

    def _parts(self, frames: list[pl.DataFrame], kind: str) -> Parts:
        """Batches as a frame (spilled when the engine has a folder)."""
        return _assemble([(self._part(f), f.height, _counts(f)) for f in frames], kind)

    def _split(self, frame: pl.DataFrame, kind: str) -> Parts:
        return self._parts([frame.slice(a, self.batch_rows) for a in range(0, frame.height, self.batch_rows)] or [frame], kind)

    def _pmap(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        """``fn`` over ``items``, results in order (threads overlap polars/numpy kernels)."""
        if self.threads == 1 or len(items) < 2:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(min(self.threads, len(items))) as pool:
            return list(pool.map(fn, items))

    def _imap(self, fn: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
        """``fn`` over ``items``, results in order, ``threads`` items at a time: results are
        taken as they come, never all held."""
        for a in range(0, len(items), self.threads):
            yield from self._pmap(fn, items[a:a + self.threads])

    def _over(self, fn: Callable[[pl.DataFrame], StepResult], frame: Parts, kind: str, drops_rows: bool = False) -> tuple[Parts, Any, list[dict[str, Any]]]:
        """``fn`` on every batch of ``frame``, reading each batch where it runs and spilling
        what it keeps there: (kept, ledger, infos). ``drops_rows``: ``fn`` only drops rows, so
        what it keeps is read back from the input's files (``_keep``), and an input file no
        longer needed is deleted once its output is written (disk holds about one copy)."""
        def one(p: Part) -> tuple[tuple[Part, int, dict[str, int]], pl.DataFrame, dict[str, Any]]:
            batch = read_part(p)
            r = fn(batch)
            out = self._keep(p, batch, r.kept) if drops_rows else self._part(r.kept)
            if drops_rows:
                _replaced(p, out)
            return (out, r.kept.height, _counts(r.kept)), r.removed, r.info

        parts, infos, ledger = [], [], self._ledger()
        for part, removed, info in self._imap(one, frame.parts):
            parts.append(part)
            ledger.add(removed)
            infos.append(info)
        return _assemble(parts, kind), ledger.result(), infos

    def _ledger(self) -> LedgerBuffer:
        return LedgerBuffer(self.spill_dir, self._n, self.ledger_bytes, self._compression)

    # ------------------------------------------------------------------ Engine protocol

    def load(self, src: SourceSpec, spec: Spec) -> Loaded:
        """The source read part by part (``mixer.sources.iter_raw``), each part cut into
        batches and spilled as it comes; URL sources are staged whole first."""
        from mixer.engines.storage import is_url, load_source_anywhere
        from mixer.sources import iter_raw

        if src.load.hub is None and any(is_url(p) for p in src.load.paths):
            parts = iter([load_source_anywhere(src, spec)])
        else:
            parts = iter_raw(src, spec, self.spill_dir)
        batches: list[tuple[Part, int, dict[str, int]]] = []
        removed: list[pl.DataFrame] = []
        inputs: list[dict[str, Any]] = []
        for part in parts:
            for a in range(0, part.raw.height, self.batch_rows):
                b = part.raw.slice(a, self.batch_rows)
                batches.append((self._part(b), b.height, {}))
            removed.append(part.removed)
            inputs.extend(part.inputs)
        frame = _assemble(batches or [(pl.DataFrame(schema={"_row": pl.Int64, "_origin": pl.Utf8}), 0, {})], "raw")
        return Loaded(frame, _concat(removed), inputs)  # type: ignore[arg-type]

    def format(self, raw: Parts, src: SourceSpec, spec: Spec) -> StepResult:
        kind = "preference" if src.format.kind == "preference" else "sft"
        rules = format_rules(src.format.name, src.format.config)
        if rules is not None and len(raw.parts) > 1:
            kept, removed, infos = self._over(lambda b: format_source(b, src, spec), raw, kind)
            try:
                info = merge_infos(infos, rules)
            except MergeError:  # the batches' infos do not add up: format the source whole
                _discard(kept, removed)
            else:
                return _release(raw, StepResult(kept, removed, info))
        res = format_source(pl.concat(list(raw.batches()), how="diagonal_relaxed"), src, spec)
        return _release(raw, StepResult(self._split(res.kept, kind), res.removed, res.info))

    def validate(self, frame: Parts) -> StepResult:
        kept, removed, infos = self._over(validate_batch, frame, frame.kind, drops_rows=True)
        return _release(frame, StepResult(kept, removed, merge_infos(infos, {})))

    def run_step(self, step: StepSpec, frame: Parts, ctx: StepContext) -> StepResult:
        obj = make_step(step)
        if not obj.splits():
            whole = pl.concat(list(frame.batches()), how="vertical_relaxed")
            res = obj.run(whole, ctx)
            check_removed_ids(whole, res.removed, f"{ctx.scope}/{step.name}")
            res.removed = with_content(res.removed, whole)
            return _release(frame, StepResult(self._split(conform(res.kept), frame.kind), res.removed, res.info))
        return _release(frame, self._pieces(obj, frame, ctx))

    def _pieces(self, step: Step, frame: Parts, ctx: StepContext) -> StepResult:
        """One stage of a split step; the ledger lists the rows ``map`` removed, then those
        ``apply`` removed, each in canonical order."""
        ctx = dataclasses.replace(ctx, batches_at_once=self.threads)
        step.prepare(ctx)
        where = f"{ctx.scope}/{step.name}"

        def mapped(p: Part) -> tuple[tuple[Part, int, dict[str, int]], pl.DataFrame, dict[str, Any], pl.DataFrame | None]:
            batch = read_part(p)
            m = step.map(batch, ctx)
            kept = conform(m.kept) if not step.is_global else m.kept
            if m.kept is batch:  # a global step's map usually keeps its batch as it is: the file is reused
                out = p
            elif step.keeps_rows and not step.is_global:
                out = self._keep(p, batch, kept)
            else:
                out = self._part(kept)
            _replaced(p, out)  # read for the last time: disk holds one copy of the stage's batches
            check_removed_ids(batch, m.removed, where)
            return (out, kept.height, _counts(kept)), with_content(m.removed, batch), m.info, m.keys

        # map results are taken as they come: keys are reduced and spilled, ledger rows spilled, past the budget
        ledger = self._ledger()
        outs, infos = [], []
        keys = KeyBuffer(step, ctx, self.key_rows, self.spill_dir, self._n, self._compression)
        for out, gone, minfo, mkeys in self._imap(mapped, frame.parts):
            outs.append(out)
            infos.append(minfo)
            ledger.add(gone)
            if mkeys is not None:
                keys.add(mkeys)
        info = merge_infos(infos, step.info_rules)
        if not step.is_global:
            return StepResult(_assemble(outs, frame.kind), ledger.result(), info)
        parts = [o[0] for o in outs]

        starts = np.cumsum([0] + [o[1] for o in outs])

        def fetch(fn: Callable[[pl.DataFrame], pl.DataFrame], columns: list[str] | None = None,
                  rows: np.ndarray | None = None) -> Iterator[pl.DataFrame]:
            todo = range(len(parts))
            if rows is not None:  # only the batches that hold some of the rows
                cut = np.searchsorted(rows, starts)
                todo = [i for i in todo if cut[i + 1] > cut[i]]
            return self._imap(lambda i: detached(fn(fetch_view(read_part(parts[i], columns), int(starts[i]), None, rows))), list(todo))

        # the keys are handed over (no reference kept here), so decide can free what it has used
        try:
            decision = step.decide(keys.hand_over(), dataclasses.replace(ctx, fetch=fetch, held_rows=self.key_rows), info)
        finally:
            keys.delete()

        def applied(p: Part) -> tuple[tuple[Part, int, dict[str, int]], pl.DataFrame]:
            batch = read_part(p)
            kept, gone = step.apply(batch, decision, ctx)
            check_removed_ids(batch, gone, where)
            kept, gone = conform(kept), with_content(gone, batch)
            out = self._keep(p, batch, kept) if step.keeps_rows else self._part(kept)
            _replaced(p, out)  # read for the last time: the stage's output replaces it
            return (out, kept.height, _counts(kept)), gone

        kept_parts = []
        for out, gone in self._imap(applied, parts):
            kept_parts.append(out)
            ledger.add(gone)
        return StepResult(_assemble(kept_parts, frame.kind), ledger.result(), decision.info)

    def concat(self, frames: list[Parts]) -> Parts:
        parts = [p for f in frames for p in f.parts]
        kinds = {f.kind for f in frames}
        return Parts(parts, sum(f.rows for f in frames), add_counts([f.counts for f in frames]), kinds.pop() if len(kinds) == 1 else "sft")

    def rows(self, frame: Parts) -> int:
        return frame.rows

    def counts(self, frame: Parts) -> dict[str, int]:
        return dict(frame.counts)

    def batches(self, frame: Parts) -> Iterator[pl.DataFrame]:
        """The records, batch by batch in canonical order (for writing the output)."""
        for b in frame.batches():
            if b.height:
                yield b

    def collect(self, frame: Parts) -> pl.DataFrame:
        frames = [b for b in frame.batches() if b.height]
        return pl.concat(frames, how="vertical_relaxed") if frames else empty_records(frame.kind if frame.kind != "raw" else "sft")

    def close(self) -> None:
        return None


def validate_batch(batch: pl.DataFrame) -> StepResult:
    """``mixer.validate`` on one batch, its ledger rows with the records' text."""
    res = validate(batch)
    res.removed = with_content(res.removed, batch)
    return res


def _release(old: Parts, res: StepResult) -> StepResult:
    """Delete the spilled batches of a stage's input that its output does not reuse (the
    pipeline never reads a stage's input again): disk use stays about two copies."""
    keep = {file_of(p) for p in res.kept.parts} if isinstance(res.kept, Parts) else set()
    for p in old.parts:
        path = file_of(p)
        if path is not None and path not in keep:
            path.unlink(missing_ok=True)
    _trim()
    return res


def _trim() -> None:
    """Hand the heap memory freed by a stage back to the system (glibc keeps freed blocks
    below its mmap threshold, up to 32 MB each, which would carry one stage's peak over
    into the next)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc() -> Any:
    try:
        lib = ctypes.CDLL("libc.so.6")
        lib.malloc_trim  # noqa: B018 - glibc only
        lib.mallopt(-8, 2)  # M_ARENA_MAX: batch threads share two heaps instead of one each
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return None
    return lib


_LIBC = _libc()


def _replaced(p: Part, out: Part) -> None:
    """Delete the file of a stage's input batch ``p`` once its output ``out`` is written,
    unless ``out`` still reads from it."""
    path = file_of(p)
    if path is not None and path != file_of(out):
        path.unlink(missing_ok=True)


def _discard(kept: Parts, removed: pl.DataFrame | RemovedParts) -> None:
    """Delete the spilled files of a result that is not used."""
    for p in kept.parts:
        if isinstance(p, Path):
            p.unlink(missing_ok=True)
    if isinstance(removed, RemovedParts):
        removed.discard()


def _counts(frame: pl.DataFrame) -> dict[str, int]:
    return source_counts(frame) if "source" in frame.columns else {}


def _assemble(parts: list[tuple[Part, int, dict[str, int]]], kind: str) -> Parts:
    """A frame from (batch, rows, counts); empty batches are dropped, one kept for an empty frame."""
    keep = [p for p in parts if p[1]] or parts[:1]
    return Parts([p[0] for p in keep], sum(p[1] for p in keep), add_counts([p[2] for p in keep]), kind)


class KeyBuffer:
    """A stage's keys for ``decide`` in canonical order: held while they are at most
    ``key_rows`` (or the step's ``held_keys``), ``reduce``d by the step past that, and
    what the reduce leaves above half the limit goes to an Arrow IPC file in the spill
    folder. ``hand_over`` gives them as one LazyFrame: the files scanned, then the rest."""

    def __init__(self, step: Step, ctx: StepContext, key_rows: int, spill_dir: Path | None, names: Iterator[int],
                 compression: Callable[[], str]):
        self.step, self.ctx, self.key_rows, self.spill_dir, self.names, self.compression = step, ctx, key_rows, spill_dir, names, compression
        self.hint = step.held_keys()
        self.limit = key_rows if self.hint is None else min(key_rows, self.hint)
        self.held: list[pl.DataFrame] = []
        self.n = 0
        self.files: list[Path] = []

    def add(self, keys: pl.DataFrame) -> None:
        self.held.append(detached(keys))
        self.n += keys.height
        if self.n <= self.limit:
            return
        reduced = self.step.reduce(pl.concat(self.held), self.ctx)
        if self.spill_dir is not None and reduced.height > self.limit // 2:
            path = self.spill_dir / f"{next(self.names):07d}.keys.arrow"
            reduced.write_ipc(path, compression=self.compression())  # type: ignore[arg-type]
            self.files.append(path)
            self.held, self.n = [], 0
            return
        self.held, self.n = [reduced], reduced.height
        if self.hint is not None:  # reduce again once the held keys have doubled
            self.limit = min(self.key_rows, max(self.hint, 2 * self.n))

    def hand_over(self) -> pl.LazyFrame:
        """Every key, the buffer keeping no reference to the ones it held."""
        parts = [pl.scan_ipc(f) for f in self.files] + [h.lazy() for h in self.held]
        self.held = []
        return pl.concat(parts) if parts else pl.LazyFrame()

    def delete(self) -> None:
        for f in self.files:
            f.unlink(missing_ok=True)


class LedgerBuffer:
    """A stage's ledger rows in canonical order, held while they are few; past ``budget``
    bytes they go to Arrow IPC files in the spill folder and the stage hands over
    ``RemovedParts`` (counted per source and reason) instead of a frame."""

    def __init__(self, spill_dir: Path | None, names: Iterator[int], budget: int, compression: Callable[[], str]):
        self.spill_dir, self.names, self.budget, self.compression = spill_dir, names, budget, compression
        self.held: list[pl.DataFrame] = []
        self.size = 0
        self.spilled = RemovedParts()

    def add(self, frame: pl.DataFrame) -> None:
        if not frame.height:
            return
        self.held.append(detached(frame))
        # polars' estimate misses most of a string-view column (about 11 bytes a ledger row)
        self.size += max(frame.estimated_size(), frame.height * LEDGER_ROW_BYTES)
        if self.spill_dir is not None and self.size > self.budget:
            self._spill()

    def _spill(self) -> None:
        frame = _concat(self.held)
        path = self.spill_dir / f"{next(self.names):07d}.removed.arrow"  # type: ignore[operator]
        frame.write_ipc(path, compression=self.compression())  # type: ignore[arg-type]
        self.spilled.files.append(path)
        for key, n in counts_of(frame).items():
            self.spilled.counts[key] = self.spilled.counts.get(key, 0) + n
        self.held, self.size = [], 0

    def result(self) -> pl.DataFrame | RemovedParts:
        if not self.spilled.files:
            return _concat(self.held)
        if self.held:
            self._spill()
        return self.spilled


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    frames = [f for f in frames if f.height]
    return pl.concat(frames) if frames else empty_removed()
