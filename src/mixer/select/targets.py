"""Target examples per task: a few dev / few-shot items of a benchmark from the eval-set
registry, or a user's own file. RDS+ wants examples *of* the task, not its test items;
where a benchmark has no dev split (HumanEval has only its test set) the user must ask for
the test split explicitly, and the step notes that the selection saw test items.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from pydantic import model_validator

from mixer import evalsets
from mixer.steps.base import StepConfig, rng_for

PREFERRED_SPLITS = ("dev", "val", "validation", "train")


class TargetSpec(StepConfig):
    """One task's examples: ``evalset`` (+ ``split``) from the registry, or ``path`` (+ fields).
    ``n`` keeps a seeded sample of that many examples."""

    evalset: str | None = None
    split: str | None = None
    path: str | None = None
    format: str = "auto"
    prompt_field: str | list[str] = "prompt"
    answer_field: str | list[str] | None = None
    id_field: str | None = None
    data_dir: str | None = None
    n: int | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> TargetSpec:
        if (self.evalset is None) == (self.path is None):
            raise ValueError("give exactly one of 'evalset' (a registered benchmark) or 'path' (a file)")
        if self.n is not None and self.n < 1:
            raise ValueError("'n' must be >= 1")
        return self


def parse_target(value: str | dict | TargetSpec) -> TargetSpec:
    """``"gsm8k:train"`` shorthand, a dict, or a spec."""
    if isinstance(value, TargetSpec):
        return value
    if isinstance(value, str):
        name, _, split = value.partition(":")
        return TargetSpec(evalset=name, split=split or None)
    return TargetSpec(**value)


def choose_split(name: str) -> str:
    """The first non-test split the registry has for ``name``, else its default."""
    have = evalsets.splits(name)
    for s in PREFERRED_SPLITS:
        if s in have:
            return s
    return have[0]


def load_targets(
    targets: dict[str, TargetSpec], eval_dir: str | Path | None, base: Path | None, seed: int
) -> tuple[pl.DataFrame, list[str]]:
    """(frame ``task, instance_id, prompt, answer``, notes). A task's sample is drawn from
    its own stream (seed, task), so editing one task never changes another's examples."""
    frames, notes = [], []
    for task, spec in targets.items():
        if spec.path is not None:
            es = evalsets.EvalSetSpec(name=task, path=spec.path, format=spec.format, prompt_field=spec.prompt_field,
                                      answer_field=spec.answer_field, id_field=spec.id_field)
            frame = evalsets.load_spec(es, spec.data_dir or eval_dir, base)
        else:
            split = spec.split or choose_split(spec.evalset)
            if split == "test":
                notes.append(f"{task}: targets drawn from {spec.evalset}'s test split (it has no dev split); "
                             f"results on those items are no longer held out")
            data_dir = spec.data_dir or eval_dir
            if data_dir is not None and base is not None and not Path(data_dir).expanduser().is_absolute():
                data_dir = base / data_dir
            frame = evalsets.load(spec.evalset, split=split, data_dir=data_dir)
        if spec.n is not None and spec.n < frame.height:
            pick = np.sort(rng_for(seed, "select-targets", task).choice(frame.height, size=spec.n, replace=False))
            frame = frame[pick]
        if frame.height == 0:
            raise ValueError(f"select: task {task!r} has no target examples")
        frames.append(frame.select(pl.lit(task).alias("task"), "instance_id", "prompt", "answer"))
    return pl.concat(frames), notes
