"""The data-only install: a fresh venv with ``pip install -e .`` (no extras) builds the
sample mixture, and none of the heavy optional packages is installed. Minutes: slow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "deepspeed", "trl", "peft", "accelerate", "faiss", "sentence_transformers", "model2vec", "ray")


@pytest.mark.slow
def test_fresh_venv_without_extras_builds_the_sample(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-e", str(ROOT)], check=True)
    out = subprocess.run([str(venv / "bin" / "mixer"), "build", "mixtures/sample.yaml", "-o", str(tmp_path / "b"), "-q"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "b" / "mixture.parquet").exists() and (tmp_path / "b" / "README.md").exists()
    for mod in HEAVY:
        r = subprocess.run([str(py), "-c", f"import {mod}"], capture_output=True, text=True)
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, mod
    # a feature behind an extra says which one, in one line
    spec = tmp_path / "sel.yaml"
    spec.write_text(f"name: s\nseed: 1\nsources:\n  c: {{load: {{path: {ROOT}/data/sample/chat.jsonl}}, format: messages, on_error: skip}}\n"
                    "mix:\n  - select: {method: random, budget: 3}\n")
    r = subprocess.run([str(venv / "bin" / "mixer"), "build", str(spec), "-o", str(tmp_path / "s"), "-q"], capture_output=True, text=True)
    assert r.returncode == 2 and "pip install 'mixer[select]'" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = subprocess.run([str(venv / "bin" / "mixer"), "build", "mixtures/sample.yaml", "-o", str(tmp_path / "r"), "--engine", "ray", "-q"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "pip install 'mixer[ray]'" in r.stderr, r.stderr
