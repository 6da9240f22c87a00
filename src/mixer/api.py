"""The notebook API: ``m = mixer.open("build/v2")`` and ``mixer.build("mixtures/x.yaml")``.

``Mixture`` wraps a finished build (``BuildDir``) with the questions people ask in a
notebook: what is in it, how long, what was removed and why, what changed; it renders
itself as an HTML summary in Jupyter.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl

from mixer.build_dir import BuildDir
from mixer.progress import NotebookReporter, NullReporter, auto_reporter, in_notebook
from mixer.stats.summary import THRESHOLDS

ROLE_COLORS = {"system": "#7b5ea7", "user": "#2f6f9f", "assistant": "#3d8b5a"}


@contextmanager
def counting_progress(show: bool = True) -> Iterator[Any]:
    """A ``(done, total)`` callback: a bar in Jupyter or the terminal, nothing if not ``show``."""
    if not show:
        yield None
    elif in_notebook():
        rep = NotebookReporter()
        with rep:
            rep.begin("stats", 1)
            rep.stage("stats", "counting tokens")
            yield lambda done, total: rep.update("stats", done, total)
            rep.finish("stats", "counted")
    else:
        from mixer.stats.progress import rich_progress

        with rich_progress() as cb:
            yield cb


class Mixture:
    """A finished build: ``.frame``, ``.sources``, ``.stats()``, ``.sample()``, ``.removed()``,
    ``.why()``, ``.plot_lengths()``, ``.compare()``, ``.report()``."""

    def __init__(self, path: str | Path | BuildDir, progress: bool = True):
        self.build_dir = path if isinstance(path, BuildDir) else BuildDir(path)
        self.progress = progress

    # ------------------------------------------------------------------ what is in it
    @property
    def path(self) -> Path:
        return self.build_dir.path

    @property
    def manifest(self) -> dict[str, Any]:
        return self.build_dir.manifest

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.path.name))

    @property
    def frame(self) -> pl.DataFrame:
        return self.build_dir.frame

    @property
    def sources(self) -> list[str]:
        return self.build_dir.sources

    def __len__(self) -> int:
        return int(self.manifest.get("records", 0))

    def with_meta(self) -> pl.DataFrame:
        """The records with ``meta`` decoded from its JSON text into a struct column."""
        from mixer.meta import decode

        return decode(self.frame)

    def removed(self, reason: str | list[str] | None = None, source: str | None = None, step: str | None = None) -> pl.DataFrame:
        """The ledger (every removed record with step, reason, detail), optionally filtered."""
        r = self.build_dir.removed
        if reason is not None:
            r = r.filter(pl.col("reason").is_in([reason] if isinstance(reason, str) else list(reason)))
        if source is not None:
            r = r.filter(pl.col("source") == source)
        if step is not None:
            r = r.filter(pl.col("step") == step)
        return r

    def sample(self, source: str | None = None, n: int = 5, seed: int = 0) -> pl.DataFrame:
        """``n`` random records (of one source), reproducible by ``seed``."""
        f = self.frame if source is None else self.frame.filter(pl.col("source") == source)
        if source is not None and f.height == 0 and source not in self.sources:
            raise KeyError(f"no source {source!r}; sources: {', '.join(self.sources)}")
        return f.sample(min(n, f.height), seed=seed, shuffle=True)

    def why(self, record_id: str) -> pl.DataFrame:
        """Where a record went: kept (and where) or removed by which step, and why."""
        facts = self.build_dir.why(record_id)
        cols = {"id": pl.Utf8, "status": pl.Utf8, "source": pl.Utf8, "step": pl.Utf8, "reason": pl.Utf8, "detail": pl.Utf8, "position": pl.Int64,
                "text": pl.Utf8, "counterpart_id": pl.Utf8, "counterpart_text": pl.Utf8, "similarity": pl.Utf8,
                "benchmark": pl.Utf8, "instance_id": pl.Utf8, "instance_text": pl.Utf8, "coverage": pl.Float64}
        return pl.DataFrame([{k: f.get(k) for k in cols} for f in facts], schema=cols)

    # ------------------------------------------------------------------ numbers and pictures
    def stats(self, tokenizer: str | None = None, thresholds: tuple[int, ...] = THRESHOLDS) -> Any:
        """Length statistics (``Stats``; shows as a table). Default tokenizer: the spec's."""
        from mixer.stats import stats_for_build

        with counting_progress(self.progress) as cb:
            return stats_for_build(self.build_dir, tokenizer, thresholds, cb)

    def lengths(self, tokenizer: str | None = None) -> pl.DataFrame:
        """Per-record turn and token counts (cached per tokenizer)."""
        from mixer.stats import build_lengths

        with counting_progress(self.progress) as cb:
            return build_lengths(self.build_dir, tokenizer, cb)[0]

    def plot_lengths(self, tokenizer: str | None = None) -> Any:
        """Histograms of tokens per record, one panel per source (a matplotlib Figure)."""
        from mixer.report.charts import length_histograms, png_bytes
        from mixer.stats import build_lengths

        with counting_progress(self.progress) as cb:
            lengths, counter = build_lengths(self.build_dir, tokenizer, cb)
        fig = length_histograms(lengths, counter.unit, list(THRESHOLDS), self.sources)
        fig._repr_png_ = lambda: png_bytes(fig)  # Jupyter shows it inline, pyplot or not
        return fig

    def compare(self, other: Mixture | str | Path, tokenizer: str | None = None) -> Any:
        """``BuildDiff``: records that entered or left, per source and reason, stats side by side."""
        from mixer.diff import diff_builds

        o = other.build_dir if isinstance(other, Mixture) else BuildDir(other)
        with counting_progress(self.progress) as cb:
            return diff_builds(self.build_dir, o, tokenizer, True, cb)

    def report(self, out_dir: str | Path | None = None, tokenizer: str | None = None) -> Path:
        """Write the HTML report (default ``BUILD/report/report.html``); returns its path."""
        from mixer.report import write_report

        with counting_progress(self.progress) as cb:
            return write_report(self.build_dir, out_dir, tokenizer, cb)

    # ------------------------------------------------------------------ display
    def show(self, source: str | None = None, n: int = 3, seed: int = 0, max_chars: int = 1500) -> Any:
        """Random records rendered as conversations (an IPython HTML object)."""
        from IPython.display import HTML

        return HTML(render_records(self.sample(source, n, seed), max_chars))

    def __repr__(self) -> str:
        return f"Mixture({str(self.path)!r}: {len(self):,} records from {len(self.sources)} sources)"

    def _repr_html_(self) -> str:
        from mixer.report import sources_frame
        from mixer.report.render import frame_table
        from mixer.stats import STATS_FILE, Stats
        from mixer.stats.table import stats_html

        saved = self.path / STATS_FILE
        stats = Stats.load(saved) if saved.exists() else None
        parts = [f"<h3>mixer build <code>{html.escape(self.name)}</code>: {len(self):,} records, "
                 f"{self.manifest.get('removed', 0):,} removed</h3>",
                 frame_table(sources_frame(self.manifest, stats), "", total_last=True)]
        if stats is not None:
            parts.append(stats_html(stats))
        else:
            parts.append("<p><i>no stats.json in this build: call <code>.stats(tokenizer=...)</code></i></p>")
        parts.append(f"<p><small>{html.escape(str(self.path))} · spec hash {html.escape(str(self.manifest.get('spec_hash', ''))[:23])}</small></p>")
        return "<div>" + "".join(parts) + "</div>"


