"""The ``select`` step: pooling, ranking, round-robin, embedding cache, ledger and meta,
determinism, and ``mixer select-report``; with a tiny random Llama (real Llama 2 tokenizer)
saved to a local folder, and with the offline MiniLM."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from helpers import write_jsonl, write_spec
from mixer.pipeline import build
from mixer.records import sft_frame
from mixer.select.cache import EmbeddingCache, embed
from mixer.select.pooling import position_weights, weighted_mean
from mixer.select.rank import round_robin, task_scores, top_order
from mixer.spec import SpecError, load_spec
from mixer.steps.base import StepContext
from mixer.steps.select import Select, SelectConfig, SelectShortfall, with_meta

os.environ.setdefault("MIXER_NO_PROGRESS", "1")

TEXTS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "def add(a, b):\n    return a + b",
    "x",
    "<|user|>\nWhat is the capital of France?\n<|assistant|>\nParis.</s>",
    "Write a haiku about autumn leaves falling on a quiet pond at dusk, with a surprising last line.",
    "SELECT name FROM users WHERE age > 30 ORDER BY name;",
    "The mitochondria is the powerhouse of the cell.",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z " * 3,
]


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory, shared_tokenizers: Path) -> Path:
    """A random 2-layer Llama with the real Llama 2 tokenizer, saved like a hub checkpoint."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from mixer.tokenizers import load_tokenizer

    tok = load_tokenizer(str(shared_tokenizers / "llama2" / "tokenizer.model"))
    cfg = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def llama_encoder(tiny_llama: Path):
    from mixer.select.encoders import CausalLMEncoder

    return CausalLMEncoder(str(tiny_llama), max_length=2048, batch_size=8)


@pytest.fixture(scope="session")
def minilm():
    from mixer.select.encoders import SentenceEncoder

    return SentenceEncoder()


# ------------------------------------------------------------------ pooling


def test_position_weights_ignore_padding_on_either_side() -> None:
    right = torch.tensor([[1, 1, 1, 0, 0]])
    left = torch.tensor([[0, 0, 1, 1, 1]])
    expect = torch.tensor([1.0, 2.0, 3.0]) / 6.0
    assert torch.allclose(position_weights(right)[0, :3], expect) and position_weights(right)[0, 3:].eq(0).all()
    assert torch.allclose(position_weights(left)[0, 2:], expect) and position_weights(left)[0, :2].eq(0).all()
    h = torch.randn(1, 5, 4)
    assert torch.allclose(weighted_mean(h, right)[0], (h[0, :3] * expect[:, None]).sum(0), atol=1e-6)


def _direct_rds(folder: Path, text: str, tokenizer) -> np.ndarray:
    """RDS+ written out for one text, no padding: the causal LM's last hidden state (with
    output_hidden_states, as the reference code reads it), w_i = i / sum j, unit length."""
    from transformers import AutoModelForCausalLM

    model = _direct_rds.cache.get(folder) or AutoModelForCausalLM.from_pretrained(folder)
    _direct_rds.cache[folder] = model
    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        h = model(**ids, output_hidden_states=True).hidden_states[-1][0]
    w = torch.arange(1, h.shape[0] + 1, dtype=torch.float32)
    v = (h * (w / w.sum())[:, None]).sum(0)
    return (v / v.norm()).numpy()


_direct_rds.cache = {}


def test_llama_pooling_equals_direct_at_batch_1_and_8(llama_encoder, tiny_llama: Path) -> None:
    enc = llama_encoder
    assert enc.tokenizer.padding_side == "right" and enc.fingerprint()["model"] == tiny_llama.name
    lengths = [len(enc.tokenizer(t)["input_ids"]) for t in TEXTS]
    assert len(set(lengths)) > 4  # a batch of 8 really pads
    batch8 = enc.encode(TEXTS)
    batch1 = np.concatenate([enc.encode([t]) for t in TEXTS])
    direct = np.stack([_direct_rds(tiny_llama, t, enc.tokenizer) for t in TEXTS])
    np.testing.assert_allclose(batch8, direct, atol=2e-5)
    np.testing.assert_allclose(batch1, direct, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(batch8, axis=1), 1.0, atol=1e-5)
    # The weighting matters: plain mean pooling gives other vectors.
    assert np.abs(batch8 - _plain_mean(tiny_llama, TEXTS[0], enc.tokenizer)).max() > 1e-3


