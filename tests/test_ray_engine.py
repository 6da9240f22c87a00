"""The Ray engine on a real two-node cluster (``ray start --head`` + ``ray start --address``
on loopback, torn down at the end) gives the local engine's build, byte for byte."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import polars as pl
import pytest

from helpers import alpaca_rows, dedup_decontam_spec, same_build, untimed, write_jsonl, write_spec
from mixer.pipeline import build
from mixer.spec import load_spec

try:
    import ray
except ImportError:  # CI installs the extra; elsewhere the cluster tests are optional
    if os.environ.get("CI"):
        raise
    pytest.skip("ray is not installed (pip install 'mixer[ray]')", allow_module_level=True)

from mixer.engines.cluster import LocalCluster  # noqa: E402
from mixer.engines.ray_engine import RayEngine  # noqa: E402


@pytest.fixture(scope="module")
def cluster() -> str:
    """A head and one worker node, 1 CPU each, small object stores; the test process is the driver."""
    c = LocalCluster(nodes=2, cpus=1, object_store_mb=400).start()
    try:
        ray.init(address=c.address, logging_level="WARNING", log_to_driver=False)
        deadline = time.monotonic() + 60
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            assert time.monotonic() < deadline, "the worker node never joined"
            time.sleep(0.5)
        yield c.address
    finally:
        ray.shutdown()
        c.stop()


@pytest.mark.parametrize("block_rows", [3, None])
def test_sample_spec_same_as_local(cluster: str, repo: Path, tmp_path: Path, block_rows: int | None) -> None:
    spec = load_spec(repo / "mixtures" / "sample.yaml")
    local = build(spec, tmp_path / "local")
    engine = RayEngine(address=cluster, block_rows=block_rows)
    res = build(spec, tmp_path / "ray", engine=engine)
    same_build(local.output, res.output)
    assert res.manifest["engine"]["name"] == "ray" and res.manifest["engine"]["nodes"] == 2
    if block_rows == 3:  # 3-row blocks: repeat copies and duplicates straddle block edges
        assert len(engine.nodes_used) == 2, "block tasks should run on both nodes"


class RecordSpy:
    """Wraps ``ray.get`` in the driver: counts record tables (with message columns) that
    reach it. Workers are other processes, so only the driver's fetches are seen."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.tables: list[tuple[str, int]] = []
        self.fetches = 0
        real = ray.get

        def spy(refs, *a, **kw):
            out = real(refs, *a, **kw)
            self.fetches += 1
            self._look(out)
            return out

        monkeypatch.setattr(ray, "get", spy)

    def _look(self, obj) -> None:
        import pyarrow as pa

        if isinstance(obj, pa.Table):
            content = {"messages", "chosen", "rejected"} & set(obj.column_names)
            if content and obj.num_rows:
                self.tables.append((",".join(obj.column_names), obj.num_rows))
        elif isinstance(obj, (list, tuple)):
            for o in obj:
                self._look(o)
        elif isinstance(obj, dict):
            for o in obj.values():
                self._look(o)