def render_records(frame: pl.DataFrame, max_chars: int = 1500) -> str:
    """Records as conversation cards: one colored block per message, long text cut."""
    cards = []
    for rec in frame.iter_rows(named=True):
        blocks = []
        for col in [c for c in ("messages", "chosen", "rejected") if rec.get(c) is not None]:
            if col != "messages":
                blocks.append(f"<div style='font-weight:600;margin-top:6px'>{col}</div>")
            for m in rec[col]:
                text = m["content"] or ""
                cut = text[:max_chars] + (f" … [{len(text) - max_chars:,} more characters]" if len(text) > max_chars else "")
                color = ROLE_COLORS.get(m["role"], "#b03a2e")
                blocks.append(f"<div style='border-left:3px solid {color};padding:2px 8px;margin:3px 0'>"
                              f"<b style='color:{color}'>{html.escape(m['role'])}</b>"
                              f"<div style='white-space:pre-wrap'>{html.escape(cut)}</div></div>")
        cards.append(f"<div style='border:1px solid #ddd;border-radius:5px;padding:6px 10px;margin:8px 0'>"
                     f"<code>{html.escape(rec['id'])}</code> <small>({html.escape(rec['source'])})</small>{''.join(blocks)}</div>")
    return "".join(cards)


def open(path: str | Path, progress: bool = True) -> Mixture:  # noqa: A001 - mixer.open reads naturally
    """Open a finished build folder."""
    return Mixture(path, progress)