def _plain_mean(folder: Path, text: str, tokenizer) -> np.ndarray:
    model = _direct_rds.cache[folder]
    with torch.no_grad():
        h = model(**tokenizer(text, return_tensors="pt"), output_hidden_states=True).hidden_states[-1][0]
    v = h.mean(0)
    return (v / v.norm()).numpy()


def test_minilm_pooling_equals_direct_at_batch_1_and_8(minilm) -> None:
    """sentence-transformers' mean pooling + normalize, against a hand-written BERT pass."""
    from transformers import AutoModel, AutoTokenizer

    from mixer.select.encoders import resolve_sentence_model

    path = resolve_sentence_model("all-MiniLM-L6-v2")
    tok, bert = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)
    direct = []
    for t in TEXTS:
        ids = tok(t, return_tensors="pt", truncation=True, max_length=256)
        with torch.no_grad():
            h = bert(**ids).last_hidden_state[0]
        v = h.mean(0)
        direct.append((v / v.norm()).numpy())
    minilm.batch_size = 8
    np.testing.assert_allclose(minilm.encode(TEXTS), np.stack(direct), atol=2e-5)
    np.testing.assert_allclose(np.concatenate([minilm.encode([t]) for t in TEXTS]), np.stack(direct), atol=2e-5)


# ------------------------------------------------------------------ ranking


def test_round_robin_on_a_hand_made_score_matrix() -> None:
    # 6 items x 3 tasks. Task 0 loves items 0,1,2; task 1 also loves 0 then 3; task 2 only
    # scores items 4 and 5 (its list runs out after them).
    s = np.array([
        [0.9, 0.95, -1.0],
        [0.8, 0.10, -1.0],
        [0.7, 0.20, -1.0],
        [0.1, 0.90, -1.0],
        [0.0, 0.00, 0.50],
        [0.0, 0.00, 0.40],
    ])
    orders = [top_order(s[:, t], 6) for t in range(3)]
    assert orders[1].tolist() == [0, 3, 2, 1, 4, 5]  # ties (items 4, 5 at 0.0) by index
    items, tasks, ranks = round_robin(orders, 6, 6)
    # round 1: t0 takes 0; t1's best (0) is taken -> 3; t2 takes 4.
    # round 2: t0 takes 1; t1 -> 2 (0, 3 gone); t2 -> 5.
    assert items.tolist() == [0, 3, 4, 1, 2, 5]
    assert tasks.tolist() == [0, 1, 2, 0, 1, 2]
    assert ranks.tolist() == [0, 1, 0, 1, 2, 1]
    # A budget that ends mid-round stops at once.
    items, tasks, _ = round_robin(orders, 4, 6)
    assert items.tolist() == [0, 3, 4, 1] and tasks.tolist() == [0, 1, 2, 0]
    # A task whose list runs out drops out; the others keep going.
    short = [np.array([0, 1, 2, 3]), np.array([4])]
    items, tasks, _ = round_robin(short, 5, 5)
    assert items.tolist() == [0, 4, 1, 2, 3] and tasks.tolist() == [0, 1, 0, 0, 0]


def test_top_order_is_exact_and_breaks_ties_by_index() -> None:
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, size=1000).astype(np.float32)  # many ties
    got = top_order(s, 137)
    full = np.lexsort((np.arange(1000), -s))[:137]
    assert got.tolist() == full.tolist()


