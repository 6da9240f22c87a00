"""``alpaca`` templates from a file: the prompts ``mixer stats`` reports on Alpaca and
Code-Alpaca grow by exactly what the file's templates add, counted with SentencePiece."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import sentencepiece as spm
from typer.testing import CliRunner

from helpers import write_spec
from mixer.cli import app
from mixer.pipeline import build
from mixer.spec import SpecError, load_spec

# The shape of a downloaded reference set: with-input and no-input lists of
# [prompt, output, weight] triples (or {prompt, weight} mappings), {placeholders}.
TEMPLATE_FILE = """\
with_input:
  - ["{instruction}\\n\\n{input}\\n\\n", "{output}", 0.4]
  - ["Below is a task and its input.\\n\\nTask: {instruction}\\nInput: {input}\\n\\nAnswer:", "{output}", 0.3]
  - {prompt: "{instruction}\\n\\nInput: {input}\\n\\nOutput:", weight: 0.3}
no_input:
  - ["{instruction}\\n\\n", "{output}", 0.4]
  - ["Here is a task for you.\\n\\nTask: {instruction}\\n\\nAnswer:", "{output}", 0.3]
  - {prompt: "Instruction: {instruction}\\n\\nResponse:", weight: 0.3}
"""
WITH = ["{instruction}\n\n{input}\n\n", "Below is a task and its input.\n\nTask: {instruction}\nInput: {input}\n\nAnswer:", "{instruction}\n\nInput: {input}\n\nOutput:"]
WITHOUT = ["{instruction}\n\n", "Here is a task for you.\n\nTask: {instruction}\n\nAnswer:", "Instruction: {instruction}\n\nResponse:"]

FILES = {"alpaca": "train/alpaca_1k/alpaca_data_1k.json", "code_alpaca": "train/codealpaca/data/code_alpaca_2k.json"}


def _spec(tmp: Path, data: Path, tokenizer: Path, fmt: dict, name: str) -> Path:
    sources = {s: {"load": {"path": str(data / f)}, "format": {"name": "alpaca", **fmt}} for s, f in FILES.items()}
    return write_spec(tmp, {"name": name, "seed": 7, "tokenizer": str(tokenizer), "sources": sources}, f"{name}.yaml")


def _stats(folder: Path) -> dict:
    r = CliRunner().invoke(app, ["stats", str(folder), "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output[r.output.index("{"):])["rows"]


def test_template_file_prompt_lengths(shared_data: Path, shared_tokenizers: Path, tmp_path: Path) -> None:
    model = shared_tokenizers / "llama2" / "tokenizer.model"
    sp = spm.SentencePieceProcessor(model_file=str(model))
    (tmp_path / "templates.yaml").write_text(TEMPLATE_FILE)
    plain = build(load_spec(_spec(tmp_path, shared_data, model, {"template": "plain"}, "plain")), tmp_path / "plain")
    templ = build(load_spec(_spec(tmp_path, shared_data, model, {"template": "random", "templates": "templates.yaml"}, "templ")), tmp_path / "templ")
    s_plain, s_templ = _stats(tmp_path / "plain"), _stats(tmp_path / "templ")

    rows = templ.mixture.select("id", "source", pl.col("meta").str.json_path_match("$.template").alias("t"), pl.col("messages").list.first().struct.field("content").alias("prompt"))
    used = set()
    for source, f in FILES.items():
        raw = json.loads((shared_data / f).read_text())
        mine = rows.filter(pl.col("source") == source)
        assert mine.height > 0.99 * len(raw)  # a few exact duplicates leave in both builds
        assert set(mine["id"]) == set(plain.mixture.filter(pl.col("source") == source)["id"])
        want, added = [], 0
        for rid, _, t, prompt in mine.iter_rows():
            r = raw[int(rid.split(":")[1])]
            ins, inp = r["instruction"].strip(), r["input"].strip()
            pattern = (WITH if t[0] == "w" else WITHOUT)[int(t[1:])]
            assert (t[0] == "w") == bool(inp)
            text = pattern.replace("{instruction}", ins).replace("{input}", inp)
            assert prompt == text
            want.append(text)
            plain_text = f"{r['instruction']}\n\n{r['input']}" if r["input"].strip() else r["instruction"]
            added += len(sp.encode(text)) - len(sp.encode(plain_text))
            used.add(t)
        # the reported prompt lengths are the SentencePiece counts of the rendered prompts ...
        assert s_templ[source]["user_tokens_sum"] == sum(len(x) for x in sp.encode(want))
        # ... and differ from the plain rendering by exactly what the templates add
        assert s_templ[source]["user_tokens_sum"] - s_plain[source]["user_tokens_sum"] == added > 0
        assert s_templ[source]["assistant_tokens_sum"] <= s_plain[source]["assistant_tokens_sum"]  # answers only stripped
    assert used == {f"w{k}" for k in range(3)} | {f"n{k}" for k in range(3)}


def test_template_file_errors_name_the_file(tmp_path: Path, shared_data: Path, shared_tokenizers: Path) -> None:
    model = shared_tokenizers / "llama2" / "tokenizer.model"
    bad = tmp_path / "templates.yaml"
    bad.write_text("with_input:\n  - ['{instruction} only', 1]\nno_input:\n  - ['{instruction}', 1]\n")
    spec = load_spec(_spec(tmp_path, shared_data, model, {"template": "random", "templates": "templates.yaml"}, "bad"))
    with pytest.raises(Exception, match=r"templates\.yaml: with_input template '\{instruction\} only' lacks \{input\}"):
        build(spec, tmp_path / "out")
    with pytest.raises(SpecError, match="templates"):
        load_spec(_spec(tmp_path, shared_data, model, {"template": "plain", "templates": "templates.yaml"}, "bad2"))
