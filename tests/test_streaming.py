"""Steps written as pieces: the same bytes whatever the batch size and threads, draws that
depend only on ids and seeds, and engines that hold no step logic."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from helpers import alpaca_rows, dedup_decontam_spec, same_build, write_jsonl, write_spec
from mixer.engines import LocalEngine
from mixer.pipeline import build
from mixer.records import sft_frame
from mixer.spec import SampleConfig, load_spec
from mixer.steps.base import StepContext
from mixer.steps.sample import Sample, id_hash


def _rows(n: int, prefix: str) -> list[dict]:
    rows = alpaca_rows(n, prefix)
    for i in range(0, n, 7):  # exact duplicates inside and across sources
        rows[i] = {"instruction": "the same question?", "input": "", "output": "the same answer"}
    for i in range(3, n, 11):  # keyword hits
        rows[i]["output"] = f"As an AI model by OpenAI, answer {i}"
    for i in range(5, n, 13):  # a submix for the grouped draw
        rows[i]["submix"] = "b" if i % 2 else "a"
    return rows


def _spec(folder: Path, a_rows: int = 2500, b_rows: int = 1800, mix: bool = True) -> Path:
    write_jsonl(folder / "a.jsonl", _rows(a_rows, "qa"))
    write_jsonl(folder / "b.jsonl", _rows(b_rows, "qb"))
    spec = {
        "name": "det", "seed": 11,
        "sources": {
            "a": {"load": {"path": "a.jsonl"}, "format": "alpaca",
                  "steps": [{"keyword_filter": {"preset": "tulu_v2"}}, {"exact_dedup": {}}], "sample": {"n": 1200}},
            "b": {"load": {"path": "b.jsonl"}, "format": "alpaca", "sample": {"fraction": 0.6}},
        },
        "mix": [{"exact_dedup": {}}, {"sample": {"fraction": 0.9}}] if mix else [],
    }
    return write_spec(folder, spec)


def _files(out: Path) -> tuple[bytes, bytes]:
    return (out / "mixture.parquet").read_bytes(), (out / "removed.parquet").read_bytes()


def test_batch_sizes_and_threads_give_the_same_bytes(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path))
    ref = build(spec, tmp_path / "ref")
    assert ref.mixture.height > 1000 and ref.removed["reason"].n_unique() >= 3
    again = build(spec, tmp_path / "again")
    assert _files(again.output) == _files(ref.output)  # two builds, byte-identical
    for batch_rows, threads, key_rows in [(1000, 1, 4_000_000), (64_000, 2, 4_000_000), (97, 16, 300), (23, 2, 50)]:
        out = build(spec, tmp_path / f"b{batch_rows}-t{threads}", engine=LocalEngine(batch_rows=batch_rows, threads=threads, key_rows=key_rows))
        assert _files(out.output) == _files(ref.output), (batch_rows, threads, key_rows)


def test_keys_past_the_budget_spill_and_decide_scans_them(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a budget of 2000 key rows, the keys of exact dedup, minhash, decontamination and
    a fractional sample go to spill files that ``decide`` scans (exact dedup a hash
    partition of about 2000 rows at a time). The build is byte-identical to one that holds
    every key, and no key file outlives its stage (the reduce of a sample of n:
    ``test_a_sample_of_n_holds_few_keys_whatever_the_budget``)."""
    from mixer.engines import local
    from mixer.steps import exact

    spec = load_spec(dedup_decontam_spec(tmp_path, shared_data))
    held = build(spec, tmp_path / "held", engine=LocalEngine(batch_rows=500))
    stages: list[tuple[str, int, int]] = []  # (step, key files, key rows)
    files: list[Path] = []
    hand_over, delete = local.KeyBuffer.hand_over, local.KeyBuffer.delete

    def counted(self: local.KeyBuffer) -> pl.LazyFrame:
        assert all(f.exists() for f in self.files)
        files.extend(self.files)
        keys = hand_over(self)
        stages.append((self.step.name, len(self.files), keys.select(pl.len()).collect().item()))
        return keys

    def deleted(self: local.KeyBuffer) -> None:
        delete(self)
        assert not any(f.exists() for f in self.files)

    partitions: list[int] = []
    key_partitions = exact.key_partitions

    def parts(keys: pl.LazyFrame, column: str, ctx: StepContext):  # noqa: ANN202
        for p in key_partitions(keys, column, ctx):
            partitions.append(p.height)
            yield p

    monkeypatch.setattr(local.KeyBuffer, "hand_over", counted)
    monkeypatch.setattr(local.KeyBuffer, "delete", deleted)
    monkeypatch.setattr(exact, "key_partitions", parts)
    spilled = build(spec, tmp_path / "spilled", engine=LocalEngine(batch_rows=500, key_rows=2000))
    same_build(held.output, spilled.output, ("dedup/minhash.clusters.parquet", "dedup/minhash-2.clusters.parquet", "contamination_matches.parquet"))
    by_step = {name: [(n, rows) for s, n, rows in stages if s == name] for name, _, _ in stages}
    for name in ("exact_dedup", "minhash", "decontaminate"):
        assert any(n > 1 and rows > 2000 for n, rows in by_step[name]), (name, by_step[name])
    assert any(n >= 1 for n, _ in by_step["sample"]), by_step["sample"]  # t0's fraction: every key kept, so spilled
    assert (0, 1000) in by_step["sample"]  # alpaca's 1000 keys: within the budget, held
    assert len(partitions) > 4 and max(partitions) < 2 * 2000 and sum(partitions) == sum(rows for _, rows in by_step["exact_dedup"])
    assert files and not any(f.exists() for f in files)


