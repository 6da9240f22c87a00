"""Eval-set registry: each benchmark becomes a frame of test instances.

A loader is a function ``(root: Path | None, split: str) -> pl.DataFrame`` with columns
``instance_id, prompt, answer`` (and optional extras); ``root`` is a local folder holding
the benchmark's files, or ``None`` for the Hugging Face hub. ``load`` adds ``benchmark``
and checks the result, so every loader stays a few lines of format knowledge.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

EVAL_SCHEMA: dict[str, pl.DataType] = {
    "benchmark": pl.Utf8,
    "instance_id": pl.Utf8,
    "prompt": pl.Utf8,
    "answer": pl.Utf8,
}

LoaderFn = Callable[[Path | None, str], pl.DataFrame]


@dataclass(frozen=True)
class EvalSetInfo:
    name: str
    fn: LoaderFn
    splits: tuple[str, ...]
    default_split: str
    hub: str  # where the hub path reads from, for messages and docs
    doc: str


EVALSETS: dict[str, EvalSetInfo] = {}


def register_evalset(name: str, splits: Sequence[str], hub: str, default_split: str | None = None):
    """Register a loader under the name used in YAML and on the command line."""

    def deco(fn: LoaderFn) -> LoaderFn:
        if name in EVALSETS:
            raise ValueError(f"eval set {name!r} registered twice")
        EVALSETS[name] = EvalSetInfo(
            name, fn, tuple(splits), default_split or splits[0], hub, (fn.__doc__ or "").strip()
        )
        return fn

    return deco


class EvalSetError(ValueError):
    """An eval set that cannot be loaded: names the set, split and path."""


def finish(frame: pl.DataFrame, benchmark: str) -> pl.DataFrame:
    """Canonical column order and types; ids must be unique and prompts present."""
    missing = [c for c in ("instance_id", "prompt") if c not in frame.columns]
    if missing:
        raise EvalSetError(f"eval set {benchmark!r}: loader returned no {missing} column")
    if "answer" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias("answer"))
    out = frame.select(
        pl.lit(benchmark, dtype=pl.Utf8).alias("benchmark"),
        pl.col("instance_id").cast(pl.Utf8),
        pl.col("prompt").cast(pl.Utf8).fill_null(""),
        pl.col("answer").cast(pl.Utf8),
    )
    dup = out.filter(pl.col("instance_id").is_duplicated())
    if dup.height:
        raise EvalSetError(
            f"eval set {benchmark!r}: duplicate instance ids, e.g. {dup['instance_id'][0]!r}"
        )
    return out


# ------------------------------------------------------------------ local file helpers


def local_files(root: Path, patterns: Sequence[str], what: str) -> list[Path]:
    """Files under ``root`` matching the first pattern that matches anything (sorted)."""
    for pat in patterns:
        hits = sorted(Path(p) for p in glob.glob(str(root / pat), recursive=True))
        hits = [p for p in hits if p.is_file()]
        if hits:
            return hits
    raise EvalSetError(
        f"{what}: no file under {root} matches any of {list(patterns)}"
    )


def hub_frame(path: str, name: str | None = None, split: str = "test", **kw) -> pl.DataFrame:
    """One hub split as a polars frame (``datasets`` caches and pins revisions)."""
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a hard dependency
        raise EvalSetError("loading eval sets from the hub needs the `datasets` package") from e
    try:
        ds = datasets.load_dataset(path, name, split=split, **kw)
    except Exception as e:
        raise EvalSetError(
            f"cannot load {path}{'/' + name if name else ''} split {split!r} from the hub "
            f"({e.__class__.__name__}: {str(e)[:200]}); download the files and pass a local "
            f"eval_dir instead"
        ) from None
    return pl.from_arrow(ds.data.table)  # type: ignore[return-value]


def resolve_root(name: str, data_dir: str | Path | None) -> Path | None:
    """``data_dir/name`` when it exists, else ``data_dir`` itself (a folder for one set)."""
    if data_dir is None:
        return None
    d = Path(data_dir).expanduser()
    if not d.is_dir():
        raise EvalSetError(f"eval set {name!r}: eval_dir {d} is not a folder")
    return d / name if (d / name).is_dir() else d
