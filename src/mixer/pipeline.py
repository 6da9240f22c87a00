"""The build: per source load -> format -> validate -> source steps -> sample, then the
mix-level steps over all sources, then an atomic write of the build folder.

After every stage the ledger is checked: per source, rows in (+ rows added by a repeat)
equal rows kept + rows removed, and every removed id was in the input. A violation is a
bug and stops the build.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

from mixer import __version__
from mixer.io import sha256_file
from mixer.progress import NullReporter
from mixer.records import empty_records, empty_removed
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
        removed = _counts(res.removed)
        added = {k: int(v) for k, v in res.info.get("added", {}).items()} if isinstance(res.info.get("added"), dict) else {}
        for src in sorted(set(counts_in) | set(kept) | set(removed)):
            lhs = counts_in.get(src, 0) + added.get(src, 0)
            rhs = kept.get(src, 0) + removed.get(src, 0)
            if lhs != rhs:
                raise LedgerError(f"{scope}/{step}: source {src!r} had {lhs} rows in but {kept.get(src, 0)} kept + {removed.get(src, 0)} removed")
        reasons: dict[str, dict[str, int]] = {}
        for src, reason, n in res.removed.group_by("source", "reason").len().sort("source", "reason").iter_rows():
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
    mixture: pl.DataFrame
    removed: pl.DataFrame
    manifest: dict[str, Any]


# ------------------------------------------------------------------------------ build


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "mixer": __version__}
    for lib in _LIBS:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    return out


def _tmp_dir(output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.parent / f".{output.name}.tmp-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir()
    return tmp


def _publish(tmp: Path, output: Path) -> None:
    """Swap the finished temp folder into place; an old build is replaced only now."""
    old = None
    if output.exists():
        old = output.parent / f".{output.name}.old-{os.getpid()}-{time.time_ns()}"
        output.rename(old)
    tmp.rename(output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_frame(frame: pl.DataFrame, path: Path) -> None:
    frame.write_parquet(path, compression="zstd", statistics=True, row_group_size=50_000)


def build(spec: Spec, output: str | Path | None = None, reporter: Any = None, jsonl: bool | None = None, engine: Any = None) -> BuildResult:
    """Build ``spec`` into ``output`` (default: the spec's output folder).

    ``engine`` runs the stages: None or "local" (this process), "ray", or an engine object
    from ``mixer.engines.make_engine`` (left open for the caller to reuse and close)."""
    from mixer.engines import make_engine

    eng = make_engine(engine or "local") if engine is None or isinstance(engine, str) else engine
    try:
        return _build(spec, output, reporter, jsonl, eng)
    finally:
        if eng is not engine:
            eng.close()


def _build(spec: Spec, output: str | Path | None, reporter: Any, jsonl: bool | None, eng: Any) -> BuildResult:
    out = Path(output) if output is not None else spec.output
    rep = reporter or NullReporter()
    ledger = Ledger()
    order = list(spec.sources)
    tmp = _tmp_dir(out)
    t_start = time.perf_counter()
    try:
        frames, removed, sources_info = [], [], {}
        with rep:
            for name, src in spec.sources.items():
                rep.begin(name, 3 + len(src.steps) + (src.sample is not None))
            if spec.mix:
                rep.begin("mix", len(spec.mix) + 1)
            for name, src in spec.sources.items():
                frame, rem, info = _build_source(src, spec, tmp, ledger, rep, order, eng)
                frames.append(frame)
                removed.append(rem)
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
                mix = res.kept
                removed.append(res.removed)
            mix = eng.collect(mix)
            if spec.mix:
                rep.finish("mix", f"{mix.height:,} records")
            stats_files = _stats(spec, mix, tmp, sources_info, rep)
        dup = mix.filter(pl.col("id").is_duplicated())
        if dup.height:
            raise LedgerError(f"record ids are not unique in the mix: {dup['id'].unique().head(3).to_list()}")
        removed_all = pl.concat(removed) if removed else empty_removed()
        _write_frame(mix, tmp / "mixture.parquet")
        _write_frame(removed_all, tmp / "removed.parquet")
        files = ["mixture.parquet", "removed.parquet", *stats_files]
        if spec.jsonl if jsonl is None else jsonl:
            mix.write_ndjson(tmp / "mixture.jsonl")
            files.append("mixture.jsonl")
        manifest = _manifest(spec, mix, removed_all, sources_info, ledger, tmp, files, time.perf_counter() - t_start)
        if eng.name != "local":
            manifest["engine"] = getattr(eng, "describe", lambda: eng.name)()
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BuildResult(out, mix, removed_all, manifest)


def _stats(spec: Spec, mix: pl.DataFrame, tmp: Path, sources_info: dict[str, Any], rep: Any) -> list[str]:
    """``stats.json`` and per-source token counts, when the spec names a tokenizer."""
    if not spec.tokenizer:
        return []
    from mixer.stats import write_build_stats
    from mixer.token_count import resolve_tokenizer

    return write_build_stats(mix, tmp, resolve_tokenizer(spec.tokenizer, spec.root, "stats"), sources_info, rep)


def _build_source(src: SourceSpec, spec: Spec, tmp: Path, ledger: Ledger, rep: Any, order: list[str], eng: Any) -> tuple[Any, pl.DataFrame, dict[str, Any]]:
    name = src.name
    removed: list[pl.DataFrame] = []
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
    return frame, pl.concat(removed), info


def _manifest(spec: Spec, mix: pl.DataFrame, removed: pl.DataFrame, sources: dict[str, Any], ledger: Ledger, tmp: Path, files: list[str], seconds: float) -> dict[str, Any]:
    final = _counts(mix)
    by_reason: dict[str, dict[str, int]] = {}
    for src, reason, n in removed.group_by("source", "reason").len().sort("source", "reason").iter_rows():
        by_reason.setdefault(src, {})[reason] = n
    for name, info in sources.items():
        info["kept"] = final.get(name, 0)
        info["removed"] = by_reason.get(name, {})
    return {
        "complete": True,
        "format_version": FORMAT_VERSION,
        "name": spec.name,
        "kind": spec.kind if spec.kind != "mixed" else "sft",
        "spec_hash": spec.hash,
        "spec_path": str(spec.path) if spec.path else None,
        "spec": spec.raw,
        "seed": spec.seed,
        "tokenizer": spec.tokenizer,
        "records": mix.height,
        "removed": removed.height,
        "files": {f: {"sha256": sha256_file(tmp / f), "bytes": (tmp / f).stat().st_size, "rows": mix.height if f.startswith("mixture") else removed.height if f.startswith("removed") else None} for f in files},
        "sources": sources,
        "steps": ledger.entries,
        "versions": _versions(),
        "seconds": round(seconds, 3),
        "created_unix": int(time.time()),
    }
