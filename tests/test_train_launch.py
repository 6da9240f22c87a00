"""The training package cannot be shadowed by a user's files: it imports as ``mixer_train``,
and workers started by torchrun never put the working directory on ``sys.path``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# fixtures one_thread, work, sample_build, model: tests/train_fixtures.py
pytestmark = [pytest.mark.shared_data]

SHADOW = 'raise SystemExit("imported the user\'s {name} from the working directory")\n'


def test_files_named_like_the_package_in_the_cwd_do_not_break_training(sample_build, model, work):
    mixer = shutil.which("mixer", path=str(Path(sys.executable).parent))
    if mixer is None:
        pytest.skip("no `mixer` console script beside this interpreter")
    cwd = work / "user-project"
    cwd.mkdir()
    for name in ("train", "mixer_train"):
        (cwd / f"{name}.py").write_text(SHADOW.format(name=f"{name}.py"))
    (cwd / "train").mkdir()  # a package folder too (the reported "__path__ attribute not found")
    (cwd / "train" / "worker.py").write_text(SHADOW.format(name="train/worker.py"))
    out = work / "cwd-run"
    cmd = [mixer, "train", "sft", "--build", str(sample_build), "--model", str(model), "-o", str(out),
           "--nproc", "2", "--deepspeed", "none", "--max-steps", "1"]
    for s in ("dtype=fp32", "effective_batch_size=2", "per_device_batch_size=1", "max_length=128",
              "gradient_checkpointing=false", "report_to=none"):
        cmd += ["--set", s]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "working directory" not in r.stdout + r.stderr
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_a_template_the_tokenizer_cannot_take_leaves_no_run_folder(sample_build, model, work):
    from typer.testing import CliRunner

    from mixer.cli import app

    out = work / "no-template"
    r = CliRunner().invoke(app, ["train", "sft", "--build", str(sample_build), "--model", str(model), "-o", str(out),
                                 "--template", "tokenizer"])
    assert r.exit_code == 2 and "this tokenizer has no chat template" in r.output and not out.exists(), r.output
