"""v2.yaml's full-collection FLAN draw on a folder laid out as Open-Orca/FLAN (several
parquet shards per submix folder): exact per-submix counts from every shard, the same bytes
whatever the batch size or threads, and a shard added to one submix leaves the other
submixes' draws unchanged (ids name the file, not the row across all files)."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest
import yaml

from helpers import write_spec
from mixer.engines import LocalEngine
from mixer.pipeline import build
from mixer.spec import load_spec

V2_SUBMIX = {"flan_fsopt": 10000, "flan_fsnoopt": 10000, "t0_fsopt": 8000, "t0_fsnoopt": 8000, "niv2_fsopt": 11500, "cot_fsopt": 2500}
SMALL = {k: v // 100 for k, v in V2_SUBMIX.items()}  # the recipe's proportions, 500 records
BLOCK = re.compile(r"  # --- full-collection FLAN draw ---\n(.*?)  # --- end of the full-collection FLAN draw", re.S)


def full_flan_block(repo: Path) -> dict:
    """The commented-out block of v2.yaml, uncommented."""
    m = BLOCK.search((repo / "mixtures" / "v2.yaml").read_text())
    assert m, "v2.yaml lost its full-collection FLAN block"
    return yaml.safe_load("\n".join(line.removeprefix("  # ") for line in m.group(1).splitlines()))["flan_v2"]


def write_shard(root: Path, sub: str, shard: str, rows: int) -> None:
    path = root / "Open-Orca/FLAN" / f"{sub}_data" / f"{shard}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({
        "inputs": [f"{sub} {shard} question {i}:" if i % 3 else f"{sub} {shard} question {i}" for i in range(rows)],
        "targets": [f"answer {i} of {sub}/{shard}" for i in range(rows)],
        "_template_type": ["fs_opt"] * rows,
    }).write_parquet(path)


def mirror(root: Path) -> Path:
    for sub in V2_SUBMIX:
        for k in range(3):  # several shards per submix, of unequal sizes
            write_shard(root, sub, f"part.{k}", 70 + 11 * k)
    return root


def spec_file(repo: Path, tmp: Path, ids: str = "file", name: str = "flan_full.yaml") -> Path:
    block = full_flan_block(repo)
    assert block["sample"] == {"by": "submix", "n": V2_SUBMIX}
    block["sample"]["n"] = SMALL
    block["format"]["ids"] = ids
    return write_spec(tmp, {"name": "flan_full", "seed": 42, "sources": {"flan_v2": block}}, name)


def drawn(res) -> dict[str, set[str]]:
    mix = res.mixture.with_columns(pl.col("meta").str.json_path_match("$.submix").alias("submix"))
    return {s: set(g["id"]) for (s,), g in mix.group_by("submix")}


def test_exact_counts_from_every_shard(repo: Path, tmp_path: Path) -> None:
    src = mirror(tmp_path / "raw")
    res = build(load_spec(spec_file(repo, tmp_path), source_dir=src), tmp_path / "out")
    got = drawn(res)
    assert {s: len(ids) for s, ids in got.items()} == SMALL
    inputs = res.manifest["sources"]["flan_v2"]["inputs"]
    assert len(inputs) == 18 and all(i["mirror_of"] == "Open-Orca/FLAN" for i in inputs)
    for sub, ids in got.items():
        files = {re.fullmatch(rf"flan_v2:{sub}/(part\.\d)\.parquet#\d+", i).group(1) for i in ids}
        assert files == {"part.0", "part.1", "part.2"}, sub  # the draw spans the submix's shards
    # the records are the ones their ids name: the prompt says which file and row
    row = res.mixture.filter(pl.col("id") == sorted(got["t0_fsopt"])[0]).row(0, named=True)
    sub_file, idx = re.fullmatch(r"flan_v2:t0_fsopt/(part\.\d)\.parquet#(\d+)", row["id"]).groups()
    assert row["messages"][0]["content"].startswith(f"t0_fsopt {sub_file} question {idx}")
    not_sampled = res.removed.filter(pl.col("reason") == "not_sampled").height
    assert not_sampled == 6 * (70 + 81 + 92) - 500


@pytest.mark.parametrize("batch_rows,threads", [(37, 1), (1000, 2)])
def test_same_bytes_whatever_the_batches(repo: Path, tmp_path: Path, batch_rows: int, threads: int) -> None:
    src = mirror(tmp_path / "raw")
    spec = load_spec(spec_file(repo, tmp_path), source_dir=src)
    a = build(spec, tmp_path / "a")
    b = build(spec, tmp_path / "b", engine=LocalEngine(batch_rows=batch_rows, threads=threads))
    for f in ("mixture.parquet", "removed.parquet"):
        assert (a.output / f).read_bytes() == (b.output / f).read_bytes(), f
    fmt = next(e for e in b.manifest["steps"] if e["step"] == "format:flan")
    assert fmt["info"]["submixes"] == {s: 70 + 81 + 92 for s in sorted(V2_SUBMIX)}  # merged over the batches


def test_a_shard_added_to_one_submix_leaves_the_others_draws(repo: Path, tmp_path: Path) -> None:
    src = mirror(tmp_path / "raw")
    spec = spec_file(repo, tmp_path)
    before = drawn(build(load_spec(spec, source_dir=src), tmp_path / "before"))
    # row ids (the default) for contrast: the new shard shifts every later submix's rows
    rows_before = drawn(build(load_spec(spec_file(repo, tmp_path, "row", "rows.yaml"), source_dir=src), tmp_path / "rb"))
    write_shard(src, "flan_fsopt", "part.3", 150)  # the first submix in file order
    after = drawn(build(load_spec(spec, source_dir=src), tmp_path / "after"))
    rows_after = drawn(build(load_spec(spec_file(repo, tmp_path, "row", "rows.yaml"), source_dir=src), tmp_path / "ra"))
    others = [s for s in V2_SUBMIX if s != "flan_fsopt"]
    assert all(after[s] == before[s] for s in others)
    assert len(after["flan_fsopt"]) == SMALL["flan_fsopt"] and any("part.3" in i for i in after["flan_fsopt"])
    assert sum(rows_after[s] != rows_before[s] for s in others) >= 4
