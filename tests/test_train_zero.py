"""DeepSpeed ZeRO-2 and ZeRO-3 in two processes over gloo (torchrun, CPU) reproduce the
single-process run: same effective batch (gradient accumulation 4 -> 2), same losses."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mixer.cli import app
from mixer_train.testing import hh_rlhf_frame, write_build

runner = CliRunner()
# fixtures one_thread, work, sample_build, model: tests/train_fixtures.py
pytestmark = [pytest.mark.shared_data, pytest.mark.usefixtures("one_thread")]

STEPS = 4
# fp32 everywhere: the comparison is about the distributed math, not mixed precision.
SETS = [
    "dtype=fp32",
    "effective_batch_size=8",
    "per_device_batch_size=2",
    "learning_rate=1e-3",
    "warmup_ratio=0",
    "max_length=256",
    "gradient_checkpointing=false",
    "save_steps=100",
    "report_to=none",
    "packing=false",  # every batch full in both layouts (59 records), so the losses must agree
]
# Summation order differs between 1 process x 4 micro-batches and 2 x 2 with a gloo
# all-reduce, and Adam amplifies the last bits a little each step.
REL_TOL = 1e-4


def train(kind, build, model, out, *extra: str, sets=SETS) -> dict[int, dict]:
    args = ["train", kind, "--build", str(build), "--model", str(model), "-o", str(out), "--max-steps", str(STEPS)]
    for s in sets:
        args += ["--set", s]
    r = runner.invoke(app, args + list(extra))
    assert r.exit_code == 0, r.output
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete" and info["global_step"] == STEPS
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in recs if "loss" in r}


@pytest.fixture(scope="module")
def single(sample_build, model, work):
    return train("sft", sample_build, model, work / "single", "--deepspeed", "none")


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_two_process_zero_matches_single_process(single, sample_build, model, work, stage):
    multi = train("sft", sample_build, model, work / stage, "--deepspeed", stage, "--nproc", "2")
    assert sorted(multi) == sorted(single) == list(range(1, STEPS + 1))
    for step in single:
        assert multi[step]["loss"] == pytest.approx(single[step]["loss"], rel=REL_TOL), (stage, step)
        assert multi[step]["grad_norm"] == pytest.approx(single[step]["grad_norm"], rel=1e-3), (stage, step)
        assert multi[step]["num_tokens"] == single[step]["num_tokens"]  # every token seen once, across ranks
    ckpt = json.loads((work / stage / "run.json").read_text())
    assert ckpt["nproc"] == 2 and ckpt["config"]["deepspeed"] == stage


@pytest.mark.slow
def test_dpo_zero3_two_processes(shared_data, model, work):
    """DPO + ZeRO-3 + automatic reference model across 2 CPU ranks (needs the process group
    before the trainer); equal to one process."""
    # 16 pairs that all fit max_length: every batch full (the distributed sampler pads a
    # partial last batch differently from one process)
    frame = hh_rlhf_frame(shared_data / "train" / "hh_rlhf" / "harmless-base" / "test.jsonl.gz", limit=16, max_chars=600)
    build = write_build(frame, work / "hh", name="hh")
    sets = [s for s in SETS if not s.startswith(("effective", "max_length"))] + ["effective_batch_size=4", "max_length=128"]
    one = train("dpo", build, model, work / "dpo1", "--deepspeed", "none", sets=sets)
    two = train("dpo", build, model, work / "dpo-z3", "--deepspeed", "zero3", "--nproc", "2", sets=sets)
    for step in one:
        assert two[step]["loss"] == pytest.approx(one[step]["loss"], rel=1e-3, abs=1e-5)
        assert two[step]["rewards/margins"] == pytest.approx(one[step]["rewards/margins"], rel=1e-2, abs=1e-4)


@pytest.mark.slow
def test_accelerate_launcher_and_zero3_offload(single, sample_build, model, work):
    """The same run through `accelerate launch` (ZeRO-2, 2 processes) and through ZeRO-3
    with CPU offload in one process without a launcher."""
    via_accelerate = train(
        "sft", sample_build, model, work / "accel", "--deepspeed", "zero2", "--nproc", "2", "--launcher", "accelerate"
    )
    offload = train("sft", sample_build, model, work / "offload", "--deepspeed", "zero3_offload")
    for step in single:
        assert via_accelerate[step]["loss"] == pytest.approx(single[step]["loss"], rel=REL_TOL)
        assert offload[step]["loss"] == pytest.approx(single[step]["loss"], rel=REL_TOL)
    assert (work / "accel" / f"checkpoint-{STEPS}" / "rng_state_1.pth").is_file()  # two ranks really ran
