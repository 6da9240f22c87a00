"""Handoff safety: `mixer train` trusts only complete, intact builds, and records which one
it trained on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import polars as pl
import pytest
from typer.testing import CliRunner

from mixer.cli import app
from mixer_train.config import load_config
from mixer_train.data import BuildError, load_records, open_build
from mixer_train.run import RunError, last_checkpoint, mark_failed, prepare_run
from mixer_train.testing import sft_frame_from, write_build

runner = CliRunner()


@pytest.fixture(scope="module")
def sample_build(repo, tmp_path_factory):
    out = tmp_path_factory.mktemp("handoff") / "sample"
    r = runner.invoke(app, ["build", str(repo / "mixtures" / "sample.yaml"), "-o", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    return out


def _copy(build, tmp_path, name="copy"):
    dst = tmp_path / name
    shutil.copytree(build, dst)
    return dst


def test_the_sample_build_opens_and_loads(sample_build):
    b = open_build(sample_build, kind="sft")
    assert b.kind == "sft" and b.spec_hash.startswith("sha256:")
    ds = load_records(b)
    assert ds.column_names == ["messages"] and len(ds) == b.rows == pl.read_parquet(b.mixture).height
    assert set(ds[0]["messages"][0]) == {"role", "content"}


def test_missing_manifest_is_refused_with_a_hint(sample_build, tmp_path):
    b = _copy(sample_build, tmp_path, "sample")
    (b / "manifest.json").unlink()
    (tmp_path / ".sample.tmp-1234").mkdir()
    with pytest.raises(BuildError, match=r"no manifest.json.*half-written build sits beside it: \.sample\.tmp-1234"):
        open_build(b)


def test_incomplete_and_temp_builds_are_refused(sample_build, tmp_path):
    b = _copy(sample_build, tmp_path)
    m = json.loads((b / "manifest.json").read_text())
    m["complete"] = False
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BuildError, match="complete"):
        open_build(b)
    tmp = _copy(sample_build, tmp_path, ".sample.tmp-99")
    with pytest.raises(BuildError, match="never finished"):
        open_build(tmp)


def test_a_modified_mixture_is_refused(sample_build, tmp_path):
    b = _copy(sample_build, tmp_path)
    frame = pl.read_parquet(b / "mixture.parquet")
    frame.head(frame.height - 1).write_parquet(b / "mixture.parquet")
    with pytest.raises(BuildError, match="mixture.parquet"):
        open_build(b)


def test_kind_and_unusable_records(sample_build, tmp_path):
    with pytest.raises(BuildError, match="build 'sample' is a sft build, not a preference build; train it with `mixer train sft`"):
        open_build(sample_build, kind="preference")
    bad = sft_frame_from([[{"role": "user", "content": "hi"}]], "broken")
    write_build(bad, tmp_path / "bad")
    with pytest.raises(BuildError, match=r"no assistant turn in record\(s\) \['broken-0'\]"):
        open_build(tmp_path / "bad")


def test_run_folder_records_the_build_and_refuses_reuse(sample_build, tmp_path):
    b = open_build(sample_build)
    cfg = load_config("tulu2-sft")
    run = prepare_run(tmp_path / "run", b, cfg, "some/model", None, resume=False, config_given=False)
    assert json.loads((run.folder / "build_manifest.json").read_text()) == b.manifest
    assert (run.folder / "spec_hash").read_text().strip() == b.spec_hash == run.info["spec_hash"]
    assert run.info["config"]["learning_rate"] == 2e-5 and run.info["build_rows"] == b.rows
    with pytest.raises(RunError, match="--resume"):
        prepare_run(tmp_path / "run", b, cfg, "some/model", None, resume=False, config_given=False)
    other = _copy(sample_build, tmp_path, "other")
    m = json.loads((other / "manifest.json").read_text())
    m["spec_hash"] = "sha256:" + "0" * 64
    (other / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(RunError, match="spec hash"):
        prepare_run(tmp_path / "run", open_build(other), cfg, "some/model", None, resume=True, config_given=False)
    changed = load_config("tulu2-sft", {"learning_rate": 1e-5})
    with pytest.raises(RunError, match="learning_rate"):
        prepare_run(tmp_path / "run", b, changed, "some/model", None, resume=True, config_given=True)


def test_resume_skips_unmarked_checkpoints(tmp_path):
    for step, marked in ((4, True), (8, True), (12, False)):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        (d / "trainer_state.json").write_text("{}")
        if marked:
            (d / "mixer_checkpoint.json").write_text("{}")
    assert last_checkpoint(tmp_path).name == "checkpoint-8"
    assert not (tmp_path / "checkpoint-12").exists()  # moved aside, never loaded
    assert any(p.name.startswith("checkpoint-12.incomplete") for p in tmp_path.iterdir())


def test_cli_errors_before_training(sample_build, tmp_path):
    r = runner.invoke(app, ["train", "sft", "--build", str(tmp_path / "nope"), "--model", "x"])
    assert r.exit_code == 2 and "build folder not found" in r.output
    r = runner.invoke(app, ["train", "dpo", "--build", str(sample_build), "--model", "x"])
    assert r.exit_code == 2 and "mixer train sft" in r.output
    r = runner.invoke(app, ["train", "sft", "--build", str(sample_build), "--model", "x", "--set", "lerning_rate=1"])
    assert r.exit_code == 2 and "unknown config key 'lerning_rate'" in r.output
    r = runner.invoke(app, ["train", "sft", "--build", str(sample_build), "--model", "x", "--nproc", "3"])
    assert r.exit_code == 2 and "effective_batch_size=128 is not divisible" in r.output
    r = runner.invoke(app, ["train", "sft", "--build", str(sample_build), "--model", "x", "-c", "tulu2-qlora"])
    assert r.exit_code == 2 and "CUDA GPU" in r.output


@pytest.mark.parametrize(
    ("content", "message"),
    [("[1, 2]", "is a JSON list"), ("{not json", "not a readable JSON manifest"), (None, "found a folder")],
)
def test_a_malformed_manifest_is_one_line(sample_build, tmp_path, content, message):
    bad = tmp_path / "bad"
    shutil.copytree(sample_build, bad)
    mf = bad / "manifest.json"
    if content is None:
        mf.unlink()
        mf.mkdir()
    else:
        mf.write_text(content)
    r = runner.invoke(app, ["train", "sft", "--build", str(bad), "--model", "x"])
    assert r.exit_code == 2 and message in r.output and str(mf) in r.output.replace("\n", ""), r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_missing_model_is_one_line_and_leaves_no_run_folder(sample_build, tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "sft", "--build", str(sample_build), "--model", str(tmp_path / "no-model"), "-o", str(out)])
    assert r.exit_code == 2 and "no such folder" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not out.exists()
    (tmp_path / "empty-model").mkdir()
    r = runner.invoke(app, ["train", "sft", "--build", str(sample_build), "--model", str(tmp_path / "empty-model"), "-o", str(out)])
    assert r.exit_code == 2 and "no config.json" in r.output and not out.exists()


def test_a_failed_attempt_never_blocks_the_next(sample_build, tmp_path):
    b = open_build(sample_build, kind="sft")
    cfg = load_config("tulu2-sft")
    out = tmp_path / "run"
    run = prepare_run(out, b, cfg, "m", None, resume=False, config_given=False)
    with pytest.raises(RunError, match="already holds a run"):  # its process (this one) still runs
        prepare_run(out, b, cfg, "m", None, resume=False, config_given=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run.info["pid"] = dead.pid  # killed (-9) before its first checkpoint: status stays "running"
    run.save()
    (out / "metrics.jsonl").write_text("{}\n")
    prepare_run(out, b, cfg, "m", None, resume=False, config_given=False)
    assert not (out / "metrics.jsonl").exists()
    mark_failed(out, RuntimeError("out of memory"))
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    prepare_run(out, b, cfg, "m", None, resume=False, config_given=False)
    (out / "notes.txt").write_text("mine")  # anything not written by a run keeps the folder
    with pytest.raises(RunError, match="already holds a run"):
        prepare_run(out, b, cfg, "m", None, resume=False, config_given=False)
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    (out / "checkpoint-4").mkdir()  # progress worth resuming is never removed
    with pytest.raises(RunError, match="--resume"):
        prepare_run(out, b, cfg, "m", None, resume=False, config_given=False)
    assert (out / "checkpoint-4").is_dir()
