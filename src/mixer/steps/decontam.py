"""The ``decontaminate`` mix-level step: remove (or report) records overlapping eval sets.

YAML::

    - decontaminate:
        evals: [tulu2, ifeval, {name: gsm8k, split: test}]
        eval_dir: data/eval        # relative to the spec; the hub when unset
        rule: tulu3                # or ngram (n: 13), exact
        action: remove             # or report
        drop_source_above: 2.0     # drop a source overlapping > 2% of a benchmark

Writes ``contamination.json`` and ``contamination_matches.parquet`` into the build.
"""

from __future__ import annotations

import polars as pl

from mixer.decontam import report as report_io
from mixer.decontam.apply import DecontamConfig, decontaminate, load_evals
from mixer.steps.base import Step, StepContext, StepResult, register


@register
class Decontaminate(Step):
    name = "decontaminate"
    Config = DecontamConfig
    scopes = ("mix",)

    def run(self, frame: pl.DataFrame, ctx: StepContext) -> StepResult:
        cfg: DecontamConfig = self.config  # type: ignore[assignment]
        evals = load_evals(cfg, base=ctx.spec_dir)
        out = decontaminate(frame, evals, cfg, progress=ctx.progress if ctx.progress is not None else True)
        if ctx.work_dir is not None:
            report_io.write(ctx.work_dir, out.report, out.matches)
            out.info["files"] = [report_io.REPORT_FILE, report_io.MATCHES_FILE]
        return StepResult(kept=out.kept, removed=out.removed, info=out.info)
