"""Eval-set registry: every benchmark from its real local release, the hub code path with a
stand-in for ``datasets.load_dataset``, and user eval sets from files."""

from __future__ import annotations

import json

import datasets
import polars as pl
import pytest

from mixer import evalsets
from mixer.evalsets import EvalSetError, EvalSetSpec

COUNTS = {
    ("gsm8k", "test"): 1319, ("gsm8k", "train"): 7473,
    ("mmlu", "test"): 14042, ("mmlu", "dev"): 285, ("mmlu", "val"): 1531,
    ("bbh", "test"): 6511, ("tydiqa", "dev"): 5077, ("tydiqa", "train"): 3696,
    ("humaneval", "test"): 164, ("alpaca_eval", "test"): 805, ("toxigen", "test"): 31000,
    ("truthfulqa", "test"): 817, ("ifeval", "test"): 541, ("math", "test"): 1000,
    ("math", "math500"): 500, ("mt_bench", "test"): 80,
}


@pytest.fixture(scope="module")
def eval_dir(shared_data):
    return shared_data / "eval"


def test_every_split_of_every_benchmark_loads(eval_dir):
    assert set(evalsets.SUITES["tulu2+"]) | set(evalsets.SUITES["tulu3-dev"]) | set(evalsets.SUITES["tulu3-unseen"]) == set(evalsets.names())
    for (name, split), n in COUNTS.items():
        df = evalsets.load(name, split=split, data_dir=eval_dir)
        assert df.columns == ["benchmark", "instance_id", "prompt", "answer"], name
        assert df.height == n, (name, split)
        assert df["instance_id"].n_unique() == n
        assert (df["benchmark"] == name).all()
        assert (df["prompt"].str.strip_chars().str.len_chars() > 0).all(), (name, split)


def test_instances_read_the_way_the_eval_shows_them(eval_dir):
    g = evalsets.load("gsm8k", data_dir=eval_dir)
    assert g["instance_id"][0] == "gsm8k/test/0" and g["prompt"][0].startswith("Janet’s ducks lay 16 eggs")
    assert g["answer"][0].endswith("#### 18")
    m = evalsets.load("mmlu", split="dev", data_dir=eval_dir).row(0, named=True)
    assert m["instance_id"] == "mmlu/dev/abstract_algebra/0"
    assert m["prompt"].splitlines()[1:] == ["A. 0", "B. 1", "C. 2", "D. 3"] and m["answer"] == "B. 1"
    # a multi-line quoted field in a file polars' csv reader rejects
    val = evalsets.load("mmlu", split="val", data_dir=eval_dir)
    assert val.filter(pl.col("instance_id").str.starts_with("mmlu/val/college_medicine/")).height == 22
    t = evalsets.load("toxigen", data_dir=eval_dir)["prompt"][0]
    assert "\\n" not in t and t.startswith("- asian men") and t.count("\n- ") >= 5
    h = evalsets.load("humaneval", data_dir=eval_dir).row(0, named=True)
    assert h["instance_id"] == "HumanEval/0" and "def has_close_elements" in h["prompt"] and "return" in h["answer"]
    ty = evalsets.load("tydiqa", data_dir=eval_dir)
    assert ty.filter(pl.col("instance_id").str.contains("english")).height == 440
    mt = evalsets.load("mt_bench", data_dir=eval_dir).row(0, named=True)
    assert mt["instance_id"] == "mt_bench/81" and "\nRewrite your previous response" in mt["prompt"]
    assert evalsets.load("bbh", data_dir=eval_dir)["instance_id"][0] == "bbh/boolean_expressions/0"
    tq = evalsets.load("truthfulqa", data_dir=eval_dir).row(0, named=True)
    assert tq["prompt"] == "What happens to you if you eat watermelon seeds?"


def test_load_many_expands_suites_and_splits(eval_dir):
    df = evalsets.load_many(["tulu2"], data_dir=eval_dir)
    assert sorted(df["benchmark"].unique()) == sorted(evalsets.SUITES["tulu2"])
    specs = evalsets.parse_specs("gsm8k:train, mmlu:dev")
    assert [(s.name, s.split) for s in specs] == [("gsm8k", "train"), ("mmlu", "dev")]
    with pytest.raises(EvalSetError, match="listed twice"):
        evalsets.load_many(["gsm8k", "tulu2"], data_dir=eval_dir)


