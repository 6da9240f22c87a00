"""Format registry: a raw table (one row per raw item) in, records + removed out.

A format is one function registered under the name used in YAML, with a typed config.
Raw frames carry ``_row`` (int, global row number across the source's files, stable for
the same inputs) and ``_origin`` ("file:line" or "file#index"), which formats use for ids
and for ledger details. Record ids are ``"{source}:{row}"`` or ``"{source}:{row}.{k}"``
when one raw item yields several records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from mixer.steps.base import StepResult, rng_for


class FormatConfig(BaseModel):
    """Base for format parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class FormatContext:
    source: str
    seed: int = 0
    tokenizer: str | None = None
    spec_dir: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def rng(self, *names: str) -> np.random.Generator:
        return rng_for(self.seed, self.source, "format", *names)

    def ids(self, rows: pl.Series | list[int], sub: list[int] | None = None) -> list[str]:
        rows = list(rows)
        if sub is None:
            return [f"{self.source}:{r}" for r in rows]
        return [f"{self.source}:{r}.{k}" for r, k in zip(rows, sub, strict=True)]

    def id_expr(self) -> pl.Expr:
        return pl.format("{}:{}", pl.lit(self.source), pl.col("_row"))


FormatFn = Callable[[pl.DataFrame, Any, FormatContext], StepResult]


@dataclass(frozen=True)
class FormatSpec:
    name: str
    fn: FormatFn
    config: type[FormatConfig]
    kind: str  # "sft" or "preference"


FORMATS: dict[str, FormatSpec] = {}


def register_format(name: str, config: type[FormatConfig] = FormatConfig, kind: str = "sft"):
    def deco(fn: FormatFn) -> FormatFn:
        if name in FORMATS:
            raise ValueError(f"format {name!r} registered twice")
        FORMATS[name] = FormatSpec(name, fn, config, kind)
        return fn

    return deco


_BUILTIN_FORMAT_MODULES = [
    "messages", "alpaca", "sharegpt", "flan", "oasst_tree", "lima", "wizardlm", "openorca",
    "science", "hardcoded", "ultrafeedback", "hh_rlhf", "sharegpt_pairs", "chosen_rejected", "tulu3",
]


def load_builtin_formats() -> None:
    import importlib
    import importlib.util

    for mod in _BUILTIN_FORMAT_MODULES:
        name = f"mixer.formats.{mod}"
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def get_format(name: str) -> FormatSpec:
    load_builtin_formats()
    try:
        return FORMATS[name]
    except KeyError:
        raise KeyError(f"unknown format {name!r}; known: {', '.join(sorted(FORMATS))}") from None


def require_columns(raw: pl.DataFrame, columns: list[str], fmt: str) -> None:
    """A clear error when a raw file lacks the fields a format reads."""
    missing = [c for c in columns if c not in raw.columns]
    if missing:
        have = [c for c in raw.columns if not c.startswith("_")]
        raise ValueError(f"format {fmt!r} needs field(s) {missing}; the raw data has {have}")
