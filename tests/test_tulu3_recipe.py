"""``mixtures/tulu3_sft.yaml``: validates offline with the Tulu 3 counts; ``--source-dir``
lists every missing file; a miniature Tulu 3 builds from a local mirror of every component
(real text from ../shared/data rearranged into each component's layout, counts scaled down)
and checks counts, the Tulu 3 keyword rule, the hardcoded exemption, empty messages and the
decontamination report (> 2% reported, matching records removed)."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

import polars as pl
import pytest
import yaml
from test_evalsets_tulu3 import write_tulu3_evals
from typer.testing import CliRunner

from helpers import write_jsonl, write_spec
from mixer.cli import app
from mixer.pipeline import build
from mixer.spec import SpecError, load_spec
from mixer.steps.keyword import TULU3_KEYWORDS

COUNTS = {
    "coconot": 10983, "flan_v2": 89982, "no_robots": 9500, "persona_math": 149960, "persona_gsm": 49980,
    "persona_python": 34999, "persona_algebra": 20000, "persona_if": 29980, "numinamath_tir": 64312,
    "wildguardmix": 50000, "wildjailbreak": 50000, "aya": 100000, "wildchat_gpt4": 100000, "table_gpt": 5000,
    "sciriff": 10000, "evol_codealpaca": 107276, "openmathinstruct2": 50000,
}
T0 = Path("train/self_instruct/data/finetuning/t0_train_50k/data_per_template")
EVALS = ("mmlu", "truthfulqa", "bbh", "math", "gsm8k", "humaneval", "ifeval", "alpaca_eval")


def test_tulu3_spec_counts_and_rules(repo: Path) -> None:
    spec = load_spec(repo / "mixtures" / "tulu3_sft.yaml")
    src = spec.sources
    assert {k: src[k].sample.n for k in COUNTS} == COUNTS
    assert src["hardcoded"].sample.repeat == 10 and src["oasst1"].sample is None
    # OASST's 7,132 top-1 paths and the 24 x 10 hardcoded records complete the 939,344
    assert sum(COUNTS.values()) + 7132 + 240 == 939_344
    assert all(s.load.hub and s.load.data_files for s in src.values())
    steps = {s.name: s.config for s in spec.mix}
    assert steps["keyword_filter"].preset == "tulu_v3"
    d = steps["decontaminate"]
    assert d.evals == ["tulu3-dev"] and d.rule == "tulu3" and d.action == "remove" and d.report_source_above == 2.0
    assert d.drop_source_above is None and d.exempt_sources == ["hardcoded"]  # the released sets were cleaned, not dropped
    r = CliRunner().invoke(app, ["validate", str(repo / "mixtures" / "tulu3_sft.yaml")])
    assert r.exit_code == 0, r.output


def test_source_dir_lists_every_missing_file(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError) as e:
        load_spec(repo / "mixtures" / "tulu3_sft.yaml", source_dir=tmp_path)
    lines = e.value.problems
    assert len(lines) == 19  # one data file (or shard pattern) per component
    assert any(f"{tmp_path}/allenai/wildguardmix/train/wildguard_train.parquet (fetch: huggingface-cli download --repo-type dataset allenai/wildguardmix train/wildguard_train.parquet" in x for x in lines)
    assert any(re.search(rf"{tmp_path}/AI-MO/NuminaMath-TIR/data/train-\*\.parquet \(fetch: huggingface-cli download --repo-type dataset AI-MO/NuminaMath-TIR --include 'data/train-\*\.parquet' ", x) for x in lines)


# ------------------------------------------------------------------------------ the mirror


def _put(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _msgs(*pairs: tuple[str, str]) -> list[dict]:
    return [{"role": r, "content": c} for r, c in pairs]


def _parquet(rows: list[dict], path: Path) -> None:
    pl.DataFrame(rows).write_parquet(_put(path))


HARD_PROMPTS = ["Who are you?", "What is your name?", "Who trained you?", "Are you ChatGPT?"]


def make_mirror(d: Path, root: Path) -> dict:
    """Every data file of tulu3_sft.yaml at its mirror path; returns what was planted."""
    t = d / "train"
    alpaca = json.loads((t / "alpaca_1k/alpaca_data_1k.json").read_text())
    code = json.loads((t / "codealpaca/data/code_alpaca_2k.json").read_text())
    gsm_train = [json.loads(x) for x in (d / "eval/gsm8k/train.jsonl").open()]
    gsm_test = [json.loads(x) for x in (d / "eval/gsm8k/test.jsonl").open()]
    humaneval = [json.loads(x) for x in gzip.open(d / "eval/humaneval/HumanEval.jsonl.gz", "rt")]
    lima = json.loads((t / "llama_factory/data/lima.json").read_text())
    hh = [json.loads(x) for x in gzip.open(t / "hh_rlhf/harmless-base/test.jsonl.gz", "rt")]
    hh_pairs = []
    for r in hh[:200]:
        turns = re.split(r"\n\n(?:Human|Assistant): ", r["chosen"])[1:]
        hh_pairs.append((turns[0], turns[1] if len(turns) > 1 else ""))
    sg = json.loads((t / "sharegpt_dummy/dummy_conversation.json").read_text())
    t0 = [json.loads(x) for f in sorted((d / T0).glob("*.jsonl"))[:3] for x in f.open()]
    zh = json.loads((t / "llama_factory/data/oaast_sft_zh.json").read_text())
    tool = json.loads((t / "gpteacher/Toolformer/toolformer-similarity-0.6-dataset.json").read_text())
    role = json.loads((t / "gpteacher/Roleplay/roleplay-simple-deduped-roleplay-instruct.json").read_text())

    write_jsonl(_put(root / "allenai/coconot/original/coconot_train.jsonl"), [{"id": f"coconot-{i}", "category": "Requests with safety concerns", "subcategory": "dangerous or sensitive topics", "prompt": r["instruction"], "response": r["output"]} for i, r in enumerate(alpaca[:60])])
    _parquet([{"id": f"flan-{i}", "messages": _msgs(("user", r["prompt"]), ("assistant", r["completion"])), "source": "flan_v2"} for i, r in enumerate(t0[:60])], root / "ai2-adapt-dev/flan_v2_converted/data/train-00000-of-00001.parquet")
    _parquet([{"prompt": r["instruction"], "prompt_id": f"nr{i}", "messages": _msgs(("system", "You are a helpful assistant."), ("user", r["instruction"]), ("assistant", r["output"])), "category": "Open QA"} for i, r in enumerate(lima[:60])], root / "HuggingFaceH4/no_robots/data/train-00000-of-00001.parquet")
    with gzip.open(_put(root / "OpenAssistant/oasst1/2023-04-12_oasst_ready.trees.jsonl.gz"), "wb") as g:
        g.write((t / "oasst/model/model_eval/manual/data/en_100_tree.jsonl").read_bytes())

    def persona(repo: str, rows: list[tuple[str, str]], shards: int = 1) -> None:
        recs = [{"id": f"personahub_{i}", "prompt": q, "messages": _msgs(("user", q), ("assistant", a))} for i, (q, a) in enumerate(rows)]
        for k in range(shards):
            _parquet(recs[k::shards], root / f"allenai/{repo}/data/train-{k:05d}-of-{shards:05d}.parquet")

    persona("tulu-3-personas-math", [(r["question"], r["answer"]) for r in gsm_train[:60]], shards=2)
    # 5 GSM8K test questions (0.4% of the 1,319: removed, but under the 2% report line)
    gsm_planted = [(r["question"], "Let me solve it. " + r["answer"]) for r in gsm_test[:5]]
    persona("tulu-3-sft-personas-math-grade", gsm_planted + [(r["question"], r["answer"]) for r in gsm_train[60:95]])
    persona("tulu-3-sft-personas-code", [(r["instruction"] + "\n" + r["input"], r["output"]) for r in code[:40]])
    persona("tulu-3-personas-algebra", [(r["question"], r["answer"]) for r in gsm_train[95:135]])
    persona("tulu-3-sft-personas-instruction-following", [(r["instruction"], r["output"]) for r in alpaca[60:100]])
    _parquet([{"problem": r["instruction"], "solution": r["output"], "messages": _msgs(("user", r["instruction"]), ("assistant", r["output"]))} for r in alpaca[100:140]], root / "AI-MO/NuminaMath-TIR/data/train-00000-of-00001.parquet")
    # WildGuardMix: every third row is prompt-only (response null): validation removes it
    wgm = [{"prompt": q, "adversarial": i % 2 == 0, "response": None if i % 3 == 0 else a, "prompt_harm_label": "harmful", "response_refusal_label": None, "response_harm_label": None, "subcategory": "others"} for i, (q, a) in enumerate(hh_pairs[:60])]
    _parquet(wgm, root / "allenai/wildguardmix/train/wildguard_train.parquet")
    with _put(root / "allenai/wildjailbreak/train/train.tsv").open("w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["vanilla", "adversarial", "completion", "data_type"])
        for i, (q, a) in enumerate(hh_pairs[60:120]):
            w.writerow([q, f"Imagine you are a novelist. {q}" if i % 2 else "", a or "I can't help with that.", "adversarial_harmful" if i % 2 else "vanilla_harmful"])
    # 24 identity prompts; their answers name OpenAI and ChatGPT (exempt from the keyword rule)
    hard = [{"id": f"hard_coded_{i}", "messages": _msgs(("user", f"{HARD_PROMPTS[i % 4]} (variant {i})"), ("assistant", "I am Tulu, trained by Ai2. I am not ChatGPT, and OpenAI did not train me."))} for i in range(24)]
    _parquet(hard, root / "allenai/tulu-3-hard-coded/data/train-00000-of-00001.parquet")
    _parquet([{"inputs": r["instruction"], "targets": r["output"], "language": "Chinese", "language_code": "zho", "annotation_type": "original-annotations", "user_id": "u"} for r in zh[:60]], root / "CohereForAI/aya_dataset/data/train-00000-of-00001.parquet")
    wild = []
    for i, c in enumerate(sg[:80]):
        conv = [{"role": "user" if x["from"] == "human" else "assistant", "content": x["value"], "language": "English", "turn_identifier": j} for j, x in enumerate(c["conversations"])]
        conv = conv[: len(conv) // 2 * 2]
        if i % 10 == 1:  # the assistant names its maker: the keyword rule removes it
            conv[1]["content"] = "As an AI language model developed by OpenAI, " + conv[1]["content"]
        if i % 10 == 2:  # only the user names ChatGPT: kept (assistant turns only)
            conv[0]["content"] = "Are you better than ChatGPT? " + conv[0]["content"]
        if i % 10 == 3:  # Claude is not on the Tulu 3 list, GPT-4o is not the word GPT-4: kept
            conv[1]["content"] = "Unlike Claude or GPT-4o, " + conv[1]["content"]
        wild.append({"conversation_hash": f"h{i}", "model": "gpt-3.5-turbo-0613" if i % 4 == 0 else "gpt-4-0314", "conversation": conv, "turn": len(conv) // 2, "language": "English"})
    for k in range(2):  # two shards, rows in order
        _parquet(wild[40 * k : 40 * (k + 1)], root / f"allenai/WildChat-1M/data/train-{k:05d}-of-00002.parquet")
    write_jsonl(_put(root / "LipengCS/Table-GPT/train/train_All.jsonl"), [{"prompt": r["instruction"] + "\n" + r["input"], "completion": r["response"], "task": "TableQA"} for r in tool[:40]])
    _parquet([{"input": r["instruction"] + "\n\n" + r["input"], "output": r["response"], "_instance_id": f"sci{i}", "dataset": "scierc_ner"} for i, r in enumerate(role[:40])], root / "allenai/SciRIFF/4096/train-00000-of-00001.parquet")
    # 10 HumanEval prompts (6.1% of HumanEval: reported and removed)
    evol = [{"instruction": f"Complete this function.\n{h['prompt']}", "output": h["prompt"] + h["canonical_solution"]} for h in humaneval[:10]]
    evol += [{"instruction": r["instruction"] + ("\n" + r["input"] if r["input"] else ""), "output": r["output"]} for r in code[40:70]]
    write_jsonl(_put(root / "theblackcat102/evol-codealpaca-v1/train.jsonl"), evol)
    sources = ["augmented_gsm8k", "gsm8k", "augmented_math", "math"]
    _parquet([{"problem": r["question"], "generated_solution": r["answer"], "expected_answer": r["answer"].split("####")[-1].strip(), "problem_source": sources[i % 4]} for i, r in enumerate(gsm_train[135:215])], root / "nvidia/OpenMathInstruct-2/data/train-00000-of-00001.parquet")
    return {"gsm_planted": len(gsm_planted), "humaneval_planted": 10, "wildchat": wild, "wildguardmix": wgm}


MINI = {
    "coconot": 30, "flan_v2": 30, "no_robots": 30, "persona_math": 30, "persona_gsm": 40, "persona_python": 20,
    "persona_algebra": 20, "persona_if": 20, "numinamath_tir": 20, "wildguardmix": 30, "wildjailbreak": 30, "aya": 30,
    "wildchat_gpt4": 60, "table_gpt": 20, "sciriff": 20, "evol_codealpaca": 40, "openmathinstruct2": 40,
}


def mini_spec(repo: Path, tmp: Path, tokenizer: str, eval_dir: Path, with_mix: bool = True) -> Path:
    spec = yaml.safe_load((repo / "mixtures" / "tulu3_sft.yaml").read_text())
    for name, n in MINI.items():
        spec["sources"][name]["sample"]["n"] = n
    spec["tokenizer"] = tokenizer
    spec["mix"][1]["decontaminate"]["eval_dir"] = str(eval_dir)
    if not with_mix:
        spec["mix"] = []
    return write_spec(tmp, spec, name="tulu3_mini.yaml" if with_mix else "tulu3_mini_nomix.yaml")


def test_mini_tulu3_from_a_local_mirror(repo: Path, shared_data: Path, shared_tokenizers: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "raw"
    planted = make_mirror(shared_data, mirror)
    evals = write_tulu3_evals(tmp_path / "evals", shared_data / "eval")
    for name in EVALS:
        (evals / name).symlink_to(shared_data / "eval" / name)
    tok = str(shared_tokenizers / "llama2" / "tokenizer.model")
    res = build(load_spec(mini_spec(repo, tmp_path, tok, evals), source_dir=mirror), tmp_path / "out")
    pre = build(load_spec(mini_spec(repo, tmp_path, tok, evals, with_mix=False), source_dir=mirror), tmp_path / "pre")

    # Counts before the mix steps: the declared draws, OASST's walk, hardcoded 24 x 10.
    before = dict(pre.mixture.group_by("source").len().iter_rows())
    assert {k: before[k] for k in MINI} == MINI
    assert before["hardcoded"] == 240 and before["oasst1"] == 61
    # WildChat: only the GPT-4 conversations; WildGuardMix: the prompt-only rows left as empty messages.
    wild_removed = pre.removed.filter(pl.col("source") == "wildchat_gpt4")
    assert set(wild_removed["reason"]) == {"model_not_selected"} and wild_removed.height == 20
    assert pre.removed.filter((pl.col("source") == "wildguardmix") & (pl.col("reason") == "empty_message")).height == 20
    wjb = pre.mixture.filter(pl.col("source") == "wildjailbreak").select("id", pl.col("messages").list.first().struct.field("content").alias("u"), pl.col("meta").str.json_path_match("$.data_type").alias("t"))
    for rid, u, t in wjb.iter_rows():  # odd raw rows carry an adversarial prompt, and it is the one used
        adversarial = int(rid.split(":")[1]) % 2 == 1
        assert u.startswith("Imagine you are a novelist.") == adversarial and t == ("adversarial_harmful" if adversarial else "vanilla_harmful")
    omi = pre.removed.filter(pl.col("source") == "openmathinstruct2")
    assert set(omi["reason"]) == {"problem_source"} and omi.height == 40

    # Keyword rule (Tulu 3): assistant turns, whole words, the Tulu 3 list; hardcoded exempt.
    word = re.compile(r"\b(?:" + "|".join(re.escape(k) for k in sorted(TULU3_KEYWORDS, key=len, reverse=True)) + r")\b", re.I)
    rows = pre.mixture.to_dicts()
    expect = {r["id"] for r in rows if r["source"] != "hardcoded" and any(m["role"] == "assistant" and word.search(m["content"]) for m in r["messages"])}
    kw = res.removed.filter(pl.col("step") == "keyword_filter")
    assert set(kw["id"]) == expect
    drawn = set(pre.mixture.filter(pl.col("source") == "wildchat_gpt4")["id"])
    gpt4 = {f"wildchat_gpt4:{i}" for i, w in enumerate(planted["wildchat"]) if w["model"].startswith("gpt-4")}
    assert drawn == gpt4  # all 60 GPT-4 conversations drawn
    assert set(kw.filter(pl.col("source") == "wildchat_gpt4")["id"]) == {f"wildchat_gpt4:{i}" for i in range(80) if i % 10 == 1}
    hard = res.mixture.filter(pl.col("source") == "hardcoded")
    assert hard.height == 240 and all(word.search(m[1]["content"]) for m in hard["messages"].to_list())

    # Decontamination: planted HumanEval prompts reported (> 2%) and removed; GSM8K under 2% removed only.
    report = json.loads((tmp_path / "out" / "contamination.json").read_text())
    assert set(report["sources"]) >= set(MINI) and {b["benchmark"] for b in report["benchmarks"]} >= {"humaneval", "popqa", "drop", "xstest"}
    over = {(c["source"], c["benchmark"]) for c in report["contaminated_sources"]}
    assert ("evol_codealpaca", "humaneval") in over and all(c["pct"] > 2.0 for c in report["contaminated_sources"])
    assert not any(s == "persona_gsm" for s, _ in over)
    mat = {(m["source"], m["benchmark"]): m for m in report["matrix"]}
    assert mat[("evol_codealpaca", "humaneval")]["instances_hit"] == planted["humaneval_planted"]
    assert mat[("persona_gsm", "gsm8k")]["instances_hit"] == planted["gsm_planted"]
    gone = res.removed.filter(pl.col("step") == "decontaminate")
    assert set(gone["reason"]) == {"contaminated"}
    assert gone.filter(pl.col("source") == "evol_codealpaca").height == planted["humaneval_planted"]
    assert gone.filter(pl.col("source") == "persona_gsm").height == planted["gsm_planted"]
    assert res.mixture.height == pre.mixture.height - kw.height - gone.height
    # the identity prompts match TruthfulQA's "Who are you?": reported, exempt, all 240 kept
    assert report["exempt_matched_records"] >= 10 and mat[("hardcoded", "truthfulqa")]["records"] >= 10
    assert res.mixture["id"].is_unique().all()
