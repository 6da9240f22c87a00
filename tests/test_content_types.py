"""Wrong-typed content and ``on_error: skip`` robustness (issue 13, items 3 and 9).

Content parts are joined as text; every other non-string value is removed with a reason
naming the field and the type; ``raise`` and ``skip`` keep the same records the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from helpers import write_spec
from mixer.io import InputError, load_files
from mixer.json_values import NOT_TEXT_OPEN
from mixer.pipeline import build
from mixer.spec import load_spec


def _build(tmp_path: Path, name: str, content: str | bytes, fmt: str | dict, mode: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    data = tmp_path / name
    data.write_bytes(content.encode() if isinstance(content, str) else content)
    spec = write_spec(tmp_path, {"name": "t", "seed": 1, "sources": {"s": {"load": {"path": name}, "format": fmt, "on_error": mode}}}, f"{mode}.yaml")
    out = build(load_spec(spec), tmp_path / f"out_{mode}").output
    return pl.read_parquet(out / "mixture.parquet"), pl.read_parquet(out / "removed.parquet")


def _turn(content: object) -> str:
    return json.dumps({"messages": [{"role": "user", "content": content}, {"role": "assistant", "content": "fine"}]})


WRONG = {
    "dict": ({"text": "hi"}, "object"),
    "list_of_strings": (["a", "b"], "array"),
    "int": (5, "integer"),
    "float": (1.5, "number"),
    "bool": (True, "boolean"),
    "image_part": ([{"type": "image_url", "image_url": {"url": "http://x"}}], "'image_url' content part"),
    "text_and_image": ([{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "u"}}], "'image_url' content part"),
}


@pytest.mark.parametrize("mode", ["raise", "skip"])
def test_content_parts_joined_other_types_removed_with_reason(tmp_path: Path, mode: str) -> None:
    parts = [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]
    lines = [_turn("plain"), _turn(parts)] + [_turn(v) for v, _ in WRONG.values()]
    mix, removed = _build(tmp_path, "m.jsonl", "\n".join(lines) + "\n", "messages", mode)
    assert [m[0]["content"] for m in mix["messages"].to_list()] == ["plain", "first\nsecond"]
    assert removed["reason"].to_list() == ["wrong_type"] * len(WRONG)
    for detail, (_, kind) in zip(removed["detail"].to_list(), WRONG.values(), strict=True):
        assert "messages[].content" in detail and kind in detail, detail
    assert not mix["messages"].list.eval(pl.element().struct.field("content")).explode().str.contains(NOT_TEXT_OPEN, literal=True).any()


@pytest.mark.parametrize("mode", ["raise", "skip"])
@pytest.mark.parametrize(("value", "kind"), [(5, "integer"), (2.5, "number"), (False, "boolean"), ({"a": 1}, "object"), (["x"], "array")])
def test_a_whole_column_of_another_type_is_removed_not_stringified(tmp_path: Path, mode: str, value: object, kind: str) -> None:
    """Every record's ``output`` is a number (polars types the column): none becomes "5"."""
    rows = "".join(json.dumps({"instruction": f"q{i}", "output": value}) + "\n" for i in range(3))
    mix, removed = _build(tmp_path, "a.jsonl", rows, "alpaca", mode)
    assert mix.height == 0 and removed.height == 3
    assert set(removed["reason"]) == {"wrong_type"} and removed["detail"].str.contains(f"'output' is {kind}").all()


def test_whole_column_of_text_parts_is_joined(tmp_path: Path) -> None:
    rows = "".join(_turn([{"type": "text", "text": f"p{i}"}, {"type": "text", "text": "q"}]) + "\n" for i in range(3))
    mix, removed = _build(tmp_path, "m.jsonl", rows, "messages", "raise")
    assert [m[0]["content"] for m in mix["messages"].to_list()] == ["p0\nq", "p1\nq", "p2\nq"] and removed.height == 0


