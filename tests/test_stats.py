"""Length statistics against hand-computed values on small fixtures (whitespace words, so
every number below can be checked by counting), plus a real tokenizer on the same rows."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from mixer.records import PREF_SCHEMA, sft_frame
from mixer.stats import TOTAL, TokenCounter, compute_stats, record_lengths
from mixer.stats import count as count_mod
from mixer.stats.model import Stats


def msgs(*pairs: tuple[str, str]) -> list[dict]:
    return [{"role": r, "content": c} for r, c in pairs]


@pytest.fixture()
def sft() -> pl.DataFrame:
    return sft_frame(
        ["a:0", "a:1", "b:0", "b:1", "b:2"],
        ["a", "a", "b", "b", "b"],
        [
            msgs(("user", "one two three"), ("assistant", "four five")),  # u3 a2 = 5
            msgs(("system", "be brief"), ("user", "hi"), ("assistant", "hello there friend"),
                 ("user", "x y"), ("assistant", "z")),  # s2 u1+2 a3+1 = 9
            msgs(("user", "  spaced   out  words "), ("assistant", "")),  # u3 a0 = 3
            msgs(("user", "w " * 10), ("assistant", "v " * 20)),  # u10 a20 = 30
            msgs(("user", "q"), ("assistant", "r s t u")),  # u1 a4 = 5
        ],
    )


def test_record_lengths_by_hand(sft: pl.DataFrame) -> None:
    le = record_lengths(sft)
    assert le["id"].to_list() == sft["id"].to_list()
    assert le["tokens"].to_list() == [5, 9, 3, 30, 5]
    assert le["user_tokens"].to_list() == [3, 3, 3, 10, 1]
    assert le["assistant_tokens"].to_list() == [2, 4, 0, 20, 4]
    assert le["system_tokens"].to_list() == [0, 2, 0, 0, 0]
    assert le["rounds"].to_list() == [1, 2, 1, 1, 1]
    assert le["messages_n"].to_list() == [2, 5, 2, 2, 2]


def test_summary_by_hand(sft: pl.DataFrame) -> None:
    stats, _ = compute_stats(sft, thresholds=(4, 8))
    a, b, t = stats.rows["a"], stats.rows["b"], stats.total
    assert stats.sources == ["a", "b"] and stats.unit == "words"
    assert a["instances"] == 2 and b["instances"] == 3 and t["instances"] == 5
    assert a["rounds_mean"] == pytest.approx(1.5)
    # per user *turn*: a has user turns 3, 1, 2 -> 6/3
    assert a["user_turn_tokens_mean"] == pytest.approx(2.0)
    assert a["assistant_turn_tokens_mean"] == pytest.approx((2 + 3 + 1) / 3)
    assert a["system_turn_tokens_mean"] == pytest.approx(2.0)
    assert b["system_turn_tokens_mean"] is None
    assert b["user_turn_tokens_mean"] == pytest.approx(14 / 3)
    # b tokens [3, 30, 5]: mean 38/3; linear percentiles of sorted [3, 5, 30]
    assert b["tokens_mean"] == pytest.approx(38 / 3)
    assert b["tokens_p25"] == pytest.approx(4.0)
    assert b["tokens_p50"] == pytest.approx(5.0)
    assert b["tokens_p75"] == pytest.approx(17.5)
    assert b["tokens_p95"] == pytest.approx(5 + 0.9 * 25)
    assert b["tokens_max"] == 30 and b["tokens_sum"] == 38
    # total: [5, 9, 3, 30, 5]
    assert t["tokens_p50"] == pytest.approx(5.0)
    assert t["tokens_p75"] == pytest.approx(9.0)
    assert t["tokens_p95"] == pytest.approx(np.percentile([5, 9, 3, 30, 5], 95))
    assert t["over_4_pct"] == pytest.approx(80.0)  # strictly more than 4: 5, 9, 30, 5
    assert t["over_8_pct"] == pytest.approx(40.0)
    assert a["over_8_pct"] == pytest.approx(50.0)
    assert stats.turns == {"a": {"1": 1, "2": 1}, "b": {"1": 3}, TOTAL: {"1": 4, "2": 1}}
    assert stats.tokens_per_source()["a"] == {"total": 14, "user": 6, "assistant": 6, "system": 2}


def test_source_order_and_roundtrip(sft: pl.DataFrame, tmp_path) -> None:
    stats, _ = compute_stats(sft, order=["b", "a"])
    assert list(stats.rows) == ["b", "a", TOTAL]
    p = stats.save(tmp_path / "stats.json")
    again = Stats.load(p)
    assert again.rows == json.loads(p.read_text())["rows"] and again.sources == ["b", "a"]
    html = stats._repr_html_()
    assert "<table" in html and ">b<" in html and "whitespace words" in html


def test_preference_counts_prompt_once() -> None:
    prompt = msgs(("user", "a b c d"))
    frame = pl.DataFrame(
        {
            "id": ["p:0", "p:1"], "source": ["p", "p"],
            "chosen": [prompt + msgs(("assistant", "x x x")), msgs(("user", "u"), ("assistant", "v w"), ("user", "q q"), ("assistant", "y"))],
            "rejected": [prompt + msgs(("assistant", "n n n n n n")), msgs(("user", "u"), ("assistant", "v w"), ("user", "q q"), ("assistant", "z z"))],
            "meta": [None, None],
        },
        schema=PREF_SCHEMA,
    )
    le = record_lengths(frame)
    assert le["prompt_tokens"].to_list() == [4, 5]
    assert le["chosen_tokens"].to_list() == [3, 1]
    assert le["rejected_tokens"].to_list() == [6, 2]
    assert le["tokens"].to_list() == [10, 7]  # prompt + the longer answer
    assert le["rounds"].to_list() == [1, 2]
    stats, _ = compute_stats(frame)
    assert stats.kind == "preference"
    assert stats.total["rejected_tokens_mean"] == pytest.approx(4.0)
    assert stats.total["chosen_tokens_mean"] == pytest.approx(2.0)


def test_empty_and_null_messages() -> None:
    frame = sft_frame(["e:0", "e:1"], "e", [[], msgs(("user", None), ("assistant", "ok"))])
    le = record_lengths(frame)
    assert le["tokens"].to_list() == [0, 1] and le["rounds"].to_list() == [0, 1]


def test_chunked_counting_equals_one_call(shared_tokenizers, monkeypatch) -> None:
    """Many small chunks give the same counts as one batched call, and match per-text calls."""
    from mixer.tokenizers import load_tokenizer

    path = str(shared_tokenizers / "gpt2" / "tokenizer.json")
    texts = pl.Series([f"record {i}: " + "token " * (i % 17) + "héllo wörld\n\tend" for i in range(300)] + ["", None])
    whole = TokenCounter(path).count(texts)
    seen = []
    monkeypatch.setattr(count_mod, "CHUNK_CHARS", 2000)
    chunked = TokenCounter(path).count(texts, lambda done, total: seen.append((done, total)))
    assert (whole == chunked).all()
    assert len(seen) > 5 and seen[-1][0] == seen[-1][1]
    tok = load_tokenizer(path)
    by_one = [len(tok(t or "", add_special_tokens=False)["input_ids"]) for t in texts.to_list()]
    assert whole.tolist() == by_one


def test_tokenizer_key_changes_with_file(tmp_path, shared_tokenizers) -> None:
    src = shared_tokenizers / "gpt2" / "tokenizer.json"
    a = tmp_path / "a" / "tokenizer.json"
    a.parent.mkdir()
    a.write_bytes(src.read_bytes())
    assert TokenCounter(str(a)).key == TokenCounter(str(a.parent)).key == TokenCounter(str(src)).key
    a.write_bytes(src.read_bytes().replace(b'"version"', b'"version" ', 1))
    assert TokenCounter(str(a)).key != TokenCounter(str(src)).key
    assert TokenCounter("some-org/some-model").key.startswith("hub-")
