"""What a step is: a typed config and up to three pieces an engine schedules.

- ``map(batch) -> Mapped(kept, removed, keys, info)``: per batch, on any worker;
- ``decide(keys) -> Decision``: once per stage, on the compact keys of every batch in
  canonical order (ids, hashes, ranks, matches; never whole records), as a LazyFrame: the
  local engine spills keys past its budget to disk and hands them over as a scan, so a
  step collects only the columns (or, by hash partition, the rows) it needs at once;
- ``apply(batch, decision) -> (kept, removed)``: per batch again.

Row-local steps have only ``map``. ``run`` is the one-batch schedule of the same pieces,
for callers that hold a whole frame; a step not split (``select``) overrides ``run`` and
leaves ``map`` out, and engines run it gathered. Steps
are registered by the name used in YAML. A step never drops a row without a ledger row;
the pipeline checks ``rows in = kept + removed`` per source after each one.
See docs/streaming.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from mixer.cpus import usable_cpus
from mixer.records import empty_removed, removed_from


class StepConfig(BaseModel):
    """Base for step parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """A random stream derived from (seed, names): changing one source never moves another."""
    digest = hashlib.sha256(repr((int(seed),) + tuple(names)).encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


@dataclass
class StepContext:
    """What a step may know beyond its frame."""

    seed: int = 0
    source_order: list[str] = field(default_factory=list)  # spec order, for keep policies
    work_dir: Path | None = None  # build folder under construction (caches, side files)
    tokenizer: str | None = None  # spec-level tokenizer name/path for counting, if any
    spec_dir: Path | None = None  # folder of the spec file (relative paths resolve here)
    scope: str = "mix"  # "mix" or the source name for per-source steps
    progress: Any = None  # mixer.progress.Progress or None
    artifacts: dict[str, Any] = field(default_factory=dict)  # step -> JSON-able info for the manifest
    # batches the engine maps at the same time: a step with threads of its own uses its
    # share of the CPUs (``threads_for``), not all of them per batch
    batches_at_once: int = 1
    # set by the engine while ``decide`` runs: ``fetch(fn, columns=None, rows=None)`` runs
    # ``fn(batch) -> frame`` over every batch of the stage (a second pass, e.g. for a few named
    # rows; only ``columns`` of each batch when given, which a spilled batch reads alone;
    # only the ``rows`` of the stage, sorted positions in the order of ``map``'s keys, when
    # given, and batches without any are skipped) and yields the frames in batch order as
    # they come (``fetched`` joins them into one); ``fetch_view`` is what each batch gives
    fetch: Callable[..., Iterator[pl.DataFrame]] | None = None
    # key rows ``decide`` may hold at once (the engine's budget): a step that groups its
    # keys works through them by hash partitions of about this many rows; None: no bound
    held_rows: int | None = None

    def rng(self, *names: str) -> np.random.Generator:
        return rng_for(self.seed, self.scope, *names)

    def source_rank(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.source_order)}