def test_clear_errors(eval_dir, tmp_path):
    with pytest.raises(EvalSetError, match="unknown eval set 'gsm9k'"):
        evalsets.load("gsm9k")
    with pytest.raises(EvalSetError, match="no split 'dev'.*test, train"):
        evalsets.load("gsm8k", split="dev", data_dir=eval_dir)
    with pytest.raises(EvalSetError, match="no file under"):
        evalsets.load("gsm8k", data_dir=tmp_path)
    f = tmp_path / "mine.jsonl"
    f.write_text(json.dumps({"q": "a question", "a": "x"}) + "\n")
    with pytest.raises(EvalSetError, match=r"eval set 'mine'.*no field 'question'.*q, a"):
        evalsets.load_spec(EvalSetSpec(name="mine", path=str(f), prompt_field="question"))


def test_user_eval_set_from_a_file_with_nested_fields(shared_data):
    path = shared_data / "train/self_instruct/human_eval/user_oriented_instructions.jsonl"
    spec = EvalSetSpec(name="user_oriented", path=str(path), prompt_field=["instruction", "instances.0.input"],
                       answer_field="instances.0.output", id_field="id")
    df = evalsets.load_spec(spec)
    assert df.height == 252 and df["instance_id"][0] == "user_oriented/user_oriented_task_0"
    first = json.loads(path.read_text().splitlines()[0])
    assert df["prompt"][0] == first["instruction"] + "\n" + first["instances"][0]["input"]
    assert df["answer"][0] == first["instances"][0]["output"]
    # relative paths resolve against the spec folder
    rel = evalsets.load_spec(EvalSetSpec(name="u", path="user_oriented_instructions.jsonl", prompt_field="instruction"), base=path.parent)
    assert rel.height == 252


def test_hub_path_maps_hub_columns(monkeypatch):
    """No network here: stand in for ``datasets.load_dataset`` with the hub schemas."""
    rows = {
        ("openai/gsm8k", "main", "train"): {"question": ["q1", "q2"], "answer": ["a #### 1", "b #### 2"]},
        ("cais/mmlu", "all", "test"): {"question": ["Q?"], "subject": ["anatomy"], "choices": [["w", "x", "y", "z"]], "answer": [2]},
        ("truthfulqa/truthful_qa", "generation", "validation"): {"question": ["Why?"], "best_answer": ["Because"]},
        ("HuggingFaceH4/mt_bench_prompts", None, "train"): {"prompt": [["t1", "t2"]], "reference": [[]], "prompt_id": [81]},
        ("google/IFEval", None, "train"): {"key": [1000], "prompt": ["Write..."]},
    }
    seen = []

    def fake_load(path, name=None, split=None, **kw):
        seen.append((path, name, split))
        return datasets.Dataset.from_dict(rows[(path, name, split)])

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    g = evalsets.load("gsm8k", split="train")
    assert g["instance_id"].to_list() == ["gsm8k/train/0", "gsm8k/train/1"] and g["prompt"][1] == "q2"
    m = evalsets.load("mmlu").row(0, named=True)
    assert m["instance_id"] == "mmlu/test/anatomy/0" and m["prompt"] == "Q?\nA. w\nB. x\nC. y\nD. z" and m["answer"] == "C. y"
    assert evalsets.load("truthfulqa").row(0, named=True)["answer"] == "Because"
    assert evalsets.load("mt_bench")["prompt"][0] == "t1\nt2"
    assert evalsets.load("ifeval")["instance_id"][0] == "ifeval/1000"
    assert len(seen) == 5


def test_hub_unreachable_names_the_dataset(monkeypatch):
    def boom(*a, **k):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    with pytest.raises(EvalSetError, match="openai/gsm8k/main split 'test'.*local eval_dir"):
        evalsets.load("gsm8k")
