"""The Ray engine: the same stages as the local engine, spread over a Ray cluster.

What runs where (``docs/scale-out.md`` has the long version):

- load: one task per source, where the task lands (files must be on shared storage);
- format: one task per block for row-local formats (``mixer.infos``), else one task;
- validate and every step written as pieces (``mixer.steps.base``): the step is prepared
  on the driver and shipped with each task; ``map`` runs as one task per block, its compact
  keys come back to the driver, which runs ``decide`` and ships the decision to one
  ``apply`` task per block. Steps hold all the logic; this module only schedules;
- other steps not split yet: gathered to the driver and run whole (exact, not parallel);
- output: workers write the mixture shards and the ledger (``ray_write``); the driver
  keeps the ledger's compact columns (ids, sources, reasons, details) for the counts.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import ray

from mixer import output
from mixer.engines import ray_ops as ops
from mixer.engines.base import EngineError, add_counts
from mixer.engines.ray_frame import (
    Block,
    RayFrame,
    collect_records,
    concat,
    from_arrow,
    iter_blocks,
    put_frame,
    views,
)
from mixer.engines.ray_write import LedgerSink, shard_views, write_files
from mixer.infos import MergeError, format_rules, merge_infos
from mixer.io import Loaded
from mixer.output import Written
from mixer.records import conform, empty_removed
from mixer.removed_content import with_content
from mixer.spec import SourceSpec, Spec, StepSpec
from mixer.stages import check_removed_ids, make_step
from mixer.steps.base import Step, StepContext, StepResult

_run_block = ray.remote(ops.run_block)
_load = ray.remote(ops.load_task)


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


class RayEngine:
    """Connects to a cluster (``address``) or starts a local Ray instance when none is given."""

    name = "ray"

    def __init__(self, address: str | None = None, block_rows: int | None = None, block_bytes: int = 64 << 20,
                 cpus_per_task: float = 1, num_cpus: int | None = None,
                 object_store_memory: int | None = None, prefetch: int = 1):
        self.address = address
        self.block_rows = block_rows
        self.block_bytes = block_bytes
        self.cpus_per_task = cpus_per_task
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
        self._ledgers: dict[int, tuple[pl.DataFrame, list[Block]]] = {}  # handed-over ledgers' blocks

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

    def begin(self, work_dir: Any) -> None:
        """Frames live in the object store; only ledgers of an earlier build are let go."""
        self._ledgers = {}

    def write_mixture(self, frame: RayFrame, folder: Path, kind: str, jsonl: bool) -> Written:
        """One task per shard writes it from the blocks it covers (``ray_write``)."""
        self._scope = "mix"
        with self._timed("write"):
            shards = shard_views(self._live(frame)[0], output.SHARD_ROWS)
            n = len(shards)
            stems = ["mixture"] if n == 1 else [f"mixture-{k:05d}-of-{n:05d}" for k in range(n)]
            metas = write_files(folder, [(stem, kind, v, output.ROW_GROUP, jsonl) for stem, v in zip(stems, shards, strict=True)],
                                self.cpus_per_task)
            names = [f"{stem}.parquet" for stem in stems]
            file_rows = {name: m["rows"] for name, m in zip(names, metas, strict=True)}
            rows = sum(file_rows.values())
            if jsonl:  # the shards' jsonl parts, joined byte for byte
                with open(folder / "mixture.jsonl", "wb") as out:
                    for stem in stems:
                        part = folder / f"{stem}.jsonl"
                        with open(part, "rb") as f:
                            shutil.copyfileobj(f, out)
                        part.unlink()
                names.append("mixture.jsonl")
                file_rows["mixture.jsonl"] = rows
            return Written(names, rows, add_counts([m["counts"] for m in metas]), file_rows)

    def removed_sink(self, folder: Path, kind: str) -> LedgerSink:
        """``removed.parquet``, written on the cluster from the ledgers the stages hand over."""
        return LedgerSink(self, folder, kind, output.ROW_GROUP)

    def take_ledger(self, removed: pl.DataFrame) -> list[Block] | None:
        """The blocks (with the records' text) of a ledger this engine handed over, else None."""
        entry = self._ledgers.pop(id(removed), None)
        return entry[1] if entry is not None and entry[0] is removed else None

    def _hand_over(self, kept: Any, ledgers: list[tuple[list[pl.DataFrame], list[Block]]], info: dict[str, Any]) -> StepResult:
        """A stage's result: its ledger's compact columns, its blocks kept for ``take_ledger``."""
        frames = [f for part in ledgers for f in part[0]]
        removed = pl.concat(frames) if frames else empty_removed()
        self._ledgers[id(removed)] = (removed, [v for part in ledgers for v in part[1]])
        return StepResult(kept, removed, info)

    def collect(self, frame: RayFrame) -> pl.DataFrame:
        self._scope = "mix"
        with self._timed("collect"):
            return collect_records(frame)

    # ------------------------------------------------------------------ steps

    def _step(self, step: StepSpec, frame: RayFrame, ctx: StepContext) -> StepResult:
        obj = make_step(step)
        if obj.splits():
            return self._pieces(obj, frame, ctx)
        return self._gather(obj, frame, ctx)

    def _pieces(self, step: Step, frame: RayFrame, ctx: StepContext) -> StepResult:
        """``map`` per block, ``decide`` here on the keys, ``apply`` per block."""
        step.prepare(ctx)
        remote = _remote_ctx(ctx)
        mapped, ledger, metas = self._map(frame, ops.MapOp(step, remote, self.cwd), None, frame.kind, merge=False)
        info = merge_infos([m["info"] for m in metas], step.info_rules)
        if not step.is_global:
            return self._hand_over(mapped, [ledger], info)
        keys = [from_arrow(m["keys"]) for m in metas if "keys" in m]

        def fetch(fn: Any, columns: list[str] | None = None, rows: Any = None) -> Iterator[pl.DataFrame]:
            out, _, _ = self._map(mapped, ops.FetchOp(fn, columns, rows), None, "raw", merge=False)
            return iter_blocks(out)

        decision = step.decide((pl.concat(keys) if keys else pl.DataFrame()).lazy(), dataclasses.replace(ctx, fetch=fetch), info)
        kept, applied, _ = self._map(mapped, ops.ApplyOp(step, decision, remote, self.cwd), {}, frame.kind, merge=False)
        return self._hand_over(kept, [ledger, applied], decision.info)

    def _gather(self, step: Step, frame: RayFrame, ctx: StepContext) -> StepResult:
        """The step on the whole frame, here on the driver (exact; not distributed)."""
        whole = collect_records(frame)
        res = step.run(whole, ctx)
        check_removed_ids(whole, res.removed, f"{ctx.scope}/{step.name}")
        res.removed = with_content(res.removed, whole)
        kept = conform(res.kept)
        return StepResult(put_frame(kept, self._rows_per_block(kept.height, int(kept.estimated_size())), frame.kind), res.removed, res.info)

    # ------------------------------------------------------------------ building blocks

    def _map(self, frame: RayFrame, op: Any, rules: dict[str, str] | None, kind: str, merge: bool = True) -> Any:
        """``op`` on every non-empty block: a handed-over ``StepResult`` or, unmerged,
        (frame, ledger part, metas)."""
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
        new = RayFrame([Block(o[0], 0, m["rows"]) for o, m in zip(outs, metas, strict=True)],
                       add_counts([m["counts"] for m in metas]), kind)
        new.blocks = _nonempty(new.blocks)
        ledger = _ledger_part(metas, [o[1] for o in outs])
        if not merge:
            return new, ledger, metas
        return self._hand_over(new, [ledger], merge_infos([m["info"] for m in metas], rules or {}))

    def _whole(self, frame: RayFrame, op: Any, kind: str) -> StepResult:
        """``op`` on the whole frame in one task; its output is cut into views again."""
        self.connect()
        blocks = frame.blocks
        kept_ref, removed_ref, meta_ref = _run_whole.options(num_returns=3, num_cpus=self.cpus_per_task).remote(
            op, self.cwd, [b.start for b in blocks], [b.length for b in blocks], *[b.ref for b in blocks])
        meta = _get(meta_ref)
        out = RayFrame(views(kept_ref, meta["rows"], self._rows_per_block(meta["rows"], meta["nbytes"])), meta["counts"], kind)
        return self._hand_over(out, [_ledger_part([meta], [removed_ref])], meta["info"])

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


def _ledger_part(metas: list[dict[str, Any]], refs: list[Any]) -> tuple[list[pl.DataFrame], list[Block]]:
    """The tasks' ledgers: compact columns from their metas, whole rows left in the store."""
    frames, blocks = [], []
    for m, ref in zip(metas, refs, strict=True):
        if m["ledger"].num_rows:
            frames.append(from_arrow(m["ledger"]))
            blocks.append(Block(ref, 0, m["ledger"].num_rows))
    return frames, blocks


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

