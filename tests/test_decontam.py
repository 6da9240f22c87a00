"""Decontamination: tokenizer, rules, short and templated instances, exactness against a
brute-force twin, and the real contaminated pools of ../shared/data."""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
import pytest

from mixer import evalsets
from mixer.decontam import DecontamConfig, MatchParams, decontaminate, find_matches
from mixer.decontam.reference import brute_force
from mixer.decontam.tokenize import words, words_expr
from mixer.records import PREF_SCHEMA, sft_frame
from mixer.steps.base import StepContext, get_step


def chat(ids, prompts, answers=None, source="train"):
    answers = answers or ["ok"] * len(prompts)
    msgs = [[{"role": "user", "content": p}, {"role": "assistant", "content": a}] for p, a in zip(prompts, answers, strict=True)]
    return sft_frame(list(ids), source, msgs)


def evals_frame(prompts: dict[str, str], answers: dict[str, str] | None = None, benchmark: str = "bench") -> pl.DataFrame:
    answers = answers or {}
    return pl.DataFrame(
        {"benchmark": [benchmark] * len(prompts), "instance_id": list(prompts), "prompt": list(prompts.values()),
         "answer": [answers.get(k) for k in prompts]},
        schema=evalsets.EVAL_SCHEMA,
    )


def hits(frame, evals, **params) -> set[tuple[str, str]]:
    res = find_matches(frame, evals, MatchParams(**params), progress=False).pairs
    return {(frame["id"][r], evals["instance_id"][i]) for r, i in zip(res["rec"], res["inst"], strict=True)}


@pytest.fixture(scope="module")
def eval_dir(shared_data: Path) -> Path:
    return shared_data / "eval"


@pytest.fixture(scope="module")
def small_suite(eval_dir) -> pl.DataFrame:
    return evalsets.load_many(["gsm8k", "humaneval", "truthfulqa", "alpaca_eval", "mt_bench"], data_dir=eval_dir)


# ------------------------------------------------------------------------ tokenizer


def test_tokenizer_normalizes_case_punctuation_whitespace_unicode_but_keeps_numbers():
    a, b, c, d, e = words([
        "Janet’s ducks lay 16 eggs per day!", "janet S   DUCKS\tlay 16 eggs, per... day",
        "Ｊａｎｅｔ’s ducks lay 16 eggs per day", "Janet’s ducks lay 12 eggs per day", "ﬁne x_y 3.14",
    ])
    assert a == b == c == ["janet", "s", "ducks", "lay", "16", "eggs", "per", "day"]
    assert d != a  # numbers are not collapsed to one symbol
    assert e == ["fine", "x_y", "3", "14"]
    assert words(["తెలుగు భాష"]) == [["తెలుగు", "భాష"]]  # combining marks stay inside words


# --------------------------------------------------------- planted cases and controls


def test_planted_benchmark_prompts_are_found_with_edits_and_near_misses_are_not(small_suite):
    ev = small_suite
    rng = random.Random(7)
    pick = ev.filter(words_expr(pl.col("prompt")).list.len() >= 20).sample(40, seed=3)
    prompts, expect_hit, expect_miss = [], [], []
    for k, (iid, p) in enumerate(zip(pick["instance_id"], pick["prompt"], strict=True)):
        variant = [p, p.upper(), " ".join(p.split()).replace(".", " ;"), p.replace(" ", "\n  ")][k % 4]
        prompts.append(f"Here is something I found online, please help me with it.\n\n{variant}\n\nThanks a lot!")
        expect_hit.append((f"hit{k}", iid))
        toks = words([p])[0]
        if k % 2 == 0:  # first 40% of the prompt only: coverage <= 0.4
            miss = " ".join(toks[: int(len(toks) * 0.4)])
        else:  # every 6th word replaced: no shared 8-gram survives
            miss = " ".join("zzz" if i % 6 == 5 else t for i, t in enumerate(toks))
        prompts.append(miss)
        expect_miss.append(f"miss{k}")
    ids = [x for k in range(len(pick)) for x in (f"hit{k}", f"miss{k}")]
    rng.shuffle(order := list(range(len(ids))))
    frame = chat([ids[i] for i in order], [prompts[i] for i in order])
    found = hits(frame, ev)
    assert set(expect_hit) <= found
    assert not {r for r, _ in found} & set(expect_miss)
    res = find_matches(frame, ev, MatchParams(), progress=False).pairs.join(
        pl.DataFrame({"rec": range(frame.height), "id": frame["id"]}, schema={"rec": pl.Int64, "id": pl.Utf8}), on="rec")
    planted = res.filter(pl.col("id").str.starts_with("hit"))
    assert planted.group_by("id").agg(pl.col("coverage").max())["coverage"].min() == pytest.approx(1.0)


