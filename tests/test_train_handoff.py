"""Handoff safety: `mixer train` trusts only complete, intact builds, and records which one
it trained on."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest
from typer.testing import CliRunner

from mixer.cli import app
from train.config import load_config
from train.data import BuildError, load_records, open_build
from train.run import RunError, last_checkpoint, prepare_run
from train.testing import sft_frame_from, write_build

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
    with pytest.raises(BuildError, match="mixer train sft"):
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
