"""Decontamination through a build (mix-level step in a spec) and as standalone commands."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from helpers import write_spec
from mixer.cli import app

runner = CliRunner()


def test_build_with_a_decontaminate_step_writes_the_report(shared_data: Path, tmp_path: Path) -> None:
    eval_dir = shared_data / "eval"
    spec = write_spec(tmp_path, {
        "name": "decon", "seed": 3,
        "sources": {
            "alpaca7b": {"load": {"path": str(shared_data / "train/alpaca_eval_outputs/results/alpaca-7b/model_outputs.json")},
                         "format": {"name": "alpaca", "input": None}},
            "gsm8k_train": {"load": {"path": str(eval_dir / "gsm8k/train.jsonl")},
                            "format": {"name": "alpaca", "instruction": "question", "input": None, "output": "answer"}},
        },
        # eval_dir relative to the spec's folder
        "mix": [{"decontaminate": {"evals": ["gsm8k", "alpaca_eval", "truthfulqa"], "eval_dir": os.path.relpath(eval_dir, tmp_path),
                                   "drop_source_above": 2.0}}],
    })
    out = tmp_path / "build"
    r = runner.invoke(app, ["build", str(spec), "-o", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "contamination.json").read_text())
    cell = {(x["source"], x["benchmark"]): x for x in rep["matrix"]}
    assert cell[("alpaca7b", "alpaca_eval")]["pct_instances"] == 100.0
    assert cell[("gsm8k_train", "gsm8k")]["records"] == 3 and cell[("gsm8k_train", "gsm8k")]["instances_hit"] == 2
    assert rep["dropped_sources"] == [{"source": "alpaca7b", "benchmark": "alpaca_eval", "pct": 100.0, "limit": 2.0}]
    removed = pl.read_parquet(out / "removed.parquet").filter(pl.col("step") == "decontaminate")
    assert removed.group_by("source", "reason").len().sort("source").rows() == [("alpaca7b", "contaminated_source", 805), ("gsm8k_train", "contaminated", 3)]
    mix = pl.read_parquet(out / "mixture.parquet")
    assert mix.height == 7473 - 3 and not mix["id"].is_in(removed["id"].implode()).any()
    matches = pl.read_parquet(out / "contamination_matches.parquet")
    assert {"id", "source", "benchmark", "instance_id", "coverage", "record_hits", "instance_hits"} <= set(matches.columns)
    manifest = json.loads((out / "manifest.json").read_text())
    step = [s for s in manifest["steps"] if s["step"] == "decontaminate"][0]
    assert step["info"]["removed"] == 808 and "contamination.json" in step["info"]["files"]

    r = runner.invoke(app, ["why", str(out), "gsm8k_train:20"])
    assert "contaminated" in r.output and "gsm8k/test/632" in r.output
    r = runner.invoke(app, ["contamination", str(out), "--top", "3", "--benchmark", "gsm8k"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "alpaca_eval" in r.output and "100.00" in r.output and "gsm8k/test/632" in r.output and "dropped source" in r.output
    r = runner.invoke(app, ["contamination", str(tmp_path)])
    assert r.exit_code == 2 and "no contamination.json" in r.output


def test_decontaminate_command_on_plain_files(shared_data: Path, tmp_path: Path) -> None:
    gsm = shutil.copy(shared_data / "eval/gsm8k/train.jsonl", tmp_path / "gsm8k_train.jsonl")
    seeds = shutil.copy(shared_data / "train/self_instruct/data/seed_tasks.jsonl", tmp_path / "seeds.jsonl")
    user_oriented = shared_data / "train/self_instruct/human_eval/user_oriented_instructions.jsonl"
    r = runner.invoke(app, [
        "decontaminate", str(gsm), "--eval", "gsm8k", "--eval-dir", str(shared_data / "eval"),
        "--eval-file", f"user_oriented={user_oriented}:instruction", "--top", "5",
    ], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    clean = tmp_path / "gsm8k_train.decontaminated.jsonl"
    rows = [json.loads(x) for x in clean.read_text().split("\n") if x]  # not splitlines: U+2028 inside strings
    assert len(rows) == 7470 and set(rows[0]) == {"question", "answer"}  # the original rows, minus 3
    rdir = tmp_path / "gsm8k_train.contamination"
    assert pl.read_parquet(rdir / "removed.parquet").height == 3
    assert json.loads((rdir / "contamination.json").read_text())["removed"] == 3
    assert "gsm8k/test/602" in r.output

    # a file whose fields need mapping, checked against a user eval set only, report only
    r = runner.invoke(app, [
        "decontaminate", str(seeds), "--eval", "", "--eval-file", f"user_oriented={user_oriented}:instruction",
        "--format", "alpaca", "--format-config", '{"input": null, "output": "name"}', "--action", "report",
        "-o", str(tmp_path / "seeds_clean.parquet"),
    ], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert pl.read_parquet(tmp_path / "seeds_clean.parquet").height == 175
    rep = json.loads((tmp_path / "seeds.contamination/contamination.json").read_text())
    assert rep["matched_records"] >= 1 and rep["removed"] == 0
    assert all(x["short_instances_hit"] == x["instances_hit"] for x in rep["matrix"])

    r = runner.invoke(app, ["decontaminate", str(seeds), "--eval", "gsm9k"])
    assert r.exit_code == 2 and "unknown eval set 'gsm9k'" in r.output
    r = runner.invoke(app, ["decontaminate", str(seeds), "--rule", "fuzzy"])
    assert r.exit_code == 2 and "--rule" in r.output
