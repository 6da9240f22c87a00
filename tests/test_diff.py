"""``mixer diff``: two variants of the sample spec differ exactly where the spec changed."""

from __future__ import annotations

import polars as pl
import pytest
import yaml

from mixer.build_dir import BuildDir
from mixer.diff import NEW, NOT_READ, diff_builds, spec_changes
from mixer.pipeline import build
from mixer.spec import parse_spec


def variant(repo, tmp, name: str, edit) -> BuildDir:
    raw = yaml.safe_load((repo / "mixtures" / "sample.yaml").read_text())
    edit(raw)
    spec = parse_spec(yaml.safe_dump(raw, sort_keys=False), str(repo / "mixtures" / f"{name}.yaml"), repo / "mixtures")
    return BuildDir(build(spec, tmp / name).output)


@pytest.fixture(scope="module")
def builds(tmp_path_factory, repo):
    tmp = tmp_path_factory.mktemp("diff")
    a = variant(repo, tmp, "a", lambda r: None)
    b = variant(repo, tmp, "b", lambda r: (r["sources"]["alpaca"].update(sample={"fraction": 0.5}),
                                           r["sources"].pop("chat")))
    return a, b


def test_entered_and_left_with_reasons(builds) -> None:
    a, b = builds
    d = diff_builds(a, b, with_stats=False)
    fa, fb = set(a.frame["id"]), set(b.frame["id"])
    assert set(d.left["id"]) == fa - fb and set(d.entered["id"]) == fb - fa
    # fraction 0.9 -> 0.5 of the same filtered alpaca: B's sample is not a subset of A's
    # (each draw is its own), but every change is explained by a sample ledger row
    alpaca_left = d.left.filter(pl.col("source") == "alpaca")
    assert alpaca_left.height > 0 and set(alpaca_left["reason"]) == {"not_sampled"}
    assert set(d.entered.filter(pl.col("source") == "alpaca")["reason"]) <= {"not_sampled"}
    # the chat source is gone from B: its records were never read there
    chat_left = d.left.filter(pl.col("source") == "chat")
    assert chat_left.height == a.frame.filter(pl.col("source") == "chat").height
    assert set(chat_left["reason"]) == {NOT_READ}
    per = d.per_source.filter(pl.col("source") == "chat").row(0, named=True)
    assert per["kept_a"] == per["left"] and per["kept_b"] == 0 and per["delta"] == -per["kept_a"]
    summary = d.per_source
    assert (summary["kept_a"] + summary["entered"] - summary["left"] == summary["kept_b"]).all()
    assert d.by_reason["records"].sum() == d.entered.height + d.left.height
    assert any("sources.alpaca.sample.fraction: 0.9 -> 0.5" in c for c in d.spec)
    assert any(c.startswith("sources.chat.") and c.endswith("-> '<unset>'") for c in d.spec)


def test_identical_builds_and_changed_content(builds, tmp_path) -> None:
    a, _ = builds
    assert diff_builds(a, a, with_stats=False).identical
    # the same ids with one record's text edited: reported as changed, not entered/left
    frame = a.frame.with_columns(
        pl.when(pl.col("id") == "alpaca:0")
        .then(pl.col("messages").list.eval(pl.struct(pl.element().struct.field("role"), pl.lit("edited").alias("content"))))
        .otherwise(pl.col("messages")).alias("messages"))
    import shutil
    c = tmp_path / "c"
    shutil.copytree(a.path, c)
    frame.write_parquet(c / "mixture.parquet")
    d = diff_builds(a, BuildDir(c), with_stats=False)
    assert d.changed["id"].to_list() == ["alpaca:0"] and d.entered.height == d.left.height == 0


def test_entered_new_when_never_read(builds) -> None:
    a, b = builds
    d = diff_builds(b, a, with_stats=False)  # reversed: chat records enter, B never read them
    assert set(d.entered.filter(pl.col("source") == "chat")["reason"]) == {NEW}


def test_stats_side_by_side(builds) -> None:
    a, b = builds
    d = diff_builds(a, b)
    s = d.stats
    row = s.filter(pl.col("source") == "total").row(0, named=True)
    assert row["instances_a"] == a.manifest["records"] and row["instances_b"] == b.manifest["records"]
    chat = s.filter(pl.col("source") == "chat").row(0, named=True)
    assert chat["instances_b"] is None and chat["instances_a"] > 0
    assert "<table" in d._repr_html_()


def test_spec_changes_flatten_steps() -> None:
    a = {"sources": {"x": {"steps": [{"keyword_filter": {"preset": "tulu_v2"}}]}}, "seed": 1}
    b = {"sources": {"x": {"steps": [{"keyword_filter": {"preset": "tulu_v3"}}]}}, "seed": 1}
    assert spec_changes(a, b) == ["sources.x.steps[0:keyword_filter].preset: 'tulu_v2' -> 'tulu_v3'"]
