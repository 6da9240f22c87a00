"""``alpaca``: instruction / input / output triples to one user and one assistant turn.

``template: plain`` (default) renders ``instruction`` alone, or ``instruction + "\\n\\n" +
input`` when the input is non-empty. ``template: random`` renders each record with one
instruction template drawn by weight from the source's own seeded stream: a with-input set
for records with an input, a no-input set otherwise (as the Tulu recipe does for
GPT4-Alpaca and Code-Alpaca). The sets below are this project's own, shorter than the
reference's; ``with_input`` / ``no_input`` replace them inline, and ``templates: FILE``
(YAML or JSON, relative to the spec) loads both lists from a file, so a downloaded reference
set can be used as it is. A file entry is ``{text, weight}`` (``prompt`` for ``text`` is
accepted), optionally with an ``output`` pattern (``{output}`` placeholder, default the
answer alone), or a list ``[prompt, weight]`` / ``[prompt, output, weight]``, the shape
open-instruct's template tables use. Fields are stripped in template mode, and the template
used is recorded as ``meta.template`` (``w3``: with-input template 3, ``n0``: no-input
template 0). Field names are configurable (GPTeacher uses ``response``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mixer.formats.base import FormatConfig, FormatContext, register_format, require_columns
from mixer.formats.common import text
from mixer.formats.messages import records_from
from mixer.records import empty_removed
from mixer.steps.base import StepResult


class Template(BaseModel):
    """A prompt pattern with ``{instruction}`` (and ``{input}``) placeholders, and its weight."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    text: str
    weight: float = Field(1.0, gt=0)
    output: str = "{output}"


def _t(text: str, weight: float) -> Template:
    return Template(text=text, weight=weight)


WITH_INPUT = [
    _t("{instruction}\n\n{input}", 0.30),
    _t("{instruction}\n{input}", 0.15),
    _t("{instruction}\n\nInput:\n{input}", 0.10),
    _t("### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:", 0.10),
    _t("Instruction: {instruction}\nInput: {input}\nResponse:", 0.05),
    _t("{instruction}\n\nContext:\n{input}\n\nAnswer:", 0.05),
    _t("Task: {instruction}\n\n{input}", 0.05),
    _t("Here is a task: {instruction}\nUse this input: {input}", 0.05),
    _t("{input}\n\n{instruction}", 0.05),
    _t("Complete the task below.\n\nTask: {instruction}\nInput: {input}", 0.05),
    _t("Read the input, then follow the instruction.\n\nInput: {input}\nInstruction: {instruction}", 0.05),
]
NO_INPUT = [
    _t("{instruction}", 0.35),
    _t("Instruction: {instruction}", 0.10),
    _t("Task: {instruction}", 0.10),
    _t("Complete the following task.\n\n{instruction}", 0.10),
    _t("### Instruction:\n{instruction}\n\n### Response:", 0.10),
    _t("{instruction}\n\nAnswer:", 0.05),
    _t("{instruction}\nResponse:", 0.05),
    _t("Please help with the following request.\n\n{instruction}", 0.05),
    _t("Respond to this instruction:\n{instruction}", 0.05),
    _t("Here is a request: {instruction}", 0.05),
]


class AlpacaConfig(FormatConfig):
    instruction: str = "instruction"
    input: str | None = "input"
    output: str = "output"
    template: Literal["plain", "random"] = "plain"
    with_input: list[Template] | None = None
    no_input: list[Template] | None = None
    templates: str | None = None  # a YAML/JSON file with both lists (relative to the spec)

    @model_validator(mode="after")
    def _check_templates(self) -> AlpacaConfig:
        if (self.with_input or self.no_input or self.templates) and self.template != "random":
            raise ValueError("'with_input'/'no_input'/'templates' need template: random")
        if self.templates and (self.with_input or self.no_input):
            raise ValueError("give the templates either inline ('with_input'/'no_input') or as a file ('templates'), not both")
        for name in ("with_input", "no_input"):
            check_templates(getattr(self, name), name)
        return self


def check_templates(templates: list[Template] | None, name: str, where: str = "") -> None:
    needs = ("{instruction}", "{input}") if name == "with_input" else ("{instruction}",)
    if templates == []:
        raise ValueError(f"{where}'{name}' needs at least one template")
    for t in templates or []:
        missing = [p for p in needs if p not in t.text]
        if missing:
            raise ValueError(f"{where}{name} template {t.text!r} lacks {', '.join(missing)}")
        if "{output}" in t.text:
            raise ValueError(f"{where}{name} template {t.text!r}: the prompt cannot use {{output}}")
        if "{output}" not in t.output:
            raise ValueError(f"{where}{name} output pattern {t.output!r} lacks {{output}}")


def _entry(e: Any) -> Template:
    if isinstance(e, list | tuple):
        if len(e) == 2:
            return Template(text=e[0], weight=e[1])
        if len(e) == 3:
            return Template(text=e[0], output=e[1], weight=e[2])
        raise ValueError(f"a template list entry is [prompt, weight] or [prompt, output, weight], got {len(e)} items")
    if isinstance(e, dict) and "prompt" in e and "text" not in e:
        e = {("text" if k == "prompt" else k): v for k, v in e.items()}
    return Template.model_validate(e)


