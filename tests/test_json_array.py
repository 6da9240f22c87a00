"""JSON documents that are one array stream item by item: the items found chunk by chunk
equal the document's own parse at any chunk size, a file reads in parts equal to the whole
read, and malformed documents are one-line errors naming the file and line."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import polars as pl
import pytest

from mixer.io import InputError, iter_file, parse_json_text
from mixer.json_array import ArrayError, ArrayItems

TRICKY = ['plain', 'a "quoted" word', 'back\\slash', 'ends with backslash \\', '\\\\"', 'brackets ] } [ { inside',
          'commas, and: colons', 'new\nline\ttab', 'caf\u00e9 \U0001f600', '', '"', '\\', '[{"fake": "object"}]']


def _record(rng: random.Random) -> object:
    kind = rng.random()
    if kind < 0.8:
        return {"instruction": rng.choice(TRICKY) + str(rng.random()), "input": rng.choice(TRICKY),
                "output": rng.choice(TRICKY) * rng.randint(0, 3), "tags": [rng.choice(TRICKY), {"n": rng.randint(-5, 5)}],
                "nested": {"deep": [[rng.choice(TRICKY)], {"x": None, "y": True, "z": 1.5e3}]}}
    return rng.choice([5, -1.25, "a string", None, True, [1, [2, "]"]], []])


def _items(doc: bytes, sizes: list[int]) -> list[object]:
    split = ArrayItems()
    out, at, k = [], 0, 0
    while at < len(doc):
        n = sizes[k % len(sizes)]
        out += [json.loads(i.data) for i in split.feed(doc[at : at + n])]
        at, k = at + n, k + 1
    split.close()
    assert not split.after
    return out


@pytest.mark.parametrize("indent", [None, 0, 2])
def test_items_equal_the_document_at_any_chunk_size(indent: int | None) -> None:
    rng = random.Random(indent or 7)
    values = [_record(rng) for _ in range(100)]
    doc = json.dumps(values, indent=indent, ensure_ascii=rng.random() < 0.5).encode()
    for sizes in ([1], [2, 3], [7], [64], [1000], [len(doc)], [rng.randint(1, 40) for _ in range(50)]):
        assert _items(doc, sizes) == values, sizes


def test_empty_arrays_and_whitespace() -> None:
    for doc in (b"[]", b"[ ]", b"  [\n\n]  \n", b"[\n]"):
        assert _items(doc, [1]) == [] and _items(doc, [100]) == []


@pytest.mark.parametrize(("doc", "line"), [
    (b'[\n{"a": 1},\n{"a": 2}', 3),        # cut: the file ends inside the array
    (b'[{"a": 1},\n]', 1),                 # a trailing comma (the line it is on)
    (b'[,{"a": 1}]', 1),                   # a leading comma
    (b'[{"a": 1}]]', 1),                   # a closing bracket too many
    (b'{"a": 1}', 1),                      # not an array
])
def test_malformed_arrays_name_the_line(doc: bytes, line: int) -> None:
    with pytest.raises(ArrayError) as e:
        _items(doc, [3])
    assert e.value.line == line


def _write(path: Path, values: list) -> Path:
    path.write_text(json.dumps(values, indent=1))
    return path


def test_a_json_array_file_reads_in_parts_equal_to_the_whole(tmp_path: Path) -> None:
    rng = random.Random(3)
    values = [_record(rng) for _ in range(3000)]
    path = _write(tmp_path / "big.json", values)
    digest = hashlib.sha256()
    got = list(iter_file(path, None, "skip", digest=digest, batch_bytes=1 << 15))
    assert len(got) > 20  # parts, not the whole file at once
    whole, bad_whole = parse_json_text(path.read_bytes(), path, "json", "skip")
    frame = pl.concat([df for df, _ in got], how="diagonal_relaxed")
    assert frame.select(sorted(frame.columns)).equals(whole.select(sorted(whole.columns)))
    assert [b for _, bad in got for b in bad] == bad_whole  # the non-objects, by index
    assert digest.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(InputError, match=r"big\.json#\d+: expected a JSON object"):
        list(iter_file(path, None, "raise", batch_bytes=1 << 15))


def test_real_alpaca_file_streams_like_its_whole_read(shared_data: Path) -> None:
    path = shared_data / "train" / "alpaca_1k" / "alpaca_data_1k.json"
    parts = [df for df, bad in iter_file(path, None, "raise", batch_bytes=1 << 14)]
    assert len(parts) > 10
    whole, _ = parse_json_text(path.read_bytes(), path, "json", "raise")
    assert pl.concat(parts).equals(whole) and whole.height == 1000


@pytest.mark.parametrize(("name", "data", "needle"), [
    ("cut.json", b'[\n{"instruction": "q", "output": "a"},\n{"instruction": "q2", "outp', r"cut\.json:3: malformed JSON"),
    ("after.json", b'[{"instruction": "q", "output": "a"}]\n{"x": 1}', r"after\.json:2: malformed JSON \(data after the array"),
    ("bad_item.json", b'[{"instruction": "q", "output": "a"},\n {"instruction": "\\ud800"}]', r"bad_item\.json:2: malformed JSON"),
])
def test_malformed_documents_are_one_line_errors(tmp_path: Path, name: str, data: bytes, needle: str) -> None:
    (tmp_path / name).write_bytes(data)
    for mode in ("raise", "skip"):
        with pytest.raises(InputError, match=needle) as e:
            list(iter_file(tmp_path / name, None, mode, batch_bytes=8))
        assert "\n" not in str(e.value)


def test_json_lines_opening_with_an_array_line_read_as_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'[1, 2]\n{"instruction": "q", "output": "a"}\n')
    got = list(iter_file(path, None, "skip"))
    assert sum(df.height for df, _ in got) == 1
    assert [(b.at, b.reason) for _, bad in got for b in bad] == [(":1", "not_an_object")]
