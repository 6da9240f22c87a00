"""``sample``: exact counts, fractions or repeats, drawn by seeded ranks.

Every record gets a rank, a 64-bit hash of its id salted by (spec seed, scope, "sample"
[, group]); ``n`` keeps the n records with the smallest (rank, id), ``fraction`` keeps
round(f * len) of them (halves rounded up), ``repeat`` keeps every record k times, copies
getting ids ``{id}~{k}``. Picked records keep their canonical order. The draw depends only
on the ids and the seed: the same whatever the batch size, engine, threads or workers, and
at source level changing one source never changes another's selection. ``n`` is drawn in
bounded memory: ``reduce`` keeps the n smallest ranks of each group seen so far.

``by`` samples per group (a column such as ``source``, or a ``meta`` key such as
``submix``): ``n: {flan_fsopt: 10000, ...}`` takes exact counts per group, groups not named
take 0 (recorded as such), and each group ranks with its own salt, so changing one group's
count never reshuffles another group; within a group a larger ``n`` takes a superset of a
smaller one. (Before manifest format_version 2 the draw was a seeded permutation of row
positions; the same spec now picks other records.)
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import polars as pl
import pyarrow as pa

from mixer.decontam.hashing import mix64
from mixer.infos import SUM
from mixer.records import empty_removed, removed_from
from mixer.spec import SampleConfig
from mixer.steps.base import Decision, Mapped, Step, StepContext, register

NO_GROUP = "(none)"
ALL = "(all)"
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


class SampleShortfall(ValueError):
    """More records were asked for than exist and ``allow_fewer`` is false."""


def group_key(frame: pl.DataFrame, by: str) -> pl.Series:
    """The group of each record: a column, else ``meta[by]`` (missing -> "(none)")."""
    if by in frame.columns and by != "meta":
        expr = pl.col(by).cast(pl.Utf8)
    else:
        expr = pl.col("meta").str.json_path_match(f"$.{by}")
    return frame.select(expr.fill_null(NO_GROUP).alias("g"))["g"]


def salt(seed: int, *names: str) -> np.uint64:
    """64 bits of sha256((seed, *names)): the stream of one draw."""
    digest = hashlib.sha256(repr((int(seed),) + tuple(names)).encode()).digest()
    return np.uint64(int.from_bytes(digest[:8], "little"))


def id_hash(ids: pl.Series) -> np.ndarray:
    """FNV-1a (64 bit) of each id's UTF-8 bytes, one numpy pass per byte position."""
    arr = ids.cast(pl.Utf8).fill_null("").to_arrow().cast(pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64, count=len(arr) + 1, offset=arr.offset * 8)
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8) if arr.buffers()[2] is not None else np.zeros(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    h = np.full(len(arr), _FNV_OFFSET, dtype=np.uint64)
    live = np.arange(len(arr))
    for j in range(int(lengths.max()) if len(arr) else 0):
        live = live[lengths[live] > j]
        h[live] = (h[live] ^ data[starts[live] + j].astype(np.uint64)) * _FNV_PRIME
    return h


def ranks(ids: pl.Series, salts: np.ndarray) -> np.ndarray:
    """The rank of each record: its id hash mixed with its draw's salt (splitmix64)."""
    return mix64(id_hash(ids) ^ salts)


def _lookup(groups: pl.Series, table: dict, dtype: pl.DataType, default: object) -> pl.Series:
    """``table[g]`` for each group (``default`` for groups not in it), typed ``dtype``."""
    old = pl.Series(list(table), dtype=pl.Utf8)
    new = pl.Series(list(table.values()), dtype=dtype)
    return groups.replace_strict(old, new, default=pl.lit(default, dtype), return_dtype=dtype)


@register
class Sample(Step):
    name = "sample"
    keeps_rows = True
    Config = SampleConfig  # type: ignore[assignment]

    @property
    def is_global(self) -> bool:
        return self.config.repeat is None

    @property
    def info_rules(self) -> dict[str, str]:  # type: ignore[override]
        return {"available": SUM, "kept": SUM, "added.*": SUM}

    def _groups(self, batch: pl.DataFrame) -> pl.Series:
        by = self.config.by
        return group_key(batch, by) if by is not None else pl.Series("g", [ALL] * batch.height, dtype=pl.Utf8)

    def _ranks(self, batch: pl.DataFrame, groups: pl.Series, ctx: StepContext) -> np.ndarray:
        names = ("sample",) if self.config.by is None else None
        uniq = groups.unique().to_list()
        table = {g: salt(ctx.seed, ctx.scope, *(names or ("sample", g))) for g in uniq}
        salts = _lookup(groups, table, pl.UInt64, 0).to_numpy() if batch.height else np.zeros(0, np.uint64)
        return ranks(batch["id"], salts)

    def map(self, batch: pl.DataFrame, ctx: StepContext) -> Mapped:
        c: SampleConfig = self.config  # type: ignore[assignment]
        if c.repeat is not None:
            return self._repeat(batch, c.repeat)
        groups = self._groups(batch)
        keys = pl.DataFrame({"id": batch["id"], "g": groups, "rank": self._ranks(batch, groups, ctx), "n": np.ones(batch.height, np.int64)},
                            schema={"id": pl.Utf8, "g": pl.Utf8, "rank": pl.UInt64, "n": pl.Int64})
        return Mapped(batch, keys=keys)

    def reduce(self, keys: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        """With ``n``, only the n smallest (rank, id) of a group can be drawn: the others
        shrink to one count row per group (``id`` null), which ``decide`` adds up."""
        c: SampleConfig = self.config  # type: ignore[assignment]
        if c.n is None or keys.height == 0:
            return keys
        live = keys.filter(pl.col("id").is_not_null())
        if c.by is None:  # one group: a partial selection, no sort of all the keys
            top = live.bottom_k(int(c.n), by=["rank", "id"])  # type: ignore[arg-type]
        else:
            want = pl.col("g").replace_strict(c.n, default=0, return_dtype=pl.Int64) if isinstance(c.n, dict) else pl.lit(c.n, pl.Int64)
            top = live.sort("g", "rank", "id").filter(pl.int_range(pl.len()).over("g") < want)
        # every id row counts 1: what is not taken is the group's total less the rows taken
        taken = top.group_by("g").len()
        rest = (keys.group_by("g").agg(pl.col("n").sum()).join(taken, on="g", how="left")
                .select(pl.lit(None, pl.Utf8).alias("id"), "g", pl.lit(np.iinfo(np.uint64).max, pl.UInt64).alias("rank"),
                        (pl.col("n") - pl.col("len").fill_null(0)).cast(pl.Int64).alias("n"))
                .filter(pl.col("n") > 0))
        return pl.concat([top, rest]).sort("g", "rank", "id", nulls_last=True)

    def held_keys(self) -> int | None:
        """With ``n``, reduce keeps a few rows per group: reduce often, hold little."""
        c: SampleConfig = self.config  # type: ignore[assignment]
        if c.n is None:
            return None
        return max(100_000, 4 * (sum(c.n.values()) if isinstance(c.n, dict) else c.n))

    def decide(self, keys: pl.LazyFrame, ctx: StepContext, info: dict) -> Decision:
        """Per group: how many to take and the (rank, id) of the last one taken (a group's
        ranks and ids are the most collected at once)."""
        c: SampleConfig = self.config  # type: ignore[assignment]
        sizes = dict(keys.group_by("g").agg(pl.col("n").sum()).collect().iter_rows()) if keys.collect_schema().len() else {}
        named = sorted(c.n) if isinstance(c.n, dict) else []
        cut: dict[str, tuple[int, str] | None] = {}
        groups: dict[str, dict[str, int]] = {}
        for g in sorted(set(sizes) | set(named)) if c.by is not None else [ALL]:
            total = int(sizes.get(g, 0))
            want = self._want(c, total, g if c.by is not None else None)
            take = min(want, total)
            groups[g] = {"requested": want, "available": total, "kept": take}
            if take == 0:
                cut[g] = None
            else:
                rows = keys.filter((pl.col("g") == g) & pl.col("id").is_not_null()).select("rank", "id").sort("rank", "id")
                last = rows.slice(take - 1, 1).collect().row(0, named=True)
                cut[g] = (int(last["rank"]), str(last["id"]))
        short = {g: v["requested"] - v["available"] for g, v in groups.items() if v["requested"] > v["available"]}
        if c.by is None:
            v = groups[ALL]
            if short and not c.allow_fewer:
                raise SampleShortfall(f"{ctx.scope}: sample asks for {v['requested']} records but only {v['available']} remain after the earlier steps (set allow_fewer: true to take them all)")
            out = {"requested": v["requested"], "available": v["available"], "kept": v["kept"], "shortfall": short.get(ALL, 0)}
        else:
            if short and not c.allow_fewer:
                lines = ", ".join(f"{g}: asks {groups[g]['requested']}, has {groups[g]['available']}" for g in short)
                raise SampleShortfall(f"{ctx.scope}: sample by {c.by} asks for more records than remain ({lines}); set allow_fewer: true to take them all")
            out = {"by": c.by, "groups": groups, "requested": sum(g["requested"] for g in groups.values()),
                   "available": sum(g["available"] for g in groups.values()), "kept": sum(g["kept"] for g in groups.values()),
                   "shortfall": sum(short.values())}
        return Decision({"cut": cut, "groups": groups}, out)

    def apply(self, batch: pl.DataFrame, decision: Decision, ctx: StepContext) -> tuple[pl.DataFrame, pl.DataFrame]:
        c: SampleConfig = self.config  # type: ignore[assignment]
        if batch.height == 0:
            return batch, empty_removed()
        groups = self._groups(batch)
        rank = self._ranks(batch, groups, ctx)
        cut = decision.data["cut"]
        r_cut = _lookup(groups, {g: (v[0] if v else 0) for g, v in cut.items()}, pl.UInt64, 0).to_numpy()
        i_cut = _lookup(groups, {g: (v[1] if v else None) for g, v in cut.items()}, pl.Utf8, None)
        taken = _lookup(groups, {g: v is not None for g, v in cut.items()}, pl.Boolean, False).to_numpy()
        ids_le = (batch["id"] <= i_cut).fill_null(False).to_numpy()
        keep = taken & ((rank < r_cut) | ((rank == r_cut) & ids_le))
        m = pl.Series(keep)
        dropped = batch.filter(~m)
        if c.by is None:
            v = decision.data["groups"][ALL]
            detail: str | pl.Expr = f"sampled {v['kept']} of {v['available']}" + (f" (n={c.n})" if c.n is not None else f" (fraction={c.fraction})")
        else:
            notes = {g: (f"{c.by}={g}: not named in sample.n, 0 taken" if isinstance(c.n, dict) and g not in c.n
                         else f"{c.by}={g}: sampled {v['kept']} of {v['available']}") for g, v in decision.data["groups"].items()}
            dropped = dropped.with_columns(groups.filter(~m).replace_strict(notes, return_dtype=pl.Utf8).alias("_detail"))
            detail = pl.col("_detail")
        return batch.filter(m), removed_from(dropped, self.name, "not_sampled", detail)

    @staticmethod
    def _want(c: SampleConfig, total: int, group: str | None = None) -> int:
        if isinstance(c.n, dict):
            return int(c.n.get(group, 0))  # type: ignore[arg-type]
        if c.n is not None:
            return c.n
        return int(math.floor(c.fraction * total + 0.5))  # type: ignore[operator]

    @staticmethod
    def _repeat(frame: pl.DataFrame, k: int) -> Mapped:
        total = frame.height
        copies = [frame] + [frame.with_columns(pl.format("{}~{}", "id", pl.lit(j)).alias("id")) for j in range(1, k)]
        out = pl.concat(copies)
        # Interleave copies record by record so the canonical order stays by source row.
        order = np.tile(np.arange(total), k).argsort(kind="stable")
        kept = out[order] if total else out
        added = {src: n * (k - 1) for src, n in frame.group_by("source").len().sort("source").iter_rows()}
        return Mapped(kept, info={"requested": f"repeat {k}", "available": total, "kept": kept.height, "added": added})