def threads_for(ctx: StepContext, configured: int | None = None) -> int:
    """Threads for a step's own work on one batch: the configured number, else the CPUs
    shared among the batches the engine runs at once."""
    return configured or max(1, usable_cpus() // max(1, ctx.batches_at_once))


def fetch_view(batch: pl.DataFrame, offset: int, columns: list[str] | None = None, rows: np.ndarray | None = None) -> pl.DataFrame:
    """What ``StepContext.fetch`` hands its function for the batch starting at row ``offset``
    of the stage: the batch's rows among ``rows`` (sorted stage positions; all when None),
    only ``columns`` (all when None). One definition for every engine."""
    if rows is not None:
        lo, hi = np.searchsorted(rows, [offset, offset + batch.height])
        batch = batch[rows[lo:hi] - offset]
    return batch if columns is None else batch.select(columns)


def key_partitions(keys: pl.LazyFrame, column: str, ctx: StepContext) -> Iterator[pl.DataFrame]:
    """``keys`` collected a hash partition at a time (by an integer hash ``column``), each
    at most about ``ctx.held_rows`` rows and in canonical order: rows that share the column's
    value are in one partition. One partition when there is no bound or the keys fit it."""
    rows = keys.select(pl.len()).collect().item()
    parts = max(1, -(-rows // ctx.held_rows)) if ctx.held_rows else 1
    if parts == 1:
        yield keys.collect()
        return
    for p in range(parts):
        yield keys.filter(pl.col(column) % parts == p).collect(engine="streaming")


def fetched(frames: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """The frames of a ``StepContext.fetch`` pass as one (empty when there were none)."""
    frames = list(frames)
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


@dataclass
class StepResult:
    kept: pl.DataFrame
    removed: pl.DataFrame = field(default_factory=empty_removed)
    info: dict[str, Any] = field(default_factory=dict)  # JSON-able summary for manifest.json


@dataclass
class Mapped:
    """What ``map`` returns for one batch."""

    kept: pl.DataFrame
    removed: pl.DataFrame = field(default_factory=empty_removed)
    keys: pl.DataFrame | None = None  # compact columns for ``decide`` (global steps only)
    info: dict[str, Any] = field(default_factory=dict)  # merged over batches by ``info_rules``


@dataclass
class Decision:
    """What ``decide`` returns: ``data`` goes to every ``apply`` (keep it small), ``info``
    to the manifest."""

    data: Any = None
    info: dict[str, Any] = field(default_factory=dict)


class Step:
    """Subclass, set ``name`` and ``Config``, implement ``map`` (and ``decide``/``apply``
    for a global step, with ``is_global`` true); decorate with ``@register``."""

    name: ClassVar[str]
    Config: ClassVar[type[StepConfig]] = StepConfig
    scopes: ClassVar[tuple[str, ...]] = ("source", "mix")  # where the step may appear
    # how per-batch ``Mapped.info`` dicts add up (``mixer.infos.merge_infos`` rules)
    info_rules: ClassVar[dict[str, str]] = {}
    # what ``apply`` keeps (``map``, for a step that is not global) is rows of its batch as
    # they were, less columns this step's ``map`` added: the local engine then reads them
    # back from the batch's spilled file instead of writing them again
    keeps_rows: ClassVar[bool] = False

    def __init__(self, config: StepConfig):
        self.config = config

    @property
    def is_global(self) -> bool:
        """Whether the step needs ``decide``/``apply`` after ``map``."""
        return False

    @classmethod
    def splits(cls) -> bool:
        """Whether the step is written as pieces (else engines run ``run`` on the whole input)."""
        return cls.map is not Step.map

    def prepare(self, ctx: StepContext) -> None:
        """Build what every batch shares (an eval index), once, before the first ``map``;
        engines call it where the stage is planned and ship the prepared step to workers."""

    def map(self, batch: pl.DataFrame, ctx: StepContext) -> Mapped:  # pragma: no cover
        raise NotImplementedError

    def reduce(self, keys: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        """Shrink accumulated keys without changing what ``decide`` concludes (default: keep all)."""
        return keys

    def held_keys(self) -> int | None:
        """Key rows worth holding before ``reduce`` runs, for a step whose ``reduce`` shrinks
        them to a few (a sample of n); None: the engine's memory budget decides."""
        return None

    def decide(self, keys: pl.LazyFrame, ctx: StepContext, info: dict[str, Any]) -> Decision:  # pragma: no cover
        """``keys``: every batch's keys in canonical order (no columns when no batch reached
        the step); ``info``: the batches' ``Mapped.info`` merged; ``Decision.info`` is the stage's."""
        raise NotImplementedError

    def apply(self, batch: pl.DataFrame, decision: Decision, ctx: StepContext) -> tuple[pl.DataFrame, pl.DataFrame]:  # pragma: no cover
        raise NotImplementedError

    def run(self, frame: pl.DataFrame, ctx: StepContext) -> StepResult:
        """The whole frame as one batch: map, then decide and apply for a global step."""
        self.prepare(ctx)
        m = self.map(frame, ctx)
        if not self.is_global:
            return StepResult(m.kept, m.removed, m.info)
        whole = dataclasses.replace(ctx, fetch=lambda fn, columns=None, rows=None: iter([fn(fetch_view(m.kept, 0, columns, rows))]))
        d = self.decide((m.keys if m.keys is not None else pl.DataFrame()).lazy(), whole, m.info)
        kept, removed = self.apply(m.kept, d, ctx)
        ledger = pl.concat([m.removed, removed]) if m.removed.height else removed
        return StepResult(kept, ledger, d.info)


@dataclass
class Lookup:
    """A decision table found by one key column (an id, a base id): the keys' 64-bit hashes
    are sorted once, in ``decide``, and each batch finds its rows by binary search. Hashing
    the table again for every batch (``is_in``, a join) cost 0.4 s per 8k-row batch against
    3M listed ids: most of a 10M-record stage. Hits are confirmed on the keys themselves."""

    table: pl.DataFrame  # in the order of its keys' hashes
    key: str
    hashes: np.ndarray

    @classmethod
    def of(cls, table: pl.DataFrame, key: str) -> Lookup:
        h = table[key].hash().to_numpy() if table.height else np.zeros(0, np.uint64)
        order = np.argsort(h, kind="stable")
        return cls(table[order] if table.height else table, key, h[order])

    def find(self, keys: pl.Series) -> np.ndarray:
        """The table row of each key, -1 where it is not in the table."""
        at = np.full(len(keys), -1, np.int64)
        if not len(self.hashes) or not len(keys):
            return at
        h = keys.hash().to_numpy()
        pos = np.minimum(np.searchsorted(self.hashes, h), len(self.hashes) - 1)
        cand = np.flatnonzero(self.hashes[pos] == h)
        same = (self.table[self.key].gather(pos[cand]) == keys.gather(cand)).to_numpy()
        at[cand[same]] = pos[cand[same]]
        column = self.table[self.key]
        for i in cand[~same]:  # another key with the same hash (all but never): the rest of its run
            j = int(pos[i]) + 1
            while j < len(self.hashes) and self.hashes[j] == h[i]:
                if column[j] == keys[int(i)]:
                    at[i] = j
                    break
                j += 1
        return at

    def rows(self, at: np.ndarray) -> pl.DataFrame:
        """The table's rows at ``at`` (found positions), without the key column."""
        return self.table.drop(self.key)[at]


def remove_listed(batch: pl.DataFrame, listed: Lookup, step: str, reason: str | pl.Expr, detail: pl.Expr) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The usual ``apply``: rows of ``batch`` whose id is in ``listed`` (a decision table
    keyed by ``id``; ``reason``/``detail`` may read its columns) leave with a ledger row, in
    batch order; the others stay."""
    if batch.height == 0:
        return batch, empty_removed()
    at = listed.find(batch["id"])
    hit = at >= 0
    if not hit.any():
        return batch, empty_removed()
    mask = pl.Series(hit)
    gone = pl.concat([batch.filter(mask).select("id", "source"), listed.rows(at[hit]).drop("source", strict=False)], how="horizontal")
    return batch.filter(~mask), removed_from(gone, step, reason, detail)


STEPS: dict[str, type[Step]] = {}


def register(cls: type[Step]) -> type[Step]:
    if cls.name in STEPS and STEPS[cls.name] is not cls:
        raise ValueError(f"step {cls.name!r} registered twice")
    STEPS[cls.name] = cls
    return cls


# Built-in steps by YAML name -> module. Only the module a spec names is imported, so a
# build that never selects does not pay for torch, and the error for an unknown name can
# list every step without importing them all.
BUILTIN_STEPS = {
    "keyword_filter": "mixer.steps.keyword",
    "exact_dedup": "mixer.steps.exact",
    "sample": "mixer.steps.sample",
    "max_tokens": "mixer.steps.length",
    "minhash": "mixer.steps.minhash",
    "semantic": "mixer.steps.semantic",
    "decontaminate": "mixer.steps.decontam",
    "select": "mixer.steps.select",
}
# Steps that need an optional extra (``pip install 'mixer[EXTRA]'``).
STEP_EXTRAS = {"semantic": "semantic", "select": "select"}


def get_step(name: str) -> type[Step]:
    import importlib

    if name not in STEPS and name in BUILTIN_STEPS:
        if name in STEP_EXTRAS:
            from mixer.extras import import_feature

            import_feature(STEP_EXTRAS[name], BUILTIN_STEPS[name])
        else:
            importlib.import_module(BUILTIN_STEPS[name])
    try:
        return STEPS[name]
    except KeyError:
        known = sorted(set(STEPS) | set(BUILTIN_STEPS))
        raise KeyError(f"unknown step {name!r}; known: {', '.join(known)}") from None


def load_builtin_steps() -> None:
    """Import every built-in step module (each registers itself)."""
    import importlib

    for mod in BUILTIN_STEPS.values():
        importlib.import_module(mod)


StepFn = Callable[[pl.DataFrame, StepContext], StepResult]