def test_task_scores_are_max_cosine_per_task_exact_and_ivf() -> None:
    rng = np.random.default_rng(1)
    pool = rng.standard_normal((3000, 32)).astype(np.float32)
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    tgt = rng.standard_normal((700, 32)).astype(np.float32)
    tgt /= np.linalg.norm(tgt, axis=1, keepdims=True)
    task = np.r_[np.zeros(500), np.ones(200)].astype(np.int32)
    expect = np.stack([(pool @ tgt[task == t].T).max(1) for t in (0, 1)], axis=1)
    got = task_scores(pool, tgt, task, 2, chunk=1000)
    np.testing.assert_allclose(got, expect, atol=1e-5)
    # IVF probing every cell is exact; probing few is a lower bound that is mostly right.
    full = task_scores(pool, tgt, task, 2, index="ivf", nlist=8, nprobe=8)
    np.testing.assert_allclose(full, expect, atol=1e-5)
    approx = task_scores(pool, tgt, task, 2, index="ivf", nlist=8, nprobe=2)
    assert (approx <= expect + 1e-5).all() and np.isclose(approx, expect, atol=1e-5).mean() > 0.5


# ------------------------------------------------------------------ cache


class _Counting:
    """Wraps an encoder: counts texts encoded, optionally dies after ``fail_after`` batches."""

    def __init__(self, inner, fail_after: int | None = None):
        self.inner, self.fail_after, self.batches, self.texts = inner, fail_after, 0, 0
        self.name, self.eos, self.batch_size = inner.name, inner.eos, 2

    def fingerprint(self):
        return self.inner.fingerprint()

    def encode(self, texts):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.batches += 1
        self.texts += len(texts)
        return self.inner.encode(texts)


def test_cache_reuses_and_resumes_after_interruption(llama_encoder, tmp_path: Path) -> None:
    texts = TEXTS + TEXTS[:3]  # duplicates are embedded once
    ref, st = embed(texts, _Counting(llama_encoder), EmbeddingCache(tmp_path / "a", llama_encoder.fingerprint()), shard_size=2)
    assert st.unique == 8 and st.computed == 8 and len(st.shards_written) == 4
    np.testing.assert_allclose(ref, np.concatenate([llama_encoder.encode([t]) for t in texts]), atol=2e-5)

    cache = EmbeddingCache(tmp_path / "b", llama_encoder.fingerprint())
    dying = _Counting(llama_encoder, fail_after=3)  # batches of 2 texts, shards of 4
    with pytest.raises(KeyboardInterrupt):
        embed(texts, dying, cache, shard_size=4)
    # batches 1-2 made a full shard; batch 3 was flushed on the way out of the interrupt
    assert len(cache.shards()) == 2
    # A hard kill mid-write leaves vectors without keys: not a shard, ignored.
    (cache.dir / "shard-99999999999999999999-dead.vecs.npy").write_bytes(b"partial")
    again = _Counting(llama_encoder)
    vecs, st = embed(texts, again, cache, shard_size=4)
    assert (st.reused, st.computed, again.texts) == (6, 2, 2)
    np.testing.assert_array_equal(vecs, ref)
    third = _Counting(llama_encoder)
    vecs, st = embed(list(reversed(texts)), third, cache)
    assert third.texts == 0 and st.reused == 8
    np.testing.assert_array_equal(vecs, ref[::-1])


def test_cache_folder_is_keyed_by_model_and_settings(llama_encoder, tmp_path: Path) -> None:
    fp = llama_encoder.fingerprint()
    a = EmbeddingCache(tmp_path, fp)
    assert EmbeddingCache(tmp_path, dict(fp)).dir == a.dir
    assert EmbeddingCache(tmp_path, {**fp, "max_length": 512}).dir != a.dir
    assert EmbeddingCache(tmp_path, fp, store="float16").dir != a.dir
    assert json.loads((a.dir / "fingerprint.json").read_text())["pooling"] == "position_weighted_mean"


# ------------------------------------------------------------------ meta


