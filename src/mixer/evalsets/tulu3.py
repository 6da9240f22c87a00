"""Loaders for the Tulu 3 development and unseen evaluations that have public test sets.

Development (besides the Tulu 2 sets): PopQA, DROP, HumanEval+, and the safety sets
HarmBench, XSTest, WildGuardTest and WildJailbreak's evaluation split. Unseen: MMLU-Pro,
GPQA, AGIEval English, DeepMind Mathematics, BigCodeBench (full and hard) and IFEval-OOD.
As in ``builtin``, ``prompt`` is what the model reads and ``answer`` the gold text; local
folders use each benchmark's published file layout (noted per loader), ``root=None`` the hub.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from mixer.evalsets.base import EvalSetError, hub_frame, local_files, register_evalset
from mixer.evalsets.builtin import _ndjson, _row_ids

LETTERS = "ABCDEFGHIJKLMNOP"


def _table(path: Path) -> pl.DataFrame:
    """A local file in whichever tabular layout the release used."""
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return _ndjson(path)
    if name.endswith(".parquet"):
        return pl.read_parquet(path)
    if name.endswith(".tsv"):
        return pl.read_csv(path, separator="\t", infer_schema=False, quote_char=None)
    if name.endswith(".csv"):
        return pl.read_csv(path, infer_schema=False)
    if name.endswith(".json"):
        return pl.read_json(path)
    raise EvalSetError(f"{path}: unknown file type")


def _local(root: Path, patterns: list[str], what: str) -> pl.DataFrame:
    return pl.concat([_table(f) for f in local_files(root, patterns, what)], how="diagonal_relaxed")


def _choices(question: pl.Expr, options: pl.Expr) -> pl.Expr:
    """``question\\nA. ...\\nB. ...`` from a list column of options."""
    lettered = options.list.eval(pl.format("{}. {}", pl.lit(LETTERS).str.slice(pl.int_range(pl.len()), 1), pl.element()))
    return pl.concat_str([question, lettered.list.join("\n")], separator="\n")


# ------------------------------------------------------------------------------ PopQA


@register_evalset("popqa", splits=("test",), hub="akariasai/PopQA")
def popqa(root: Path | None, split: str) -> pl.DataFrame:
    """14,267 entity questions; answer = the accepted answers joined by `` | ``. Local:
    the release's ``popQA.tsv`` (or the hub's parquet/jsonl)."""
    df = hub_frame("akariasai/PopQA", split="test") if root is None else _local(root, ["popQA.tsv", "*.tsv", "*.parquet", "*.jsonl"], "popqa")
    answers = pl.col("possible_answers").cast(pl.Utf8).str.json_decode(pl.List(pl.Utf8)).list.join(" | ")
    return df.select(pl.format("popqa/{}", pl.col("id")).alias("instance_id"), pl.col("question").alias("prompt"), answers.alias("answer"))


# ------------------------------------------------------------------------------- DROP


@register_evalset("drop", splits=("dev",), hub="ucinlp/drop (validation)")
def drop(root: Path | None, split: str) -> pl.DataFrame:
    """9,536 passage questions; prompt = passage + question, answer = the gold spans or number.
    Local: the release's ``drop_dataset_dev.json`` (passages with ``qa_pairs``)."""
    if root is None:
        df = hub_frame("ucinlp/drop", split="validation")
        return df.select(
            pl.format("drop/{}", pl.col("query_id")).alias("instance_id"),
            pl.concat_str([pl.col("passage"), pl.col("question")], separator="\n\n").alias("prompt"),
            pl.col("answers_spans").struct.field("spans").list.join(" | ").alias("answer"),
        )
    rows = []
    for f in local_files(root, ["drop_dataset_dev.json", "*.json"], "drop"):
        for passage in json.loads(f.read_text(encoding="utf-8")).values():
            for qa in passage["qa_pairs"]:
                a = qa.get("answer") or {}
                date = " ".join(str(v) for v in (a.get("date") or {}).values() if v)
                gold = a.get("number") or " | ".join(a.get("spans") or []) or date
                rows.append({"instance_id": f"drop/{qa['query_id']}", "prompt": f"{passage['passage']}\n\n{qa['question']}", "answer": gold})
    return pl.DataFrame(rows, schema={"instance_id": pl.Utf8, "prompt": pl.Utf8, "answer": pl.Utf8})


