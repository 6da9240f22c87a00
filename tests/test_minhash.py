"""MinHash near-duplicate removal: shingling, datasketch compatibility, the step on real data."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from datasketch import MinHash, MinHashLSH

from mixer.dedup.jaccard import pair_jaccard, unique_sets
from mixer.dedup.lsh import (
    components,
    lsh_params,
    pack_edges,
    pair_lookup,
    unique_edges,
    verify_components,
)
from mixer.dedup.shingle import (
    Shingling,
    hash_shingles,
    normalize,
    normalize_text,
    shingle_hash,
    shingles_of,
)
from mixer.dedup.signatures import minhash, permutations
from mixer.records import REMOVED_SCHEMA, sft_frame, text_of
from mixer.steps.base import StepContext, get_step
from mixer.steps.minhash import MinHashConfig, MinHashDedup

EDGE_CASES = ["", "a b", "Ｈｅｌｌｏ,  wörld ﬁ — “quoted” x\u00a0y\u3000z 😀 ok", "!!!", "  lead", "trail  ",
              "ΣΑΣ Straße İstanbul", "a_b-c", "x..", "中文，标点。测试",
              # NFKC composes across characters: combining marks, Hangul jamo, a Tamil vowel sign
              "cafe\u0301 Cafe\u0301 A\u030a \u1100\u1161\u11a8 \u0bc6\u0bbe \u2460 \u01c4 \uff21\u0301",
              "\u0301lead mark", "plain ascii, UPPER and lower", "emoji 😀 only", "\u00e9t\u00e9 \u2026 \u00a0x"]


def _alpaca(path: Path, out: str = "output") -> list[tuple[str, str]]:
    rows = json.loads(path.read_text())
    return [((r["instruction"] + ("\n\n" + r["input"] if r.get("input") else "")), r[out]) for r in rows]


def _frame(pairs: list[tuple[str, str]], source: str, start: int = 0) -> pl.DataFrame:
    ids = [f"{source}:{start + i}" for i in range(len(pairs))]
    msgs = [[{"role": "user", "content": u}, {"role": "assistant", "content": a}] for u, a in pairs]
    return sft_frame(ids, source, msgs)


@pytest.fixture(scope="module")
def texts(shared_data: Path) -> pl.Series:
    train = shared_data / "train"
    pairs = _alpaca(train / "alpaca_1k/alpaca_data_1k.json") + _alpaca(train / "llama_factory/data/oaast_sft_zh.json")[:300]
    return pl.Series([u + "\n" + a for u, a in pairs] + EDGE_CASES + [None])


CONFIGS = [Shingling(), Shingling(kind="char", n=4), Shingling(n=1),
           Shingling(strip_punctuation=False, lowercase=False, nfkc=False), Shingling(strip_punctuation=False)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.kind}{c.n}-p{int(c.strip_punctuation)}-l{int(c.lowercase)}")
def test_vectorized_shingling_matches_reference(texts: pl.Series, cfg: Shingling) -> None:
    norm = normalize(texts, cfg)
    assert norm.to_list() == [normalize_text(t or "", cfg) for t in texts.to_list()]
    offsets, hashes = hash_shingles(norm, cfg, block_bytes=4096)  # small blocks: many block edges
    for i, text in enumerate(norm.to_list()):
        assert hashes[offsets[i] : offsets[i + 1]].tolist() == [shingle_hash(s) for s in shingles_of(text, cfg)]


def test_normalization_examples() -> None:
    cfg = Shingling()
    assert normalize_text("Ｈｅｌｌｏ,  WORLD!! ﬁne\tdone.", cfg) == "hello world fine done"
    assert shingles_of("a b c", Shingling(n=5)) == ["a b c"]  # shorter than n: one shingle
    assert shingles_of("", cfg) == []


def test_signatures_are_datasketch_minhashes(texts: pl.Series) -> None:
    cfg = Shingling()
    norm = normalize(texts.head(60), cfg)
    offsets, hashes = hash_shingles(norm, cfg)
    perms = permutations(128, 1)
    sig = minhash(hashes, offsets, perms)
    theirs = []
    for i, text in enumerate(norm.to_list()):
        m = MinHash(num_perm=128, seed=1, hashfunc=shingle_hash)
        m.update_batch(shingles_of(text, cfg))
        assert np.array_equal(m.hashvalues, sig[i]), i
        theirs.append(m)
    for i in range(0, 58, 3):
        ours = MinHash(hashvalues=sig[i], scheme="affine32")
        assert ours.jaccard(theirs[i + 1]) == theirs[i].jaccard(theirs[i + 1])
    # an empty record keeps datasketch's untouched state
    empty = minhash(np.zeros(0, np.uint32), np.array([0, 0]), perms)
    assert np.array_equal(empty[0], MinHash(num_perm=128, seed=1).hashvalues)


def test_lsh_params_follow_datasketch() -> None:
    for t, p in [(0.5, 64), (0.8, 128), (0.9, 256)]:
        lsh = MinHashLSH(threshold=t, num_perm=p)
        assert lsh_params(t, p) == (lsh.b, lsh.r)
    assert lsh_params(0.8, 128, 16, 8) == (16, 8)
    with pytest.raises(ValueError):
        lsh_params(0.8, 128, 20, 8)


def test_exact_jaccard_of_pairs() -> None:
    rng = np.random.default_rng(0)
    sets = [rng.choice(50, size=rng.integers(0, 30), replace=False) for _ in range(40)]
    off = np.cumsum([0] + [len(s) for s in sets])
    set_off, values = unique_sets(np.concatenate(sets).astype(np.uint32), off)
    a, b = rng.integers(0, 40, 200), rng.integers(0, 40, 200)
    got = pair_jaccard(set_off[:-1], np.diff(set_off), values, a, b)
    for k in range(200):
        x, y = set(sets[a[k]]), set(sets[b[k]])
        assert got[k] == pytest.approx(len(x & y) / len(x | y) if x | y else 0.0)


def test_set_store_jaccard_with_identical_sets_and_threads(tmp_path: Path) -> None:
    from mixer.dedup.near import SetStore

    rng = np.random.default_rng(1)
    base = [rng.choice(400, size=rng.integers(0, 60), replace=False) for _ in range(30)]
    sets = base + [s.copy() for s in base[:10]] + [np.append(s, 999) for s in base[10:20]]  # copies, near-copies
    off = np.cumsum([0] + [len(s) for s in sets])
    store = SetStore(len(sets), tmp_path, threads=2)
    half = 25  # two chunks, added out of order as worker threads do
    flat = np.concatenate(sets).astype(np.uint32)
    store.add(half, flat[off[half]:], off[half:] - off[half])
    store.add(0, flat[: off[half]], off[: half + 1])
    store.finish()
    a, b = rng.integers(0, len(sets), 3000), rng.integers(0, len(sets), 3000)
    a[:40], b[:40] = np.arange(40) % 30, np.arange(40) % 30 + np.where(np.arange(40) < 10, 30, 0)
    got = store.jaccard(a, b, batch=97)
    for k in range(len(a)):
        x, y = set(sets[a[k]].tolist()), set(sets[b[k]].tolist())
        assert got[k] == pytest.approx(len(x & y) / len(x | y) if x | y else 0.0), k


def test_forest_verification_gives_the_clusters_of_checking_every_edge() -> None:
    rng = np.random.default_rng(3)
    n = 400
    edges = unique_edges(rng.integers(0, n, size=(1500, 2)))
    edges = edges[edges[:, 0] != edges[:, 1]]
    truth = rng.random(len(edges)) < 0.6  # which candidate pairs are "really" similar
    value = rng.random(len(edges))
    lookup = dict(zip(map(tuple, edges.tolist()), zip(truth, value, strict=True), strict=True))

    def check(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        got = [lookup[(min(x, y), max(x, y))] for x, y in zip(a.tolist(), b.tolist(), strict=True)]
        return np.array([g[0] for g in got], dtype=bool), np.array([g[1] for g in got])

    accepted, vals, checks = verify_components(n, edges, rng.random(len(edges)), check)
    assert np.array_equal(components(n, accepted), components(n, edges[truth]))
    assert checks < len(edges)
    found, got = pair_lookup(accepted, vals, accepted[:, 1], accepted[:, 0])
    assert found.all() and np.array_equal(got, vals)
    # taken 100 edges at a time (bounded work arrays), the clusters are the same
    chunked, _, _ = verify_components(n, edges, rng.random(len(edges)), check, chunk=100)
    assert np.array_equal(components(n, chunked), components(n, edges[truth]))


def test_component_groups_hold_whole_components_and_verify_as_the_whole_graph() -> None:
    """Verification runs group by group (bounded memory); the clusters and the checks made
    must be those of verifying the whole candidate graph at once."""
    from mixer.dedup.lsh import component_groups
    from mixer.steps import minhash as mh

    rng = np.random.default_rng(5)
    n = 8000  # sparse: many components, some of dozens of records
    edges = unique_edges(rng.integers(0, n, size=(3500, 2)))
    edges = edges[edges[:, 0] != edges[:, 1]]
    ordered, groups = component_groups(n, edges, 40)
    assert len(groups) > 10 and groups[0][0] == 0 and groups[-1][1] == len(edges)
    assert np.array_equal(np.sort(pack_edges(ordered)), np.sort(pack_edges(edges)))
    label = components(n, edges)
    group_of = np.zeros(len(edges), np.int64)
    for g, (a, b) in enumerate(groups):
        group_of[a:b] = g
        # the bound is passed by the group's last component only
        last = label[ordered[b - 1, 0]]
        assert (b - a) - int((label[ordered[a:b, 0]] == last).sum()) < 40
    for comp in np.unique(label[ordered[:, 0]]):  # a component lies in one group
        assert len(np.unique(group_of[label[ordered[:, 0]] == comp])) == 1

    truth = dict(zip(pack_edges(edges).tolist(), rng.random(len(edges)) < 0.7, strict=True))
    est = {k: 0.8 + 0.2 * rng.random() for k in truth}
    rank = rng.integers(0, 5, n)

    class There:  # what a loaded group answers: estimates and exact Jaccard by record number
        def estimate(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.array([est[k] for k in pack_edges(np.stack([a, b], axis=1)).tolist()])

        def jaccard(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.array([0.9 if truth[k] else 0.1 for k in pack_edges(np.stack([a, b], axis=1)).tolist()])

    whole, _, whole_checks = mh._exact_verify(edges, rank, There(), 0.8, 128, lambda k: None)
    parts = [mh._exact_verify(ordered[a:b], rank, There(), 0.8, 128, lambda k: None) for a, b in groups]
    grouped = np.concatenate([g[0] for g in parts])
    assert np.array_equal(components(n, grouped), components(n, whole))
    assert sum(g[2] for g in parts) == whole_checks
    kept = np.array([truth[k] for k in pack_edges(edges).tolist()])
    assert np.array_equal(components(n, grouped), components(n, edges[kept]))


# ------------------------------------------------------------------------- the step on real data


@pytest.fixture(scope="module")
def code_frame(shared_data: Path) -> pl.DataFrame:
    """codealpaca's new_codealpaca.json holds the same triples as gpteacher's Codegen file."""
    train = shared_data / "train"
    a = _frame(_alpaca(train / "codealpaca/data/code_alpaca_2k.json")[:600], "codealpaca")
    b = _frame(_alpaca(train / "codealpaca/data/new_codealpaca.json")[:800], "new_codealpaca")
    c = _frame(_alpaca(train / "gpteacher/Codegen/codegen-instruct.json", "response")[:800], "gpteacher")
    return pl.concat([a, b, c])


def _run(frame: pl.DataFrame, ctx: StepContext | None = None, **cfg) -> tuple:
    ctx = ctx or StepContext(source_order=frame["source"].unique(maintain_order=True).to_list())
    res = MinHashDedup(MinHashConfig(**cfg)).run(frame, ctx)
    return res, ctx


def test_cross_source_duplicates_removed_keep_first(code_frame: pl.DataFrame) -> None:
    res, _ = _run(code_frame)
    assert res.kept.height + res.removed.height == code_frame.height
    assert res.removed.schema == pl.Schema(REMOVED_SCHEMA)
    assert set(res.removed["reason"]) == {"near_duplicate"} and set(res.removed["step"]) == {"minhash"}
    # the same 800 triples appear in new_codealpaca and then in gpteacher: gpteacher's go
    gone = res.removed.filter(pl.col("source") == "gpteacher")
    assert gone.height >= 780
    detail = gone["detail"].str.extract(r"near-duplicate of (\S+) \((\S+)\), estimated Jaccard ([0-9.]+)")
    assert gone["detail"].str.contains(r"^near-duplicate of new_codealpaca:\d+ \(new_codealpaca\), estimated Jaccard").all()
    # the kept record of a removed gpteacher:i is new_codealpaca:i (same triples, same order), mostly
    same_row = gone["id"].str.replace("gpteacher", "new_codealpaca") == gone["detail"].str.extract(r"of (\S+) ")
    assert same_row.mean() > 0.95
    assert detail is not None and res.info["by_source_pair"]["new_codealpaca <- gpteacher"] == gone.height
    # nothing is lost: every input id is kept or removed, once
    assert sorted(res.kept["id"].to_list() + res.removed["id"].to_list()) == sorted(code_frame["id"].to_list())
    # canonical order preserved in what is kept
    pos = {i: k for k, i in enumerate(code_frame["id"].to_list())}
    kept_pos = [pos[i] for i in res.kept["id"].to_list()]
    assert kept_pos == sorted(kept_pos)


def test_deterministic(code_frame: pl.DataFrame) -> None:
    a, _ = _run(code_frame, threads=2)
    b, _ = _run(code_frame, threads=1)
    assert a.kept.equals(b.kept) and a.removed.equals(b.removed)


def test_planted_edits_found_with_exact_jaccard(shared_data: Path) -> None:
    base = _alpaca(shared_data / "train/alpaca_1k/alpaca_data_1k.json")
    rng = random.Random(7)
    originals = [p for p in base if len((p[0] + " " + p[1]).split()) >= 60][:150]
    edited = []
    for u, a in originals:
        words = a.split(" ")
        i = rng.randrange(len(words))
        words[i] = words[i].upper() + "  "  # case and whitespace: normalized away
        del words[rng.randrange(len(words))]  # one deletion
        edited.append((u, " ".join(words)))
    frame = pl.concat([_frame(originals, "orig"), _frame(edited, "copy")])
    res, _ = _run(frame, threshold=0.7)
    gone = res.removed
    assert set(gone["source"]) == {"copy"}
    assert gone.height >= 145  # one deletion in >=60 words keeps Jaccard well above 0.7
    # the ledger's exact Jaccard equals the reference computed from the shingle strings
    cfg = Shingling()
    texts = dict(zip(frame["id"].to_list(), text_of(frame, "all").to_list(), strict=True))
    for row in gone.head(20).iter_rows(named=True):
        kept_id = row["detail"].split(" ")[2]
        assert kept_id == row["id"].replace("copy", "orig")
        x = set(shingles_of(normalize_text(texts[row["id"]], cfg), cfg))
        y = set(shingles_of(normalize_text(texts[kept_id], cfg), cfg))
        exact = float(row["detail"].split("exact Jaccard ")[1].split(",")[0])
        assert exact == pytest.approx(len(x & y) / len(x | y), abs=1e-3)


def test_keep_policies(code_frame: pl.DataFrame) -> None:
    frame = code_frame.filter(pl.col("source") != "codealpaca")
    res, _ = _run(frame, keep="priority", priority=["gpteacher"])
    assert set(res.removed["source"]) == {"new_codealpaca"}
    longest, _ = _run(frame, keep="longest")
    lengths = dict(zip(frame["id"].to_list(), text_of(frame, "all").str.len_chars().to_list(), strict=True))
    for row in longest.removed.head(50).iter_rows(named=True):
        kept_id = row["detail"].split(" ")[2]
        assert lengths[kept_id] >= lengths[row["id"]]
    with pytest.raises(ValueError):
        MinHashConfig(keep="priority")


def test_upsampled_copies_are_not_duplicates(code_frame: pl.DataFrame) -> None:
    sub = code_frame.filter(pl.col("source") == "codealpaca").head(50)
    copies = sub.with_columns(pl.col("id") + "~1")
    frame = pl.concat([sub, copies, code_frame.filter(pl.col("source") == "new_codealpaca").head(50)])
    res, _ = _run(frame)
    assert not res.removed["id"].str.starts_with("codealpaca").any()
    assert res.kept.filter(pl.col("id").str.ends_with("~1")).height == 50
    # the copies of a removed record leave with it, and the manifest counts them
    later = code_frame.filter(pl.col("source") == "gpteacher").head(200)
    frame = pl.concat([code_frame.filter(pl.col("source") == "new_codealpaca"), later, later.with_columns(pl.col("id") + "~1")])
    res, _ = _run(frame)
    gone = set(res.removed["id"])
    copies_gone = {i for i in gone if i.endswith("~1")}
    assert copies_gone and copies_gone == {i + "~1" for i in gone if not i.endswith("~1")}
    assert res.info["removed_rows"] == len(gone) == res.info["removed"] + len(copies_gone)


def test_batches_give_the_same_result(code_frame: pl.DataFrame, tmp_path: Path) -> None:
    """Map per batch, decide on band keys and a second pass for edge endpoints: the same
    removals and cluster table as one batch, whatever the batch size."""
    from mixer.engines.local import LocalEngine
    from mixer.spec import StepSpec

    order = ["codealpaca", "new_codealpaca", "gpteacher"]
    whole, _ = _run(code_frame, StepContext(source_order=order, work_dir=tmp_path / "a"))
    eng = LocalEngine(batch_rows=97, threads=2)
    eng.begin(tmp_path / "spill")
    ctx = StepContext(source_order=order, work_dir=tmp_path / "b")
    parts = eng.run_step(StepSpec("minhash", MinHashConfig(), "mix"), eng._split(code_frame, "sft"), ctx)
    assert len(parts.kept.parts) > 10  # 23 batches in, those emptied by the step dropped
    assert parts.removed.drop("messages").equals(whole.removed) and eng.collect(parts.kept).equals(whole.kept)
    assert parts.removed["messages"].null_count() == 0  # the engine attaches the removed text
    tables = [pl.read_parquet(tmp_path / d / "dedup" / "minhash.clusters.parquet") for d in ("a", "b")]
    assert tables[0].equals(tables[1]) and tables[0].filter(~pl.col("kept")).height == whole.removed.height
    assert json.loads((tmp_path / "b" / "dedup" / "minhash.json").read_text())["num_perm"] == 128
    assert parts.info["compared"] == whole.info["compared"] == code_frame.height


@pytest.mark.parametrize("verify", ["none", "signature"])
def test_verify_modes(code_frame: pl.DataFrame, verify: str) -> None:
    res, _ = _run(code_frame, verify=verify)
    assert res.info["params"]["verify"] == verify
    assert res.removed.filter(pl.col("source") == "gpteacher").height >= 780


def test_registered_and_config_errors() -> None:
    assert get_step("minhash") is MinHashDedup
    with pytest.raises(ValueError):
        MinHashConfig(bands=4)
    with pytest.raises(ValueError):
        MinHashConfig(unknown=1)
    cfg = MinHashConfig(threshold=0.8)
    assert (cfg.params().bands, cfg.params().rows) == (14, 9)  # recall-leaning when verified
    assert (MinHashConfig(verify="none").params().bands, MinHashConfig(verify="none").params().rows) == (9, 13)


def test_preference_records(shared_data: Path) -> None:
    rows = json.loads((shared_data / "train/llama_factory/data/dpo_en_demo.json").read_text())[:60]

    def msgs(r: dict, side: str) -> list[dict]:
        turns = [{"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]} for t in r["conversations"]]
        return turns + [{"role": "assistant", "content": r[side]["value"]}]

    chosen = [msgs(r, "chosen") for r in rows]
    rejected = [msgs(r, "rejected") for r in rows]
    frame = pl.DataFrame({
        "id": [f"p:{i}" for i in range(60)] + [f"q:{i}" for i in range(60)],
        "source": ["p"] * 60 + ["q"] * 60,
        "chosen": chosen + chosen, "rejected": rejected + rejected, "meta": [None] * 120,
    })
    res, _ = _run(frame)
    assert set(res.removed["source"]) == {"q"} and res.removed.height == 60