def test_meta_is_merged_not_overwritten() -> None:
    f = sft_frame(["a", "b", "c", "d", "e"], "s", [[{"role": "user", "content": "q"}]] * 5,
                  meta=[None, "{}", '{"lang": "en", "n": 2}', '["odd"]', '{"select": {"task": "old"}, "k": 1}'])
    out = with_meta(f, "select", pl.Series([json.dumps({"task": f"t{i}"}) for i in range(5)]))
    got = [json.loads(m) for m in out["meta"]]
    assert got[0] == {"select": {"task": "t0"}} and got[1] == {"select": {"task": "t1"}}
    assert got[2] == {"lang": "en", "n": 2, "select": {"task": "t2"}}
    assert got[3] == {"meta": ["odd"], "select": {"task": "t3"}}
    assert got[4] == {"select": {"task": "t4"}, "k": 1}


# ------------------------------------------------------------------ the step in a build


def _pool_spec(tmp: Path, repo: Path, select: dict, seed: int = 7) -> Path:
    write_jsonl(tmp / "targets.jsonl", [
        {"question": "What is 12 * 7? Show the arithmetic.", "answer": "12 * 7 = 84"},
        {"question": "Compute 15% of 240.", "answer": "0.15 * 240 = 36"},
    ])
    code = [{"instruction": f"Write a Python function number {i} that returns the sum of a list.",
             "input": "", "output": f"def f{i}(xs):\n    return sum(xs)", "meta_tag": i} for i in range(12)]
    write_jsonl(tmp / "code.jsonl", code)
    spec = {
        "name": "sel", "seed": seed,
        "sources": {
            "alpaca": {"load": {"path": str(repo / "data" / "sample" / "alpaca.json")}, "format": "alpaca"},
            "chat": {"load": {"path": str(repo / "data" / "sample" / "chat.jsonl")}, "format": "messages", "on_error": "skip"},
            "code": {"load": {"path": "code.jsonl"}, "format": "alpaca"},
        },
        "mix": [{"select": select}],
    }
    return write_spec(tmp, spec)


def _rds(tiny_llama: Path, cache: Path, budget: int = 12) -> dict:
    return {"method": "rds_plus", "budget": budget, "model": str(tiny_llama), "cache_dir": str(cache), "copy_embeddings": True,
            "targets": {"arith": {"path": "targets.jsonl", "prompt_field": "question", "answer_field": "answer"},
                        "code": {"path": "code.jsonl", "prompt_field": ["instruction", "input"], "answer_field": "output", "n": 3}}}


