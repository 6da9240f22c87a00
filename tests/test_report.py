"""The HTML report: self-contained, its tables and charts agree with the build's ledger."""

from __future__ import annotations

import base64
import re

import polars as pl
import pytest

from mixer.build_dir import BuildDir
from mixer.pipeline import build
from mixer.report import build_report, sources_frame, write_report
from mixer.report.charts import waterfall_steps
from mixer.report.sections import duplicates, removals
from mixer.spec import load_spec


@pytest.fixture(scope="module")
def sample_build(tmp_path_factory, repo):
    out = tmp_path_factory.mktemp("report") / "sample"
    build(load_spec(repo / "mixtures" / "sample.yaml"), out)
    return BuildDir(out)


def test_waterfall_reconciles_with_manifest(sample_build) -> None:
    m = sample_build.manifest
    read = sum(s["read"] for s in m["sources"].values())
    steps = dict(waterfall_steps(m))
    assert read + sum(steps.values()) == m["records"]
    assert -sum(v for v in steps.values() if v < 0) == m["removed"] == sample_build.removed.height
    assert steps["sample repeat"] > 0 and steps["mix: exact_dedup"] < 0
    labels = list(steps)
    assert labels.index("load") < labels.index("validate") < labels.index("keyword_filter") < labels.index("mix: exact_dedup")


def test_removals_and_duplicates_from_ledger(sample_build) -> None:
    r = removals(sample_build.removed)
    assert r["total"].sum() == sample_build.removed.height
    kw = r.filter(pl.col("step") == "keyword_filter")
    assert kw["total"].sum() == sample_build.removed.filter(pl.col("reason") == "keyword").height
    d = duplicates(sample_build.removed)
    assert d is not None
    n_dup = sample_build.removed.filter(pl.col("reason") == "exact_duplicate").height
    assert d["summary"]["removed"].sum() == n_dup
    assert d["top"]["copies_removed"].sum() == n_dup  # every detail names its kept record


def test_sources_frame_totals(sample_build) -> None:
    f = sources_frame(sample_build.manifest, None)
    assert f["source"].to_list() == [*sample_build.sources, "total"]
    assert f.row(-1, named=True)["kept"] == sample_build.manifest["records"]
    assert f.row(-1, named=True)["removed"] == sample_build.manifest["removed"]


def test_report_is_self_contained(sample_build, tmp_path) -> None:
    path = write_report(sample_build, tmp_path / "rep")
    text = path.read_text()
    assert {p.name for p in path.parent.glob("*.png")} == {"lengths.png", "waterfall.png", "composition.png"}
    for p in path.parent.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(imgs) == 3 and all(base64.b64decode(i)[:4] == b"\x89PNG" for i in imgs)
    assert not re.search(r'(src|href)="(https?:)?//', text)  # nothing fetched from anywhere
    assert 'id="sources-table"' in text and 'id="duplicates"' in text and 'id="removals-table"' in text
    for src in sample_build.sources:
        assert f"<td>{src}</td>" in text
    assert "whitespace words" in text  # no tokenizer in the sample spec: says so


def test_report_with_tokenizer(sample_build, shared_tokenizers) -> None:
    rep = build_report(sample_build, str(shared_tokenizers / "gpt2" / "tokenizer.json"))
    assert "gpt2 tokens" in rep.html and "% of tokens" in rep.html


@pytest.fixture(scope="module")
def dedup_build(tmp_path_factory, shared_data):
    """Real cross-source duplicates (new_codealpaca holds GPTeacher's Codegen triples) and
    AlpacaEval answers, contaminated with AlpacaEval by construction."""
    import yaml

    from mixer.spec import parse_spec

    train, evals = shared_data / "train", shared_data / "eval"
    tmp = tmp_path_factory.mktemp("dd")
    spec = {"name": "dd", "seed": 1, "sources": {
        "codealpaca": {"load": {"path": str(train / "codealpaca/data/new_codealpaca.json")}, "format": "alpaca"},
        "gpteacher": {"load": {"path": str(train / "gpteacher/Codegen/codegen-instruct.json")},
                      "format": {"name": "alpaca", "output": "response"}, "sample": {"n": 1500}},
        "evalout": {"load": {"path": str(train / "alpaca_eval_outputs/results/text_davinci_003/model_outputs.json")},
                    "format": "alpaca", "sample": {"n": 300}},
    }, "mix": [{"exact_dedup": {}}, {"minhash": {"threshold": 0.7}},
               {"decontaminate": {"evals": ["alpaca_eval"], "eval_dir": str(evals), "rule": "tulu3"}}]}
    res = build(parse_spec(yaml.safe_dump(spec), str(tmp / "dd.yaml"), tmp), tmp / "dd")
    return BuildDir(res.output)


def test_report_dedup_and_contamination_sections(dedup_build) -> None:
    html = build_report(dedup_build).html
    removed = dedup_build.removed
    assert 'id="duplicates-matrix"' in html and "largest near-duplicate clusters" in html
    cross = removed.filter((pl.col("reason") == "exact_duplicate") & (pl.col("source") == "gpteacher")).height
    assert cross > 1000  # GPTeacher's Codegen triples are already in new_codealpaca
    d = duplicates(removed)
    m = d["matrix"]
    assert m.filter(pl.col("removed from \\ kept in") == "gpteacher")["codealpaca"].item() == cross
    assert 'id="contamination"' in html and 'id="contamination-matrix"' in html and "top matches by coverage" in html
    contaminated = removed.filter(pl.col("reason") == "contaminated")
    assert contaminated.filter(pl.col("source") == "evalout").height > 250
    assert f"{contaminated.height:,} removed" in html