# -------------------------------------------------------------------------- HumanEval+


@register_evalset("humanevalplus", splits=("test",), hub="evalplus/humanevalplus")
def humanevalplus(root: Path | None, split: str) -> pl.DataFrame:
    """HumanEval's 164 problems with EvalPlus's extra tests; ids ``HumanEvalPlus/7``. Local:
    ``HumanEvalPlus.jsonl(.gz)``."""
    df = hub_frame("evalplus/humanevalplus", split="test") if root is None else _local(root, ["HumanEvalPlus*.jsonl*", "*.jsonl*"], "humanevalplus")
    return df.select(pl.col("task_id").str.replace("^HumanEval/", "HumanEvalPlus/").alias("instance_id"), "prompt", pl.col("canonical_solution").alias("answer"))


# ---------------------------------------------------------------------- safety sets


@register_evalset("harmbench", splits=("test",), hub="walledai/HarmBench (standard)")
def harmbench(root: Path | None, split: str) -> pl.DataFrame:
    """Harmful behaviours (prompt = behaviour, plus its context when it has one); no answer.
    Local: the release's ``harmbench_behaviors_text_all.csv``."""
    if root is None:
        df = hub_frame("walledai/HarmBench", "standard", split="train")
        return df.select(_row_ids("harmbench").alias("instance_id"), "prompt")
    df = _local(root, ["harmbench_behaviors_text_*.csv", "*.csv"], "harmbench")
    context = pl.col("ContextString").fill_null("") if "ContextString" in df.columns else pl.lit("")
    prompt = pl.when(context.str.strip_chars() != "").then(pl.concat_str([context, pl.col("Behavior")], separator="\n\n")).otherwise(pl.col("Behavior"))
    return df.select(pl.format("harmbench/{}", pl.col("BehaviorID")).alias("instance_id"), prompt.alias("prompt"))


@register_evalset("xstest", splits=("test",), hub="walledai/XSTest")
def xstest(root: Path | None, split: str) -> pl.DataFrame:
    """450 prompts (250 safe ones that should be answered, 200 unsafe); answer = the label.
    Local: the release's ``xstest_prompts.csv``."""
    df = hub_frame("walledai/XSTest", split="test") if root is None else _local(root, ["xstest_prompts*.csv", "*.csv"], "xstest")
    ids = pl.format("xstest/{}", pl.col("id")) if "id" in df.columns else _row_ids("xstest")
    return df.select(ids.alias("instance_id"), "prompt", pl.col("label").alias("answer"))


@register_evalset("wildguardtest", splits=("test",), hub="allenai/wildguardmix (wildguardtest)")
def wildguardtest(root: Path | None, split: str) -> pl.DataFrame:
    """1,725 prompts (with responses for the response tasks); answer = the prompt-harm label.
    Local: ``test/wildguard_test.parquet``."""
    df = hub_frame("allenai/wildguardmix", "wildguardtest", split="test") if root is None else _local(root, ["test/wildguard_test.parquet", "*.parquet"], "wildguardtest")
    return df.select(_row_ids("wildguardtest").alias("instance_id"), "prompt", pl.col("prompt_harm_label").cast(pl.Utf8).alias("answer"))


@register_evalset("wildjailbreak_eval", splits=("test",), hub="allenai/wildjailbreak (eval)")
def wildjailbreak_eval(root: Path | None, split: str) -> pl.DataFrame:
    """2,210 adversarial prompts (harmful and benign); answer = the label. Local:
    ``eval/eval.tsv``."""
    df = hub_frame("allenai/wildjailbreak", "eval", split="train", delimiter="\t", keep_default_na=False) if root is None else _local(root, ["eval/eval.tsv", "*.tsv"], "wildjailbreak_eval")
    return df.select(_row_ids("wildjailbreak_eval").alias("instance_id"), pl.col("adversarial").alias("prompt"), pl.col("label").cast(pl.Utf8).alias("answer"))


# ------------------------------------------------------------------------- unseen: QA