def test_changing_one_source_leaves_another_selection_unchanged(tmp_path: Path) -> None:
    first = build(load_spec(_spec(tmp_path, mix=False)), tmp_path / "one")
    write_jsonl(tmp_path / "b.jsonl", _rows(1800, "qb")[:900] + alpaca_rows(400, "other"))
    second = build(load_spec(tmp_path / "spec.yaml"), tmp_path / "two")
    picked = [b.mixture.filter(pl.col("source") == "a")["id"].to_list() for b in (first, second)]
    assert picked[0] == picked[1] and len(picked[0]) == 1200
    kept_b = [set(b.mixture.filter(pl.col("source") == "b")["id"]) for b in (first, second)]
    assert kept_b[0] != kept_b[1]  # b itself did change


def _frame(n: int, source: str = "s", width: int = 0) -> pl.DataFrame:
    msgs = [[{"role": "user", "content": f"q{i}" + "x" * width}, {"role": "assistant", "content": f"a{i} {i * 7919 % 1000}" * (1 + width // 8)}] for i in range(n)]
    meta = [('{"submix": "%s"}' % ("x" if i % 3 else "y")) for i in range(n)]
    return sft_frame([f"{source}:{i}" for i in range(n)], source, msgs, meta)


def test_rank_draw_is_exact_nested_and_seeded() -> None:
    frame = _frame(5000)
    ctx = StepContext(seed=3, scope="s")
    small = Sample(SampleConfig(n=100)).run(frame, ctx)
    big = Sample(SampleConfig(n=400)).run(frame, ctx)
    assert small.kept.height == 100 and big.kept.height == 400
    assert set(small.kept["id"]) < set(big.kept["id"])  # a larger n takes a superset
    assert small.kept["id"].to_list() == [i for i in frame["id"] if i in set(small.kept["id"])]  # canonical order
    other = Sample(SampleConfig(n=100)).run(frame, StepContext(seed=4, scope="s"))
    assert set(other.kept["id"]) != set(small.kept["id"])
    frac = Sample(SampleConfig(fraction=0.25)).run(frame, ctx)
    assert frac.kept.height == 1250 and frac.removed.height == 3750
    assert set(small.kept["id"]) <= set(frac.kept["id"])  # the same ranks, cut further down
    by = Sample(SampleConfig(n={"x": 50, "y": 20}, by="submix")).run(frame, ctx)
    assert by.kept.height == 70 and by.info["groups"]["y"] == {"requested": 20, "available": 1667, "kept": 20}
    # the draw does not depend on the rows around a record: drawing from a shuffled copy
    shuffled = Sample(SampleConfig(n=100)).run(frame.sample(fraction=1.0, shuffle=True, seed=1), ctx)
    assert set(shuffled.kept["id"]) == set(small.kept["id"])


def test_reduce_keeps_the_decision() -> None:
    frame = _frame(3000)
    ctx = StepContext(seed=9, scope="s")
    for cfg in (SampleConfig(n=300), SampleConfig(n={"x": 40}, by="submix", allow_fewer=True)):
        step = Sample(cfg)
        keys = step.map(frame, ctx).keys
        assert keys is not None
        reduced = step.reduce(pl.concat([step.reduce(keys.slice(0, 1000), ctx), keys.slice(1000)]), ctx)
        assert reduced.height < keys.height
        assert step.decide(reduced.lazy(), ctx, {}).data == step.decide(keys.lazy(), ctx, {}).data


def test_a_sample_of_n_holds_few_keys_whatever_the_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sample: {n}`` asks the engine to reduce whenever its held keys have doubled (its
    reduce keeps n per group), so the keys held stay near n, not near ``key_rows``."""
    assert Sample(SampleConfig(n=10)).held_keys() == 100_000
    assert Sample(SampleConfig(n={"a": 30_000, "b": 20_000}, by="submix")).held_keys() == 200_000
    assert Sample(SampleConfig(fraction=0.5)).held_keys() is None
    spec = load_spec(_spec(tmp_path, mix=False))
    ref = build(spec, tmp_path / "ref", engine=LocalEngine(batch_rows=100, key_rows=10_000_000))
    seen: list[int] = []
    reduce = Sample.reduce

    def spy(self: Sample, keys: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        seen.append(keys.height)
        return reduce(self, keys, ctx)

    monkeypatch.setattr(Sample, "reduce", spy)
    monkeypatch.setattr(Sample, "held_keys", lambda self: 200 if self.config.n is not None else None)
    out = build(spec, tmp_path / "small", engine=LocalEngine(batch_rows=100, key_rows=10_000_000))
    assert _files(out.output) == _files(ref.output)
    assert len(seen) >= 3 and max(seen) <= 2 * 1200 + 200  # n = 1200 for source a: about twice n at most


def test_id_hash_is_fnv1a() -> None:
    def fnv(s: str) -> int:
        h = 0xCBF29CE484222325
        for b in s.encode():
            h = ((h ^ b) * 0x100000001B3) % 2**64
        return h

    ids = pl.Series(["", "a", "alpaca:12", "ünïcode:7", "x" * 40])
    assert [int(v) for v in id_hash(ids)] == [fnv(s) for s in ids]


def test_sample_shortfall_still_raises() -> None:
    with pytest.raises(ValueError, match="asks for 20 records but only 10"):
        Sample(SampleConfig(n=20)).run(_frame(10), StepContext(scope="s"))


def test_engines_hold_no_step_logic(repo: Path) -> None:
    """Engines schedule: they import no step module and no step internals (steps compute)."""
    names = {p.name for p in (repo / "src" / "mixer" / "engines").glob("*.py")}
    assert not names & {"ray_minhash.py", "ray_decontam.py"}
    for path in sorted((repo / "src" / "mixer" / "engines").glob("*.py")):
        text = path.read_text()
        assert not re.search(r"mixer\.(steps\.(?!base\b)\w+|decontam|dedup\.(near|lsh|clusters|shingle))", text), path.name
        assert not re.search(r"\._(drop|live|exact_verify|apply_rule)\b", text.replace("self._", "")), path.name


def test_shards_depend_only_on_the_rows(tmp_path: Path) -> None:
    from mixer.output import ShardWriter, mixture_files, read_mixture

    frame = _frame(7000, width=400)  # row groups of several pages: page breaks must not follow the batches
    names = []
    for k, sizes in enumerate([[7000], [1, 999, 4000, 2000], [3] * 2333 + [1]]):
        folder = tmp_path / str(k)
        folder.mkdir()
        w = ShardWriter(folder, "mixture", frame.head(0), shard_rows=3000, row_group=1500)
        at = 0
        for n in sizes:
            w.write(frame.slice(at, n))
            at += n
        names.append(w.close())
        assert [p.read_bytes() for p in w.paths] == [(tmp_path / "0" / n).read_bytes() for n in names[0]]
    assert names[0] == ["mixture-00000-of-00003.parquet", "mixture-00001-of-00003.parquet", "mixture-00002-of-00003.parquet"]
    assert read_mixture(tmp_path / "0").equals(frame)
    assert [p.name for p in mixture_files(tmp_path / "0")] == names[0]


def test_a_build_in_shards_reads_back_and_leaves_no_spill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mixer import output
    from mixer.build_dir import BuildDir

    monkeypatch.setattr(output, "SHARD_ROWS", 1000)
    monkeypatch.setattr(output, "ROW_GROUP", 500)
    spec = load_spec(_spec(tmp_path))
    res = build(spec, tmp_path / "out", engine=LocalEngine(batch_rows=300))
    shards = sorted(p.name for p in (tmp_path / "out").glob("mixture*.parquet"))
    assert len(shards) > 1 and set(shards) <= set(res.manifest["files"])
    assert sum(res.manifest["files"][s]["rows"] for s in shards) == res.manifest["records"] == res.mixture.height
    b = BuildDir(tmp_path / "out", verify=True)
    assert b.frame.equals(res.mixture) and b.why(b.frame["id"][1500])[0]["status"] == "kept"
    assert not (tmp_path / "out" / "spill").exists()


def test_a_sharded_build_is_read_whole_by_training_stats_and_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    from mixer import output
    from mixer.build_dir import BuildDir
    from mixer.stats import stats_for_build
    from mixer_train.data import load_records, open_build

    monkeypatch.setattr(output, "SHARD_ROWS", 1000)
    monkeypatch.setattr(output, "ROW_GROUP", 500)
    res = build(load_spec(_spec(tmp_path)), tmp_path / "out")
    n = res.mixture.height
    assert len(list((tmp_path / "out").glob("mixture-*-of-*.parquet"))) == -(-n // 1000) > 1
    b = open_build(tmp_path / "out", kind="sft")
    assert b.rows == n and len(b.mixture) > 1
    ds = load_records(b)
    assert len(ds) == n and ds[n - 1]["messages"] == res.mixture["messages"][n - 1].to_list()
    assert stats_for_build(BuildDir(tmp_path / "out")).total["instances"] == n
    assert len(datasets.load_dataset(str(tmp_path / "out"), split="train")) == n  # the card's default config


@pytest.mark.parametrize("suffix", ["", ".gz", ".zst"])
def test_files_stream_in_parts_with_the_whole_file_result(tmp_path: Path, suffix: str) -> None:
    import gzip
    import hashlib
    import json

    import zstandard

    from mixer.io import concat_loaded, iter_files, sha256_file

    lines = [json.dumps(r) for r in alpaca_rows(3000, "s")]
    lines[17] = "{broken"
    lines[2500] = "[1, 2]"
    data = ("\ufeff" + "\n".join(lines[:1000]) + "\n\n" + "\n".join(lines[1000:]) + "\n").encode()
    path = tmp_path / f"a.jsonl{suffix}"
    path.write_bytes(gzip.compress(data) if suffix == ".gz" else zstandard.ZstdCompressor().compress(data) if suffix == ".zst" else data)
    whole = concat_loaded(iter_files([str(path)], tmp_path, "s", on_error="skip", batch_bytes=1 << 30))
    parts = list(iter_files([str(path)], tmp_path, "s", on_error="skip", batch_bytes=4096))
    assert len(parts) > 20 and all(p.raw.height < 200 for p in parts)
    streamed = concat_loaded(parts)
    assert streamed.raw.equals(whole.raw) and streamed.removed.equals(whole.removed)
    assert whole.raw.height == 2998 and whole.raw["_row"].to_list() == list(range(2998))
    assert whole.raw["_origin"][1000] == f"{path}:1003"  # the blank line is counted
    assert sorted(whole.removed["id"].to_list()) == ["s:bad:" + path.name + ":18", "s:bad:" + path.name + ":2502"]
    assert streamed.inputs == whole.inputs and whole.inputs[0]["sha256"] == sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [p.inputs for p in parts[:-1]] == [[]] * (len(parts) - 1)  # the fingerprint comes with the last part


def test_parquet_sources_stream_by_record_batches(tmp_path: Path) -> None:
    from mixer.io import concat_loaded, iter_files

    frame = pl.DataFrame(alpaca_rows(5000, "p"))
    frame.write_parquet(tmp_path / "a.parquet", row_group_size=500)
    parts = list(iter_files(["a.parquet"], tmp_path, "p", batch_bytes=20_000))
    whole = concat_loaded(parts)
    assert len(parts) > 2 and whole.raw.height == 5000
    assert whole.raw.drop("_row", "_origin").equals(frame) and whole.raw["_origin"][4999] == f"{tmp_path / 'a.parquet'}#4999"


def test_minhash_gives_the_same_bytes_whatever_the_groups_batches_and_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MinHash verifies its candidate graph group by group (whole components, each group's
    endpoint signatures and sets read back into memory, or the sets read pair by pair) and
    one large component in chunks; neither the group size, nor where the sets are read
    from, nor the batches nor the threads may change a byte."""
    import numpy as np

    from mixer.steps import minhash as mh

    rng = np.random.default_rng(7)
    vocab = [f"w{i}" for i in range(400)]
    rows = []
    for i in range(1500):
        if i >= 300 and rng.random() < 0.4:  # a near copy of an earlier record: one word changed
            words = rows[int(rng.integers(0, 300))]["output"].split()
            words[int(rng.integers(0, len(words)))] = f"edit{i}"
            rows.append({"instruction": f"task {i}", "input": "", "output": " ".join(words)})
        else:
            rows.append({"instruction": f"task {i}", "input": "", "output": " ".join(rng.choice(vocab, 60))})
    write_jsonl(tmp_path / "a.jsonl", rows)
    spec = load_spec(write_spec(tmp_path, {"name": "mh", "seed": 3, "sources": {"a": {"load": {"path": "a.jsonl"}, "format": "alpaca"}},
                                           "mix": [{"minhash": {"threshold": 0.7, "text": "assistant"}}]}))
    ref = build(spec, tmp_path / "ref")
    info = next(s for s in ref.manifest["steps"] if s["step"] == "minhash")["info"]
    assert ref.removed.filter(pl.col("reason") == "near_duplicate").height > 300
    assert info["candidate_edges"] > 100
    monkeypatch.setattr(mh, "VERIFY_EDGES", 5)  # many groups, and components larger than a group
    for batch_rows, threads in [(1500, 1), (64, 2), (97, 16)]:
        # the first run also reads every group's sets pair by pair from their files
        monkeypatch.setattr(mh, "SETS_IN_MEMORY", 0 if batch_rows == 1500 else 512 * 2**20)
        out = build(spec, tmp_path / f"b{batch_rows}-t{threads}", engine=LocalEngine(batch_rows=batch_rows, threads=threads))
        assert _files(out.output) == _files(ref.output), (batch_rows, threads)
