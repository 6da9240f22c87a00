"""Evaluation sets as frames of test instances, by the name used in YAML.

Public API (stable; other features build on it)::

    from mixer import evalsets
    evalsets.load("gsm8k", split="test", data_dir=None) -> pl.DataFrame
        # columns: benchmark, instance_id, prompt, answer (answer may be null)
    evalsets.load("mmlu", split="dev", data_dir="../shared/data/eval")
    evalsets.load_many(["tulu2", "ifeval", {"name": "gsm8k", "split": "train"}], data_dir=...)
    evalsets.names()                       # registered benchmarks
    evalsets.splits("mmlu")                # ("test", "dev", "val")
    evalsets.EvalSetSpec(name="mine", path="x.jsonl", prompt_field=["instruction", "input"],
                         answer_field="output")   # a user's own eval set from a file

``data_dir`` is a local folder: either one holding a sub-folder per benchmark
(``DIR/gsm8k/test.jsonl``, ``DIR/mmlu/test/*.csv``, ...) or the benchmark's own folder.
Without it, loaders read the Hugging Face hub through ``datasets.load_dataset``.
Suites: ``tulu2`` (MMLU, GSM8K, BBH, TydiQA, HumanEval, AlpacaEval, ToxiGen, TruthfulQA),
``tulu2+`` (those plus IFEval, MATH, MT-Bench), ``tulu3-dev`` (the Tulu 3 development
evaluations with public test sets: adds PopQA, DROP, HumanEval+, HarmBench, XSTest,
WildGuardTest, WildJailbreak's evaluation split) and ``tulu3-unseen`` (MMLU-Pro, GPQA,
AGIEval English, DeepMind Mathematics, BigCodeBench, IFEval-OOD).
Instance ids are stable strings (``gsm8k/test/12``, ``mmlu/test/anatomy/3``,
``HumanEval/7``) so a report row points at one item.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from mixer.evalsets import builtin as _builtin  # noqa: F401  (registers the loaders)
from mixer.evalsets import tulu3 as _tulu3  # noqa: F401
from mixer.evalsets.base import (
    EVAL_SCHEMA,
    EVALSETS,
    EvalSetError,
    finish,
    register_evalset,
    resolve_root,
)
from mixer.evalsets.files import load_file_evalset

__all__ = [
    "EVAL_SCHEMA", "EvalSetError", "EvalSetSpec", "SUITES", "load", "load_many", "load_spec",
    "names", "parse_specs", "register_evalset", "splits",
]

SUITES: dict[str, tuple[str, ...]] = {
    "tulu2": ("mmlu", "gsm8k", "bbh", "tydiqa", "humaneval", "alpaca_eval", "toxigen", "truthfulqa"),
}
SUITES["tulu2+"] = SUITES["tulu2"] + ("ifeval", "math", "mt_bench")
# Tulu 3: the development evaluations with public test sets (JailbreakTrigger and
# Do-Anything-Now have no loader yet), and the unseen ones (HREF has none yet).
SUITES["tulu3-dev"] = (
    "mmlu", "popqa", "truthfulqa", "bbh", "drop", "math", "gsm8k", "humaneval", "humanevalplus", "ifeval",
    "alpaca_eval", "harmbench", "xstest", "wildguardtest", "wildjailbreak_eval",
)
SUITES["tulu3-unseen"] = ("mmlu_pro", "gpqa", "agieval_english", "deepmind_math", "bigcodebench", "ifeval_ood")


class EvalSetSpec(BaseModel):
    """One eval set: a registered benchmark (``name`` [+ ``split``]) or a file (``path``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    split: str | None = None
    path: str | None = None
    format: str = "auto"
    prompt_field: str | list[str] = "prompt"
    answer_field: str | list[str] | None = None
    id_field: str | None = None
    data_dir: str | None = Field(default=None, description="overrides the shared eval_dir")


def names() -> list[str]:
    return sorted(EVALSETS)


def splits(name: str) -> tuple[str, ...]:
    return _info(name).splits


def _info(name: str):
    try:
        return EVALSETS[name]
    except KeyError:
        raise EvalSetError(
            f"unknown eval set {name!r}; known: {', '.join(names())}; suites: {', '.join(SUITES)}; "
            f"or give a file with path/prompt_field"
        ) from None


def load(name: str, split: str | None = None, data_dir: str | Path | None = None) -> pl.DataFrame:
    """Instances of a registered benchmark: ``benchmark, instance_id, prompt, answer``."""
    info = _info(name)
    split = split or info.default_split
    if split not in info.splits:
        raise EvalSetError(f"eval set {name!r} has no split {split!r}; splits: {', '.join(info.splits)}")
    return finish(info.fn(resolve_root(name, data_dir), split), name)


def load_spec(spec: EvalSetSpec, data_dir: str | Path | None = None, base: Path | None = None) -> pl.DataFrame:
    """Instances for one spec; relative paths resolve against ``base`` (the spec's folder)."""

    def rel(p: str | Path | None) -> Path | None:
        if p is None:
            return None
        q = Path(p).expanduser()
        return q if q.is_absolute() or base is None else base / q

    if spec.path is not None:
        frame = load_file_evalset(
            spec.name, rel(spec.path), spec.format, spec.prompt_field, spec.answer_field, spec.id_field
        )
        return finish(frame, spec.name)
    return load(spec.name, spec.split, rel(spec.data_dir or data_dir))


def parse_specs(items: str | Iterable[str | dict | EvalSetSpec]) -> list[EvalSetSpec]:
    """``"gsm8k,mmlu:dev"``, a list of names/suites, dicts or specs -> specs (suites expanded)."""
    if isinstance(items, str):
        items = [s.strip() for s in items.split(",") if s.strip()]
    out: list[EvalSetSpec] = []
    for it in items:
        if isinstance(it, EvalSetSpec):
            out.append(it)
        elif isinstance(it, dict):
            out.append(EvalSetSpec(**it))
        elif it in SUITES:
            out.extend(EvalSetSpec(name=n) for n in SUITES[it])
        else:
            name, _, split = str(it).partition(":")
            _info(name)
            out.append(EvalSetSpec(name=name, split=split or None))
    return out


def load_many(
    items: str | Sequence[str | dict | EvalSetSpec], data_dir: str | Path | None = None, base: Path | None = None
) -> pl.DataFrame:
    """All instances of several eval sets in one frame (benchmark names must differ)."""
    specs = parse_specs(items)
    seen: dict[str, EvalSetSpec] = {}
    frames = []
    for s in specs:
        if s.name in seen:
            raise EvalSetError(f"eval set {s.name!r} listed twice")
        seen[s.name] = s
        frames.append(load_spec(s, data_dir, base))
    if not frames:
        return pl.DataFrame(schema=EVAL_SCHEMA)
    return pl.concat(frames)