@register_evalset("mmlu_pro", splits=("test",), hub="TIGER-Lab/MMLU-Pro")
def mmlu_pro(root: Path | None, split: str) -> pl.DataFrame:
    """12,032 ten-option questions; prompt = question + lettered options, answer = ``C. text``.
    Local: the hub's ``data/test-*.parquet``."""
    df = hub_frame("TIGER-Lab/MMLU-Pro", split="test") if root is None else _local(root, ["data/test-*.parquet", "test*.parquet", "*.jsonl"], "mmlu_pro")
    gold = pl.format("{}. {}", pl.col("answer"), pl.col("options").list.get(pl.col("answer_index").cast(pl.Int64)))
    return df.select(pl.format("mmlu_pro/{}", pl.col("question_id")).alias("instance_id"), _choices(pl.col("question"), pl.col("options")).alias("prompt"), gold.alias("answer"))


@register_evalset("gpqa", splits=("main", "diamond", "extended"), hub="Idavidrein/gpqa (gated)")
def gpqa(root: Path | None, split: str) -> pl.DataFrame:
    """Graduate-level science questions (448 main, 198 diamond); prompt = question, answer =
    the correct answer (the options are shuffled per evaluation run, so they stay out).
    Local: the release's ``dataset/gpqa_<split>.csv``."""
    if root is None:
        df = hub_frame("Idavidrein/gpqa", f"gpqa_{split}", split="train")
    else:
        df = _local(root, [f"dataset/gpqa_{split}.csv", f"gpqa_{split}.csv"], "gpqa")
    return df.select(pl.format("gpqa/{}/{}", pl.lit(split), pl.col("Record ID")).alias("instance_id"), pl.col("Question").alias("prompt"), pl.col("Correct Answer").alias("answer"))


AGIEVAL_ENGLISH = ("aqua-rat", "logiqa-en", "lsat-ar", "lsat-lr", "lsat-rc", "sat-en", "sat-en-without-passage", "sat-math")


@register_evalset("agieval_english", splits=("test",), hub="hails/agieval-<task> (English tasks)")
def agieval_english(root: Path | None, split: str) -> pl.DataFrame:
    """AGIEval's English multiple-choice tasks; prompt = passage + question + options, answer
    = the gold letter. Local: the release's ``data/v1/<task>.jsonl``."""
    frames = []
    for task in AGIEVAL_ENGLISH:
        if root is None:
            d = hub_frame(f"hails/agieval-{task}", split="test")
            frames.append(d.select(pl.lit(task).alias("task"), pl.col("query").alias("prompt"), pl.lit(LETTERS).str.slice(pl.col("gold").list.first(), 1).alias("answer")))
            continue
        files = [p for p in (root / "data" / "v1" / f"{task}.jsonl", root / f"{task}.jsonl") if p.is_file()]
        if not files:
            raise EvalSetError(f"agieval_english: no {task}.jsonl under {root} (data/v1/ or the folder itself)")
        d = _ndjson(files[0])
        passage = pl.col("passage").cast(pl.Utf8).fill_null("") if "passage" in d.columns else pl.lit("")
        options = pl.col("options").list.join("\n") if "options" in d.columns else pl.lit("")
        prompt = pl.concat_str([passage, pl.col("question"), options], separator="\n").str.strip_chars()
        answer = pl.coalesce(pl.col("label").cast(pl.Utf8), pl.col("answer").cast(pl.Utf8)) if "answer" in d.columns else pl.col("label").cast(pl.Utf8)
        frames.append(d.select(pl.lit(task).alias("task"), prompt.alias("prompt"), answer.alias("answer")))
    df = pl.concat(frames).with_columns(pl.int_range(pl.len()).over("task").alias("row"))
    return df.select(pl.format("agieval/{}/{}", "task", "row").alias("instance_id"), "prompt", "answer")


# ---------------------------------------------------------------------- unseen: maths