@pytest.mark.shared_data
def test_dedup_and_decontamination_spec_same_as_local(cluster: str, shared_data: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec(dedup_decontam_spec(tmp_path, shared_data))
    local = build(spec, tmp_path / "local")
    engine = RayEngine(address=cluster, block_rows=700)
    spy = RecordSpy(monkeypatch)
    res = build(spec, tmp_path / "ray", engine=engine)
    monkeypatch.undo()
    # the driver saw keys, decisions and compact ledger columns, never a record
    assert spy.fetches > 10 and spy.tables == []
    assert len(engine.nodes_used) == 2, "block tasks should run on both nodes"
    same_build(local.output, res.output, ("dedup/minhash.clusters.parquet", "dedup/minhash-2.clusters.parquet", "contamination_matches.parquet"))
    reasons = set(res.removed["reason"].to_list())
    assert {"exact_duplicate", "near_duplicate", "contaminated", "keyword", "not_sampled"} <= reasons
    a, b = (json.loads((d / "contamination.json").read_text()) for d in (local.output, res.output))
    assert untimed(a) == untimed(b)
    # the real overlaps were found, not just matched between engines
    assert res.removed.filter(pl.col("source") == "gpteacher")["reason"].to_list().count("exact_duplicate") > 4000
    assert res.manifest["sources"]["evalout"]["kept"] == 0


def test_workers_write_shards_and_ledger_as_the_local_engine(cluster: str, repo: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Shards of 20 rows in row groups of 5, from blocks of 7 rows that straddle both: the
    shard tasks cut the blocks where the local writer cuts the stream, and the ledger task
    writes the stages' ledgers in order; the driver fetches no record."""
    from mixer import output

    monkeypatch.setattr(output, "SHARD_ROWS", 20)
    monkeypatch.setattr(output, "ROW_GROUP", 5)
    spec = load_spec(repo / "mixtures" / "sample.yaml")
    local = build(spec, tmp_path / "local", jsonl=True)
    spy = RecordSpy(monkeypatch)
    res = build(spec, tmp_path / "ray", jsonl=True, engine=RayEngine(address=cluster, block_rows=7))
    assert spy.tables == []
    names = sorted(p.name for p in local.output.glob("mixture*"))
    assert names == ["mixture-00000-of-00003.parquet", "mixture-00001-of-00003.parquet", "mixture-00002-of-00003.parquet", "mixture.jsonl"]
    assert sorted(p.name for p in res.output.glob("mixture*")) == names
    for name in (*names, "removed.parquet"):
        assert (local.output / name).read_bytes() == (res.output / name).read_bytes(), name
    assert res.manifest["files"] == local.manifest["files"]
    assert not [p for p in res.output.iterdir() if p.name.endswith((".part", ".jsonl")) and p.name != "mixture.jsonl"]


def test_shard_views_cut_blocks_at_shard_edges() -> None:
    from mixer.engines.ray_frame import Block
    from mixer.engines.ray_write import shard_views

    blocks = [Block("a", 3, 7), Block("b", 0, 5), Block("c", 10, 8)]
    shards = shard_views(blocks, 6)
    assert [[(v.ref, v.start, v.length) for v in s] for s in shards] == [
        [("a", 3, 6)], [("a", 9, 1), ("b", 0, 5)], [("c", 10, 6)], [("c", 16, 2)]]
    assert shard_views([], 6) == [[]]  # no rows: one empty shard, as the local writer


def test_cli_build_with_ray_engine(cluster: str, repo: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mixer.cli import app

    out = tmp_path / "cli"
    r = CliRunner().invoke(app, ["build", str(repo / "mixtures" / "sample.yaml"), "-o", str(out), "-q",
                                 "--engine", "ray", "--address", cluster])
    assert r.exit_code == 0, r.output
    local = build(load_spec(repo / "mixtures" / "sample.yaml"), tmp_path / "local")
    same_build(local.output, out)
    assert ray.is_initialized()  # the CLI did not shut down a connection it did not open


def test_worker_errors_keep_their_type_and_message(cluster: str, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", alpaca_rows(20))
    spec = {"name": "bad", "sources": {"a": {"load": {"path": "a.jsonl"}, "format": {"name": "alpaca", "output": "response"}}}}
    with pytest.raises(ValueError, match=r"format 'alpaca' needs field\(s\) \['response'\]"):
        build(load_spec(write_spec(tmp_path, spec)), tmp_path / "out", engine=RayEngine(address=cluster, block_rows=4))
    assert not (tmp_path / "out").exists()


def test_steps_unknown_to_workers_run_gathered(cluster: str, tmp_path: Path) -> None:
    """A step registered only in the driver (not importable on workers) still builds, exactly."""
    from mixer.records import removed_from
    from mixer.steps.base import STEPS, Step, StepContext, StepResult, register

    @register
    class DropOdd(Step):
        name = "_test_drop_odd"

        def run(self, frame: pl.DataFrame, ctx: StepContext) -> StepResult:
            odd = pl.col("id").str.extract(r":(\d+)$").cast(pl.Int64) % 2 == 1
            return StepResult(frame.filter(~odd), removed_from(frame.filter(odd), self.name, "odd"))

    try:
        write_jsonl(tmp_path / "a.jsonl", alpaca_rows(30))
        spec = {"name": "g", "sources": {"a": {"load": {"path": "a.jsonl"}, "format": "alpaca"}}, "mix": [{"_test_drop_odd": {}}]}
        s = load_spec(write_spec(tmp_path, spec))
        local = build(s, tmp_path / "local")
        res = build(s, tmp_path / "ray", engine=RayEngine(address=cluster, block_rows=4))
        same_build(local.output, res.output)
        assert res.mixture.height == 15
    finally:
        STEPS.pop("_test_drop_odd", None)


def test_sources_and_builds_on_shared_storage_urls(cluster: str, repo: Path, tmp_path: Path) -> None:
    """fsspec URLs (file:// here; s3:// etc. with their extras) for sources and the build."""
    from typer.testing import CliRunner

    from mixer.build_dir import BuildDir
    from mixer.cli import app

    data = tmp_path / "bucket" / "raw"
    data.mkdir(parents=True)
    write_jsonl(data / "part-0.jsonl", alpaca_rows(12, "first"))
    write_jsonl(data / "part-1.jsonl", alpaca_rows(9, "second"))
    with open(data / "part-1.jsonl", "a") as f:
        f.write('{"instruction": "broken\n')
    spec = {"name": "urls", "seed": 1, "sources": {"a": {"load": {"path": f"file://{data}/part-*.jsonl"}, "format": "alpaca",
                                                          "on_error": "skip", "sample": {"n": 15}}}}
    s = load_spec(write_spec(tmp_path, spec), check_files=False)
    local = build(s, tmp_path / "local")
    res = build(s, tmp_path / "ray", engine=RayEngine(address=cluster, block_rows=4))
    same_build(local.output, res.output)
    bad = res.removed.filter(pl.col("reason") == "malformed_json")["detail"].item()
    assert bad.startswith(f"file://{data}/part-1.jsonl:10"), bad  # the URL, not a staging folder
    assert res.manifest["sources"]["a"]["inputs"][0]["path"] == f"file://{data}/part-0.jsonl"
    # A build sent to a URL: uploaded with the manifest last, then readable as a finished build.
    out = tmp_path / "bucket" / "builds" / "sample"
    r = CliRunner().invoke(app, ["build", str(repo / "mixtures" / "sample.yaml"), "-q", "-o", f"file://{out}",
                                 "--engine", "ray", "--address", cluster])
    assert r.exit_code == 0, r.output
    assert f"file://{out}" in r.output.replace("\n", "")
    sample = build(load_spec(repo / "mixtures" / "sample.yaml"), tmp_path / "sample-local")
    assert BuildDir(out).frame.equals(sample.mixture)


def test_frames_open_as_ray_datasets(cluster: str, repo: Path, tmp_path: Path) -> None:
    """A Ray build's frame can continue in Ray Data, same rows, same order."""
    import pyarrow as pa

    from mixer.engines.ray_frame import put_frame, to_dataset

    mix = build(load_spec(repo / "mixtures" / "sample.yaml"), tmp_path / "local").mixture
    ds = to_dataset(put_frame(mix, block_rows=7))
    back = pl.from_arrow(pa.concat_tables(ray.get(ds.to_arrow_refs())))
    assert back.equals(mix)


@pytest.mark.shared_data
def test_whole_source_formats_token_steps_and_grouped_samples(cluster: str, shared_data: Path, shared_tokenizers: Path, tmp_path: Path) -> None:
    """Random templates draw over the whole source (one task, then re-cut); ``max_tokens``
    merges its per-block info; ``sample by`` draws on ids + meta on the driver."""
    gpt2 = shared_tokenizers / "gpt2" / "tokenizer.json"
    spec = {
        "name": "mixed_paths", "seed": 5, "tokenizer": str(gpt2),
        "sources": {
            "templated": {"load": {"path": str(shared_data / "train/alpaca_1k/alpaca_data_1k.json")},
                          "format": {"name": "alpaca", "template": "random"},
                          "steps": [{"max_tokens": {"max_tokens": 120}}],
                          "sample": {"by": "template", "n": {"w0": 20, "w1": 15, "n0": 30, "n2": 25}}},
            "code": {"load": {"path": str(shared_data / "train/codealpaca/data/code_alpaca_2k.json")}, "format": "alpaca",
                     "steps": [{"max_tokens": {"max_tokens": 60}}], "sample": {"fraction": 0.3}},
            "chat": {"load": {"path": str(shared_data / "train/sharegpt_dummy/dummy_conversation.json")}, "format": "sharegpt",
                     "steps": [{"max_tokens": {"max_tokens": 40, "action": "truncate"}}]},
        },
    }
    s = load_spec(write_spec(tmp_path, spec))
    local = build(s, tmp_path / "local")
    res = build(s, tmp_path / "ray", engine=RayEngine(address=cluster, block_rows=97))
    same_build(local.output, res.output)
    steps = {(e["scope"], e["step"]): e for e in res.manifest["steps"]}
    assert steps[("code", "max_tokens")]["info"]["dropped"] > 0
    assert steps[("chat", "max_tokens")]["info"]["truncated"] > 0
    assert res.manifest["sources"]["templated"]["kept"] == 90


def test_full_collection_flan_draw_same_as_local(cluster: str, repo: Path, tmp_path: Path) -> None:
    """v2.yaml's full-collection FLAN block: the flan format per block, the per-submix draw by
    rank, both on the cluster, same bytes as the local engine."""
    from test_flan_full_draw import SMALL, mirror, spec_file

    spec = load_spec(spec_file(repo, tmp_path), source_dir=mirror(tmp_path / "raw"))
    local = build(spec, tmp_path / "local")
    engine = RayEngine(address=cluster, block_rows=50)
    res = build(spec, tmp_path / "ray", engine=engine)
    same_build(local.output, res.output)
    assert res.manifest["records"] == sum(SMALL.values()) and len(engine.nodes_used) == 2


def test_a_writer_without_the_build_folder_sends_the_file_back(cluster: str, tmp_path: Path) -> None:
    """On a node that lacks the driver's folder, the shard is written aside and returned as bytes."""
    from mixer.engines.ray_frame import Block
    from mixer.engines.ray_write import write_file
    from mixer.output import ShardWriter
    from mixer.records import conform, empty_records, sft_frame

    frame = conform(sft_frame([f"s:{i}" for i in range(12)], "s", [[{"role": "user", "content": f"q{i}"}] for i in range(12)]))
    ref = ray.put(frame.to_arrow())
    meta = write_file(str(tmp_path / "elsewhere"), "mixture", "sft", [Block(ref, 0, 7), Block(ref, 7, 5)], 5, jsonl=True)
    assert not (tmp_path / "elsewhere").exists() and meta["rows"] == 12 and meta["counts"] == {"s": 12}
    w = ShardWriter(tmp_path, "mixture", empty_records("sft"), shard_rows=None, row_group=5)
    w.write(frame)
    w.close()
    assert meta["bytes"]["mixture.parquet"] == (tmp_path / "mixture.parquet").read_bytes()
    assert meta["bytes"]["mixture.jsonl"].count(b"\n") == 12
