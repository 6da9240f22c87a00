"""``flan``: FLAN-collection records (``inputs``/``targets``) to one user and one assistant turn.

The Tulu recipe's newline rule: a newline is appended to the prompt unless it already ends
in a newline or, ignoring trailing whitespace, in ``:``. Files that say ``prompt``/
``completion`` (the P3/T0 exports) are read by naming those fields.

Each record's submix (``flan_fsopt``, ``t0_fsnoopt``, ...) goes to ``meta.submix`` so that
``sample: {by: submix, n: {...}}`` draws exact counts per submix. It comes from a column
(``submix_from: column``) or from the file the row was read from (``submix_from:
filename``: the first group of ``submix_pattern`` matched against the path in ``_origin``).

Ids are ``{source}:{row}`` by default (the row across all the source's files). ``ids: file``
names the file instead, ``{source}:{submix}/{file name}#{index}`` (``:{line}`` for JSON
lines), so that a shard added to one submix changes no other record's id, and so no other
submix's draw (the sample's rank is a hash of the id). From the hub, the "file" is the
``data_files`` pattern, so hub and mirror builds draw differently with ``ids: file``.
"""

from __future__ import annotations

import re
from typing import Literal

import polars as pl
from pydantic import field_validator

from mixer.formats.alpaca import two_turns
from mixer.formats.base import FormatConfig, FormatContext, register_format, require_columns
from mixer.formats.common import meta_json, origin_path, text
from mixer.formats.messages import records_from
from mixer.records import empty_removed
from mixer.steps.base import StepResult

FILE_STEM = r"([^/\\]+?)(?:\.[A-Za-z0-9]+)*$"  # file name without its extensions


class FlanConfig(FormatConfig):
    inputs: str = "inputs"
    targets: str = "targets"
    newline_rule: bool = True
    submix_from: Literal["column", "filename"] | None = None
    submix_column: str = "submix"
    submix_pattern: str = FILE_STEM
    ids: Literal["row", "file"] = "row"

    @field_validator("submix_pattern")
    @classmethod
    def _one_group(cls, v: str) -> str:
        try:
            groups = re.compile(v).groups
        except re.error as e:
            raise ValueError(f"submix_pattern is not a valid regular expression: {e}") from None
        if groups < 1:
            raise ValueError("submix_pattern needs a capture group, e.g. '([^/]+)_data/'")
        return v


def flan_prompt(prompt: pl.Expr) -> pl.Expr:
    """The reference rule: add "\\n" unless the prompt ends in "\\n" or (rstripped) ":"."""
    done = prompt.str.ends_with("\n") | prompt.str.strip_chars_end().str.ends_with(":")
    return pl.when(done).then(prompt).otherwise(pl.concat_str([prompt, pl.lit("\n")]))


def submix_expr(raw: pl.DataFrame, cfg: FlanConfig) -> pl.Expr | None:
    if cfg.submix_from == "column":
        require_columns(raw, [cfg.submix_column], "flan")
        return pl.col(cfg.submix_column).cast(pl.Utf8)
    if cfg.submix_from == "filename":
        return origin_path().str.extract(cfg.submix_pattern, 1)
    return None


@register_format("flan", FlanConfig)
def flan(raw: pl.DataFrame, cfg: FlanConfig, ctx: FormatContext) -> StepResult:
    require_columns(raw, [cfg.inputs, cfg.targets], "flan")
    prompt = text(cfg.inputs)
    if cfg.newline_rule:
        prompt = flan_prompt(prompt)
    sub = submix_expr(raw, cfg)
    meta = None
    if sub is not None:
        subs = raw.select(sub.alias("s"))["s"]
        if subs.null_count() and cfg.submix_from == "filename":
            bad = raw.filter(subs.is_null())["_origin"].head(3).to_list()
            raise ValueError(f"submix_pattern {cfg.submix_pattern!r} does not match the file of rows {bad}")
        meta = meta_json(submix=sub)
        ctx.info["submixes"] = dict(sorted(subs.value_counts().iter_rows()))
    out = records_from(raw, ctx, two_turns(prompt, text(cfg.targets)), meta)
    if cfg.ids == "file":
        name = pl.col("_origin").str.extract(r"([^/\\]+)$", 1)
        parts = [pl.lit(f"{ctx.source}:"), *([sub, pl.lit("/")] if sub is not None else []), name]
        out = out.with_columns(raw.select(pl.concat_str(parts).alias("id")).to_series())
    return StepResult(out, empty_removed())