DM_MODULES = (
    "algebra__linear_1d", "algebra__linear_1d_composed", "algebra__linear_2d", "algebra__linear_2d_composed",
    "algebra__polynomial_roots", "algebra__polynomial_roots_composed", "algebra__sequence_next_term",
    "algebra__sequence_nth_term", "arithmetic__add_or_sub", "arithmetic__add_or_sub_in_base",
    "arithmetic__add_sub_multiple", "arithmetic__div", "arithmetic__mixed", "arithmetic__mul",
    "arithmetic__mul_div_multiple", "arithmetic__nearest_integer_root", "arithmetic__simplify_surd",
    "calculus__differentiate", "calculus__differentiate_composed", "comparison__closest",
    "comparison__closest_composed", "comparison__kth_biggest", "comparison__kth_biggest_composed",
    "comparison__pair", "comparison__pair_composed", "comparison__sort", "comparison__sort_composed",
    "measurement__conversion", "measurement__time", "numbers__base_conversion", "numbers__div_remainder",
    "numbers__div_remainder_composed", "numbers__gcd", "numbers__gcd_composed", "numbers__is_factor",
    "numbers__is_factor_composed", "numbers__is_prime", "numbers__is_prime_composed", "numbers__lcm",
    "numbers__lcm_composed", "numbers__list_prime_factors", "numbers__list_prime_factors_composed",
    "numbers__place_value", "numbers__place_value_composed", "numbers__round_number",
    "numbers__round_number_composed", "polynomials__add", "polynomials__coefficient_named",
    "polynomials__collect", "polynomials__compose", "polynomials__evaluate", "polynomials__evaluate_composed",
    "polynomials__expand", "polynomials__simplify_power", "probability__swr_p_level_set",
    "probability__swr_p_sequence",
)


@register_evalset("deepmind_math", splits=("interpolate", "extrapolate"), hub="deepmind/math_dataset (one config per module)")
def deepmind_math(root: Path | None, split: str) -> pl.DataFrame:
    """DeepMind Mathematics test questions per module; answer = the gold answer. Local: the
    release's ``<split>/<module>.txt`` (question and answer on alternate lines)."""
    frames = []
    if root is None:
        for module in DM_MODULES:
            d = hub_frame("deepmind/math_dataset", module, split="test")
            frames.append(d.select(pl.lit(module).alias("module"), pl.col("question").str.strip_chars().alias("prompt"), pl.col("answer").str.strip_chars().alias("answer")))
    else:
        for f in local_files(root, [f"{split}/*.txt", "*.txt"], "deepmind_math"):
            lines = f.read_text(encoding="utf-8").splitlines()
            if len(lines) % 2:
                raise EvalSetError(f"deepmind_math: {f} has an odd number of lines (question/answer pairs expected)")
            frames.append(pl.DataFrame({"module": f.stem, "prompt": lines[0::2], "answer": lines[1::2]}))
    df = pl.concat(frames).with_columns(pl.int_range(pl.len()).over("module").alias("row"))
    return df.select(pl.format("deepmind_math/{}/{}/{}", pl.lit(split), "module", "row").alias("instance_id"), "prompt", "answer")


# ----------------------------------------------------------------------- unseen: code


@register_evalset("bigcodebench", splits=("full", "hard"), hub="bigcode/bigcodebench, bigcode/bigcodebench-hard")
def bigcodebench(root: Path | None, split: str) -> pl.DataFrame:
    """1,140 tasks (148 hard); prompt = the natural-language instruction, answer = the
    canonical solution. Local: the release's ``BigCodeBench*.jsonl(.gz)``."""
    if root is None:
        df = hub_frame("bigcode/bigcodebench" + ("-hard" if split == "hard" else ""), split="v0.1.2")
    else:
        pattern = "BigCodeBench-Hard*.jsonl*" if split == "hard" else "BigCodeBench.jsonl*"
        df = _local(root, [pattern, f"{split}/*.jsonl*"], "bigcodebench")
    return df.select(pl.col("task_id").alias("instance_id"), pl.col("instruct_prompt").alias("prompt"), pl.col("canonical_solution").alias("answer"))


@register_evalset("ifeval_ood", splits=("test",), hub="allenai/IFBench_test")
def ifeval_ood(root: Path | None, split: str) -> pl.DataFrame:
    """Out-of-distribution verifiable instructions (IFBench's test prompts); no gold answer.
    Local: ``IFBench_test.jsonl`` in IFEval's layout (key, prompt, instruction_id_list)."""
    df = hub_frame("allenai/IFBench_test", split="train") if root is None else _local(root, ["IFBench_test.jsonl", "*.jsonl"], "ifeval_ood")
    return df.select(pl.format("ifeval_ood/{}", pl.col("key")).alias("instance_id"), "prompt")
