"""The engine seam: the local engine is the old pipeline, and block-wise info merges are exact."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mixer.engines import LocalEngine, make_engine
from mixer.infos import MergeError, format_rules, merge_infos
from mixer.pipeline import build
from mixer.spec import load_spec


def test_local_engine_is_the_default_build(repo: Path, tmp_path: Path) -> None:
    spec = load_spec(repo / "mixtures" / "sample.yaml")
    a = build(spec, tmp_path / "a")
    b = build(spec, tmp_path / "b", engine="local")
    c = build(spec, tmp_path / "c", engine=LocalEngine())
    for other in (b, c):
        assert (other.output / "mixture.parquet").read_bytes() == (a.output / "mixture.parquet").read_bytes()
        assert (other.output / "removed.parquet").read_bytes() == (a.output / "removed.parquet").read_bytes()
    assert "engine" not in a.manifest  # local manifests are unchanged


def test_spilled_batches_compression_changes_no_byte_and_auto_follows_the_free_disk(repo: Path, tmp_path: Path,
                                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Spilled batches are written uncompressed while the disk has room (fastest), zstd when
    it is short or when asked; the build's bytes do not depend on it."""
    import polars as pl

    from mixer.engines import local

    spec = load_spec(repo / "mixtures" / "sample.yaml")
    ref = build(spec, tmp_path / "ref", engine=LocalEngine(batch_rows=50))
    for how in ("uncompressed", "lz4", "zstd"):
        out = build(spec, tmp_path / how, engine=make_engine("local", batch_rows=50, spill_compression=how))
        assert (out.output / "mixture.parquet").read_bytes() == (ref.output / "mixture.parquet").read_bytes(), how
        assert (out.output / "removed.parquet").read_bytes() == (ref.output / "removed.parquet").read_bytes(), how
    frame = pl.DataFrame({"text": ["the same words again and again " * 20] * 200})
    eng = LocalEngine()
    eng.begin(tmp_path / "work")
    sizes = {}
    for free, expect in ((0, "uncompressed"), (2**62, "zstd")):
        monkeypatch.setattr(local, "AUTO_FREE_BYTES", free)
        assert eng._compression() == expect
        part = eng._part(frame)
        sizes[expect] = part.stat().st_size
        assert pl.read_ipc(part).equals(frame)
    assert sizes["zstd"] * 10 < sizes["uncompressed"]
    with pytest.raises(ValueError, match="spill compression: expected one of auto, uncompressed, lz4, zstd, got 'gzip'"):
        LocalEngine(spill_compression="gzip")


def test_make_engine_rejects_unknown_names_and_options() -> None:
    with pytest.raises(ValueError, match="unknown engine 'spark'"):
        make_engine("spark")
    with pytest.raises(ValueError, match="takes batch_rows"):
        make_engine("local", address="x:1")


def test_merge_rules_add_counts_and_keep_settings() -> None:
    rules = {"dropped": "sum", "truncated_ids": "head:3", "sub.*": "sum"}
    infos = [
        {"max_tokens": 2048, "dropped": 2, "truncated_ids": ["a", "b"], "sub": {"x": 1}},
        {"max_tokens": 2048, "dropped": 5, "truncated_ids": ["c", "d"], "sub": {"w": 4, "x": 2}},
    ]
    assert merge_infos(infos, rules) == {"max_tokens": 2048, "dropped": 7, "truncated_ids": ["a", "b", "c"], "sub": {"w": 4, "x": 3}}
    # A count without a rule is not silently taken from the first block.
    with pytest.raises(MergeError, match="exempt_hits"):
        merge_infos([{"exempt_hits": 1}, {"exempt_hits": 2}], {})
    with pytest.raises(MergeError, match="some blocks only"):
        merge_infos([{"a": 1}, {}], {})


def test_format_rules_know_which_formats_are_row_local() -> None:
    from mixer.formats.alpaca import AlpacaConfig

    assert format_rules("alpaca", AlpacaConfig()) == {}
    assert format_rules("alpaca", AlpacaConfig(template="random")) is None  # one draw over the source
    assert format_rules("oasst_tree", None) is None  # trees span rows
    assert format_rules("flan", None) == {"submixes.*": "sum"}  # row-local: the draw is the sample step's
    assert format_rules("sharegpt", None) is not None


