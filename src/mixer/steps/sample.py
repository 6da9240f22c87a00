"""``sample``: exact counts, fractions or repeats, each from its own seeded stream.

``n`` picks exactly n records without replacement; ``fraction`` picks round(f * len)
(halves rounded up); ``repeat`` keeps every record k times, copies getting ids ``{id}~{k}``.
Picked records keep their canonical order. At source level the stream is derived from
(spec seed, source name), so changing one source never changes another's selection.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from mixer.records import removed_from
from mixer.spec import SampleConfig
from mixer.steps.base import Step, StepContext, StepResult, register


class SampleShortfall(Exception):
    """More records were asked for than exist and ``allow_fewer`` is false."""


@register
class Sample(Step):
    name = "sample"
    Config = SampleConfig  # type: ignore[assignment]

    def run(self, frame: pl.DataFrame, ctx: StepContext) -> StepResult:
        c: SampleConfig = self.config  # type: ignore[assignment]
        total = frame.height
        if c.repeat is not None:
            copies = [frame] + [frame.with_columns(pl.format("{}~{}", "id", pl.lit(k)).alias("id")) for k in range(1, c.repeat)]
            out = pl.concat(copies).with_columns(pl.int_range(pl.len()).alias("_o"))
            # Interleave copies record by record so the canonical order stays by source row.
            order = np.tile(np.arange(total), c.repeat).argsort(kind="stable")
            kept = out[order].drop("_o") if total else out.drop("_o")
            added = {src: n * (c.repeat - 1) for src, n in frame.group_by("source").len().iter_rows()}
            return StepResult(kept, info={"requested": f"repeat {c.repeat}", "available": total, "kept": kept.height, "added": added})
        want = c.n if c.n is not None else int(math.floor(c.fraction * total + 0.5))
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
