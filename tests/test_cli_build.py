"""The CLI end to end: build, validate, show, why; and cross-source duplicates in real data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from helpers import write_spec
from mixer.cli import app

runner = CliRunner()


def test_sample_build_via_cli(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "sample"
    r = runner.invoke(app, ["build", str(repo / "mixtures" / "sample.yaml"), "-o", str(out), "--quiet", "--jsonl"])
    assert r.exit_code == 0, r.output
    assert "total" in r.output and "keyword" in r.output
    assert {p.name for p in out.iterdir()} >= {"mixture.parquet", "removed.parquet", "manifest.json", "mixture.jsonl"}
    r = runner.invoke(app, ["why", str(out), "alpaca:1"])
    assert "kept in the mix" in r.output and "alpaca:28" in r.output
    r = runner.invoke(app, ["why", str(out), "sharegpt:10"])
    assert "reason keyword" in r.output and "keyword=Bard role=user" in r.output
    r = runner.invoke(app, ["show", str(out), "--source", "chat", "-n", "1"])
    assert r.exit_code == 0 and "chat:0" in r.output
    r = runner.invoke(app, ["validate", str(repo / "mixtures" / "sample.yaml")])
    assert r.exit_code == 0 and "ok" in r.output


def test_cli_reports_spec_errors(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: x\nsources:\n  a:\n    load: {path: nothing.jsonl}\n    format: alpaca\n    sample: {n: 1.5}\n")
    r = runner.invoke(app, ["build", str(spec)])
    assert r.exit_code == 2
    assert f"{spec}:6: sources.a.sample.n: expected an integer" in " ".join(r.output.split())


def test_all_alpaca_files_show_cross_source_duplicates(shared_data: Path, tmp_path: Path, repo: Path) -> None:
    train = shared_data / "train"
    sources = {
        "alpaca_1k": {"load": {"path": str(train / "alpaca_1k" / "alpaca_data_1k.json")}, "format": "alpaca"},
        "code_alpaca_2k": {"load": {"path": str(train / "codealpaca" / "data" / "code_alpaca_2k.json")}, "format": "alpaca"},
        "new_codealpaca": {"load": {"path": str(train / "codealpaca" / "data" / "new_codealpaca.json")}, "format": "alpaca"},
        "gpteacher_codegen": {"load": {"path": str(train / "gpteacher" / "Codegen" / "codegen-instruct.json")}, "format": {"name": "alpaca", "output": "response"}},
        "gpteacher_roleplay": {"load": {"path": str(train / "gpteacher" / "Roleplay" / "*.json")}, "format": {"name": "alpaca", "output": "response"}},
        "gpteacher_toolformer": {"load": {"path": str(train / "gpteacher" / "Toolformer" / "*.json")}, "format": {"name": "alpaca", "output": "response"}},
        "lf_alpaca_en": {"load": {"path": str(train / "llama_factory" / "data" / "alpaca_en_demo.json")}, "format": "alpaca"},
        "lf_lima": {"load": {"path": str(train / "llama_factory" / "data" / "lima.json")}, "format": "alpaca"},
    }
    spec = write_spec(tmp_path, {"name": "alpacas", "seed": 1, "sources": sources, "mix": [{"exact_dedup": {}}]})
    out = tmp_path / "alpacas"
    proc = subprocess.run([sys.executable, "-m", "mixer.cli", "build", str(spec), "-o", str(out), "--quiet"], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    mix_step = [s for s in manifest["steps"] if s["scope"] == "mix" and s["step"] == "exact_dedup"][0]
    cross = mix_step["info"]["cross_source"]
    # new_codealpaca holds the same triples as GPTeacher's Codegen file: it comes first, so
    # GPTeacher's copies are the ones removed, each naming the new_codealpaca record kept.
    n = cross["new_codealpaca <- gpteacher_codegen"]
    assert n > 4000
    removed = pl.read_parquet(out / "removed.parquet")
    dups = removed.filter((pl.col("source") == "gpteacher_codegen") & (pl.col("reason") == "exact_duplicate"))
    assert dups.height >= n
    assert dups["detail"].str.contains(r"^duplicate of new_codealpaca:\d+ \(new_codealpaca\)$").sum() == n
    row = dups.filter(pl.col("detail").str.contains("new_codealpaca")).row(0, named=True)
    kept_id = row["detail"].split()[2]
    mix = pl.read_parquet(out / "mixture.parquet")
    kept = mix.filter(pl.col("id") == kept_id)["messages"][0].to_list()
    raw = json.loads((train / "gpteacher" / "Codegen" / "codegen-instruct.json").read_text())[int(row["id"].split(":")[1])]
    assert kept[1]["content"].strip().lower() == raw["response"].strip().lower()