def test_rds_plus_build_ledger_meta_and_side_files(tiny_llama: Path, repo: Path, tmp_path: Path) -> None:
    spec = load_spec(_pool_spec(tmp_path, repo, _rds(tiny_llama, tmp_path / "cache")))
    res = build(spec, tmp_path / "out")
    mix, removed = res.mixture, res.removed.filter(pl.col("step") == "select")
    entry = next(e for e in res.manifest["steps"] if e["step"] == "select")
    pool = sum(entry["in"].values())
    assert mix.height == 12 and removed.height == pool - 12
    assert set(removed["reason"]) == {"not_selected"}
    assert removed["detail"].str.contains(r"^best score -?\d\.\d+ for (arith|code) \(lowest (arith|code) pick: ").all()
    metas = [json.loads(m)["select"] for m in mix["meta"]]
    assert {m["task"] for m in metas} == {"arith", "code"}
    assert sorted(m["pick"] for m in metas) == list(range(12))
    assert [m["task"] for m in sorted(metas, key=lambda m: m["pick"])][:4] == ["arith", "code", "arith", "code"]
    info = entry["info"]
    assert info["tasks"]["arith"]["claimed"] == 6 and info["tasks"]["code"]["targets"] == 3
    assert info["embedding"]["pool"]["computed"] + info["embedding"]["pool"]["reused"] == info["embedding"]["pool"]["unique"]
    assert Path(info["embedding"]["cache"]).is_dir() and info["template"] == "tulu"
    table = pl.read_parquet(tmp_path / "out" / "select" / "scores.parquet")
    assert table.height == pool and table["selected"].sum() == 12
    vecs = np.load(tmp_path / "out" / "select" / "pool_embeddings.npy")  # rows follow scores.parquet
    assert vecs.shape == (pool, 64) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # The claimed score is that task's score; unselected best scores are the row max.
    sel = table.filter("selected")
    for t in ("arith", "code"):
        part = sel.filter(pl.col("task") == t)
        np.testing.assert_allclose(part["score"].to_numpy(), part[f"score:{t}"].to_numpy())
    # Within a task, the claimed records are exactly its best not claimed by the other task.
    for t, other in (("arith", "code"), ("code", "arith")):
        rest = table.filter(~((pl.col("task") == other) & pl.col("selected")))
        top = rest.sort(f"score:{t}", descending=True).head(6)["id"].to_list()
        assert set(top) == set(sel.filter(pl.col("task") == t)["id"].to_list())
    # Code records dominate the code task's picks (they are its targets' neighbours).
    assert sel.filter(pl.col("task") == "code")["source"].to_list().count("code") >= 3

    # Rebuild: same bytes, embeddings all from the cache.
    res2 = build(load_spec(spec.path), tmp_path / "out2")
    assert _sha(tmp_path / "out" / "mixture.parquet") == _sha(tmp_path / "out2" / "mixture.parquet")
    assert _sha(tmp_path / "out" / "removed.parquet") == _sha(tmp_path / "out2" / "removed.parquet")
    e2 = next(e for e in res2.manifest["steps"] if e["step"] == "select")["info"]["embedding"]
    assert e2["pool"]["computed"] == 0 and e2["targets"]["computed"] == 0

    # select-report reads it back.
    from typer.testing import CliRunner

    from mixer.cli import app

    out = CliRunner().invoke(app, ["select-report", str(tmp_path / "out"), "--json"])
    assert out.exit_code == 0, out.output
    rep = json.loads(out.output)
    assert {r["task"]: r["claimed"] for r in rep["claimed"]} == {"arith": 6, "code": 6}
    comp = {r["source"]: r for r in rep["composition"]}
    assert sum(r["selected"] for r in comp.values()) == 12 and sum(r["pool"] for r in comp.values()) == pool
    assert rep["scores"]["code"]["selected"]["p50"] > rep["scores"]["code"]["unselected"]["p50"]
    text = CliRunner().invoke(app, ["select-report", str(tmp_path / "out")])
    assert text.exit_code == 0 and "claimed per task" in text.output and "lift" in text.output


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("method", ["random", "random_balanced"])
def test_random_baselines_are_deterministic_and_balanced(method: str, repo: Path, tmp_path: Path) -> None:
    spec = _pool_spec(tmp_path, repo, {"method": method, "budget": 9})
    a = build(load_spec(spec), tmp_path / "a")
    b = build(load_spec(spec), tmp_path / "b")
    assert a.mixture["id"].to_list() == b.mixture["id"].to_list() and a.mixture.height == 9
    assert _sha(tmp_path / "a" / "mixture.parquet") == _sha(tmp_path / "b" / "mixture.parquet")
    other = build(load_spec(_pool_spec(tmp_path / "..", repo, {"method": method, "budget": 9}, seed=8)), tmp_path / "c")
    assert other.mixture["id"].to_list() != a.mixture["id"].to_list()
    removed = a.removed.filter(pl.col("step") == "select")
    assert set(removed["reason"]) == {"not_selected"} and removed["detail"].str.starts_with(method + ":").all()
    if method == "random_balanced":
        assert a.mixture.group_by("source").len()["len"].sort().to_list() == [3, 3, 3]


