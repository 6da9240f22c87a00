"""The ``decontaminate`` mix-level step: remove (or report) records overlapping eval sets.

YAML::

    - decontaminate:
        evals: [tulu2, ifeval, {name: gsm8k, split: test}]
        eval_dir: data/eval        # relative to the spec; the hub when unset
        rule: tulu3                # or ngram (n: 13), exact
        action: remove             # or report
        drop_source_above: 2.0     # drop a source overlapping > 2% of a benchmark

The eval index is built once (``prepare``; eval sets are small) and goes with the step to
every batch; ``map`` matches a batch against it and keeps, per record, its id, source and
matches; ``decide`` applies the policy (best match, sources over the limit) on those and
writes ``contamination.json`` and ``contamination_matches.parquet`` into the build.
"""

from __future__ import annotations

import time
from typing import Any

import polars as pl

from mixer.decontam import report as report_io
from mixer.decontam.apply import DecontamConfig, decide, load_evals
from mixer.decontam.core import MatchResult, find_matches
from mixer.decontam.index import EvalIndex
from mixer.infos import SUM
from mixer.steps.base import (
    Decision,
    Lookup,
    Mapped,
    Step,
    StepContext,
    register,
    remove_listed,
    threads_for,
)

MATCH = pl.Struct({"inst": pl.Int32, "coverage": pl.Float32, "n_ngrams": pl.Int64, "short": pl.Boolean})


@register
class Decontaminate(Step):
    name = "decontaminate"
    keeps_rows = True
    Config = DecontamConfig
    scopes = ("mix",)
    info_rules = {"tokens": SUM, "distinct": SUM, "match_s": SUM}

    def __init__(self, config: DecontamConfig):
        super().__init__(config)
        self.index: EvalIndex | None = None
        self.index_s = 0.0

    @property
    def is_global(self) -> bool:
        return True

    def prepare(self, ctx: StepContext) -> None:
        if self.index is None:
            t0 = time.perf_counter()
            cfg: DecontamConfig = self.config  # type: ignore[assignment]
            evals = load_evals(cfg, base=ctx.spec_dir)
            self.index = EvalIndex(evals, cfg.settings(), cfg.eval_text, cfg.unicode)
            self.index_s = time.perf_counter() - t0

    def map(self, batch: pl.DataFrame, ctx: StepContext) -> Mapped:
        """Keys: ``id, source`` and the record's matches (null when none)."""
        self.prepare(ctx)
        assert self.index is not None
        cfg = self.config.model_copy(update={"threads": threads_for(ctx, self.config.threads)})  # type: ignore[attr-defined]
        res = find_matches(batch, self.index.evals, cfg, index=self.index, progress=False)  # type: ignore[arg-type]
        per = res.pairs.group_by("rec").agg(
            pl.struct(pl.col("inst").cast(pl.Int32), pl.col("coverage").cast(pl.Float32), pl.col("n_ngrams").cast(pl.Int64),
                      pl.col("short").cast(pl.Boolean)).alias("m")
        )
        keys = (
            batch.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("rec"), "id", "source")
            .join(per.with_columns(pl.col("rec").cast(pl.Int64)), on="rec", how="left", maintain_order="left")
            .select("id", "source", pl.col("m").cast(pl.List(MATCH)))
        )
        info = {"tokens": res.tokens, "distinct": res.distinct, "match_s": res.timings.get("match_s", 0.0)}
        return Mapped(batch, keys=keys, info=info)

    def decide(self, keys: pl.LazyFrame, ctx: StepContext, info: dict[str, Any]) -> Decision:
        """The local policy (``mixer.decontam.apply.decide``) on ids, sources and matches
        (collected whole: a source over the limit leaves with every id)."""
        self.prepare(ctx)
        assert self.index is not None
        t0 = time.perf_counter()
        frame = keys.collect() if keys.collect_schema().len() else pl.DataFrame(schema={"id": pl.Utf8, "source": pl.Utf8, "m": pl.List(MATCH)})
        pairs = (
            frame.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("rec"), "m").filter(pl.col("m").is_not_null())
            .explode("m").unnest("m").select("rec", "inst", "coverage", "n_ngrams", "short")
        )
        timings = {"index_s": self.index_s, "match_s": float(info.get("match_s", 0.0))}
        res = MatchResult(pairs, self.index, timings, int(info.get("tokens", 0)), int(info.get("distinct", 0)))
        out = decide(frame.select("id", "source"), self.index.evals, self.config, res, t0)  # type: ignore[arg-type]
        if ctx.work_dir is not None:
            report_io.write(ctx.work_dir, out.report, out.matches)
            out.info["files"] = [report_io.REPORT_FILE, report_io.MATCHES_FILE]
        return Decision(Lookup.of(out.removed.select("id", "reason", "detail"), "id"), out.info)

    def apply(self, batch: pl.DataFrame, decision: Decision, ctx: StepContext) -> tuple[pl.DataFrame, pl.DataFrame]:
        return remove_listed(batch, decision.data, self.name, pl.col("reason"), pl.col("detail"))
