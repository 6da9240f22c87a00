"""Length statistics of a mixture, per source and total, in a chosen tokenizer's tokens.

``compute_stats(frame, tokenizer)`` works on any records frame; ``stats_for_build`` adds
the (build, tokenizer) cache and reuses ``stats.json`` when the build already has it;
``write_build_stats`` is the pipeline's hook that puts ``stats.json`` into a build.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl

from mixer.output import mixture_files
from mixer.progress import NullReporter
from mixer.records import kind_of
from mixer.stats import cache
from mixer.stats.count import WHITESPACE, Progress, TokenCounter, tokenizer_key
from mixer.stats.lengths import empty_lengths, record_lengths
from mixer.stats.model import Stats
from mixer.stats.summary import THRESHOLDS, TOTAL, summarize, turn_distribution

STATS_FILE = "stats.json"


def stats_from_lengths(lengths: pl.DataFrame, counter: TokenCounter, kind: str, order: list[str] | None = None,
                       thresholds: tuple[int, ...] = THRESHOLDS) -> Stats:
    return Stats.from_frame(
        summarize(lengths, order, thresholds), turn_distribution(lengths), kind=kind, tokenizer=counter.name,
        tokenizer_key=counter.key, unit=counter.unit, thresholds=list(thresholds),
    )


def compute_stats(frame: pl.DataFrame, tokenizer: str | None = None, order: list[str] | None = None,
                  thresholds: tuple[int, ...] = THRESHOLDS, progress: Progress | None = None) -> tuple[Stats, pl.DataFrame]:
    """Statistics of ``frame`` and the per-record lengths they were computed from."""
    counter = TokenCounter(tokenizer or WHITESPACE)
    lengths = record_lengths(frame, counter, progress)
    return stats_from_lengths(lengths, counter, kind_of(frame), order, thresholds), lengths


def resolve_for_build(build: Any, tokenizer: str | None) -> str:
    """The tokenizer to count a build with: the one asked for, else the spec's, else words.
    A relative spec tokenizer path is tried against the working folder, then the spec's."""
    name = tokenizer or build.manifest.get("tokenizer") or WHITESPACE
    if tokenizer is None and name != WHITESPACE and not Path(name).expanduser().exists():
        spec_path = build.manifest.get("spec_path")
        if spec_path and (Path(spec_path).parent / name).exists():
            return str(Path(spec_path).parent / name)
    return name


def build_lengths(build: Any, tokenizer: str | None = None, progress: Progress | None = None) -> tuple[pl.DataFrame, TokenCounter]:
    """Per-record lengths of a finished build (a ``BuildDir``), from the cache when possible."""
    counter = TokenCounter(resolve_for_build(build, tokenizer))
    files = build.manifest.get("files", {})
    shas = [files.get(p.name, {}).get("sha256", "unknown") for p in mixture_files(build.path, build.manifest)]
    sha = shas[0] if len(shas) == 1 else "sha256:" + hashlib.sha256("".join(shas).encode()).hexdigest()
    paths = cache.candidates(build.path, sha, counter.key)
    lengths = cache.read(paths, build.manifest.get("records", -1))
    if lengths is None:
        lengths = record_lengths(build.frame, counter, progress)
        cache.write(lengths, paths)
    return lengths, counter


def stats_for_build(build: Any, tokenizer: str | None = None, thresholds: tuple[int, ...] = THRESHOLDS,
                    progress: Progress | None = None) -> Stats:
    """Statistics of a build; ``stats.json`` is reused when it used the same tokenizer."""
    name = resolve_for_build(build, tokenizer)
    saved = build.path / STATS_FILE
    if saved.exists():
        s = Stats.load(saved)
        if s.tokenizer_key == tokenizer_key(name) and tuple(s.thresholds) == tuple(thresholds):
            return s
    lengths, counter = build_lengths(build, tokenizer, progress)
    return stats_from_lengths(lengths, counter, build.kind, build.sources, thresholds)


def write_build_stats(batches: Iterable[pl.DataFrame], rows: int, kind: str, folder: Path, tokenizer: str,
                      sources_info: dict[str, Any], reporter: Any = None) -> list[str]:
    """Pipeline hook: ``stats.json`` into the build being written, token totals into the
    manifest's sources, and the lengths into the build's cache. The mixture comes batch by
    batch (``rows`` in all); only its per-record lengths are held. Returns the files to list."""
    counter = TokenCounter(tokenizer)
    rep = reporter or NullReporter()
    rep.begin("stats", 1)
    rep.stage("stats", f"counting {counter.unit}")
    update = getattr(rep, "update", None)
    parts, done = [], 0
    for batch in batches:
        parts.append(record_lengths(batch, counter))
        done += batch.height
        if update:
            update("stats", done, rows)
    lengths = pl.concat(parts) if parts else empty_lengths(kind)
    stats = stats_from_lengths(lengths, counter, kind, list(sources_info))
    stats.save(folder / STATS_FILE)
    for name, tokens in stats.tokens_per_source().items():
        if name in sources_info:
            sources_info[name]["tokens"] = tokens
    for row in stats.frame().iter_rows(named=True):  # the length table, for the dataset card
        if row["source"] in sources_info:
            sources_info[row["source"]]["lengths"] = {k: v for k, v in row.items() if k != "source"}
    for info in sources_info.values():
        info.setdefault("tokens", {"total": 0, "user": 0, "assistant": 0, "system": 0})
    cache.write(lengths, [folder / cache.IN_BUILD / f"{counter.key}.parquet"])
    rep.finish("stats", f"{stats.total['tokens_sum'] or 0:,} {counter.unit}")
    return [STATS_FILE]


__all__ = ["Stats", "TokenCounter", "compute_stats", "stats_for_build", "build_lengths", "record_lengths",
           "write_build_stats", "THRESHOLDS", "TOTAL", "STATS_FILE", "WHITESPACE"]