def test_steps_with_threads_take_their_share_of_the_cpus(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches mapped at once times a step's own threads stay within the CPUs."""
    import mixer.steps.base as base
    import mixer.steps.minhash as minhash

    monkeypatch.setattr(base, "usable_cpus", lambda: 8)
    assert base.threads_for(base.StepContext(batches_at_once=4)) == 2
    assert base.threads_for(base.StepContext(batches_at_once=16)) == 1
    assert base.threads_for(base.StepContext(batches_at_once=4), 3) == 3  # a configured count wins
    seen: list[int] = []

    def spy(ctx: base.StepContext, configured: int | None = None) -> int:
        seen.append(ctx.batches_at_once)
        return base.threads_for(ctx, configured)

    monkeypatch.setattr(minhash, "threads_for", spy)
    raw = yaml.safe_load((repo / "mixtures" / "sample.yaml").read_text())
    for src in raw["sources"].values():
        src["load"]["path"] = str((repo / "mixtures" / src["load"]["path"]).resolve())
    raw["mix"].append({"minhash": {"threshold": 0.8}})
    raw.pop("output")
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    build(load_spec(tmp_path / "spec.yaml"), tmp_path / "b", engine=LocalEngine(threads=3, batch_rows=50))
    assert seen and set(seen) == {3}


def test_fetch_by_rows_reads_only_the_batches_that_hold_them(tmp_path: Path) -> None:
    """``ctx.fetch(fn, rows=...)`` hands ``fn`` just the stage rows asked for (positions in
    the order of ``map``'s keys), skips batches without any, and gives what one whole batch
    gives."""
    import numpy as np
    import polars as pl

    from mixer.steps.base import Decision, Mapped, Step, StepConfig, StepContext

    class Probe(Step):
        name = "_test_probe"

        @property
        def is_global(self) -> bool:
            return True

        def map(self, batch: pl.DataFrame, ctx: StepContext) -> Mapped:
            return Mapped(batch, keys=batch.select("id"))

        def decide(self, keys: pl.LazyFrame, ctx: StepContext, info: dict) -> Decision:
            seen: list[int] = []

            def fn(b: pl.DataFrame) -> pl.DataFrame:
                seen.append(b.height)
                return b.select("id", "n")

            got = pl.concat(list(ctx.fetch(fn, columns=["id", "n"], rows=np.array([0, 9, 10, 11, 95]))))
            return Decision(info={"got": got["id"].to_list(), "keys": keys.collect()["id"].gather([0, 9, 10, 11, 95]).to_list(), "calls": seen})

        def apply(self, batch: pl.DataFrame, decision: Decision, ctx: StepContext) -> tuple[pl.DataFrame, pl.DataFrame]:
            return batch, pl.DataFrame()

    frame = pl.DataFrame({"id": [f"r{i}" for i in range(100)], "n": list(range(100)), "source": ["a"] * 100,
                          "messages": [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}] for i in range(100)]})
    eng = LocalEngine(batch_rows=10, threads=2)
    eng.begin(tmp_path / "work")
    info = eng._pieces(Probe(StepConfig()), eng._split(frame, "sft"), StepContext()).info
    assert info["got"] == info["keys"] == ["r0", "r9", "r10", "r11", "r95"]
    assert info["calls"] == [2, 2, 1]  # batches 0, 1 and 9 of ten
    whole = Probe(StepConfig()).run(frame, StepContext()).info
    assert whole["got"] == info["got"] and whole["calls"] == [5]


def test_stages_that_drop_rows_read_the_rest_back_from_their_input_files(repo: Path, tmp_path: Path) -> None:
    """A stage whose step only drops rows (``keeps_rows``) leaves a ``View`` of its input's
    file instead of writing the rows again; views of views compose, dropped columns stay
    dropped, a view that would keep less than half of its file is written instead, an input
    file is deleted only once nothing reads from it, and a build gives the same bytes with
    views as with every batch written (``VIEW_SHARE`` above 1)."""
    import polars as pl

    from mixer.engines import local
    from mixer.engines.local import View, file_of, read_part, rows_kept

    frame = pl.DataFrame({"id": [f"r{i}" for i in range(10)], "source": ["a"] * 10, "n": list(range(10)), "extra": [1.5] * 10})
    eng = LocalEngine()
    eng.begin(tmp_path / "work")
    base = eng._part(frame)
    kept = frame.filter(pl.col("n") % 4 != 0)  # 7 of 10
    view = eng._keep(base, frame, kept)
    assert isinstance(view, View) and view.path == base and view.rows.tolist() == [1, 2, 3, 5, 6, 7, 9]
    assert read_part(view).equals(kept)
    assert eng._keep(base, frame, frame) is base  # nothing dropped: the batch itself
    # a view of a view, less a column: positions in the file, the column gone
    again = kept.filter(pl.col("n") != 5).drop("extra")
    inner = eng._keep(view, kept, again)
    assert isinstance(inner, View) and inner.path == base and inner.rows.tolist() == [1, 2, 3, 6, 7, 9]
    assert read_part(inner).equals(again) and read_part(inner, ["n"]).equals(again.select("n"))
    # three of ten rows left: written as a batch of its own
    few = again.filter(pl.col("n") > 5)
    out = eng._keep(inner, again, few)
    assert isinstance(out, Path) and out != base and pl.read_ipc(out).equals(few)
    # not rows of the batch as they were: another type, or an id the batch lacks
    assert rows_kept(frame, kept.with_columns(pl.col("n").cast(pl.Int32))) is None
    assert rows_kept(frame, kept.with_columns(pl.lit("x").alias("id"))) is None
    local._replaced(view, inner)  # inner reads base still
    assert base.exists() and file_of(inner) == base
    local._replaced(inner, out)
    assert not base.exists()

    kinds: list[str] = []

    class Counting(LocalEngine):
        def _keep(self, src, batch, kept):  # noqa: ANN001, ANN202
            out = super()._keep(src, batch, kept)
            kinds.append(type(out).__name__)
            return out

    spec = load_spec(repo / "mixtures" / "sample.yaml")
    with_views = build(spec, tmp_path / "views", engine=Counting(batch_rows=40))
    assert kinds.count("View") > 10 and "PosixPath" in kinds, kinds
    kinds.clear()
    import unittest.mock as mock
    with mock.patch.object(local, "VIEW_SHARE", 2.0):
        written = build(spec, tmp_path / "written", engine=Counting(batch_rows=40))
    assert "View" not in kinds
    for name in ("mixture.parquet", "removed.parquet"):
        assert (with_views.output / name).read_bytes() == (written.output / name).read_bytes(), name
