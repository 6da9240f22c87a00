"""Near-dup steps through the pipeline, ``mixer dedup --against`` and ``mixer dedup-report``."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from helpers import write_spec
from mixer.build_dir import BuildDir
from mixer.cli import app
from mixer.pipeline import build
from mixer.spec import load_spec

runner = CliRunner()


@pytest.fixture(scope="module")
def code_build(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """codealpaca (2k), new_codealpaca and gpteacher Codegen: the last two hold the same
    4,535 triples, so the mix-level minhash step removes gpteacher's copies."""
    train = shared_data / "train"
    folder = tmp_path_factory.mktemp("dedup_build")
    spec = {
        "name": "code", "seed": 1,
        "sources": {
            "codealpaca": {"load": {"path": str(train / "codealpaca/data/code_alpaca_2k.json")}, "format": "alpaca"},
            "new_codealpaca": {"load": {"path": str(train / "codealpaca/data/new_codealpaca.json")}, "format": "alpaca"},
            "gpteacher": {"load": {"path": str(train / "gpteacher/Codegen/codegen-instruct.json")},
                          "format": {"name": "alpaca", "output": "response"}},
        },
        "mix": [{"minhash": {"threshold": 0.8}}],
    }
    res = build(load_spec(write_spec(folder, spec)), folder / "out")
    return res.output


def test_build_with_minhash(code_build: Path) -> None:
    b = BuildDir(code_build)
    near = b.removed.filter(pl.col("reason") == "near_duplicate")
    assert near.filter(pl.col("source") == "gpteacher").height >= 4400
    assert near["detail"].str.starts_with("near-duplicate of ").all()
    step = next(e for e in b.manifest["steps"] if e["step"] == "minhash")
    assert step["info"]["params"]["verify"] == "exact"
    assert step["info"]["removed"] == near.height
    table = pl.read_parquet(code_build / "dedup" / "minhash.clusters.parquet")
    assert table.filter(~pl.col("kept")).height == near.height
    assert set(table.columns) >= {"id", "source", "cluster", "kept", "similarity", "jaccard", "snippet", "cluster_size"}
    # "why" finds the kept record's duplicates through the detail text
    gone = near.row(0, named=True)
    kept_id = gone["detail"].split(" ")[2]
    facts = b.why(kept_id)
    assert any(f["status"] == "duplicate_of_this" and f["id"] == gone["id"] for f in facts)


def test_dedup_report(code_build: Path) -> None:
    res = runner.invoke(app, ["dedup-report", str(code_build), "--json", "--top", "3"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)["minhash"]
    pairs = {(p["kept_source"], p["removed_source"]): p for p in rep["source_pairs"]}
    top = pairs[("new_codealpaca", "gpteacher")]
    assert top["duplicates"] >= 4400 and 0.95 < top["share_of_removed_source"] <= 1.0
    assert sum(d["records"] for d in rep["size_distribution"]) == rep["records_in_clusters"]
    assert len(rep["largest"]) == 3 and rep["largest"][0]["size"] >= rep["largest"][-1]["size"]
    assert rep["largest"][0]["examples"][0]["snippet"]
    text = runner.invoke(app, ["dedup-report", str(code_build)])
    assert text.exit_code == 0 and "duplicates per pair of sources" in text.output


def test_dedup_against_build(code_build: Path, shared_data: Path, tmp_path: Path) -> None:
    """Raw gpteacher Codegen rows against the build: everything is already in it (kept as
    new_codealpaca); alpaca_1k rows are new, except the ones repeated within the file."""
    raw = json.loads((shared_data / "train/gpteacher/Codegen/codegen-instruct.json").read_text())[:300]
    fresh = json.loads((shared_data / "train/alpaca_1k/alpaca_data_1k.json").read_text())[:200]
    rows = [{"instruction": r["instruction"], "input": r["input"], "output": r["response"]} for r in raw] + fresh + fresh[:20]
    path = tmp_path / "incoming.json"
    path.write_text(json.dumps(rows))
    res = runner.invoke(app, ["dedup", str(path), "--against", str(code_build), "--format", "alpaca",
                              "--json", "-o", str(tmp_path / "kept.parquet"), "--removed", str(tmp_path / "gone.parquet")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)  # progress lines go to stderr
    assert out["records"] == 520
    assert out["of_build"] >= 290 and out["within_file"] >= 20
    assert out["duplicates"] + out["kept"] == 520
    matches = pl.DataFrame(out["matches"])
    assert matches.filter(pl.col("where") != "this file")["duplicate_source"].is_in(["new_codealpaca", "codealpaca"]).all()
    assert (matches["jaccard"] >= 0.8).all()
    kept = pl.read_parquet(tmp_path / "kept.parquet")
    gone = pl.read_parquet(tmp_path / "gone.parquet")
    assert kept.height == out["kept"] and gone.height == out["duplicates"]
    assert set(gone["reason"]) == {"near_duplicate"}


def test_dedup_against_errors(tmp_path: Path) -> None:
    res = runner.invoke(app, ["dedup", str(tmp_path / "x.jsonl"), "--against", str(tmp_path)])
    assert res.exit_code == 2
