"""What a step is: a typed config, and a function from a frame to (kept, removed).

Steps are registered by the name used in YAML. A step never drops a row without a ledger
row; the pipeline checks ``rows in = kept + removed`` per source after each one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from mixer.records import empty_removed


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

    def rng(self, *names: str) -> np.random.Generator:
        return rng_for(self.seed, self.scope, *names)

    def source_rank(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.source_order)}


@dataclass
class StepResult:
    kept: pl.DataFrame
    removed: pl.DataFrame = field(default_factory=empty_removed)
    info: dict[str, Any] = field(default_factory=dict)  # JSON-able summary for manifest.json


class Step:
    """Subclass, set ``name`` and ``Config``, implement ``run``; decorate with ``@register``."""

    name: ClassVar[str]
    Config: ClassVar[type[StepConfig]] = StepConfig
    scopes: ClassVar[tuple[str, ...]] = ("source", "mix")  # where the step may appear

    def __init__(self, config: StepConfig):
        self.config = config

    def run(self, frame: pl.DataFrame, ctx: StepContext) -> StepResult:  # pragma: no cover
        raise NotImplementedError


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
