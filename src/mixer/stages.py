"""What the engines run for a source before its steps, and the checks around every step.

Kept apart from ``mixer.pipeline`` (which orders the stages and keeps the ledger) so that
the engines can import it without importing the pipeline back.
"""

from __future__ import annotations

import polars as pl

from mixer.formats.base import FormatContext, get_format
from mixer.io import Loaded, files_of
from mixer.records import conform, empty_records, empty_removed
from mixer.spec import SourceSpec, Spec, StepSpec
from mixer.steps.base import Step, StepResult, get_step


class LedgerError(RuntimeError):
    """A stage lost or invented rows: rows in != kept + removed."""


def load_source(src: SourceSpec, spec: Spec) -> Loaded:
    """Local files, hub data files one by one, or their local mirror (see mixer.sources)."""
    from mixer.sources import load_raw

    return load_raw(src, spec)


def format_source(raw: pl.DataFrame, src: SourceSpec, spec: Spec) -> StepResult:
    """Run the source's format and check that every raw row is emitted or removed."""
    fmt = get_format(src.format.name)
    if raw.height == 0:
        return StepResult(empty_records(fmt.kind), empty_removed())
    ctx = FormatContext(src.name, spec.seed, spec.tokenizer, spec.root)
    try:
        res = fmt.fn(raw, src.format.config, ctx)
    except (ValueError, KeyError, pl.exceptions.PolarsError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise ValueError(f"{files_of(raw)}: source {src.name!r}, format {src.format.name!r}: {msg}") from None
    res.kept = conform(res.kept) if res.kept.height else empty_records(fmt.kind)
    if ctx.info:
        res.info = {**ctx.info, **res.info}
    ids = pl.concat([res.kept.select("id"), res.removed.select("id")])["id"]
    if getattr(src.format.config, "ids", "row") == "file":  # ids name files, not rows: one out per row in
        if ids.len() != raw.height or not ids.is_unique().all():
            raise LedgerError(f"source {src.name!r}: format {src.format.name!r} gave {ids.len()} records for {raw.height} raw rows")
        return res
    covered = ids.str.extract(r"^[^:]+:(\d+)", 1).cast(pl.Int64, strict=False)
    missing = raw.filter(~pl.col("_row").is_in(covered.drop_nulls().implode()))
    if missing.height:
        raise LedgerError(f"source {src.name!r}: format {src.format.name!r} neither emitted nor removed raw rows {missing['_origin'].head(3).to_list()}")
    return res


def make_step(step: StepSpec) -> Step:
    """The step object a spec entry names (its config already parsed)."""
    return get_step(step.name)(step.config)


def check_removed_ids(before: pl.DataFrame, removed: pl.DataFrame, where: str) -> None:
    if removed.height and not removed["id"].is_in(before["id"].implode()).all():
        bad = removed.filter(~pl.col("id").is_in(before["id"].implode()))["id"].head(3).to_list()
        raise LedgerError(f"{where}: removed ids that were not in its input: {bad}")
