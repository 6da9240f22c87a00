"""The Ray engine: the same stages as the local engine, spread over a Ray cluster.

What runs where (``docs/scale-out.md`` has the long version):

- load: one task per source, where the task lands (files must be on shared storage);
- format, validate, row-local steps (``keyword_filter``, ``max_tokens``, ``sample:
  repeat``): one task per block, running the local code on the block;
- ``exact_dedup``: a hash shuffle of the normalized keys (map per block, reduce per
  partition); only (position, id, kept id) of the duplicates come back to the driver;
- ``sample`` (``n``/``fraction``/``by``): the draw needs only ids, sources (and ``meta``
  for ``by``), which come back to the driver; the draw is the local code on them, with the
  same seeded stream, and the kept positions go back out as a filter per block;
- ``minhash`` and ``decontaminate``: see ``ray_minhash`` and ``ray_decontam``;
- anything else: gathered to the driver and run by the local code (exact, not parallel).

A stage is never approximated: when a block-wise result cannot be merged by its declared
rules (``mixer.engines.merge``), the stage is rerun gathered.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import polars as pl
import ray

from mixer.dedup.jaccard import sorted_unique
from mixer.engines import ray_ops as ops
from mixer.engines.base import EngineError, add_counts
from mixer.engines.merge import REPEAT_RULES, ROW_LOCAL_STEPS, MergeError, format_rules, merge_infos
from mixer.engines.ray_frame import (
    Block,
    RayFrame,
    collect,
    collect_records,
    concat,
    from_arrow,
    put_frame,
    views,
)
from mixer.io import Loaded
from mixer.records import conform, empty_removed, removed_from
from mixer.spec import SourceSpec, Spec, StepSpec
from mixer.steps.base import StepContext, StepResult

_run_block = ray.remote(ops.run_block)
_load = ray.remote(ops.load_task)
_exact_reduce = ray.remote(ops.exact_reduce)


@ray.remote
def _run_whole(op: Any, cwd: str | None, starts: list[int], lengths: list[int], *tables: Any) -> tuple[Any, Any, dict[str, Any]]:
    """One task over several blocks concatenated (stages that must see the whole frame)."""
    parts = [from_arrow(t, s, n) for t, s, n in zip(tables, starts, lengths, strict=True)]
    whole = pl.concat(parts, how="vertical_relaxed").rechunk() if len(parts) > 1 else parts[0]
    return ops.run_block(op, whole.to_arrow(), 0, whole.height, 0, cwd)


@ray.remote
def _warm() -> str | None:
    from mixer.formats.base import get_format

    get_format("messages")  # loads the format registry
    return ops.node_id()


@ray.remote
def _map_split(op: Any, table: Any, start: int, length: int, offset: int) -> list[Any]:
    return op(table, start, length, offset)


class RayEngine:
    """Connects to a cluster (``address``) or starts a local Ray instance when none is given."""

    name = "ray"

    def __init__(self, address: str | None = None, block_rows: int | None = None, block_bytes: int = 64 << 20,
                 cpus_per_task: float = 1, partitions: int | None = None, num_cpus: int | None = None,
                 object_store_memory: int | None = None, prefetch: int = 1):
        self.address = address
        self.block_rows = block_rows
        self.block_bytes = block_bytes
        self.cpus_per_task = cpus_per_task
        self.partitions = partitions
        self.num_cpus = num_cpus
        self.object_store_memory = object_store_memory
        self._owns_ray = False
        self._warmed = False
        self._cpus = 0
        self.cwd = os.getcwd()  # tasks run here when their node has it (same relative paths)
        self.timings: dict[str, float] = {}  # seconds per distributed step, for benchmarks
        self.nodes_used: set[str] = set()  # Ray nodes that ran block tasks
        self.stages: list[dict[str, Any]] = []  # wall-clock span of every stage
        self._loads: dict[Any, Any] = {}  # source loads submitted ahead (see _load_source)
        self._loaded: set[str] = set()
        self.prefetch = prefetch
        self._scope = ""

    # ------------------------------------------------------------------ connection

    def connect(self) -> RayEngine:
        if ray.is_initialized():
            self._cpus = int(ray.cluster_resources().get("CPU", 1))
            self._warm_up()
            return self
        env = {"env_vars": {"POLARS_MAX_THREADS": str(max(1, int(self.cpus_per_task)))}}
        kwargs: dict[str, Any] = {"runtime_env": env, "logging_level": "WARNING", "log_to_driver": False}
        try:
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                ray.init(num_cpus=self.num_cpus, object_store_memory=self.object_store_memory, include_dashboard=False, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = self.address or "a new local Ray instance"
            raise EngineError(f"cannot connect to the Ray cluster at {where}: {e}") from None
        self._owns_ray = True
        self._cpus = int(ray.cluster_resources().get("CPU", 1))
        self._warm_up()
        return self

    def _warm_up(self) -> None:
        """Start one worker per CPU and import the stage code there, once, up front: a fixed
        cost (seconds per worker: the step registry imports torch) kept out of the stages."""
        if self._warmed:
            return
        self._warmed = True
        self._scope = "engine"
        with self._timed("warmup"):
            n = max(1, int(self._cpus // max(self.cpus_per_task, 1)))
            _get([_warm.options(num_cpus=self.cpus_per_task, scheduling_strategy="SPREAD").remote() for _ in range(n)])

    def close(self) -> None:
        """Disconnect if this engine connected (the cluster itself keeps running)."""
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
            self._warmed = False
        self._owns_ray = False

    def describe(self) -> dict[str, Any]:
        nodes = [n for n in ray.nodes() if n.get("Alive")] if ray.is_initialized() else []
        return {"name": self.name, "address": self.address or "local", "nodes": len(nodes), "cpus": self._cpus,
                "ray": ray.__version__, "block_rows": self.block_rows, "block_bytes": self.block_bytes}

    # ------------------------------------------------------------------ Engine protocol

    def load(self, src: SourceSpec, spec: Spec) -> Loaded:
        self.connect()
        self._scope = src.name
        with self._timed("load"):
            return self._load_source(src, spec)

    def _load_source(self, src: SourceSpec, spec: Spec) -> Loaded:
        # Sources are read ``prefetch`` ahead: the next ones load while this one goes through
        # its stages (the pipeline asks for them in turn); more would crowd the object store.
        names = list(spec.sources)
        if self._loads.get("key") != (id(spec), spec.hash) or src.name in self._loaded:  # a new build
            self._loads, self._loaded = {"key": (id(spec), spec.hash)}, set()
        at = names.index(src.name) if src.name in names else -1
        for name in [src.name] + names[at + 1 : at + 1 + self.prefetch] if at >= 0 else [src.name]:
            if name not in self._loads and name not in self._loaded:
                s = spec.sources.get(name, src)
                self._loads[name] = _load.options(num_returns=3, num_cpus=self.cpus_per_task).remote(s, spec, self.cwd)
        self._loaded.add(src.name)
        raw_ref, removed_ref, meta_ref = self._loads.pop(src.name)
        meta, removed = _get([meta_ref, removed_ref])
        rows = self._rows_per_block(meta["rows"], meta["nbytes"])
        frame = RayFrame(views(raw_ref, meta["rows"], rows), {src.name: meta["rows"]} if meta["rows"] else {}, "raw")
        return Loaded(frame, from_arrow(removed), meta["inputs"])  # type: ignore[arg-type]

    def format(self, raw: RayFrame, src: SourceSpec, spec: Spec) -> StepResult:
        op = ops.FormatOp(src, spec, self.cwd)
        rules = format_rules(src.format.name, src.format.config)
        with self._timed(f"format:{src.format.name}"):
            if rules is not None and len(raw.blocks) > 1:
                try:
                    return self._map(raw, op, rules, self._kind(src))
                except MergeError:
                    pass
            return self._whole(raw, op, self._kind(src))

    def validate(self, frame: RayFrame) -> StepResult:
        with self._timed("validate"):
            return self._map(frame, ops.ValidateOp(), {}, frame.kind)

    def run_step(self, step: StepSpec, frame: RayFrame, ctx: StepContext) -> StepResult:
        self._scope = ctx.scope
        with self._timed(step.name):
            return self._step(step, frame, ctx)

    @contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        """Wall-clock span of a stage (``stages``), for benchmarks and their projections."""
        t0, w0 = time.perf_counter(), time.time()
        try:
            yield
        finally:
            name = f"{self._scope}/{stage}"
            self.timings[name] = time.perf_counter() - t0
            self.stages.append({"stage": name, "start": w0, "end": time.time(), "driver_rss_mb": _rss_mb()})

    def concat(self, frames: list[RayFrame]) -> RayFrame:
        return concat(frames)

    def rows(self, frame: RayFrame) -> int:
        return frame.rows

    def counts(self, frame: RayFrame) -> dict[str, int]:
        return dict(frame.counts)

    def collect(self, frame: RayFrame) -> pl.DataFrame:
        self._scope = "mix"
        with self._timed("collect"):
            return collect_records(frame)

    # ------------------------------------------------------------------ steps

    def _step(self, step: StepSpec, frame: RayFrame, ctx: StepContext) -> StepResult:
        if step.name in ROW_LOCAL_STEPS and len(frame.blocks) > 1:
            try:
                return self._map(frame, ops.StepOp(step, _remote_ctx(ctx), self.cwd), ROW_LOCAL_STEPS[step.name], frame.kind)
            except MergeError:
                return self._gather(step, frame, ctx)
        if step.name == "sample":
            return self._sample(step, frame, ctx)
        if step.name == "exact_dedup":
            return self._exact(step, frame)
        special = _special(step.name)
        if special is not None:
            return special(self, step, frame, ctx)
        return self._gather(step, frame, ctx)

    def _gather(self, step: StepSpec, frame: RayFrame, ctx: StepContext) -> StepResult:
        """The local code on the whole frame, here on the driver (exact; not distributed)."""
        from mixer.pipeline import run_step

        whole = collect_records(frame)
        res = run_step(step, whole, ctx)
        kept = conform(res.kept)
        return StepResult(put_frame(kept, self._rows_per_block(kept.height, int(kept.estimated_size())), frame.kind), res.removed, res.info)

    def _sample(self, step: StepSpec, frame: RayFrame, ctx: StepContext) -> StepResult:
        from mixer.pipeline import run_step

        cfg = step.config
        if getattr(cfg, "repeat", None) is not None:
            return self._map(frame, ops.StepOp(step, _remote_ctx(ctx), self.cwd), REPEAT_RULES, frame.kind)
        by = getattr(cfg, "by", None)
        cols = ["id", "source"] + (["meta"] if by is not None else []) + ([by] if by not in (None, "id", "source", "meta") else [])
        proxy = self.compact(frame, cols)
        res = run_step(step, proxy, ctx)  # the local draw, same stream, on ids only
        gone = proxy.filter(~pl.col(ops.POS).is_in(res.kept[ops.POS].implode()))
        kept = self._drop(frame, gone[ops.POS].to_numpy(), gone["source"])
        return StepResult(kept, res.removed, res.info)

    def _exact(self, step: StepSpec, frame: RayFrame) -> StepResult:
        cfg = step.config
        blocks, offsets = self._live(frame)
        parts = self._partitions(frame)
        op = ray.put(ops.ExactKeys(cfg.text, cfg.lowercase, parts))
        maps = [
            _map_split.options(num_returns=parts, num_cpus=self.cpus_per_task).remote(op, b.ref, b.start, b.length, int(o))
            for b, o in zip(blocks, offsets, strict=True)
        ]
        maps = [m if isinstance(m, list) else [m] for m in maps]
        reduces = [_exact_reduce.options(num_cpus=self.cpus_per_task).remote(*[m[p] for m in maps]) for p in range(parts)]
        dups = pl.concat([from_arrow(t) for t in _get(reduces)]).sort(ops.POS)
        removed = removed_from(dups, step.name, "exact_duplicate", pl.format("duplicate of {} ({})", "kept_id", "kept_source"))
        pairs = dups.filter(pl.col("source") != pl.col("kept_source")).group_by("kept_source", "source").len().sort("kept_source", "source")
        info = {"duplicates": removed.height, "cross_source": {f"{a} <- {b}": n for a, b, n in pairs.iter_rows()}}
        kept = self._drop(frame, dups[ops.POS].to_numpy(), dups["source"])
        return StepResult(kept, removed, info)

    # ------------------------------------------------------------------ building blocks

    def compact(self, frame: RayFrame, columns: list[str]) -> pl.DataFrame:
        """``_pos`` plus some columns of every record, on the driver."""
        out, _, _ = self._map(frame, ops.Columns(columns), None, "raw", merge=False)
        return collect(out)

    def take(self, frame: RayFrame, positions: np.ndarray) -> pl.DataFrame:
        """Whole records at global ``positions`` (in position order), fetched from their blocks."""
        positions = sorted_unique(np.asarray(positions, dtype=np.int64))
        offsets = frame.offsets()
        which = np.searchsorted(offsets, positions, side="right") - 1
        refs = []
        for i in np.unique(which):
            b = frame.blocks[i]
            local = positions[which == i] - offsets[i]
            k, _, _ = _run_block.options(num_returns=3, num_cpus=self.cpus_per_task).remote(
                ops.TakeRows(local), b.ref, b.start, b.length, int(offsets[i]))
            refs.append(k)
        parts = [from_arrow(t) for t in _get(refs)]
        return pl.concat(parts, how="vertical_relaxed") if parts else collect(RayFrame(frame.blocks[:1], {}, frame.kind)).head(0)

    def _drop(self, frame: RayFrame, positions: np.ndarray, sources: pl.Series) -> RayFrame:
        """Remove rows by global position (``sources``: their sources, for the counts), one
        filter task per block that loses rows; other blocks are reused as they are."""
        order = np.argsort(np.asarray(positions, dtype=np.int64), kind="stable")
        positions = np.asarray(positions, dtype=np.int64)[order]
        if len(positions) == 0:
            return frame
        offsets = frame.offsets()
        which = np.searchsorted(offsets, positions, side="right") - 1
        out: list[Block] = []
        pending: list[tuple[int, Any]] = []
        for i, b in enumerate(frame.blocks):
            local = positions[which == i] - offsets[i]
            if len(local) == 0:
                out.append(b)
                continue
            k, _, m = _run_block.options(num_returns=3, num_cpus=self.cpus_per_task).remote(
                ops.DropRows(local), b.ref, b.start, b.length, int(offsets[i]))
            out.append(Block(k, 0, b.length - len(local)))
            pending.append((i, m))
        _get([m for _, m in pending])  # surface task errors here
        gone = sources.gather(order) if len(sources) else sources
        minus = {s: -int(n) for s, n in gone.value_counts().iter_rows()}
        return RayFrame(_nonempty(out), add_counts([frame.counts, minus]), frame.kind)

    def _map(self, frame: RayFrame, op: Any, rules: dict[str, str] | None, kind: str, merge: bool = True) -> Any:
        """``op`` on every non-empty block; (frame, ledger, info) or, unmerged, (frame, ledger, infos)."""
        self.connect()
        blocks, offsets = self._live(frame)
        op_ref = ray.put(op)
        # Views of one table (a loaded source, a gathered result) sit on one node: spread
        # their tasks over the cluster. Otherwise let Ray run each task where its block is.
        spread = len(blocks) > 1 and len({b.ref for b in blocks}) == 1
        opts = {"num_returns": 3, "num_cpus": self.cpus_per_task, "scheduling_strategy": "SPREAD" if spread else "DEFAULT"}
        outs = [
            _run_block.options(**opts).remote(op_ref, b.ref, b.start, b.length, int(o), self.cwd)
            for b, o in zip(blocks, offsets, strict=True)
        ]
        metas = _get([o[2] for o in outs])
        self.nodes_used.update(m["node"] for m in metas if m.get("node"))
        removed_tables = _get([o[1] for o in outs])
        new = RayFrame([Block(o[0], 0, m["rows"]) for o, m in zip(outs, metas, strict=True)],
                       add_counts([m["counts"] for m in metas]), kind)
        new.blocks = _nonempty(new.blocks)
        removed = [from_arrow(t) for t in removed_tables if t.num_rows]
        ledger = pl.concat(removed) if removed else empty_removed()
        infos = [m["info"] for m in metas]
        if not merge:
            return new, ledger, infos
        info = merge_infos(infos, rules or {})
        return StepResult(new, ledger, info)

    def _whole(self, frame: RayFrame, op: Any, kind: str) -> StepResult:
        """``op`` on the whole frame in one task; its output is cut into views again."""
        self.connect()
        blocks = frame.blocks
        kept_ref, removed_ref, meta_ref = _run_whole.options(num_returns=3, num_cpus=self.cpus_per_task).remote(
            op, self.cwd, [b.start for b in blocks], [b.length for b in blocks], *[b.ref for b in blocks])
        meta, removed = _get([meta_ref, removed_ref])
        out = RayFrame(views(kept_ref, meta["rows"], self._rows_per_block(meta["rows"], meta["nbytes"])), meta["counts"], kind)
        return StepResult(out, from_arrow(removed), meta["info"])

    def _live(self, frame: RayFrame) -> tuple[list[Block], np.ndarray]:
        offsets = frame.offsets()
        keep = [i for i, b in enumerate(frame.blocks) if b.length] or [0][: len(frame.blocks)]
        return [frame.blocks[i] for i in keep], offsets[keep]

    def _rows_per_block(self, rows: int, nbytes: int | None) -> int:
        if self.block_rows:
            return self.block_rows
        self.connect()
        min_blocks = max(1, 2 * self._cpus)
        by_bytes = math.ceil((nbytes or 0) / self.block_bytes)
        n_blocks = max(by_bytes, min(rows, min_blocks), 1)
        return max(1, math.ceil(rows / n_blocks))

    def _partitions(self, frame: RayFrame) -> int:
        return self.partitions or max(1, min(len(frame.blocks), 2 * max(1, self._cpus)))

    @staticmethod
    def _kind(src: SourceSpec) -> str:
        return "preference" if src.format.kind == "preference" else "sft"


def _rss_mb() -> int | None:
    """This process's resident memory now (Linux), to see which stage the driver pays for."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20
    except (OSError, ValueError, IndexError):
        return None


def _nonempty(blocks: list[Block]) -> list[Block]:
    return [b for b in blocks if b.length] or blocks[:1]


def _remote_ctx(ctx: StepContext) -> StepContext:
    """What a step may know on a worker: no build folder (it is on the driver), no progress bar."""
    return dataclasses.replace(ctx, work_dir=None, progress=None, artifacts={})


def _get(refs: Any) -> Any:
    """``ray.get`` that re-raises a task's own exception (with its message), not Ray's wrapper."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise


def _special(name: str) -> Any:
    """Distributed implementations of the heavy mix steps, when their modules are present."""
    if name == "minhash":
        try:
            from mixer.engines.ray_minhash import run_minhash
        except ImportError:
            return None
        return run_minhash
    if name == "decontaminate":
        try:
            from mixer.engines.ray_decontam import run_decontam
        except ImportError:
            return None
        return run_decontam
    return None
