"""Loading: file types, compression, globs, malformed lines, and the hub code path."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest
import zstandard

from mixer.io import HubUnavailable, InputError, load_files, load_hub

ROWS = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(5)]


def _lines(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_every_file_type_and_compression(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(_lines(ROWS))
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(_lines(ROWS)))
    (tmp_path / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(_lines(ROWS)))
    (tmp_path / "d.json").write_text(json.dumps(ROWS))
    pl.DataFrame(ROWS).write_parquet(tmp_path / "e.parquet")
    pl.DataFrame(ROWS).write_csv(tmp_path / "f.csv")
    for name in ["a.jsonl", "b.jsonl.gz", "c.jsonl.zst", "d.json", "e.parquet", "f.csv"]:
        got = load_files([name], tmp_path, "s")
        assert got.raw["instruction"].to_list() == [r["instruction"] for r in ROWS], name
        assert got.raw["_row"].to_list() == list(range(5))
        assert got.inputs[0]["sha256"] and got.inputs[0]["rows"] == 5
    both = load_files(["*.jsonl*"], tmp_path, "s")  # glob, sorted: a, b, c
    assert both.raw.height == 15 and both.raw["_row"].to_list() == list(range(15))
    assert both.raw["_origin"][5].endswith("b.jsonl.gz:1")


def test_json_file_holding_json_lines(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_bytes(_lines(ROWS))
    assert load_files(["x.json"], tmp_path, "s").raw.height == 5


def test_malformed_line_is_named_or_skipped(tmp_path: Path) -> None:
    data = _lines(ROWS[:2]) + b'{"instruction": "broken\n' + _lines(ROWS[2:])
    (tmp_path / "bad.jsonl").write_bytes(data)
    with pytest.raises(InputError, match=r"bad\.jsonl:3: malformed JSON line"):
        load_files(["bad.jsonl"], tmp_path, "s")
    got = load_files(["bad.jsonl"], tmp_path, "s", on_error="skip")
    assert got.raw.height == 5
    assert got.removed["reason"].to_list() == ["malformed_json"]
    assert "bad.jsonl:3" in got.removed["detail"][0]
    (tmp_path / "arr.json").write_text('[{"a": 1},\n {"a": 2,,}]')
    with pytest.raises(InputError, match=r"arr\.json:2: malformed JSON"):
        load_files(["arr.json"], tmp_path, "s")


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no file matches 'nope.jsonl'"):
        load_files(["nope.jsonl"], tmp_path, "s")


def test_hub_path_on_local_files(tmp_path: Path) -> None:
    """The hub loader is datasets.load_dataset; packaged builders run it offline."""
    (tmp_path / "a.jsonl").write_bytes(_lines(ROWS))
    got = load_hub("json", None, "train", None, "a.jsonl", "s", tmp_path)
    assert got.raw["output"].to_list() == [r["output"] for r in ROWS]
    assert got.inputs[0]["hub"] == "json" and got.inputs[0]["rows"] == 5


def test_hub_unreachable_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(HubUnavailable) as e:
        load_hub("allenai/definitely-not-cached", None, "train", "abc123", None, "s", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    assert "'allenai/definitely-not-cached'" in msg and "huggingface-cli download --repo-type dataset allenai/definitely-not-cached --revision abc123" in msg


def test_compressed_parquet_streams_through_a_scratch_file(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A .parquet.zst / .parquet.gz is decompressed as a stream into the scratch folder and
    read by record batches from there: the same rows, origins naming the compressed file,
    the compressed file's sha256, and nothing left in the scratch folder; a cut file is an
    error naming it. Without a scratch folder it is read whole, with the same rows."""
    import hashlib

    from mixer import io as mio

    rows = json.loads((shared_data / "train/alpaca_1k/alpaca_data_1k.json").read_text()) * 5
    plain = tmp_path / "a.parquet"
    pl.DataFrame(rows).write_parquet(plain, row_group_size=100)
    data = plain.read_bytes()
    (tmp_path / "b.parquet.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    (tmp_path / "c.parquet.gz").write_bytes(gzip.compress(data))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    whole = load_files(["a.parquet"], tmp_path, "s").raw
    seen: list[Path] = []
    read = mio._iter_parquet

    def spy(path: Path, batch_bytes: int, named: Path | None = None):  # noqa: ANN202
        if named is not None:  # decompressed: read from a file that exists while it is read
            seen.append(path)
            assert path.exists()
        yield from read(path, batch_bytes, named)

    monkeypatch.setattr(mio, "_iter_parquet", spy)
    for name in ("b.parquet.zst", "c.parquet.gz"):
        parts = list(mio.iter_files([name], tmp_path, "s", batch_bytes=64 << 10, scratch=scratch))
        assert len(parts) > 3, name  # record batches, not the file whole
        got = pl.concat([p.raw for p in parts])
        assert got.drop("_origin").equals(whole.drop("_origin")), name
        assert got["_origin"][7] == f"{tmp_path / name}#7"
        assert parts[-1].inputs[0]["sha256"] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        assert list(scratch.iterdir()) == []
        assert load_files([name], tmp_path, "s").raw.drop("_origin").equals(whole.drop("_origin"))  # no scratch: whole
    assert [p.parent for p in seen] == [scratch, scratch]
    # a build streams it from its own spill folder, with the mixture of the plain file
    from helpers import write_spec
    from mixer.pipeline import build
    from mixer.spec import load_spec

    built = {}
    for name in ("a.parquet", "b.parquet.zst"):
        spec = write_spec(tmp_path, {"name": "pq", "sources": {"a": {"load": {"path": name}, "format": "alpaca"}}}, f"{name}.yaml")
        built[name] = build(load_spec(spec), tmp_path / f"out-{name}").mixture
    assert built["a.parquet"].equals(built["b.parquet.zst"]) and built["a.parquet"].height == 5000
    assert len(seen) == 3 and seen[-1].parent.name == "spill" and seen[-1].parent.parent.name.startswith(".out-b.parquet.zst.tmp-")  # the build's temp folder
    (tmp_path / "cut.parquet.zst").write_bytes((tmp_path / "b.parquet.zst").read_bytes()[:5000])
    with pytest.raises(InputError, match=r"cut\.parquet\.zst: truncated zstd"):
        list(mio.iter_files(["cut.parquet.zst"], tmp_path, "s", scratch=scratch))
    assert list(scratch.iterdir()) == []