def test_lists_of_numbers_do_not_match_other_lists_of_numbers():
    ev = evals_frame({"nums": "Sort these numbers: 12 45 7 89 23 56 34 90 11 67 3 28"})
    frame = chat(["other", "same"], ["Sort these numbers: 14 41 9 80 27 52 38 99 15 61 8 21", "sort THESE numbers 12, 45, 7, 89, 23, 56, 34, 90, 11, 67, 3, 28."])
    assert hits(frame, ev) == {("same", "nums")}
    assert hits(frame, ev, rule="ngram", n=8) == {("same", "nums")}


def test_short_instances_follow_the_policy_and_never_span_turns():
    ev = evals_frame({"who": "Who are you?", "hi": "Hi", "long": "Explain how a rainbow forms in the sky after the rain stops falling"})
    prompts = ["So tell me... WHO are you, really?", "Who are", "hi there", "Tell me: how does a rainbow form? Explain it to a child."]
    frame = chat(["who_in", "partial", "hi_in", "para"], prompts)
    split = sft_frame(["split"], "train", [[{"role": "user", "content": "Who are"}, {"role": "assistant", "content": "?"}, {"role": "user", "content": "you?"}]])
    frame = pl.concat([frame, split])
    assert hits(frame, ev) == {("who_in", "who"), ("hi_in", "hi")}
    assert hits(frame, ev, short_min_tokens=2) == {("who_in", "who")}
    assert hits(frame, ev, short="skip") == set()
    res = find_matches(frame, ev, MatchParams(), progress=False).pairs
    assert res["short"].all()


def test_ngrams_never_span_two_turns_and_roles_select_turns():
    p = "the quick brown fox jumps over the lazy dog near the river bank today"
    ev = evals_frame({"fox": p})
    half = p.split()
    split = sft_frame(["split"], "train", [[{"role": "user", "content": " ".join(half[:7])}, {"role": "user", "content": " ".join(half[7:])}]])
    asst = sft_frame(["asst"], "train", [[{"role": "user", "content": "write something"}, {"role": "assistant", "content": p}]])
    frame = pl.concat([split, asst])
    assert hits(frame, ev) == set()
    assert hits(frame, ev, roles=["user", "assistant"]) == {("asst", "fox")}