def load_template_file(path: Path) -> tuple[list[Template], list[Template]]:
    """``with_input`` and ``no_input`` lists from a YAML or JSON file; errors name the file."""
    import yaml

    where = f"{path}: "
    if not path.is_file():
        raise FileNotFoundError(f"alpaca template file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        if not isinstance(data, dict) or not {"with_input", "no_input"} <= set(data):
            raise ValueError("needs the keys 'with_input' and 'no_input'")
        unknown = set(data) - {"with_input", "no_input"}
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        lists = {k: [_entry(e) for e in data[k] or []] for k in ("with_input", "no_input")}
    except (ValueError, TypeError, yaml.YAMLError) as e:
        raise ValueError(where + " ".join(str(e).split())) from None
    for k, v in lists.items():
        check_templates(v, k, where)
    return lists["with_input"], lists["no_input"]


def template_sets(cfg: AlpacaConfig, ctx: FormatContext) -> tuple[list[Template], list[Template]]:
    if cfg.templates:
        p = Path(cfg.templates).expanduser()
        if not p.is_absolute() and ctx.spec_dir is not None:
            p = ctx.spec_dir / p
        return load_template_file(p)
    return cfg.with_input or WITH_INPUT, cfg.no_input or NO_INPUT


def _text(col: str) -> pl.Expr:
    return text(col)


def plain_prompt(instruction: pl.Expr, inp: pl.Expr) -> pl.Expr:
    has_input = inp.str.strip_chars() != ""
    return pl.when(has_input).then(pl.concat_str([instruction, pl.lit("\n\n"), inp])).otherwise(instruction)


def two_turns(prompt: pl.Expr, answer: pl.Expr) -> pl.Expr:
    """[{user: prompt}, {assistant: answer}] as a messages expression."""
    return pl.concat_list(
        pl.struct(pl.lit("user").alias("role"), prompt.alias("content")),
        pl.struct(pl.lit("assistant").alias("role"), answer.alias("content")),
    )


def render(template: str, fields: dict[str, pl.Expr]) -> pl.Expr:
    """A template string as a concat of literals and field expressions (no str.format, so
    other braces in the template stay literal)."""
    parts = re.split(r"(\{instruction\}|\{input\}|\{output\})", template)
    exprs = [fields[p[1:-1]] if p in ("{instruction}", "{input}", "{output}") else pl.lit(p) for p in parts if p]
    return pl.concat_str(exprs)


def draw(rng: np.random.Generator, templates: list[Template], n: int) -> np.ndarray:
    w = np.array([t.weight for t in templates], dtype=float)
    return rng.choice(len(templates), size=n, p=w / w.sum())


def templated_prompt(n: int, cfg: AlpacaConfig, ctx: FormatContext, fields: dict[str, pl.Expr]) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """Prompt, answer and ``meta`` expressions; both draws cover every row, so a row's
    template does not depend on which other rows have an input."""
    with_input, no_input = template_sets(cfg, ctx)
    rng = ctx.rng("alpaca_template")
    iw, io = pl.Series(draw(rng, with_input, n)), pl.Series(draw(rng, no_input, n))
    has = fields["input"] != ""
    picks = [(has & (pl.lit(iw) == k), t) for k, t in enumerate(with_input)] + [(~has & (pl.lit(io) == k), t) for k, t in enumerate(no_input)]
    # An empty instruction stays empty, so validation removes the record as it would in plain mode.
    prompt = pl.when(fields["instruction"] == "").then(pl.lit(""))
    for cond, t in picks:
        prompt = prompt.when(cond).then(render(t.text, fields))
    answer = fields["output"]
    if any(t.output != "{output}" for _, t in picks):
        answer = pl.when(picks[0][0]).then(render(picks[0][1].output, fields))
        for cond, t in picks[1:]:
            answer = answer.when(cond).then(render(t.output, fields))
        answer = answer.otherwise(fields["output"])
    meta = pl.struct(pl.when(has).then(pl.format("w{}", pl.lit(iw))).otherwise(pl.format("n{}", pl.lit(io))).alias("template")).struct.json_encode()
    return prompt.otherwise(pl.lit(None, dtype=pl.Utf8)), answer, meta


@register_format("alpaca", AlpacaConfig)
def alpaca(raw: pl.DataFrame, cfg: AlpacaConfig, ctx: FormatContext) -> StepResult:
    require_columns(raw, [cfg.instruction, cfg.output], "alpaca")
    inp = _text(cfg.input) if cfg.input and cfg.input in raw.columns else pl.lit("")
    if cfg.template == "plain":
        prompt = plain_prompt(_text(cfg.instruction), inp)
        return StepResult(records_from(raw, ctx, two_turns(prompt, _text(cfg.output))), empty_removed())
    fields = {"instruction": _text(cfg.instruction).str.strip_chars(), "input": inp.str.strip_chars(), "output": _text(cfg.output).str.strip_chars()}
    prompt, answer, meta = templated_prompt(raw.height, cfg, ctx, fields)
    return StepResult(records_from(raw, ctx, two_turns(prompt, answer), meta), empty_removed())
