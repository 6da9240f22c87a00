"""Statistics on real data with the Llama 2 tokenizer, checked against independent counts:
the Hugging Face tokenizer called the ordinary way (the Tulu statistics script's call) and
SentencePiece itself. Also: ``mixer build`` writes stats.json and token counts, and the
(build, tokenizer) cache answers repeat questions without tokenizing again."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from mixer.build_dir import BuildDir
from mixer.pipeline import build
from mixer.spec import load_spec
from mixer.stats import count as count_mod
from mixer.stats import stats_for_build
from tests.helpers import write_spec


@pytest.fixture(scope="module")
def real_build(tmp_path_factory, shared_data, shared_tokenizers):
    tmp = tmp_path_factory.mktemp("real")
    train = shared_data / "train"
    spec = write_spec(tmp, {
        "name": "real", "seed": 7, "tokenizer": str(shared_tokenizers / "llama2"),
        "sources": {
            "alpaca": {"load": {"path": str(train / "alpaca_1k" / "alpaca_data_1k.json")}, "format": "alpaca"},
            "code": {"load": {"path": str(train / "codealpaca" / "data" / "code_alpaca_2k.json")}, "format": "alpaca",
                     "sample": {"n": 600}},
            "sharegpt": {"load": {"path": str(train / "sharegpt_dummy" / "dummy_conversation.json")}, "format": "sharegpt"},
        },
    })
    res = build(load_spec(spec), tmp / "build")
    return BuildDir(res.output), shared_tokenizers / "llama2" / "tokenizer.model"


def reference(frame: pl.DataFrame, tok) -> dict[str, dict[str, float]]:
    """The statistics computed the plain way: a Python loop over records and messages."""
    out: dict[str, dict[str, list]] = {}
    rows = frame.to_dicts()
    contents = [m["content"] for r in rows for m in r["messages"]]
    lens = iter([len(x) for x in tok(contents, add_special_tokens=False)["input_ids"]])
    for r in rows:
        d = out.setdefault(r["source"], {"user": [], "assistant": [], "record": [], "rounds": []})
        total = 0
        for m in r["messages"]:
            n = next(lens)
            total += n
            if m["role"] in ("user", "assistant"):
                d[m["role"]].append(n)
        d["record"].append(total)
        d["rounds"].append(sum(m["role"] == "assistant" for m in r["messages"]))
    return {s: {"user": np.mean(d["user"]), "assistant": np.mean(d["assistant"]), "mean": np.mean(d["record"]),
                "p25": np.percentile(d["record"], 25), "p75": np.percentile(d["record"], 75),
                "p95": np.percentile(d["record"], 95), "max": max(d["record"]), "sum": sum(d["record"]),
                "rounds": np.mean(d["rounds"]), "n": len(d["record"])} for s, d in out.items()}


def test_build_writes_stats_and_tokens(real_build) -> None:
    b, _ = real_build
    m = b.manifest
    assert "stats.json" in m["files"]
    b.verify()
    stats = json.loads((b.path / "stats.json").read_text())
    assert stats["unit"] == "tokens" and list(stats["rows"]) == ["alpaca", "code", "sharegpt", "total"]
    for name in ("alpaca", "code", "sharegpt"):
        assert m["sources"][name]["tokens"]["total"] == stats["rows"][name]["tokens_sum"] > 0
    assert stats["rows"]["code"]["instances"] == 600
    assert stats["rows"]["sharegpt"]["rounds_mean"] > 1.0  # real multi-turn conversations


def test_build_stats_count_the_mixture_batch_by_batch(real_build, tmp_path, shared_tokenizers) -> None:
    """The build counts tokens over the written mixture in batches (never the whole mixture
    in memory): batches of 97 records give the same stats.json and token totals."""
    from mixer.output import iter_mixture
    from mixer.stats import write_build_stats

    b, _ = real_build
    infos = {name: {} for name in ("alpaca", "code", "sharegpt")}
    batches = list(iter_mixture(b.path, b.manifest, batch_rows=97))
    assert len(batches) > 10 and sum(x.height for x in batches) == b.manifest["records"]
    write_build_stats(iter(batches), b.manifest["records"], "sft", tmp_path, str(shared_tokenizers / "llama2"), infos)
    assert (tmp_path / "stats.json").read_text() == (b.path / "stats.json").read_text()
    assert {k: v["tokens"] for k, v in infos.items()} == {k: b.manifest["sources"][k]["tokens"] for k in infos}


def test_llama2_stats_match_independent_counts(real_build) -> None:
    from mixer.tokenizers import load_tokenizer

    b, model = real_build
    stats = stats_for_build(b)
    ref = reference(b.frame, load_tokenizer(str(model.parent)))
    for src, r in ref.items():
        row = stats.rows[src]
        assert row["instances"] == r["n"]
        assert row["user_turn_tokens_mean"] == pytest.approx(r["user"])
        assert row["assistant_turn_tokens_mean"] == pytest.approx(r["assistant"])
        assert row["rounds_mean"] == pytest.approx(r["rounds"])
        assert row["tokens_sum"] == r["sum"] and row["tokens_max"] == r["max"]
        for k in ("mean", "p25", "p75", "p95"):
            assert row[f"tokens_{k}"] == pytest.approx(r[k]), (src, k)


def test_llama2_counts_agree_with_sentencepiece(real_build) -> None:
    """The fast tokenizer converted from tokenizer.model splits runs of spaces slightly
    differently from SentencePiece; totals must still agree within 0.1%."""
    import sentencepiece as spm

    b, model = real_build
    sp = spm.SentencePieceProcessor(model_file=str(model))
    contents = b.frame.select(pl.col("messages").list.eval(pl.element().struct.field("content"))).explode("messages")["messages"]
    ours = count_mod.TokenCounter(str(model)).count(contents)
    theirs = np.array([len(x) for x in sp.encode(contents.fill_null("").to_list())])
    assert (ours == theirs).mean() > 0.97
    assert abs(int(ours.sum()) - int(theirs.sum())) / theirs.sum() < 0.001
    assert 100_000 < ours.sum() < 2_000_000


def test_cache_answers_without_tokenizing(real_build, monkeypatch) -> None:
    b, model = real_build
    first = stats_for_build(b)  # stats.json from the build
    def boom(*a, **k):
        raise AssertionError("tokenized again")
    monkeypatch.setattr(count_mod, "_count_with_tokenizer", boom)
    assert stats_for_build(b).rows == first.rows
    other = stats_for_build(b, thresholds=(512, 1024))  # not in stats.json: from the lengths cache
    assert other.total["tokens_mean"] == pytest.approx(first.total["tokens_mean"])
    assert "over_512_pct" in other.total
    assert any((b.path / ".cache" / "stats").glob("*.parquet"))


def test_preference_build_real(tmp_path, shared_data, shared_tokenizers) -> None:
    """Anthropic HH pairs: the prompt is counted once, then each final answer."""
    from mixer.tokenizers import load_tokenizer

    tok_path = str(shared_tokenizers / "gpt2" / "tokenizer.json")
    spec = write_spec(tmp_path, {"name": "pref", "seed": 3, "tokenizer": tok_path, "sources": {
        "hh": {"load": {"path": str(shared_data / "train/hh_rlhf/harmless-base/test.jsonl.gz")}, "format": "hh_rlhf",
               "sample": {"n": 200}}}})
    res = build(load_spec(spec), tmp_path / "b")
    tokens = res.manifest["sources"]["hh"]["tokens"]
    tok = load_tokenizer(tok_path)

    def n(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    prompt = chosen = rejected = longest = 0
    for r in res.mixture.iter_rows(named=True):
        p = sum(n(m["content"]) for m in r["chosen"][:-1])
        c, j = n(r["chosen"][-1]["content"]), n(r["rejected"][-1]["content"])
        prompt, chosen, rejected, longest = prompt + p, chosen + c, rejected + j, longest + p + max(c, j)
    assert (tokens["prompt"], tokens["chosen"], tokens["rejected"], tokens["total"]) == (prompt, chosen, rejected, longest)
    stats = json.loads((res.output / "stats.json").read_text())
    assert stats["kind"] == "preference"
    assert stats["rows"]["hh"]["prompt_tokens_mean"] == pytest.approx(prompt / 200)
