"""``Step.keeps_rows`` is a promise the local engine relies on: what such a step keeps is
rows of its input exactly as they were (less columns its ``map`` added), so the engine
reads them back from the input's file instead of writing them (``engines.local.View``).
A step that set the flag and rewrote a value would silently get its input's value back;
this checks every flagged step on real records, and that no flagged step goes unchecked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest

from mixer.engines.local import rows_kept
from mixer.records import sft_frame
from mixer.steps.base import BUILTIN_STEPS, StepContext, get_step

# every built-in step that sets ``keeps_rows``, with a config under which it removes rows
CONFIGS = {
    "keyword_filter": {"preset": "tulu_v2"},
    "exact_dedup": {"text": "user"},
    "sample": {"fraction": 0.5},
    "minhash": {"text": "user", "threshold": 0.7},
    "decontaminate": {"evals": ["alpaca_eval"], "rule": "tulu3"},
    "semantic": {"text": "user", "threshold": 0.9},
}


@pytest.fixture(scope="module")
def frame(shared_data: Path) -> pl.DataFrame:
    """AlpacaEval prompts answered by two models (the same prompts twice: duplicates, and
    contaminated against AlpacaEval), and Alpaca records, a few answering as an AI model."""
    frames = []
    for model in ("alpaca-7b", "vicuna-13b"):
        rows = json.loads((shared_data / "train/alpaca_eval_outputs/results" / model / "model_outputs.json").read_text())[:60]
        frames.append(sft_frame([f"{model}:{i}" for i in range(len(rows))], model,
                                [[{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}] for r in rows]))
    rows = json.loads((shared_data / "train/alpaca_1k/alpaca_data_1k.json").read_text())[:200]
    answers = [("As an AI model by OpenAI, " if i % 17 == 0 else "") + r["output"] for i, r in enumerate(rows)]
    frames.append(sft_frame([f"alpaca:{i}" for i in range(len(rows))], "alpaca",
                            [[{"role": "user", "content": r["instruction"] + ("\n" + r["input"] if r["input"] else "")},
                              {"role": "assistant", "content": a}] for r, a in zip(rows, answers, strict=True)]))
    return pl.concat(frames)


def test_every_flagged_step_is_checked() -> None:
    flagged = {name for name in BUILTIN_STEPS if get_step(name).keeps_rows}
    assert flagged == set(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_flagged_steps_keep_rows_as_they_were(name: str, frame: pl.DataFrame, shared_data: Path, tmp_path: Path) -> None:
    config = dict(CONFIGS[name])
    if name == "decontaminate":
        config["eval_dir"] = str(shared_data / "eval")
    if name == "semantic":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from mixer.select.models import MINILM

        config["model"] = MINILM
    cls = get_step(name)
    work = tmp_path / ".out.tmp-1-2"
    work.mkdir()
    res = cls(cls.Config(**config)).run(frame, StepContext(seed=5, source_order=["alpaca-7b", "vicuna-13b", "alpaca"], work_dir=work))
    assert 0 < res.removed.height < frame.height and res.kept.height + res.removed.height == frame.height
    rows = rows_kept(frame, res.kept)
    assert rows is not None
    assert set(res.kept.columns) <= set(frame.columns)
    assert frame[rows].select(res.kept.columns).equals(res.kept)