def test_embedding_method_prefers_the_targets_neighbours(minilm, repo: Path, tmp_path: Path) -> None:
    spec = _pool_spec(tmp_path, repo, {
        "method": "embedding", "budget": 6, "cache_dir": str(tmp_path / "cache"),
        "targets": {"code": {"path": "targets_code.jsonl", "prompt_field": "q"}},
    })
    write_jsonl(tmp_path / "targets_code.jsonl", [{"q": "Write a Python function that returns the sum of a list of numbers."}])
    res = build(load_spec(spec), tmp_path / "out")
    assert res.mixture["source"].to_list() == ["code"] * 6
    info = next(e for e in res.manifest["steps"] if e["step"] == "select")["info"]
    assert info["template"] == "plain" and info["embedding"]["model"] == "static:all-MiniLM-L6-v2"
    assert info["embedding"]["distillation"]["pca_dims"] == 256  # the static default, distilled once


@pytest.mark.parametrize("method", ["embedding", "random", "random_balanced"])
def test_select_streams_in_pieces_with_the_same_bytes(method: str, minilm, repo: Path, tmp_path: Path) -> None:
    """select is map / decide / apply: batches embed into the cache and give keys, decide
    sees only keys (and vectors read back from the cache); batch size and threads change
    no byte of the mixture or the ledger."""
    from mixer.engines import LocalEngine
    from mixer.steps.select import Select

    assert Select.splits()
    conf: dict = {"method": method, "budget": 7}
    if method == "embedding":
        conf |= {"cache_dir": str(tmp_path / "cache"), "targets": {"code": {"path": "targets_code.jsonl", "prompt_field": "q"}}}
        write_jsonl(tmp_path / "targets_code.jsonl", [{"q": "Write a Python function that returns the sum of a list of numbers."}])
    spec = load_spec(_pool_spec(tmp_path, repo, conf))
    ref = build(spec, tmp_path / "ref", engine=LocalEngine(batch_rows=100_000, threads=1))
    assert ref.mixture.height == 7
    for batch_rows, threads in [(3, 2), (5, 1)]:
        out = build(spec, tmp_path / f"b{batch_rows}-{threads}", engine=LocalEngine(batch_rows=batch_rows, threads=threads))
        for name in ("mixture.parquet", "removed.parquet"):
            assert _sha(out.output / name) == _sha(ref.output / name), (name, batch_rows, threads)
    if method == "embedding":  # the second and third builds found every vector in the cache
        info = next(e for e in out.manifest["steps"] if e["step"] == "select")["info"]["embedding"]["pool"]
        assert info["computed"] == 0 and info["reused"] == info["unique"] > 0


def test_config_errors_and_shortfall(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs 'model'"):
        SelectConfig(method="rds_plus", budget=3, targets={"gsm8k": "gsm8k:train"})
    with pytest.raises(ValueError, match="needs 'targets'"):
        SelectConfig(method="embedding", budget=3)
    with pytest.raises(ValueError, match="takes no"):
        SelectConfig(method="random", budget=3, targets=["gsm8k"])
    with pytest.raises(ValueError, match="exactly one of 'evalset'"):
        SelectConfig(method="embedding", budget=3, targets={"x": {"split": "dev"}})
    cfg = SelectConfig(method="embedding", budget=3, targets=["gsm8k:train", "mmlu"])
    assert cfg.targets["gsm8k"].split == "train" and cfg.targets["mmlu"].evalset == "mmlu"
    with pytest.raises(SpecError, match="budget"):
        load_spec(_pool_spec(tmp_path, repo, {"method": "random", "budget": 0}))
    f = sft_frame(["a", "b"], "s", [[{"role": "user", "content": "q"}]] * 2)
    with pytest.raises(SelectShortfall, match="pool holds 2"):
        Select(SelectConfig(method="random", budget=3)).run(f, StepContext())
    res = Select(SelectConfig(method="random", budget=3, allow_fewer=True)).run(f, StepContext())
    assert res.kept.height == 2 and res.removed.height == 0
