"""The local engine's ledger past its budget: spilled to files (``RemovedParts``) and
copied into removed.parquet one file at a time, with the bytes of a build that held it;
records a sample did not draw keep no text in the ledger, other removals do."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from helpers import alpaca_rows, write_jsonl, write_spec
from mixer.engines import LocalEngine
from mixer.pipeline import build
from mixer.removed_parts import RemovedParts
from mixer.spec import StepSpec, load_spec
from mixer.steps.base import StepContext


def _spec(folder: Path) -> Path:
    rows = alpaca_rows(6000, "q")
    for i in range(0, 6000, 9):
        rows[i] = {"instruction": "the same question?", "input": "", "output": "the same answer"}
    write_jsonl(folder / "a.jsonl", rows)
    spec = {"name": "spill", "seed": 3,
            "sources": {"a": {"load": {"path": "a.jsonl"}, "format": "alpaca", "steps": [{"exact_dedup": {}}], "sample": {"n": 300}}}}
    return write_spec(folder, spec)


def test_spilled_ledger_gives_the_same_bytes(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path))
    ref = build(spec, tmp_path / "ref", engine=LocalEngine(batch_rows=500))
    small = build(spec, tmp_path / "small", engine=LocalEngine(batch_rows=500, ledger_bytes=20_000))
    for name in ("mixture.parquet", "removed.parquet"):
        assert (small.output / name).read_bytes() == (ref.output / name).read_bytes(), name
    assert small.manifest["steps"] == [dict(s, seconds=t["seconds"]) for s, t in zip(ref.manifest["steps"], small.manifest["steps"], strict=True)]
    removed = ref.removed
    assert removed.filter(pl.col("reason") == "not_sampled").height == 6000 - 666 - 300
    assert removed.filter(pl.col("reason") == "not_sampled")["messages"].null_count() == 6000 - 666 - 300
    assert removed.filter(pl.col("reason") == "exact_duplicate")["messages"].null_count() == 0


def test_the_engine_hands_over_removed_parts_past_the_budget(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path))
    eng = LocalEngine(batch_rows=500, ledger_bytes=20_000)
    eng.begin(tmp_path / "work")
    loaded = eng.load(spec.sources["a"], spec)
    frame = eng.validate(eng.format(loaded.raw, spec.sources["a"], spec).kept).kept
    res = eng.run_step(StepSpec("sample", spec.sources["a"].sample, "s"), frame, StepContext(seed=3, scope="a", work_dir=tmp_path))
    assert isinstance(res.removed, RemovedParts) and len(res.removed.files) > 1
    whole = res.removed.collect()
    assert whole.height == res.removed.height == 6000 - 300
    assert res.removed.counts == {("a", "not_sampled"): 6000 - 300}
    assert whole["id"].is_unique().all() and eng.rows(res.kept) == 300