def test_exact_rule_needs_the_whole_prompt(small_suite):
    ev = small_suite
    g = ev.filter(pl.col("benchmark") == "gsm8k").head(3)
    p0, p1, p2 = g["prompt"].to_list()
    frame = chat(["whole", "edited", "half"], [f"Q: {p0.lower()} A:", p1.replace(",", "").replace("?", " ?"), p2[: len(p2) * 3 // 4]])
    found = hits(frame, ev, rule="exact")
    assert {("whole", g["instance_id"][0]), ("edited", g["instance_id"][1])} <= found
    assert not any(r == "half" for r, _ in found)
    assert any(r == "half" for r, _ in hits(frame, ev))  # tulu3: 75% coverage is a match


def test_answer_side_catches_leaked_solutions(eval_dir):
    ev = evalsets.load("gsm8k", data_dir=eval_dir).head(50)
    leak = chat(["leak"], ["Solve the duck problem."], [ev["answer"][0]])
    assert hits(leak, ev) == set()
    assert hits(leak, ev, rule="ngram", eval_text="answer", roles=["assistant"]) == {("leak", "gsm8k/test/0")}
    both = find_matches(leak, ev, MatchParams(rule="ngram", eval_text="both", roles=["user", "assistant"]), progress=False).pairs
    n_prompt, n_answer = (len(words([ev[c][0]])[0]) for c in ("prompt", "answer"))
    assert both.height == 1 and both["coverage"][0] == pytest.approx(n_answer / (n_prompt + n_answer))


def test_preference_records_use_the_shared_prompt(small_suite):
    p = small_suite.filter(pl.col("instance_id") == "HumanEval/3")["prompt"][0]
    turns = lambda a: [{"role": "user", "content": "Complete:\n" + p}, {"role": "assistant", "content": a}]  # noqa: E731
    pref = pl.DataFrame({"id": ["p0"], "source": ["prefs"], "chosen": [turns("good")], "rejected": [turns("bad")], "meta": [None]}, schema=PREF_SCHEMA)
    assert hits(pref, small_suite) == {("p0", "HumanEval/3")}


# ------------------------------------------------------------------------ exactness


def _agree(frame, ev, params: MatchParams) -> int:
    got = find_matches(frame, ev, params, progress=False).pairs.sort(["rec", "inst"])
    ref = brute_force(frame, ev, params).sort(["rec", "inst"])
    cols = ["rec", "inst", "n_ngrams", "short"]
    assert got.select(cols).equals(ref.select(pl.col(c).cast(got.schema[c]) for c in cols)), params
    assert (got["coverage"].cast(pl.Float64) - ref["coverage"]).abs().max() < 1e-6
    return got.height


def _sample_frame(shared_data: Path, ev: pl.DataFrame, n_each: int, seed: int) -> pl.DataFrame:
    rng = random.Random(seed)
    outs = json.loads((shared_data / "train/alpaca_eval_outputs/results/zephyr-7b-beta/model_outputs.json").read_text())
    gsm = [json.loads(x) for x in (shared_data / "eval/gsm8k/train.jsonl").read_text().splitlines()]
    prompts = [o["instruction"] for o in rng.sample(outs, n_each)] + [g["question"] for g in rng.sample(gsm, n_each)]
    answers = [o["output"] for o in rng.sample(outs, n_each)] + [g["answer"] for g in rng.sample(gsm, n_each)]
    for p, a in zip(ev.sample(n_each, seed=seed)["prompt"], ev.sample(n_each, seed=seed + 1)["answer"].fill_null(""), strict=True):
        w = p.split()
        cut = rng.randint(len(w) // 3, len(w))
        prompts.append("Context first. " + " ".join(w[:cut]).upper() + " and then more text")
        answers.append(a[: len(a) // 2])
    return chat([f"r{i}" for i in range(len(prompts))], prompts, answers)


def test_index_agrees_with_brute_force_on_a_sample(shared_data, eval_dir):
    ev = pl.concat([
        evalsets.load_many(["alpaca_eval", "truthfulqa", "humaneval", "mt_bench"], data_dir=eval_dir),
        evalsets.load("gsm8k", data_dir=eval_dir).head(300),
        evalsets.load("bbh", data_dir=eval_dir).filter(pl.col("instance_id").str.contains("date_understanding")),
    ])
    frame = _sample_frame(shared_data, ev, 25, seed=11)
    assert _agree(frame, ev, MatchParams()) > 25
    assert _agree(frame, ev, MatchParams(rule="exact")) > 5
    assert _agree(frame, ev, MatchParams(rule="ngram", n=6, eval_text="both", roles=["user", "assistant"], chunk_tokens=2000)) > 25


def test_dedup_and_threads_do_not_change_the_pairs(shared_data, small_suite):
    frame = _sample_frame(shared_data, small_suite, 30, seed=2)
    doubled = pl.concat([frame, frame.with_columns(pl.col("id") + "_copy")]).sample(fraction=1.0, seed=1, shuffle=True)
    base = find_matches(doubled, small_suite, MatchParams(dedup=False, threads=1), progress=False)
    fast = find_matches(doubled, small_suite, MatchParams(chunk_tokens=1500, threads=2), progress=False)
    assert fast.distinct == frame.height and base.distinct == doubled.height
    assert base.pairs.height > 50 and fast.pairs.equals(base.pairs)


@pytest.mark.slow
def test_index_agrees_with_brute_force_on_the_whole_suite(shared_data, eval_dir):
    ev = evalsets.load_many("tulu2+", data_dir=eval_dir)
    frame = _sample_frame(shared_data, ev, 20, seed=5)
    for params in (MatchParams(), MatchParams(rule="ngram"), MatchParams(rule="exact"),
                   MatchParams(rule="tulu3", eval_text="both", roles=["user", "assistant"])):
        assert _agree(frame, ev, params) > 0


# ------------------------------------------------------------- real contaminated data


def test_alpaca_eval_model_outputs_overlap_all_of_alpaca_eval(shared_data, eval_dir):
    ev = evalsets.load("alpaca_eval", data_dir=eval_dir)
    frames = []
    for f in sorted((shared_data / "train/alpaca_eval_outputs/results").glob("*/model_outputs.json")):
        outs = json.loads(f.read_text())
        frames.append(chat([f"{f.parent.name}:{i}" for i in range(len(outs))], [o["instruction"] for o in outs],
                           [o["output"] for o in outs], source=f.parent.name))
    frame = pl.concat(frames)
    out = decontaminate(frame, ev, DecontamConfig(evals=["alpaca_eval"], action="report"), progress=False)
    rows = {r["source"]: r for r in out.report["matrix"]}
    assert len(frames) == 13 and out.kept.height == frame.height == 13 * 805 - 1  # llama-2-70b-chat-hf answered 804
    for model in {f["source"][0] for f in frames}:
        assert rows[model]["pct_instances"] == (100.0 if model != "llama-2-70b-chat-hf" else pytest.approx(100 * 804 / 805, abs=1e-3))
    # every record hits the instance with its own instruction, fully covered
    text = pl.DataFrame({"id": frame["id"], "instruction": frame["messages"].list.first().struct.field("content")})
    own = out.matches.join(text, on="id").join(ev.select("instance_id", "prompt"), on="instance_id").filter(pl.col("instruction") == pl.col("prompt"))
    assert own["id"].n_unique() == frame.height and own["coverage"].min() == pytest.approx(1.0)
    # a templated prompt family ("I like to host guests ...") shows up as template matches
    tmpl = out.matches.filter(pl.col("record_hits") >= 10)
    assert tmpl.height and tmpl["instance_id"].n_unique() >= 10
    assert rows["(all)"]["template_records"] > 0 and rows["(all)"]["short_instances_hit"] > 0


def test_gsm8k_train_overlaps_gsm8k_test_in_three_known_pairs(eval_dir):
    train = evalsets.load("gsm8k", split="train", data_dir=eval_dir)
    frame = chat([f"train/{i}" for i in range(train.height)], train["prompt"].to_list(), train["answer"].to_list(), source="gsm8k_train")
    ev = evalsets.load("gsm8k", data_dir=eval_dir)
    out = decontaminate(frame, ev, DecontamConfig(evals=["gsm8k"]), progress=False)
    pairs = sorted(zip(out.matches["id"], out.matches["instance_id"], strict=True))
    assert pairs == [("train/1314", "gsm8k/test/602"), ("train/20", "gsm8k/test/632"), ("train/5162", "gsm8k/test/602")]
    assert out.kept.height == frame.height - 3
    detail = json.loads(out.removed.filter(pl.col("id") == "train/20")["detail"][0])
    assert detail["benchmark"] == "gsm8k" and detail["instance_id"] == "gsm8k/test/632" and 0.5 < detail["coverage"] < 1
    assert set(out.removed["reason"]) == {"contaminated"} and set(out.removed["step"]) == {"decontaminate"}


def test_self_instruct_seeds_against_the_user_oriented_eval_set(shared_data):
    path = shared_data / "train/self_instruct/human_eval/user_oriented_instructions.jsonl"
    seeds = [json.loads(x) for x in (shared_data / "train/self_instruct/data/seed_tasks.jsonl").read_text().splitlines()]
    frame = chat([s["id"] for s in seeds], [(s["instruction"] + "\n" + s["instances"][0]["input"]).strip() for s in seeds],
                 [s["instances"][0]["output"] for s in seeds], source="seed_tasks")
    as_shown = evalsets.load_spec(evalsets.EvalSetSpec(name="user_oriented", path=str(path), prompt_field=["instruction", "instances.0.input"]))
    assert hits(frame, as_shown) == set()
    # instructions alone: the only overlap is a short generic instruction, contained whole
    bare = evalsets.load_spec(evalsets.EvalSetSpec(name="user_oriented", path=str(path), prompt_field="instruction"))
    res = find_matches(frame, bare, MatchParams(), progress=False).pairs
    assert res.height >= 1 and res["short"].all()
    assert {words([bare["prompt"][i]])[0] == ["answer", "the", "following", "question"] for i in res["inst"]} == {True}
    assert hits(frame, bare, short="skip") == set()


def test_one_mmlu_moral_scenario_hits_hundreds_of_instances_by_template(eval_dir):
    ev = evalsets.load("mmlu", data_dir=eval_dir)
    ms = ev.filter(pl.col("instance_id").str.starts_with("mmlu/test/moral_scenarios/"))
    frame = chat(["leak"], ["Answer this one:\n" + ms["prompt"][0]], source="quiz")
    out = decontaminate(frame, ev, DecontamConfig(evals=["mmlu"], action="report"), progress=False)
    m = out.matches
    assert m.filter(pl.col("instance_id") == ms["instance_id"][0])["coverage"][0] == pytest.approx(1.0)
    assert m["record_hits"][0] == m.height and m.height > 100  # a template match, not hundreds of leaks
    assert out.report["matrix"][0]["template_records"] == 1


# --------------------------------------------------------------------- step and ledger


def test_step_actions_ledger_and_files(shared_data, eval_dir, tmp_path):
    outs = json.loads((shared_data / "train/alpaca_eval_outputs/results/claude-2/model_outputs.json").read_text())
    leaky = chat([f"claude:{i}" for i in range(100)], [o["instruction"] for o in outs[:100]], source="claude")
    clean = chat([f"clean:{i}" for i in range(50)], [f"Write a haiku about the number {i} and a cat" for i in range(50)], source="clean")
    mixed = chat(["mixed:0", "mixed:1"], [outs[200]["instruction"], "Tell me a joke about penguins please"], source="mixed")
    frame = pl.concat([leaky, clean, mixed])
    step = get_step("decontaminate")

    res = step(step.Config(evals=["alpaca_eval"], eval_dir="eval")).run(frame, StepContext(work_dir=tmp_path / "b1", spec_dir=eval_dir.parent))
    assert res.kept.height + res.removed.height == frame.height
    assert set(res.removed["id"]) == {f"claude:{i}" for i in range(100)} | {"mixed:0"}
    d = json.loads(res.removed.filter(pl.col("id") == "mixed:0")["detail"][0])
    assert d["benchmark"] == "alpaca_eval" and d["instance_id"] == "alpaca_eval/200" and d["coverage"] == 1.0
    rep = json.loads((tmp_path / "b1/contamination.json").read_text())
    cell = {(r["source"], r["benchmark"]): r for r in rep["matrix"]}
    assert cell[("claude", "alpaca_eval")]["records"] == 100 and ("clean", "alpaca_eval") not in cell
    assert pl.read_parquet(tmp_path / "b1/contamination_matches.parquet").filter(pl.col("id") == "mixed:0").height >= 1
    assert res.info["pct_instances"]["alpaca_eval"] > 12

    res = step(step.Config(evals=["alpaca_eval"], eval_dir=str(eval_dir), action="report")).run(frame, StepContext())
    assert res.kept.height == frame.height and res.removed.height == 0 and res.info["matched_records"] == 101

    res = step(step.Config(evals=["alpaca_eval"], eval_dir=str(eval_dir), action="report", drop_source_above=2.0)).run(frame, StepContext())
    assert set(res.removed["source"]) == {"claude"} and res.removed.height == 100  # mixed: 1/805 = 0.12% < 2%
    assert set(res.removed["reason"]) == {"contaminated_source"}
    d = json.loads(res.removed["detail"][0])
    assert d["benchmark"] == "alpaca_eval" and d["limit"] == 2.0
    assert d["pct"] == {(r["source"], r["benchmark"]): r for r in rep["matrix"]}[("claude", "alpaca_eval")]["pct_instances"]
    assert d["pct"] > 100 * 100 / 805  # templated prompts: 100 records reach a few more instances


def test_config_errors_are_clear():
    step = get_step("decontaminate")
    with pytest.raises(ValueError, match="eval_text must be 'prompt'"):
        step.Config(rule="exact", eval_text="both")
    with pytest.raises(ValueError, match="extra"):
        step.Config(rules="tulu3")
