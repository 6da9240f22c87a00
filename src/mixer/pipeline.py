"""The build: per source load -> format -> validate -> source steps -> sample, then the
mix-level steps over all sources, then an atomic write of the build folder.

After every stage the ledger is checked: per source, rows in (+ rows added by a repeat)
equal rows kept + rows removed, and every removed id was in the input. A violation is a
bug and stops the build.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from mixer import __version__, output, publish
from mixer.card import CARD_FILE, card
from mixer.engines import make_engine
from mixer.io import sha256_file
from mixer.output import ShardWriter, Written, iter_mixture, read_mixture
from mixer.progress import NullReporter
from mixer.records import empty_records, empty_removed
from mixer.removed_content import conform_removed
from mixer.removed_parts import RemovedParts, removed_batches, removed_counts
from mixer.spec import SourceSpec, Spec, StepSpec
from mixer.stages import LedgerError
from mixer.steps.base import StepContext, StepResult

OUTPUTS = ("mixture.parquet", "removed.parquet")
# manifest.json format; the changelog is in the README ("Manifest format")
FORMAT_VERSION = 2
_LIBS = ("polars", "pyarrow", "numpy", "datasets", "datasketch", "transformers", "tokenizers", "sentence-transformers", "faiss-cpu", "torch")


@dataclass
class Ledger:
    """Per-stage counts, per source; becomes ``manifest.json['steps']``."""

    entries: list[dict[str, Any]] = field(default_factory=list)

    def record(self, scope: str, step: str, before: pl.DataFrame | dict[str, int], res: StepResult, seconds: float, where: str | None = None, kept_counts: dict[str, int] | None = None) -> None:
        """``kept_counts`` replaces counting ``res.kept`` (an engine's frame need not be polars)."""
        counts_in = before if isinstance(before, dict) else _counts(before)
        kept = kept_counts if kept_counts is not None else _counts(res.kept)
        by_reason = removed_counts(res.removed)  # a frame, or the local engine's spilled ledger
        removed: dict[str, int] = {}
        for (src, _), n in by_reason.items():
            removed[src] = removed.get(src, 0) + n
        added = {k: int(v) for k, v in res.info.get("added", {}).items()} if isinstance(res.info.get("added"), dict) else {}
        for src in sorted(set(counts_in) | set(kept) | set(removed)):
            lhs = counts_in.get(src, 0) + added.get(src, 0)
            rhs = kept.get(src, 0) + removed.get(src, 0)
            if lhs != rhs:
                raise LedgerError(f"{scope}/{step}: source {src!r} had {lhs} rows in but {kept.get(src, 0)} kept + {removed.get(src, 0)} removed")
        reasons: dict[str, dict[str, int]] = {}
        for (src, reason), n in by_reason.items():
            reasons.setdefault(src, {})[reason] = n
        entry = {"scope": scope, "step": step, "in": counts_in, "kept": kept, "removed": reasons, "seconds": round(seconds, 4)}
        if added:
            entry["added"] = added
        if where:
            entry["spec"] = where
        if res.info:
            entry["info"] = res.info
        self.entries.append(entry)


def _counts(frame: pl.DataFrame) -> dict[str, int]:
    if frame.height == 0:
        return {}
    return {s: int(n) for s, n in frame.group_by("source").len().sort("source").iter_rows()}


@dataclass
class BuildResult:
    output: Path
    manifest: dict[str, Any]

    @functools.cached_property
    def removed(self) -> pl.DataFrame:
        """The ledger, read from the build when first asked for."""
        return pl.read_parquet(self.output / "removed.parquet")

    @functools.cached_property
    def mixture(self) -> pl.DataFrame:
        """The mixture, read from the build's shards when first asked for."""
        return read_mixture(self.output, self.manifest)


class RemovedSink:
    """The ledger written to ``removed.parquet`` as stages hand it over (never all held),
    with its counts per source and reason for the manifest."""

    def __init__(self, tmp: Path, kind: str):
        self.kind = kind
        self.writer = ShardWriter(tmp, "removed", conform_removed(empty_removed(), kind), shard_rows=None, row_group=output.ROW_GROUP)
        self.by_reason: dict[str, dict[str, int]] = {}
        self.rows = 0

    def append(self, frame: pl.DataFrame | RemovedParts) -> None:
        for (src, reason), n in removed_counts(frame).items():
            self.by_reason.setdefault(src, {})[reason] = self.by_reason.get(src, {}).get(reason, 0) + int(n)
        self.rows += frame.height
        for batch in removed_batches(frame):
            self.writer.write(conform_removed(batch, self.kind))
        if isinstance(frame, RemovedParts):
            frame.discard()

    def close(self) -> None:
        self.writer.close()
        self.by_reason = {s: dict(sorted(r.items())) for s, r in sorted(self.by_reason.items())}


def write_records(eng: Any, mix: Any, tmp: Path, jsonl: bool) -> Written:
    """The mixture into parquet shards (and ``mixture.jsonl``): by the engine's own workers
    when it has ``write_mixture`` (Ray), else from its batches as they come. Record ids must
    be unique in the mix (checked on the id column alone)."""
    kind = mix.kind if getattr(mix, "kind", "raw") != "raw" else "sft"
    if hasattr(eng, "write_mixture"):
        written = eng.write_mixture(mix, tmp, kind, jsonl)
    else:
        written = _write_batches(eng, mix, tmp, kind, jsonl)
    ids = pl.concat([pl.read_parquet(tmp / n, columns=["id"]) for n in written.files if n.endswith(".parquet")])
    dup = ids.filter(pl.col("id").is_duplicated())
    if dup.height:
        raise LedgerError(f"record ids are not unique in the mix: {dup['id'].unique().head(3).to_list()}")
    return written


def _write_batches(eng: Any, mix: Any, tmp: Path, kind: str, jsonl: bool) -> Written:
    writer = ShardWriter(tmp, "mixture", empty_records(kind), output.SHARD_ROWS, output.ROW_GROUP)
    with open(tmp / "mixture.jsonl", "wb") if jsonl else contextlib.nullcontext() as js:
        for batch in eng.batches(mix):
            writer.write(batch)
            if js is not None:
                batch.write_ndjson(js)
    names = writer.close()
    file_rows = {n: pq.ParquetFile(p).metadata.num_rows for n, p in zip(names, writer.paths, strict=True)}
    if jsonl:
        names.append("mixture.jsonl")
        file_rows["mixture.jsonl"] = writer.rows
    return Written(names, writer.rows, dict(sorted(writer.counts.items())), file_rows)


# ------------------------------------------------------------------------------ build


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "mixer": __version__}
    for lib in _LIBS:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    return out