def _spec(spec: str | Path | dict | Any, source_dir: str | Path | None = None, check_files: bool = True) -> Any:
    """A ``Spec`` from a path, a dict (relative paths resolve against ``source_dir`` or the
    working directory) or a ``Spec``."""
    import yaml

    from mixer.spec import Spec, load_spec, parse_spec

    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, dict):
        root = Path(source_dir) if source_dir is not None else Path.cwd()
        return parse_spec(yaml.safe_dump(spec, sort_keys=False), "<dict spec>", root, check_files)
    return load_spec(spec, source_dir, check_files)


def build(spec: str | Path | dict | Any, output: str | Path | None = None, source_dir: str | Path | None = None,
          progress: bool = True, jsonl: bool | None = None, force: bool = False) -> Mixture:
    """Build a spec (a path, a dict or a loaded ``Spec``) and open the result; progress
    shows as a table of bars in Jupyter, rich bars in a terminal. ``output`` is replaced
    only when it is an earlier build or empty; ``force`` writes into a folder holding other
    files, replacing same-named files and removing nothing."""
    from mixer.pipeline import build as run_build

    res = run_build(_spec(spec, source_dir), output, auto_reporter() if progress else NullReporter(), jsonl, force=force)
    return Mixture(res.output, progress)


def validate(spec: str | Path | dict | Any, source_dir: str | Path | None = None, check_files: bool = True) -> Any:
    """Check a spec like ``mixer validate``: returns the ``Spec``; raises ``SpecError``
    (keys, types, files) or ``ValueError`` (eval sets, splits, eval_dir, tokenizer and
    model paths), each problem on its own line."""
    from mixer.spec_checks import check

    s = _spec(spec, source_dir, check_files)
    problems = check(s, files=check_files)
    if problems:
        raise ValueError("\n".join(problems))
    return s


def contamination(build: str | Path) -> dict[str, Any]:
    """A build's contamination report (``contamination.json``): benchmarks, the source x
    benchmark matrix, matches; ``report["matches_frame"]`` holds the matches when saved."""
    from mixer.decontam.report import read

    report, matches = read(Path(build))
    return {**report, "matches_frame": matches}


def dedup_report(build: str | Path, top: int = 5, examples: int = 3) -> dict[str, Any]:
    """Per dedup step of a build: cluster sizes, the largest clusters, cross-source overlap."""
    from mixer.dedup.report import build_report

    return build_report(Path(build), top, examples)


def push(build: str | Path, repo_id: str, private: bool = False, revision: str | None = None, token: str | None = None) -> str:
    """Publish a build as a Hugging Face dataset repo (card, mixture, ledger, manifest);
    returns its URL."""
    from mixer.hub import push as run_push

    return run_push(build, repo_id, private, revision, token)


__all__ = ["Mixture", "open", "build", "validate", "contamination", "dedup_report", "push", "render_records", "counting_progress"]