@pytest.mark.parametrize("mode", ["raise", "skip"])
def test_lone_surrogate_is_never_a_nul(tmp_path: Path, mode: str) -> None:
    lines = _turn("ok") + "\n" + _turn("x") .replace('"x"', '"\\ud800"') + "\n"
    if mode == "raise":
        with pytest.raises(InputError, match=r"m\.jsonl:2: malformed JSON line"):
            _build(tmp_path, "m.jsonl", lines, "messages", mode)
        return
    mix, removed = _build(tmp_path, "m.jsonl", lines, "messages", mode)
    assert mix.height == 1 and removed["reason"].to_list() == ["malformed_json"]
    assert not mix["messages"].list.eval(pl.element().struct.field("content")).explode().str.contains("\x00").any()


def test_duplicate_keys_last_wins_in_both_modes(tmp_path: Path) -> None:
    line = '{"instruction": "first", "instruction": "second", "output": "a"}\n'
    got = {mode: _build(tmp_path, "d.jsonl", line, "alpaca", mode)[0]["messages"].to_list() for mode in ("raise", "skip")}
    assert got["raise"] == got["skip"] and got["raise"][0][0]["content"] == "second"


def test_raise_and_skip_keep_the_same_records(tmp_path: Path) -> None:
    lines = [_turn("a"), _turn(7), _turn([{"type": "text", "text": "t"}]), _turn({"x": 1}), _turn("b")]
    kept = {mode: _build(tmp_path, "m.jsonl", "\n".join(lines), "messages", mode)[0] for mode in ("raise", "skip")}
    assert kept["raise"].equals(kept["skip"]) and kept["raise"].height == 3


# ------------------------------------------------------------------ item 9: skip robustness


@pytest.mark.parametrize("mode", ["raise", "skip"])
def test_pretty_printed_array_in_a_jsonl_file_is_read_as_an_array(tmp_path: Path, mode: str) -> None:
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(3)]
    (tmp_path / "a.jsonl").write_text(json.dumps(rows, indent=2))
    got = load_files(["a.jsonl"], tmp_path, "s", on_error=mode)
    assert got.raw.height == 3 and got.removed.height == 0


def test_one_non_object_element_removes_only_itself_under_skip(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps([{"instruction": "q", "output": "a"}, "oops", {"instruction": "r", "output": "b"}]))
    got = load_files(["a.json"], tmp_path, "s", on_error="skip")
    assert got.raw["instruction"].to_list() == ["q", "r"]
    assert got.removed.select("id", "reason").rows() == [("s:bad:a.json#1", "not_an_object")]
    with pytest.raises(InputError, match=r"a\.json#1: expected a JSON object, got string"):
        load_files(["a.json"], tmp_path, "s", on_error="raise")


@pytest.mark.parametrize("mode", ["raise", "skip"])
@pytest.mark.parametrize("name", ["a.jsonl", "a.json", "a.csv"])
def test_bom_does_not_eat_the_first_record(tmp_path: Path, mode: str, name: str) -> None:
    body = {
        "a.jsonl": '{"instruction": "q0", "output": "a0"}\n{"instruction": "q1", "output": "a1"}\n',
        "a.json": '[{"instruction": "q0", "output": "a0"}, {"instruction": "q1", "output": "a1"}]',
        "a.csv": "instruction,output\nq0,a0\nq1,a1\n",
    }[name]
    (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + body.encode())
    got = load_files([name], tmp_path, "s", on_error=mode)
    assert got.raw["instruction"].to_list() == ["q0", "q1"] and got.removed.height == 0


@pytest.mark.parametrize("mode", ["raise", "skip"])
def test_unused_fields_with_mixed_types_do_not_fail_the_source(tmp_path: Path, mode: str) -> None:
    rows = [
        {"instruction": "q0", "output": "a0", "extra": 1, "tags": ["x"]},
        {"instruction": "q1", "output": "a1", "extra": "one", "tags": {"k": 2}},
        {"instruction": "q2", "output": "a2", "extra": {"n": 1}, "tags": None},
    ]
    mix, removed = _build(tmp_path, "a.jsonl", "".join(json.dumps(r) + "\n" for r in rows), "alpaca", mode)
    assert mix.height == 3 and removed.height == 0