def _kind(spec: Spec) -> str:
    return spec.kind if spec.kind != "mixed" else "sft"


def build(spec: Spec, output: str | Path | None = None, reporter: Any = None, jsonl: bool | None = None, engine: Any = None,
          force: bool = False) -> BuildResult:
    """Build ``spec`` into ``output`` (default: the spec's output folder).

    ``output`` is replaced only when it is an earlier build or empty; ``force`` adds the
    build's files to a folder holding other files, removing none of them (mixer.publish).

    ``engine`` runs the stages: None or "local" (this process), "ray", or an engine object
    from ``mixer.engines.make_engine`` (left open for the caller to reuse and close)."""
    eng = make_engine(engine or "local") if engine is None or isinstance(engine, str) else engine
    try:
        return _build(spec, output, reporter, jsonl, eng, force)
    finally:
        if eng is not engine:
            eng.close()


def _build(spec: Spec, output: str | Path | None, reporter: Any, jsonl: bool | None, eng: Any, force: bool) -> BuildResult:
    out = Path(output) if output is not None else spec.output
    rep = reporter or NullReporter()
    ledger = Ledger()
    order = list(spec.sources)
    tmp = publish.prepare(out, force)
    t_start = time.perf_counter()
    try:
        eng.begin(tmp)
        frames, sources_info = [], {}
        removed = eng.removed_sink(tmp, _kind(spec)) if hasattr(eng, "removed_sink") else RemovedSink(tmp, _kind(spec))
        with rep:
            for name, src in spec.sources.items():
                rep.begin(name, 3 + len(src.steps) + (src.sample is not None))
            if spec.mix:
                rep.begin("mix", len(spec.mix) + 1)
            for name, src in spec.sources.items():
                frame, info = _build_source(src, spec, tmp, ledger, rep, order, eng, removed)
                frames.append(frame)
                sources_info[name] = info
                rep.finish(name, f"{eng.rows(frame):,} records")
            mix = eng.concat(frames)
            for step in spec.mix:
                rep.stage("mix", step.name)
                ctx = StepContext(seed=spec.seed, source_order=order, work_dir=tmp, tokenizer=spec.tokenizer, spec_dir=spec.root, scope="mix",
                                  progress=getattr(rep, "progress", None))
                t0 = time.perf_counter()
                before = eng.counts(mix)
                res = eng.run_step(step, mix, ctx)
                ledger.record("mix", step.name, before, res, time.perf_counter() - t0, step.where, eng.counts(res.kept))
                removed.append(res.removed)  # the engines attach the removed records' text
                mix = res.kept
            written = write_records(eng, mix, tmp, spec.jsonl if jsonl is None else jsonl)
            publish.discard(tmp / "spill")
            if spec.mix:
                rep.finish("mix", f"{written.rows:,} records")
            stats_files = _stats(spec, tmp, written, sources_info, rep)
        removed.close()
        files = [*written.files, "removed.parquet", *stats_files]
        manifest = _manifest(spec, written, removed, sources_info, ledger, tmp, files, time.perf_counter() - t_start)
        if eng.name != "local":
            manifest["engine"] = getattr(eng, "describe", lambda: eng.name)()
        (tmp / CARD_FILE).write_text(card(manifest))  # README.md: the build as a Hugging Face dataset
        publish.publish(tmp, out, manifest, force)
    except BaseException:
        publish.discard(tmp)
        raise
    return BuildResult(out, manifest)


