"""Sources read in bounded parts give exactly the rows of a whole read: CSV/TSV by blocks,
hub datasets by record batches of their Arrow cache."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import polars as pl

from mixer.io import iter_file, iter_hub, load_files, load_hub, sha256_file
from mixer.sources import iter_raw
from mixer.spec import load_spec

ROWS = pl.DataFrame({
    "instruction": [f'q{i}, "quoted"\nsecond line' if i % 7 == 0 else f"q{i}" for i in range(5000)],
    "input": ["" if i % 3 else f"x{i}" for i in range(5000)],
    "output": [f"{i:05d}" for i in range(5000)],
})


def _concat(parts: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat([p for p in parts if p.height])


def test_csv_and_tsv_blocks_equal_the_whole_read(tmp_path: Path) -> None:
    ROWS.write_csv(tmp_path / "a.csv")
    ROWS.write_csv(tmp_path / "b.tsv", separator="\t")
    (tmp_path / "c.csv.gz").write_bytes(gzip.compress((tmp_path / "a.csv").read_bytes()))
    for name, sep in [("a.csv", ","), ("b.tsv", "\t"), ("c.csv.gz", ",")]:
        digest = hashlib.sha256()
        parts = [df for df, bad in iter_file(tmp_path / name, None, "raise", digest=digest, batch_bytes=1 << 13)]
        assert len(parts) > 3, name  # really read in blocks
        got = _concat(parts)
        whole = pl.read_csv(tmp_path / name, separator=sep, infer_schema_length=0)
        assert got.drop("_origin").equals(whole), name
        assert got["output"].to_list() == ROWS["output"].to_list()  # leading zeros kept: every column a string
        assert got["_origin"].to_list() == [f"{tmp_path / name}#{i}" for i in range(ROWS.height)]
        assert digest.hexdigest() == sha256_file(tmp_path / name)
    # an empty field is null, a quoted empty one is "", as polars reads them
    (tmp_path / "e.csv").write_text('a,b\n1,\n2,""\n')
    assert load_files(["e.csv"], tmp_path, "s").raw["b"].to_list() == [None, ""]


def test_hub_batches_equal_the_whole_dataset(tmp_path: Path) -> None:
    ROWS.write_ndjson(tmp_path / "a.jsonl")
    parts = list(iter_hub("json", None, "train", None, "a.jsonl", "s", tmp_path, batch_bytes=1 << 14))
    assert len(parts) > 3
    assert [bool(p.inputs) for p in parts] == [False] * (len(parts) - 1) + [True]
    got = _concat([p.raw for p in parts])
    assert got.select(ROWS.columns).equals(ROWS)
    assert got["_row"].to_list() == list(range(ROWS.height))
    assert got["_origin"][-1] == f"json[train]#{ROWS.height - 1}"
    whole = load_hub("json", None, "train", None, "a.jsonl", "s", tmp_path)
    assert whole.raw.equals(got) and whole.inputs[0]["rows"] == ROWS.height


def test_hub_source_with_two_data_files_numbers_rows_across_them(tmp_path: Path) -> None:
    ROWS.head(3000).write_ndjson(tmp_path / "a.jsonl")
    ROWS.tail(2000).write_ndjson(tmp_path / "b.jsonl")
    (tmp_path / "spec.yaml").write_text(
        "name: h\nsources:\n  s:\n    load: {hub: json, data_files: [a.jsonl, b.jsonl]}\n    format: alpaca\n")
    spec = load_spec(tmp_path / "spec.yaml")
    parts = list(iter_raw(spec.sources["s"], spec))
    got = _concat([p.raw for p in parts])
    assert got.select(ROWS.columns).equals(ROWS)
    assert got["_row"].to_list() == list(range(ROWS.height))
    assert got["_origin"][2999] == "a.jsonl#2999" and got["_origin"][3000] == "b.jsonl#0"
    assert [i["rows"] for p in parts for i in p.inputs] == [3000, 2000]
