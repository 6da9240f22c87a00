"""The notebook API (``mixer.open``, ``mixer.build``) and the ``stats``/``report``/``diff``
commands, on builds of the sample mixture."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pytest
from typer.testing import CliRunner

import mixer
from mixer.progress import NotebookReporter


@pytest.fixture(scope="module")
def m(tmp_path_factory, repo):
    return mixer.build(repo / "mixtures" / "sample.yaml", tmp_path_factory.mktemp("api") / "sample", progress=False)


def test_import_is_lazy_and_fast() -> None:
    code = "import sys, mixer; assert 'polars' not in sys.modules and 'mixer.api' not in sys.modules; print(mixer.open.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "mixer.api"


def test_open_and_explore(m) -> None:
    again = mixer.open(m.path, progress=False)
    assert isinstance(again, mixer.Mixture) and len(again) == m.manifest["records"] == again.frame.height
    assert m.sources == ["alpaca", "sharegpt", "chat"]
    kw = m.removed(reason="keyword")
    assert kw.height == 5 and set(kw["reason"]) == {"keyword"}
    assert m.removed(reason=["keyword", "exact_duplicate"], source="chat").height == 3
    assert m.removed(step="load")["reason"].to_list() == ["malformed_json"]
    s1, s2 = m.sample("sharegpt", 4, seed=3), m.sample("sharegpt", 4, seed=3)
    assert s1.equals(s2) and s1.height == 4 and set(s1["source"]) == {"sharegpt"}
    assert m.sample(n=1000).height == len(m)
    with pytest.raises(KeyError, match="sources: alpaca"):
        m.sample("nope")
    w = m.why("alpaca:19")
    assert w.row(0, named=True)["status"] == "removed" and w.row(0, named=True)["reason"] == "keyword"
    assert m.why("chat:5").filter(pl.col("status") == "duplicate_of_this").height == 2


def test_stats_plot_compare_report(m, tmp_path, shared_tokenizers) -> None:
    tok = str(shared_tokenizers / "gpt2" / "tokenizer.json")
    s = m.stats(tokenizer=tok)
    assert s.unit == "tokens" and s.total["instances"] == len(m)
    assert m.stats().unit == "words"  # the sample spec names no tokenizer
    assert m.lengths(tok)["tokens"].sum() == s.total["tokens_sum"]
    fig = m.plot_lengths(tok)
    assert len([ax for ax in fig.axes if ax.has_data()]) == len(m.sources) + 1
    d = m.compare(m.path)
    assert d.identical
    html = m._repr_html_()
    assert "sample" in html and "<table" in html and "no stats.json" in html
    assert "alpaca:0" in m.show("alpaca", 2, seed=0).data or "alpaca:" in m.show("alpaca", 2).data
    assert m.report(tmp_path / "r").exists()


def test_notebook_reporter_html() -> None:
    rep = NotebookReporter()
    rep.begin("alpaca", 3)
    rep.stage("alpaca", "load")
    rep.stage("alpaca", "format")
    rep.update("alpaca", 50, 200)
    html = rep._html()
    assert "<progress value='1' max='3'" in html and "format [25%]" in html
    rep.finish("alpaca", "23 records")
    assert "<progress value='3' max='3'" in rep._html()


def test_cli_stats_report_diff(m, tmp_path, repo) -> None:
    from mixer.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["stats", str(m.path), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["rows"]["total"]["instances"] == len(m) and data["unit"] == "words"
    r = runner.invoke(app, ["stats", str(m.path), "--over", "10,20"])
    assert r.exit_code == 0 and ">20" in r.output and "rounds dist." in r.output
    r = runner.invoke(app, ["stats", str(repo / "mixtures" / "sample.yaml"), "--json"])  # a spec: built on the side
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["rows"]["total"]["instances"] == len(m)
    r = runner.invoke(app, ["stats", str(tmp_path / "missing")])
    assert r.exit_code == 2
    r = runner.invoke(app, ["report", str(m.path), "-o", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "rep" / "report.html").exists() and (tmp_path / "rep" / "lengths.png").exists()
    r = runner.invoke(app, ["diff", str(m.path), str(m.path)])
    assert r.exit_code == 0 and "same records, same contents" in r.output
