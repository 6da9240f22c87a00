"""DPO end to end on a preference build made from real HH-RLHF pairs: the completion TRL
scores is the assistant turn + EOS under the Tulu template, and the reward margin grows."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mixer.cli import app
from mixer_train.testing import hh_rlhf_frame, write_build

runner = CliRunner()
# fixtures one_thread, work, sample_build, model: tests/train_fixtures.py
pytestmark = [pytest.mark.shared_data, pytest.mark.usefixtures("one_thread")]

SETS = [
    "dtype=fp32",
    "effective_batch_size=4",
    "per_device_batch_size=4",
    "learning_rate=5e-4",
    "warmup_ratio=0",
    "max_length=128",
    "gradient_checkpointing=false",
    "save_steps=100",
]


@pytest.fixture(scope="module")
def pref_build(shared_data, work):
    """32 short HH-RLHF pairs (both sides under 400 characters: they fit max_length)."""
    frame = hh_rlhf_frame(shared_data / "train" / "hh_rlhf" / "harmless-base" / "test.jsonl.gz", limit=32, max_chars=400)
    assert frame.height == 32
    return write_build(frame, work / "hh-build", name="hh_rlhf")


def dpo_args(build, model, out, steps: int, *extra: str) -> list[str]:
    args = ["train", "dpo", "--build", str(build), "--model", str(model), "-o", str(out), "--max-steps", str(steps)]
    for s in SETS:
        args += ["--set", s]
    return args + list(extra)


def test_reward_margin_increases(pref_build, model, work):
    out = work / "run"
    r = runner.invoke(app, dpo_args(pref_build, model, out, 12, "--deepspeed", "none"))
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    recs = [r for r in recs if "loss" in r]
    assert [r["step"] for r in recs] == list(range(1, 13))  # 12 steps = 1.5 epochs of 32 pairs
    margins = [r["rewards/margins"] for r in recs]
    assert margins[0] == pytest.approx(0.0, abs=1e-6)  # policy == reference at step 1
    assert sum(margins[-4:]) / 4 > sum(margins[:4]) / 4 + 0.05 and margins[-1] > 0, margins
    assert sum(r["rewards/accuracies"] for r in recs[-4:]) / 4 > 0.5
    assert recs[-1]["loss"] < recs[0]["loss"]
    info = json.loads((out / "run.json").read_text())
    assert info["kind"] == "dpo" and info["status"] == "complete" and info["config"]["beta"] == 0.1
    assert info["tokenized_cache"]["hit"] is False and info["tokenized_cache"]["rows"] == 32
    assert not info["packing"]["enabled"] and "DPO" in info["packing"]["reason"]


def test_second_dpo_run_hits_the_tokenized_cache(pref_build, model, work):
    first = json.loads((work / "run" / "run.json").read_text())["tokenized_cache"]
    out = work / "again"
    r = runner.invoke(app, dpo_args(pref_build, model, out, 1, "--deepspeed", "none"))
    assert r.exit_code == 0, r.output
    second = json.loads((out / "run.json").read_text())["tokenized_cache"]
    assert second["hit"] is True and second["key"] == first["key"] and second["rows"] == 32


def test_builds_of_the_other_kind_are_refused_by_name(sample_build, pref_build, model, work):
    r = runner.invoke(app, ["train", "dpo", "--build", str(sample_build), "--model", str(model), "-o", str(work / "x")])
    assert r.exit_code == 2 and "build 'sample' is a sft build, not a preference build" in " ".join(r.output.split())
    r = runner.invoke(app, ["train", "sft", "--build", str(pref_build), "--model", str(model), "-o", str(work / "x")])
    out = " ".join(r.output.split())
    assert r.exit_code == 2 and "build 'hh_rlhf' is a preference build, not an SFT build; train it with `mixer train dpo`" in out
    assert not (work / "x").exists()


def test_completion_is_the_assistant_turn_and_eos(pref_build, model, work):
    """What DPO scores: prompt ends on the generation header, completions end on EOS."""
    from mixer_train.common import load_tokenizer_with_template
    from mixer_train.config import load_config, parse_overrides
    from mixer_train.data import load_records, open_build
    from mixer_train.dpo import build_trainer

    cfg = load_config(None, parse_overrides([*SETS, "deepspeed=null", "report_to=none"]), kind="dpo")
    tok, added = load_tokenizer_with_template(str(model), cfg.template)
    ds = load_records(open_build(pref_build, kind="preference"))
    trainer = build_trainer(cfg, str(model), tok, added, ds, str(work / "inspect"), [])
    for ex in trainer.train_dataset:
        assert ex["prompt_ids"][0] == tok.bos_token_id
        assert tok.decode(ex["prompt_ids"]).endswith("<|assistant|>\n")
        assert ex["chosen_ids"][-1] == tok.eos_token_id and ex["rejected_ids"][-1] == tok.eos_token_id
        assert ex["chosen_ids"].count(tok.eos_token_id) == 1