def _stats(spec: Spec, tmp: Path, written: Written, sources_info: dict[str, Any], rep: Any) -> list[str]:
    """``stats.json`` and per-source token counts, when the spec names a tokenizer."""
    if not spec.tokenizer:
        return []
    from mixer.stats import write_build_stats
    from mixer.token_count import resolve_tokenizer

    batches = iter_mixture(tmp, {"files": dict.fromkeys(written.files)})
    return write_build_stats(batches, written.rows, _kind(spec), tmp, resolve_tokenizer(spec.tokenizer, spec.root, "stats"), sources_info, rep)


def _build_source(src: SourceSpec, spec: Spec, tmp: Path, ledger: Ledger, rep: Any, order: list[str], eng: Any,
                  removed: RemovedSink) -> tuple[Any, dict[str, Any]]:
    name = src.name
    rep.stage(name, "load")
    t0 = time.perf_counter()
    loaded = eng.load(src, spec)
    n_raw = eng.rows(loaded.raw)
    read = n_raw + loaded.removed.height
    ledger.record(name, "load", {name: read}, StepResult(empty_records(), loaded.removed), time.perf_counter() - t0, kept_counts={name: n_raw} if n_raw else {})
    removed.append(loaded.removed)

    rep.stage(name, f"format: {src.format.name}")
    t0 = time.perf_counter()
    res = eng.format(loaded.raw, src, spec)
    reasons = dict(res.removed.group_by("reason").len().sort("reason").iter_rows()) if res.removed.height else {}
    ledger.entries.append({
        "scope": name, "step": f"format:{src.format.name}", "in": {name: n_raw},
        "kept": {name: eng.rows(res.kept)}, "removed": {name: reasons} if reasons else {},
        "seconds": round(time.perf_counter() - t0, 4), **({"info": res.info} if res.info else {}),
    })
    removed.append(res.removed)
    frame = res.kept
    formatted = eng.rows(frame)

    rep.stage(name, "validate")
    t0 = time.perf_counter()
    before = eng.counts(frame)
    res = eng.validate(frame)
    ledger.record(name, "validate", before, res, time.perf_counter() - t0, kept_counts=eng.counts(res.kept))
    removed.append(res.removed)
    frame = res.kept

    steps = list(src.steps)
    if src.sample is not None:
        steps.append(StepSpec("sample", src.sample, f"sources.{name}.sample"))
    sample_info = None
    for step in steps:
        rep.stage(name, step.name)
        ctx = StepContext(seed=spec.seed, source_order=order, work_dir=tmp, tokenizer=spec.tokenizer, spec_dir=spec.root, scope=name,
                          progress=getattr(rep, "progress", None))
        t0 = time.perf_counter()
        before = eng.counts(frame)
        res = eng.run_step(step, frame, ctx)
        ledger.record(name, step.name, before, res, time.perf_counter() - t0, step.where, eng.counts(res.kept))
        removed.append(res.removed)
        frame = res.kept
        if step.name == "sample":
            sample_info = res.info
    info = {
        "format": src.format.name,
        "inputs": loaded.inputs,
        "read": read,
        "malformed": loaded.removed.height,
        "formatted": formatted,
        "after_source_steps": eng.rows(frame),
        "random_stream": f"sha256(({spec.seed}, {name!r}, ...))",
    }
    if sample_info is not None:
        info["sample"] = sample_info
    return frame, info


def _manifest(spec: Spec, mix: Written, removed: RemovedSink, sources: dict[str, Any], ledger: Ledger, tmp: Path, files: list[str], seconds: float) -> dict[str, Any]:
    final = mix.counts
    by_reason = removed.by_reason
    for name, info in sources.items():
        info["kept"] = final.get(name, 0)
        info["removed"] = by_reason.get(name, {})
    return {
        "complete": True,
        "format_version": FORMAT_VERSION,
        "name": spec.name,
        "kind": _kind(spec),
        "spec_hash": spec.hash,
        "spec_path": str(spec.path) if spec.path else None,
        "spec": spec.raw,
        "seed": spec.seed,
        "tokenizer": spec.tokenizer,
        "records": mix.rows,
        "removed": removed.rows,
        "files": {f: {"sha256": sha256_file(tmp / f), "bytes": (tmp / f).stat().st_size, "rows": mix.file_rows.get(f, removed.rows if f.startswith("removed") else None)} for f in files},
        "sources": sources,
        "steps": ledger.entries,
        "versions": _versions(),
        "seconds": round(seconds, 3),
        "created_unix": int(time.time()),
    }
