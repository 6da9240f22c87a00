"""The foundation formats (messages, alpaca plain, sharegpt) on real training-side files."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from helpers import write_spec
from mixer.pipeline import build
from mixer.spec import load_spec


def _build(tmp_path: Path, sources: dict) -> pl.DataFrame:
    res = build(load_spec(write_spec(tmp_path, {"name": "f", "sources": sources})), tmp_path / "out")
    return res


def test_alpaca_plain_on_alpaca_1k(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "train" / "alpaca_1k" / "alpaca_data_1k.json"
    raw = json.loads(path.read_text())
    res = _build(tmp_path, {"alpaca": {"load": {"path": str(path)}, "format": "alpaca"}})
    kept = {r["id"]: r for r in res.mixture.iter_rows(named=True)}
    assert res.manifest["sources"]["alpaca"]["read"] == 1000
    assert len(kept) + res.removed.height == 1000
    for i, r in enumerate(raw):
        rec = kept.get(f"alpaca:{i}")
        if rec is None:
            continue
        want = r["instruction"] + ("\n\n" + r["input"] if r["input"].strip() else "")
        assert rec["messages"] == [{"role": "user", "content": want}, {"role": "assistant", "content": r["output"]}]
    # Whatever was removed is a real structural problem of the raw record.
    for row in res.removed.iter_rows(named=True):
        r = raw[int(row["id"].split(":")[1])]
        assert row["reason"] == "empty_message" and not (r["instruction"].strip() and r["output"].strip())


def test_alpaca_field_names_on_codealpaca_and_gpteacher(shared_data: Path, tmp_path: Path) -> None:
    ca = shared_data / "train" / "codealpaca" / "data" / "code_alpaca_2k.json"
    gt = shared_data / "train" / "gpteacher" / "Codegen" / "codegen-instruct.json"
    res = _build(tmp_path, {
        "code": {"load": {"path": str(ca)}, "format": "alpaca"},
        "gpteacher": {"load": {"path": str(gt)}, "format": {"name": "alpaca", "output": "response"}},
    })
    counts = dict(res.mixture.group_by("source").len().iter_rows())
    assert counts["code"] + res.removed.filter(pl.col("source") == "code").height == 2017
    assert counts["gpteacher"] + res.removed.filter(pl.col("source") == "gpteacher").height == 4535
    first = json.loads(gt.read_text())[0]
    rec = res.mixture.filter(pl.col("id") == "gpteacher:0").row(0, named=True)
    assert rec["messages"][1]["content"] == first["response"]
    assert rec["messages"][0]["content"] == first["instruction"] + "\n\n" + first["input"]


def test_sharegpt_on_dummy_conversations(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "train" / "sharegpt_dummy" / "dummy_conversation.json"
    raw = json.loads(path.read_text())
    res = _build(tmp_path, {"sg": {"load": {"path": str(path)}, "format": "sharegpt"}})
    assert res.mixture.height + res.removed.height == len(raw) == 500
    rec = res.mixture.filter(pl.col("id") == "sg:0").row(0, named=True)
    conv = raw[0]["conversations"]
    assert [m["role"] for m in rec["messages"]] == ["user" if t["from"] == "human" else "assistant" for t in conv]
    assert [m["content"] for m in rec["messages"]] == [t["value"] for t in conv]
    turns = res.mixture["messages"].list.len()
    assert turns.min() >= 2 and (turns % 2 == 0).all()


def test_messages_format_with_role_mapping(tmp_path: Path) -> None:
    rows = [{"chat": [{"speaker": "Human", "text": "hi"}, {"speaker": "Bot", "text": "hello"}]}]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = _build(tmp_path, {"c": {"load": {"path": "c.jsonl"}, "format": {"name": "messages", "column": "chat", "role_key": "speaker", "content_key": "text", "role_map": {"bot": "assistant"}}}})
    assert res.mixture["messages"].to_list() == [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]]
