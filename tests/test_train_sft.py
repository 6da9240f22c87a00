"""SFT end to end on the real sample build with a tiny random Llama and the Llama 2
tokenizer: the loss falls, the run folder records everything, a killed run resumes at the
right step with the same losses, packing keeps sequences apart."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from mixer.cli import app

runner = CliRunner()
# fixtures one_thread, work, sample_build, model: tests/train_fixtures.py
pytestmark = [pytest.mark.shared_data, pytest.mark.usefixtures("one_thread")]

STEPS = 24
SETS = [  # TRL names where TRL has one: they are forwarded (checked in the first test)
    "bf16=false",
    "effective_batch_size=8",
    "per_device_train_batch_size=4",
    "learning_rate=1e-3",
    "warmup_ratio=0",
    "max_length=256",
    "gradient_checkpointing=false",
    "save_steps=8",
    "packing=false",  # padded batches; packing by default: test_packing_by_default_...
]


def sft_args(build, model, out, *extra: str, sets=SETS) -> list[str]:
    args = ["train", "sft", "--build", str(build), "--model", str(model), "-o", str(out), "--deepspeed", "none"]
    args += ["--max-steps", str(STEPS)]
    for s in sets:
        args += ["--set", s]
    return args + list(extra)


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in metrics(run_dir) if "loss" in r}



@pytest.fixture(scope="module")
def full_run(sample_build, model, work):
    out = work / "full"
    r = runner.invoke(app, sft_args(sample_build, model, out))
    assert r.exit_code == 0, r.output
    (work / "full-console.txt").write_text(r.output)
    return out


def test_trl_names_reach_the_trainer(full_run):
    args = json.loads((full_run / "training_args.json").read_text())
    assert (args["bf16"], args["per_device_train_batch_size"], args["gradient_accumulation_steps"]) == (False, 4, 2)
    assert (args["packing"], args["max_length"], args["learning_rate"]) == (False, 256, 1e-3)


def test_console_shows_progress_and_a_summary(full_run, work):
    console = (work / "full-console.txt").read_text()
    lines = re.findall(rf"step (\d+)/{STEPS}  loss \d+\.\d{{4}}  lr \d\.\d\de[-+]\d\d  \d+ tok/s  eta \d+:\d\d:\d\d\n", console)
    assert lines == [str(s) for s in range(1, STEPS + 1)], console
    assert "padding: packing turned off in the config" in console
    summary = json.loads((full_run / "run.json").read_text())["summary"]
    assert summary["steps"] == STEPS and summary["tokens"] > 0 and summary["peak_rss_gib"] > 0
    assert 0 < summary["padding_waste"] < 1  # padded batches of conversations of different lengths
    for label in ("training summary", "tokens trained", "wall time", "padding waste", "peak memory"):
        assert label in console


def test_model_card_names_the_build(full_run, sample_build, model):
    import hashlib

    manifest_bytes = (sample_build / "manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    card = (full_run / "README.md").read_text()
    assert (full_run / "final" / "README.md").read_text() == card  # replaces TRL's generic card
    assert f"base_model: {model}" in card and f"on the mixer build `{manifest['name']}`" in card
    assert manifest["spec_hash"] in card
    assert f"sha256:{hashlib.sha256(manifest_bytes).hexdigest()}" in card
    assert manifest["files"]["mixture.parquet"]["sha256"] in card
    assert f"`{sample_build / 'README.md'}`" in card  # where the dataset card lives
    for name, src in manifest["sources"].items():
        assert f"| {name} | {src['format']} | {src['read']} | {src['kept']} |" in card
    assert "learning_rate: 0.001" in card and "max_length: 256" in card
    assert "<|assistant|>" in card and "{% generation %}" in card  # the chat template
    final_loss = json.loads((full_run / "run.json").read_text())["summary"]["final_loss"]
    assert f"| final_loss | {final_loss} |" in card


def test_second_run_hits_the_tokenized_cache(full_run, sample_build, model, work):
    first = json.loads((full_run / "run.json").read_text())["tokenized_cache"]
    assert first["hit"] is False and first["rows"] == 59

    def again(name, *extra):
        out = work / name
        r = runner.invoke(app, sft_args(sample_build, model, out, "--max-steps", "1", *extra))
        assert r.exit_code == 0, r.output
        return json.loads((out / "run.json").read_text())["tokenized_cache"], r.output

    second, console = again("again")
    assert second["hit"] is True and second["key"] == first["key"] and second["rows"] == 59
    assert "tokenized cache: hit" in console
    assert second["seconds"] < first["seconds"]
    chatml, _ = again("chatml", "--template", "chatml")
    shorter, _ = again("shorter", "--set", "max_length=128")
    assert chatml["hit"] is False and shorter["hit"] is False
    assert len({first["key"], chatml["key"], shorter["key"]}) == 3


def test_loss_decreases_and_run_folder_is_complete(full_run, sample_build, model):
    loss = losses(full_run)
    assert sorted(loss) == list(range(1, STEPS + 1))
    first, last = [loss[s] for s in range(1, 5)], [loss[s] for s in range(STEPS - 3, STEPS + 1)]
    assert sum(last) / 4 < sum(first) / 4 - 0.5, loss
    recs = [r for r in metrics(full_run) if "loss" in r]
    assert all(r["tokens_per_second"] > 0 and r["num_tokens"] > 0 for r in recs)
    info = json.loads((full_run / "run.json").read_text())
    assert info["status"] == "complete" and info["global_step"] == STEPS
    manifest = json.loads((sample_build / "manifest.json").read_text())
    assert json.loads((full_run / "build_manifest.json").read_text()) == manifest
    assert info["spec_hash"] == manifest["spec_hash"] == (full_run / "spec_hash").read_text().strip()
    assert (full_run / "final" / "model.safetensors").is_file()
    assert "<|assistant|>" in (full_run / "final" / "chat_template.jinja").read_text()
    from transformers import AutoTokenizer

    from mixer.tokenizers import load_tokenizer

    text = "<|user|>\nHi</s>\n<|assistant|>\nOk"  # legacy Llama spacing after a special token
    saved, source = AutoTokenizer.from_pretrained(full_run / "final"), load_tokenizer(str(model))
    assert saved(text).input_ids == source(text).input_ids
    assert sorted(p.name for p in full_run.glob("checkpoint-*")) == ["checkpoint-16", "checkpoint-24"]
    assert all((p / "mixer_checkpoint.json").is_file() for p in full_run.glob("checkpoint-*"))
    import importlib.util

    if importlib.util.find_spec("tensorboard"):  # report_to: auto
        assert list(full_run.glob("runs/*/events.out.tfevents.*")), "tensorboard is installed: events expected"


def test_killed_run_resumes_at_the_right_step(full_run, sample_build, model, work):
    """SIGKILL the whole process group once checkpoint-8 is complete, then --resume: the
    run continues after the checkpoint step and reproduces the uninterrupted losses."""
    out = work / "killed"
    env = {**os.environ, "MIXER_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mixer.cli", *sft_args(sample_build, model, out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    marker = out / "checkpoint-8" / "mixer_checkpoint.json"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert marker.exists(), "the run never wrote checkpoint-8"
    assert max(losses(out)) < STEPS, "the run finished before it could be killed"

    r = runner.invoke(app, ["train", "sft", "-o", str(out), "--resume"])  # build/model from run.json
    assert r.exit_code == 0, r.output
    info = json.loads((out / "run.json").read_text())
    assert info["tokenized_cache"]["hit"]  # prepared by the full run; equal losses below
    resumed = int(info["resumed_from"].rsplit("-", 1)[1])
    assert resumed >= 8 and resumed % 8 == 0 and info["global_step"] == STEPS
    records = metrics(out)
    begins = [i for i, r in enumerate(records) if r.get("event") == "train_begin"]
    assert len(begins) == 2 and records[begins[1]]["step"] == resumed
    tail = [r for r in records[begins[1] :] if "loss" in r]
    assert [r["step"] for r in tail] == list(range(resumed + 1, STEPS + 1))
    reference = losses(full_run)
    for r in tail:
        assert r["loss"] == pytest.approx(reference[r["step"]], rel=1e-4), (r["step"], r["loss"], reference[r["step"]])


def test_packing_by_default_runs_and_isolates_sequences(sample_build, model, work):
    """Without a packing key, sdpa gets padding-free bfd packing (and says why); and with
    sdpa/eager the packed forward equals separate forwards (transformers builds a
    block-diagonal mask from the reset position ids)."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    out = work / "packed"
    r = runner.invoke(app, sft_args(sample_build, model, out, "--max-steps", "3", sets=[s for s in SETS if s != "packing=false"]))
    assert r.exit_code == 0, r.output
    assert sorted(losses(out)) == [1, 2, 3]
    assert "packing (bfd, padding-free): attention 'sdpa' keeps packed sequences apart" in " ".join(r.output.split())
    info = json.loads((out / "run.json").read_text())
    assert info["packing"]["enabled"] and info["summary"]["padding_waste"] == 0

    a, b = list(range(100, 117)), list(range(300, 311))
    collate = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)
    batch = collate([{"input_ids": a + b, "seq_lengths": [len(a), len(b)]}])
    for impl in ("sdpa", "eager"):
        m = AutoModelForCausalLM.from_pretrained(model, attn_implementation=impl).eval()
        with torch.no_grad():
            packed = m(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
            alone_a = m(input_ids=torch.tensor([a]), use_cache=False).logits[0]
            alone_b = m(input_ids=torch.tensor([b]), use_cache=False).logits[0]
        assert torch.allclose(packed[: len(a)], alone_a, atol=1e-5)
        assert torch.allclose(packed[len(a) :], alone_b, atol=1e-5), impl


def test_lora_trains_an_adapter_only(sample_build, model, work):
    out = work / "lora"
    r = runner.invoke(app, sft_args(sample_build, model, out, "--set", "lora.r=8", "--max-steps", "3"))
    assert r.exit_code == 0, r.output
    final = out / "final"
    assert (final / "adapter_config.json").is_file() and (final / "adapter_model.safetensors").is_file()
    assert not (final / "model.safetensors").exists()
    assert json.loads((final / "adapter_config.json").read_text())["r"] == 8
    assert sorted(losses(out)) == [1, 2, 3]
