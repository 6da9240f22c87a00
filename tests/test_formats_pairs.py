"""Preference formats on real pairs: HH-RLHF transcripts, LLaMA-Factory's ShareGPT-style DPO
demo, generic chosen/rejected and UltraFeedback-shaped pairs built from AlpacaEval outputs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl

from helpers import write_jsonl, write_spec
from mixer.pipeline import build
from mixer.spec import load_spec

HH = Path("train/hh_rlhf/harmless-base/test.jsonl.gz")
DPO = Path("train/llama_factory/data/dpo_en_demo.json")
AE = Path("train/alpaca_eval_outputs/results")


def _build(tmp_path: Path, sources: dict, out: str = "out"):
    return build(load_spec(write_spec(tmp_path, {"name": "p", "sources": sources}, name=f"{out}.yaml")), tmp_path / out)


def _split(transcript: str) -> list[tuple[str, str]]:
    """Independent parse for checking: (role, content) turns of an HH transcript."""
    out = []
    for part in transcript.split("\n\nHuman: ")[1:]:
        human, *rest = part.split("\n\nAssistant: ")
        out.append(("user", human.strip()))
        out += [("assistant", a.strip()) for a in rest]
    return out


def test_hh_rlhf_split_at_first_difference(shared_data: Path, tmp_path: Path) -> None:
    raw = [json.loads(x) for x in gzip.open(shared_data / HH)]
    res = _build(tmp_path, {"hh": {"load": {"path": str(shared_data / HH)}, "format": "hh_rlhf"}})
    assert res.mixture.height + res.removed.height == len(raw) == 2312
    recs = {r["id"]: r for r in res.mixture.iter_rows(named=True)}
    checked = cut = 0
    for i, r in enumerate(raw):
        rec = recs.get(f"hh:{i}")
        if rec is None:
            continue
        c, j = _split(r["chosen"]), _split(r["rejected"])
        d = next(k for k in range(min(len(c), len(j))) if c[k] != j[k])
        assert [(m["role"], m["content"]) for m in rec["chosen"]] == c[: d + 1]
        assert [(m["role"], m["content"]) for m in rec["rejected"]] == j[: d + 1]
        assert rec["chosen"][:-1] == rec["rejected"][:-1] and rec["chosen"][-1]["role"] == "assistant"
        meta = json.loads(rec["meta"])
        assert meta["first_difference_turn"] == d
        cut += meta["discarded_turns"] > 0
        checked += 1
    assert checked > 2200
    # Every removal is a real defect of the raw pair (empty turn, two assistant turns in a row, ...).
    assert set(res.removed["reason"]) <= {"empty_message", "role_order", "differs_at_user_turn", "no_differing_turn", "identical_transcripts"}


def test_hh_rlhf_pairs_without_a_usable_difference(shared_data: Path, tmp_path: Path) -> None:
    r = json.loads(gzip.open(shared_data / HH).readline())
    c = r["chosen"]
    head = c[: c.rindex("\n\nAssistant: ")]
    rows = [
        {"chosen": c, "rejected": c},  # identical
        {"chosen": c, "rejected": head},  # rejected is a prefix: no answer to compare
        {"chosen": c, "rejected": c.replace("\n\nHuman: ", "\n\nHuman: Well, ", 1)},  # differs at a human turn
        r,
    ]
    write_jsonl(tmp_path / "hh.jsonl", rows)
    res = _build(tmp_path, {"hh": {"load": {"path": "hh.jsonl"}, "format": "hh_rlhf"}})
    reasons = dict(zip(res.removed["id"], res.removed["reason"], strict=True))
    assert reasons == {"hh:0": "identical_transcripts", "hh:1": "no_differing_turn", "hh:2": "differs_at_user_turn"}
    assert "first difference at turn 0" in res.removed.filter(pl.col("id") == "hh:2")["detail"][0]
    assert res.mixture["id"].to_list() == ["hh:3"]


def test_sharegpt_pairs_on_dpo_demo(shared_data: Path, tmp_path: Path) -> None:
    raw = json.loads((shared_data / DPO).read_text())
    res = _build(tmp_path, {"dpo": {"load": {"path": str(shared_data / DPO)}, "format": "sharegpt_pairs"}})
    assert res.mixture.height + res.removed.height == 300
    role = {"human": "user", "gpt": "assistant", "system": "system"}
    multi = 0
    for rec in res.mixture.iter_rows(named=True):
        r = raw[int(rec["id"].split(":")[1])]
        prompt = [{"role": role[t["from"]], "content": t["value"]} for t in r["conversations"]]
        assert rec["chosen"] == prompt + [{"role": "assistant", "content": r["chosen"]["value"]}]
        assert rec["rejected"] == prompt + [{"role": "assistant", "content": r["rejected"]["value"]}]
        multi += len(prompt) > 1
    assert multi > 100  # multi-turn prompts (5 and 7 turns, some with a system turn) are kept whole
    assert any(rec[0]["role"] == "system" for rec in res.mixture["chosen"].to_list())
    assert set(res.removed["reason"]) <= {"identical_responses", "empty_message", "role_order"}


def _ae(shared_data: Path, model: str) -> list[dict]:
    return json.loads((shared_data / AE / model / "model_outputs.json").read_text())


def test_chosen_rejected_generic_string_sides(shared_data: Path, tmp_path: Path) -> None:
    good, weak = _ae(shared_data, "gpt4_1106_preview"), _ae(shared_data, "alpaca-7b")
    rows = [{"instruction": g["instruction"], "better": g["output"], "worse": w["output"]} for g, w in zip(good, weak, strict=True)]
    write_jsonl(tmp_path / "ae.jsonl", rows)
    fmt = {"name": "chosen_rejected", "prompt": "instruction", "chosen": "better", "rejected": "worse"}
    res = _build(tmp_path, {"ae": {"load": {"path": "ae.jsonl"}, "format": fmt}})
    assert res.mixture.height + res.removed.height == 805
    rec = res.mixture.filter(pl.col("id") == "ae:0").row(0, named=True)
    assert rec["chosen"] == [{"role": "user", "content": rows[0]["instruction"]}, {"role": "assistant", "content": rows[0]["better"]}]
    assert rec["rejected"][-1] == {"role": "assistant", "content": rows[0]["worse"]}
    assert set(res.removed["reason"]) <= {"empty_message", "identical_responses"}


def test_ultrafeedback_binarized_layout(shared_data: Path, tmp_path: Path) -> None:
    """The ``train_prefs`` columns (prompt, prompt_id, chosen/rejected message lists, scores),
    filled with AlpacaEval instructions and two models' real answers; one planted mismatch."""
    good, weak = _ae(shared_data, "tulu-2-dpo-70b"), _ae(shared_data, "oasst-sft-pythia-12b")
    rows = []
    for i, (g, w) in enumerate(zip(good[:200], weak[:200], strict=True)):
        p = g["instruction"]
        rows.append({
            "prompt": p if i != 7 else p + " (edited)", "prompt_id": f"p{i}",
            "chosen": [{"content": p, "role": "user"}, {"content": g["output"], "role": "assistant"}],
            "rejected": [{"content": p, "role": "user"}, {"content": w["output"], "role": "assistant"}],
            "score_chosen": 8.5, "score_rejected": 4.0,
        })
    pl.DataFrame(rows).write_parquet(tmp_path / "train_prefs-00000-of-00001.parquet")
    for load in ({"path": "train_prefs-*.parquet"}, {"hub": "parquet", "data_files": "train_prefs-*.parquet"}):
        res = _build(tmp_path, {"uf": {"load": load, "format": "ultrafeedback_binarized"}}, out="hub" if "hub" in load else "local")
        assert res.removed.filter(pl.col("reason") == "prompt_mismatch")["id"].to_list() == ["uf:7"]
        rec = res.mixture.filter(pl.col("id") == "uf:0").row(0, named=True)
        assert rec["chosen"] == rows[0]["chosen"] and rec["rejected"] == rows[0]["rejected"]
        assert json.loads(rec["meta"]) == {"prompt_id": "p0", "score_chosen": 8.5, "score_rejected": 4.0}
        assert res.mixture.height + res.removed.height == 200
