"""``sample``: exact counts, fractions or repeats, each from its own seeded stream.

``n`` picks exactly n records without replacement; ``fraction`` picks round(f * len)
(halves rounded up); ``repeat`` keeps every record k times, copies getting ids ``{id}~{k}``.
Picked records keep their canonical order. At source level the stream is derived from
(spec seed, source name), so changing one source never changes another's selection.

``by`` samples per group (a column such as ``source``, or a ``meta`` key such as
``submix``): ``n: {flan_fsopt: 10000, ...}`` takes exact counts per group, groups not named
take 0 (recorded as such), and each group draws from (seed, source, "sample", group), so
changing one group's count never reshuffles another group; within a group a larger ``n``
takes a superset of a smaller one.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from mixer.records import removed_from
from mixer.spec import SampleConfig
from mixer.steps.base import Step, StepContext, StepResult, register

NO_GROUP = "(none)"


class SampleShortfall(ValueError):
    """More records were asked for than exist and ``allow_fewer`` is false."""


def group_key(frame: pl.DataFrame, by: str) -> pl.Series:
    """The group of each record: a column, else ``meta[by]`` (missing -> "(none)")."""
    if by in frame.columns and by != "meta":
        expr = pl.col(by).cast(pl.Utf8)
    else:
        expr = pl.col("meta").str.json_path_match(f"$.{by}")
    return frame.select(expr.fill_null(NO_GROUP).alias("g"))["g"]


@register
class Sample(Step):
    name = "sample"
    Config = SampleConfig  # type: ignore[assignment]

    def run(self, frame: pl.DataFrame, ctx: StepContext) -> StepResult:
        c: SampleConfig = self.config  # type: ignore[assignment]
        if c.repeat is not None:
            return self._repeat(frame, c.repeat)
        if c.by is not None:
            return self._by_group(frame, c, ctx)
        total = frame.height
        want = self._want(c, total)
        shortfall = max(0, want - total)
        if shortfall and not c.allow_fewer:
            raise SampleShortfall(f"{ctx.scope}: sample asks for {want} records but only {total} remain after the earlier steps (set allow_fewer: true to take them all)")
        take = min(want, total)
        rng = ctx.rng("sample")
        picked = np.sort(rng.choice(total, size=take, replace=False)) if take < total else np.arange(total)
        mask = np.zeros(total, dtype=bool)
        mask[picked] = True
        m = pl.Series(mask)
        detail = f"sampled {take} of {total}" + (f" (n={c.n})" if c.n is not None else f" (fraction={c.fraction})")
        info = {"requested": want, "available": total, "kept": take, "shortfall": shortfall}
        return StepResult(frame.filter(m), removed_from(frame.filter(~m), self.name, "not_sampled", detail), info)

    @staticmethod
    def _want(c: SampleConfig, total: int, group: str | None = None) -> int:
        if isinstance(c.n, dict):
            return int(c.n.get(group, 0))  # type: ignore[arg-type]
        if c.n is not None:
            return c.n
        return int(math.floor(c.fraction * total + 0.5))  # type: ignore[operator]

    @staticmethod
    def _repeat(frame: pl.DataFrame, k: int) -> StepResult:
        total = frame.height
        copies = [frame] + [frame.with_columns(pl.format("{}~{}", "id", pl.lit(j)).alias("id")) for j in range(1, k)]
        out = pl.concat(copies)
        # Interleave copies record by record so the canonical order stays by source row.
        order = np.tile(np.arange(total), k).argsort(kind="stable")
        kept = out[order] if total else out
        added = {src: n * (k - 1) for src, n in frame.group_by("source").len().iter_rows()}
        return StepResult(kept, info={"requested": f"repeat {k}", "available": total, "kept": kept.height, "added": added})

    def _by_group(self, frame: pl.DataFrame, c: SampleConfig, ctx: StepContext) -> StepResult:
        by = c.by
        assert by is not None
        keys = group_key(frame, by)
        present = sorted(keys.unique().to_list())
        named = sorted(c.n) if isinstance(c.n, dict) else []
        mask = np.zeros(frame.height, dtype=bool)
        details = np.full(frame.height, "", dtype=object)
        groups, short = {}, {}
        for g in sorted(set(present) | set(named)):
            rows = np.flatnonzero((keys == g).to_numpy())
            want = self._want(c, len(rows), g)
            take = min(want, len(rows))
            # A prefix of a seeded permutation: raising a group's n only adds records.
            picked = rows[np.sort(ctx.rng("sample", g).permutation(len(rows))[:take])] if take < len(rows) else rows
            mask[picked] = True
            if isinstance(c.n, dict) and g not in c.n:
                details[rows] = f"{by}={g}: not named in sample.n, 0 taken"
            else:
                details[rows] = f"{by}={g}: sampled {take} of {len(rows)}"
            groups[g] = {"requested": want, "available": len(rows), "kept": take}
            if want > len(rows):
                short[g] = want - len(rows)
        if short and not c.allow_fewer:
            lines = ", ".join(f"{g}: asks {groups[g]['requested']}, has {groups[g]['available']}" for g in short)
            raise SampleShortfall(f"{ctx.scope}: sample by {by} asks for more records than remain ({lines}); set allow_fewer: true to take them all")
        m = pl.Series(mask)
        dropped = frame.with_columns(pl.Series("_detail", details.tolist(), dtype=pl.Utf8)).filter(~m)
        info = {
            "by": by, "groups": groups, "requested": sum(g["requested"] for g in groups.values()),
            "available": frame.height, "kept": int(mask.sum()), "shortfall": sum(short.values()),
        }
        return StepResult(frame.filter(m), removed_from(dropped, self.name, "not_sampled", pl.col("_detail")), info)
