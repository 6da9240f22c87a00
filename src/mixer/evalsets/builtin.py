"""Loaders for the Tulu 2 suite (GSM8K, MMLU, BBH, TydiQA GoldP, HumanEval, AlpacaEval,
ToxiGen, TruthfulQA) plus IFEval, MATH and MT-Bench.

Each turns a benchmark into instances the way its evaluation shows them to the model:
``prompt`` is the text the model reads (question, options, passage), ``answer`` the gold
text. Local folders use the upstream release layout; ``root=None`` reads the hub.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import polars as pl

from mixer.evalsets.base import EvalSetError, hub_frame, local_files, register_evalset

LETTERS = ("A", "B", "C", "D")


def _ndjson(path: Path) -> pl.DataFrame:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)


def _row_ids(prefix: str) -> pl.Expr:
    return pl.format("{}/{}", pl.lit(prefix), pl.int_range(pl.len()))


# ------------------------------------------------------------------------------- GSM8K


@register_evalset("gsm8k", splits=("test", "train"), hub="openai/gsm8k (main)")
def gsm8k(root: Path | None, split: str) -> pl.DataFrame:
    """Grade-school math word problems; answer is the worked solution ending in '#### N'."""
    if root is None:
        df = hub_frame("openai/gsm8k", "main", split=split)
    else:
        df = _ndjson(local_files(root, [f"{split}.jsonl", f"**/{split}.jsonl"], f"gsm8k/{split}")[0])
    return df.select(_row_ids(f"gsm8k/{split}").alias("instance_id"), pl.col("question").alias("prompt"), "answer")


# -------------------------------------------------------------------------------- MMLU

_MMLU_SPLIT = {"test": ("test", "test"), "dev": ("dev", "dev"), "val": ("val", "validation"), "validation": ("val", "validation")}


def _mmlu_prompt(choices: list[pl.Expr]) -> pl.Expr:
    parts: list[pl.Expr] = [pl.col("question")]
    for letter, c in zip(LETTERS, choices, strict=True):
        parts.append(pl.format("\n{}. {}", pl.lit(letter), c.cast(pl.Utf8)))
    return pl.concat_str(parts)


@register_evalset("mmlu", splits=("test", "dev", "val"), hub="cais/mmlu (all)")
def mmlu(root: Path | None, split: str) -> pl.DataFrame:
    """57-subject multiple choice; prompt = question + lettered options (no subject header,
    so the shared header does not make every item overlap)."""
    folder, hub_split = _MMLU_SPLIT[split]
    if root is None:
        df = hub_frame("cais/mmlu", "all", split=hub_split)
        df = df.with_columns(
            *[pl.col("choices").list.get(i, null_on_oob=True).alias(ch) for i, ch in enumerate(LETTERS)],
            pl.col("answer").cast(pl.Int64).replace_strict(dict(enumerate(LETTERS)), return_dtype=pl.Utf8).alias("gold"),
        ).with_columns(pl.int_range(pl.len()).over("subject").alias("row"))
    else:
        frames = []
        for f in local_files(root, [f"{folder}/*_{folder}.csv", f"{folder}/*.csv"], f"mmlu/{split}"):
            sub = f.stem.removesuffix(f"_{folder}")
            cols = ["question", *LETTERS, "gold"]
            # the csv module, not polars: polars' chunked reader rejects one upstream file
            with f.open(newline="", encoding="utf-8") as fh:
                rows = [r for r in csv.reader(fh) if r]
            bad = [i for i, r in enumerate(rows) if len(r) != 6]
            if bad:
                raise EvalSetError(f"{f}: row {bad[0] + 1} has {len(rows[bad[0]])} fields, expected 6")
            d = pl.DataFrame(rows, schema={c: pl.Utf8 for c in cols}, orient="row")
            frames.append(d.with_columns(pl.lit(sub).alias("subject"), pl.int_range(pl.len()).alias("row")))
        df = pl.concat(frames)
    answer_text = pl.coalesce(
        *[pl.when(pl.col("gold") == ch).then(pl.format("{}. {}", pl.lit(ch), pl.col(ch).cast(pl.Utf8))) for ch in LETTERS]
    )
    return df.select(
        pl.format("mmlu/{}/{}/{}", pl.lit(folder), pl.col("subject"), pl.col("row")).alias("instance_id"),
        _mmlu_prompt([pl.col(ch) for ch in LETTERS]).alias("prompt"),
        answer_text.alias("answer"),
        pl.col("subject"),
    )


# --------------------------------------------------------------------------------- BBH

BBH_TASKS = (
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa",
    "dyck_languages", "formal_fallacies", "geometric_shapes", "hyperbaton",
    "logical_deduction_five_objects", "logical_deduction_seven_objects",
    "logical_deduction_three_objects", "movie_recommendation", "multistep_arithmetic_two",
    "navigate", "object_counting", "penguins_in_a_table", "reasoning_about_colored_objects",
    "ruin_names", "salient_translation_error_detection", "snarks", "sports_understanding",
    "temporal_sequences", "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects",
    "web_of_lies", "word_sorting",
)


@register_evalset("bbh", splits=("test",), hub="lukaemon/bbh (one config per task)")
def bbh(root: Path | None, split: str) -> pl.DataFrame:
    """BIG-Bench Hard, 27 tasks; many inputs share option lists within a task."""
    frames = []
    if root is None:
        for task in BBH_TASKS:
            frames.append(hub_frame("lukaemon/bbh", task, split="test").with_columns(pl.lit(task).alias("task")))
    else:
        for f in local_files(root, ["bbh/*.json", "*.json"], "bbh"):
            examples = json.loads(f.read_text())["examples"]
            frames.append(pl.DataFrame(examples, schema={"input": pl.Utf8, "target": pl.Utf8}).with_columns(pl.lit(f.stem).alias("task")))
    df = pl.concat(frames, how="diagonal_relaxed")
    return df.select(
        pl.format("bbh/{}/{}", pl.col("task"), pl.int_range(pl.len()).over("task")).alias("instance_id"),
        pl.col("input").alias("prompt"),
        pl.col("target").alias("answer"),
        "task",
    )


# ----------------------------------------------------------------------------- TydiQA


@register_evalset("tydiqa", splits=("dev", "train"), hub="google-research-datasets/tydiqa (secondary_task)")
def tydiqa(root: Path | None, split: str) -> pl.DataFrame:
    """TyDi QA GoldP; prompt = passage + question (the GoldP setting shows the passage)."""
    if root is None:
        df = hub_frame("google-research-datasets/tydiqa", "secondary_task", split="validation" if split == "dev" else "train")
        df = df.with_columns(pl.col("answers").struct.field("text").list.first().alias("answer"))
    else:
        frames = []
        for f in local_files(root, [f"**/*tydiqa*{split}*.json"], f"tydiqa/{split}"):
            data = json.loads(f.read_text())["data"]
            rows = [
                {"id": qa["id"], "context": p["context"], "question": qa["question"],
                 "answer": (qa.get("answers") or [{"text": None}])[0]["text"]}
                for art in data for p in art["paragraphs"] for qa in p["qas"]
            ]
            frames.append(pl.DataFrame(rows, schema={"id": pl.Utf8, "context": pl.Utf8, "question": pl.Utf8, "answer": pl.Utf8}))
        df = pl.concat(frames)
    return df.select(
        pl.format("tydiqa/{}", pl.col("id")).alias("instance_id"),
        pl.concat_str([pl.col("context"), pl.col("question")], separator="\n").alias("prompt"),
        "answer",
    )


# -------------------------------------------------------------------------- HumanEval


@register_evalset("humaneval", splits=("test",), hub="openai/openai_humaneval")
def humaneval(root: Path | None, split: str) -> pl.DataFrame:
    """164 Python functions: prompt = signature + docstring, answer = canonical body."""
    if root is None:
        df = hub_frame("openai/openai_humaneval", split="test")
    else:
        df = _ndjson(local_files(root, ["HumanEval.jsonl*", "*.jsonl*"], "humaneval")[0])
    return df.select(pl.col("task_id").alias("instance_id"), "prompt", pl.col("canonical_solution").alias("answer"))


# ------------------------------------------------------------------------- AlpacaEval


@register_evalset("alpaca_eval", splits=("test",), hub="tatsu-lab/alpaca_eval (alpaca_eval.json)")
def alpaca_eval(root: Path | None, split: str) -> pl.DataFrame:
    """805 open-ended instructions; answer = the reference (text-davinci-003) output."""
    if root is None:
        from datasets import load_dataset

        try:
            ds = load_dataset("json", data_files="hf://datasets/tatsu-lab/alpaca_eval/alpaca_eval.json", split="train")
        except Exception as e:
            raise EvalSetError(f"cannot load tatsu-lab/alpaca_eval from the hub ({e.__class__.__name__}); pass a local eval_dir") from None
        df = pl.from_arrow(ds.data.table)
    else:
        f = local_files(root, ["alpaca_eval.jsonl", "alpaca_eval.json", "*.jsonl", "*.json"], "alpaca_eval")[0]
        df = _ndjson(f) if f.suffix == ".jsonl" else pl.read_json(f)
    return df.select(_row_ids("alpaca_eval").alias("instance_id"), pl.col("instruction").alias("prompt"), pl.col("output").alias("answer"))


# ---------------------------------------------------------------------------- ToxiGen


@register_evalset("toxigen", splits=("test",), hub="toxigen/toxigen-data (prompts)")
def toxigen(root: Path | None, split: str) -> pl.DataFrame:
    """31 groups x 1000 few-shot prompts (lists of statements); no gold answer. The
    statements recur across prompts of a group, so partial overlaps are template-like."""
    if root is None:
        from datasets import load_dataset

        try:
            dd = load_dataset("toxigen/toxigen-data", "prompts")
        except Exception as e:
            raise EvalSetError(f"cannot load toxigen/toxigen-data prompts from the hub ({e.__class__.__name__}); pass a local eval_dir") from None
        frames = []
        for name, ds in dd.items():
            d = pl.from_arrow(ds.data.table)
            col = "text" if "text" in d.columns else next(c for c, t in d.schema.items() if t == pl.Utf8)
            frames.append(d.select(pl.col(col).alias("text"), pl.lit(name).alias("group")))
        df = pl.concat(frames)
    else:
        frames = []
        for f in local_files(root, ["prompts/*.txt", "*.txt"], "toxigen"):
            lines = pl.Series("text", f.read_text(encoding="utf-8").splitlines(), dtype=pl.Utf8)
            frames.append(pl.DataFrame([lines]).with_columns(pl.lit(f.stem).alias("group"), pl.int_range(pl.len()).alias("line")))
        df = pl.concat(frames).filter(pl.col("text").str.strip_chars() != "")
    df = df.with_columns(pl.int_range(pl.len()).over("group").alias("row"))
    text = pl.col("text").str.replace_all("\\n", "\n", literal=True).str.strip_chars()
    return df.select(pl.format("toxigen/{}/{}", pl.col("group"), pl.col("row")).alias("instance_id"), text.alias("prompt"), pl.lit(None, dtype=pl.Utf8).alias("answer"))


# ------------------------------------------------------------------------- TruthfulQA


@register_evalset("truthfulqa", splits=("test",), hub="truthfulqa/truthful_qa (generation)")
def truthfulqa(root: Path | None, split: str) -> pl.DataFrame:
    """817 questions (the pre-2025 version); answer = the best answer. Many are short."""
    if root is None:
        df = hub_frame("truthfulqa/truthful_qa", "generation", split="validation").rename(
            {"question": "Question", "best_answer": "Best Answer"}
        )
    else:
        f = local_files(root, ["data/v1/TruthfulQA.csv", "TruthfulQA.csv", "*.csv"], "truthfulqa")[0]
        df = pl.read_csv(f, infer_schema=False)
    return df.select(_row_ids("truthfulqa").alias("instance_id"), pl.col("Question").alias("prompt"), pl.col("Best Answer").alias("answer"))


# ----------------------------------------------------------------------------- IFEval


@register_evalset("ifeval", splits=("test",), hub="google/IFEval")
def ifeval(root: Path | None, split: str) -> pl.DataFrame:
    """541 verifiable-instruction prompts; no gold answer."""
    if root is None:
        df = hub_frame("google/IFEval", split="train")
    else:
        df = _ndjson(local_files(root, ["input_data.jsonl", "*.jsonl"], "ifeval")[0])
    return df.select(pl.format("ifeval/{}", pl.col("key")).alias("instance_id"), "prompt", pl.lit(None, dtype=pl.Utf8).alias("answer"))


# ------------------------------------------------------------------------------- MATH

MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory", "prealgebra", "precalculus")


@register_evalset("math", splits=("test", "math500"), hub="EleutherAI/hendrycks_math / HuggingFaceH4/MATH-500")
def math(root: Path | None, split: str) -> pl.DataFrame:
    """Competition math; ``test`` = the MATH test set (locally: a ``test.jsonl`` subset),
    ``math500`` = the 500-problem subset of Lightman et al."""
    if root is None:
        if split == "math500":
            df = hub_frame("HuggingFaceH4/MATH-500", split="test")
        else:
            df = pl.concat([hub_frame("EleutherAI/hendrycks_math", s, split="test") for s in MATH_SUBJECTS], how="diagonal_relaxed")
    else:
        pats = ["math500/*.jsonl", "*500*.jsonl"] if split == "math500" else ["test.jsonl", "*/test.jsonl"]
        df = pl.concat([_ndjson(f) for f in local_files(root, pats, f"math/{split}")], how="diagonal_relaxed")
    ids = pl.format("math/{}/{}", pl.lit(split), pl.int_range(pl.len()))
    if "unique_id" in df.columns:
        ids = pl.format("math/{}", pl.col("unique_id"))
    return df.select(ids.alias("instance_id"), pl.col("problem").alias("prompt"), pl.col("solution").alias("answer"))


# --------------------------------------------------------------------------- MT-Bench


@register_evalset("mt_bench", splits=("test",), hub="HuggingFaceH4/mt_bench_prompts")
def mt_bench(root: Path | None, split: str) -> pl.DataFrame:
    """80 two-turn questions; prompt = both user turns, answer = reference when given."""
    if root is None:
        df = hub_frame("HuggingFaceH4/mt_bench_prompts", split="train").rename({"prompt": "turns", "prompt_id": "question_id"})
    else:
        df = _ndjson(local_files(root, ["question.jsonl", "*.jsonl"], "mt_bench")[0])
    answer = (
        pl.col("reference").cast(pl.List(pl.Utf8)).list.join("\n").replace("", None)
        if "reference" in df.columns
        else pl.lit(None, dtype=pl.Utf8)
    )
    return df.select(
        pl.format("mt_bench/{}", pl.col("question_id")).alias("instance_id"),
        pl.col("turns").cast(pl.List(pl.Utf8)).list.join("\n").alias("prompt"),
        answer.alias("answer"),
    )
