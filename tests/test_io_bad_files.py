"""Unreadable inputs: cut or corrupt compressed files, broken tables, colliding ledger ids.

A file whose records cannot all be accounted for is an error naming it under both
``on_error`` modes; never a short read.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest
import zstandard

from mixer.io import InputError, load_files, open_decompressed, read_bytes

ROWS = [{"instruction": f"question {i}", "output": f"answer {i}"} for i in range(400)]
DATA = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
MODES = ["raise", "skip"]


def _zstd_frames(data: bytes, frames: int) -> bytes:
    c, step = zstandard.ZstdCompressor(), -(-len(data) // frames)
    return b"".join(c.compress(data[i : i + step]) for i in range(0, len(data), step))


def _cases() -> dict[str, bytes]:
    z1, z2, g = _zstd_frames(DATA, 1), _zstd_frames(DATA, 2), gzip.compress(DATA)
    return {
        "half.jsonl.zst": z1[: len(z1) // 2],
        "cut_30pct.jsonl.zst": z1[: len(z1) * 3 // 10],
        "second_frame_cut.jsonl.zst": z2[:-7],
        "one_byte_short.jsonl.zst": z1[:-1],
        "garbage_tail.jsonl.zst": z1 + b"not a zstd frame",
        "not_zstd.jsonl.zst": DATA,
        "corrupt_middle.jsonl.zst": z1[:40] + bytes(b ^ 0xFF for b in z1[40:60]) + z1[60:],
        "empty.jsonl.zst": b"",
        "half.jsonl.gz": g[: len(g) // 2],
        "no_trailer.jsonl.gz": g[:-4],
        "bad_crc.jsonl.gz": g[:-8] + bytes(b ^ 0xFF for b in g[-8:-4]) + g[-4:],
        "not_gzip.jsonl.gz": DATA,
        "empty.jsonl.gz": b"",
        "cut_second_member.jsonl.gz": g + g[: len(g) // 2],
    }


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(_cases()))
def test_cut_or_corrupt_compressed_file_is_an_error_naming_it(tmp_path: Path, name: str, mode: str) -> None:
    (tmp_path / name).write_bytes(_cases()[name])
    with pytest.raises(InputError) as e:
        load_files([name], tmp_path, "s", on_error=mode)
    msg = str(e.value)
    assert name in msg and "\n" not in msg
    assert any(w in msg for w in ("truncated", "corrupt", "empty")), msg


@pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd CLI not installed")
@pytest.mark.parametrize("name", [n for n in sorted(_cases()) if n.endswith(".zst")])
def test_zstd_verdicts_match_zstd_t(tmp_path: Path, name: str) -> None:
    """Whatever ``zstd -t`` rejects, the loader rejects (and a file it accepts loads fully)."""
    path = tmp_path / name
    path.write_bytes(_cases()[name])
    ok = subprocess.run(["zstd", "-t", "-q", str(path)], capture_output=True).returncode == 0
    try:
        read_bytes(path)
        loaded = True
    except InputError:
        loaded = False
    assert loaded == ok


def test_complete_multi_frame_and_multi_member_files_load_fully(tmp_path: Path) -> None:
    (tmp_path / "three.jsonl.zst").write_bytes(_zstd_frames(DATA, 3))
    g = gzip.compress(DATA[: len(DATA) // 2]) + gzip.compress(DATA[len(DATA) // 2 :])
    (tmp_path / "two.jsonl.gz").write_bytes(g + b"\0" * 16)  # zero padding, as gzip(1) allows
    for name in ("three.jsonl.zst", "two.jsonl.gz"):
        for mode in MODES:
            got = load_files([name], tmp_path, "s", on_error=mode)
            assert got.raw.height == len(ROWS) and got.removed.height == 0
    with open_decompressed(tmp_path / "three.jsonl.zst") as f:
        assert f.read() == DATA


def test_stream_raises_when_it_reaches_the_cut(tmp_path: Path) -> None:
    """``open_decompressed`` gives the good prefix, then fails; it never ends quietly."""
    z = _zstd_frames(DATA, 2)
    (tmp_path / "cut.jsonl.zst").write_bytes(z[:-3])
    with open_decompressed(tmp_path / "cut.jsonl.zst") as f, pytest.raises(InputError, match="truncated zstd"):
        while f.read(4096):
            pass


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("garbage.parquet", b"PAR1 this is not parquet"),
        ("empty.parquet", b""),
        ("text.parquet", DATA),
        ("empty.csv", b""),
        ("empty.tsv", b"\n\n"),
        ("truncated.parquet", None),
    ],
)
def test_unreadable_tables_are_one_line_errors(tmp_path: Path, name: str, content: bytes | None, mode: str) -> None:
    if content is None:
        pl.DataFrame(ROWS).write_parquet(tmp_path / "full.parquet")
        full = (tmp_path / "full.parquet").read_bytes()
        content = full[: len(full) // 2]
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError) as e:
        load_files([name], tmp_path, "s", on_error=mode)
    assert name in str(e.value) and "\n" not in str(e.value)


def test_malformed_line_ids_are_unique_across_same_named_files(tmp_path: Path) -> None:
    """``*/x.jsonl`` with a bad line 2 in both files: two ledger rows, two distinct ids."""
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.jsonl").write_text(json.dumps(ROWS[0]) + "\n{broken\n" + json.dumps(ROWS[1]) + "\n")
    got = load_files(["*/x.jsonl"], tmp_path, "src", on_error="skip")
    ids = got.removed["id"].to_list()
    assert ids == ["src:bad:a/x.jsonl:2", "src:bad:b/x.jsonl:2"]
    assert got.removed["detail"].str.contains("x.jsonl:2").all()
    # The same file named by two patterns still gets distinct ids.
    twice = load_files(["a/x.jsonl", "*/x.jsonl"], tmp_path, "src", on_error="skip")
    assert twice.removed["id"].n_unique() == twice.removed.height == 3
