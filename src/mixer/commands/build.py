"""``mixer build``, ``validate``, ``show`` and ``why``: build a spec, check it, read a build."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import polars as pl
import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from mixer.build_dir import BuildDir
from mixer.io import InputError
from mixer.spec import SpecError, load_spec

console = Console()
err_console = Console(stderr=True)


def fail(msg: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def summary_table(manifest: dict) -> Table:
    """Per source: read, removed by reason, kept; and the totals."""
    t = Table(title=f"{manifest['name']}: {manifest['records']:,} records", title_justify="left")
    t.add_column("source")
    t.add_column("read", justify="right")
    t.add_column("removed (by reason)")
    t.add_column("kept", justify="right")
    read = kept = 0
    for name, info in manifest["sources"].items():
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(info["removed"].items(), key=lambda x: -x[1])) or "-"
        sample = info.get("sample", {})
        if sample.get("added"):
            reasons += f" (repeat +{sum(sample['added'].values()):,})"
        if sample.get("shortfall"):
            reasons += f" [yellow](short by {sample['shortfall']:,})[/]"
        t.add_row(name, f"{info['read']:,}", reasons, f"{info['kept']:,}")
        read += info["read"]
        kept += info["kept"]
    t.add_section()
    t.add_row("total", f"{read:,}", f"{manifest['removed']:,} removed", f"{kept:,}", style="bold")
    return t


def build_cmd(
    spec: Path = typer.Argument(..., help="Mixture spec (YAML)."),
    output: str = typer.Option(None, "--output", "-o", help="Build folder (default: the spec's output, or build/<name>); or a URL such as s3://bucket/builds/v2."),
    source_dir: Path = typer.Option(None, "--source-dir", help="Resolve relative data paths here instead of the spec's folder."),
    jsonl: bool = typer.Option(False, "--jsonl", help="Also write mixture.jsonl."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    engine: str = typer.Option("local", "--engine", help="Where stages run: local (this process) or ray (a Ray cluster)."),
    address: str = typer.Option(None, "--address", help="Ray cluster HOST:PORT (with --engine ray; default: a new local Ray instance)."),
    memory: str = typer.Option(None, "--memory", help="Memory budget of the local engine, e.g. 4G (default: a quarter of this machine's, at most 4G)."),
    spill: str = typer.Option(None, "--spill-compression", help="How the local engine writes batches to the build's temp folder: auto (default: uncompressed, the fastest, while the disk has 20 GiB free, then zstd), uncompressed, lz4, or zstd (about 4x smaller)."),
    force: bool = typer.Option(False, "--force", help="Build into a folder that holds other files: write the build's files into it, replacing same-named ones, and remove nothing else."),
) -> None:
    """Build a mixture: mixture.parquet, removed.parquet, manifest.json.

    The output is replaced only when it is an earlier build or an empty folder."""
    from mixer.engines import EngineError, make_engine
    from mixer.pipeline import build
    from mixer.progress import NullReporter, RichReporter

    if address and engine != "ray":
        fail("--address needs --engine ray")
    if memory and engine != "local":
        fail("--memory sizes the local engine; a Ray cluster's memory is set where its nodes start")
    if spill and engine != "local":
        fail("--spill-compression is the local engine's; Ray spills through its object store")
    quiet = quiet or bool(os.environ.get("MIXER_NO_PROGRESS"))  # `mixer -q build` as `mixer build -q`
    if quiet:
        os.environ["MIXER_NO_PROGRESS"] = "1"  # steps' own bars and log lines too
    url = output if output and "://" in output else None  # shared storage: build here, then upload
    staging = Path(tempfile.mkdtemp(prefix="mixer-build-")) if url else None
    try:
        s = load_spec(spec, source_dir)
        local = {**({"memory": memory} if memory else {}), **({"spill_compression": spill} if spill else {})}
        eng = make_engine(engine, **({"address": address} if address else {}), **local)
        try:
            res = build(s, staging / "build" if staging else output, NullReporter() if quiet else RichReporter(), jsonl or None, engine=eng, force=force)
        finally:
            eng.close()
        if url:
            from mixer.engines.storage import publish

            url = publish(res.output, url)
    except SpecError as e:
        fail(str(e))
    except ImportError as e:  # MissingExtra: one line naming the extra
        fail(str(e))
    except (InputError, ValueError, OSError, EngineError) as e:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        fail(str(e))
    console.print(summary_table(res.manifest))
    if "stats.json" in res.manifest.get("files", {}):
        from mixer.stats import Stats

        console.print(Stats.load(res.output / "stats.json"))
    console.print(f"wrote [bold]{url or res.output}[/] ({res.manifest['seconds']:.1f} s)")
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)


def validate_cmd(
    spec: Path = typer.Argument(..., help="Mixture spec (YAML)."),
    source_dir: Path = typer.Option(None, "--source-dir", help="Resolve relative data paths here."),
    no_files: bool = typer.Option(False, "--no-files", help="Do not check that local data files exist."),
) -> None:
    """Check a spec (keys, types, steps, formats, files) without building."""
    from mixer.spec_checks import check

    try:
        s = load_spec(spec, source_dir, check_files=not no_files)
    except SpecError as e:
        fail(str(e))
    problems = check(s, files=not no_files)
    if problems:
        fail("\n".join(problems))
    t = Table(title=f"{s.name}: {len(s.sources)} sources, {len(s.mix)} mix steps, seed {s.seed}", title_justify="left")
    for c in ("source", "load", "format", "steps", "sample"):
        t.add_column(c)
    for name, src in s.sources.items():
        load = src.load.hub or ", ".join(src.load.paths)
        sample = "-" if src.sample is None else ", ".join(f"{k}={v}" for k, v in src.sample.model_dump(exclude_none=True).items() if k != "allow_fewer" or v)
        t.add_row(name, load, src.format.name, ", ".join(st.name for st in src.steps) or "-", sample)
    console.print(t)
    console.print(f"[green]ok[/] {spec} ({s.hash[:19]})")


def show_cmd(
    build: Path = typer.Argument(..., help="Build folder."),
    source: str = typer.Option(None, "--source", "-s", help="Only this source."),
    n: int = typer.Option(3, "-n", help="How many records."),
    removed: bool = typer.Option(False, "--removed", help="Show removed records (with step, reason, detail and text) instead."),
    reason: str = typer.Option(None, "--reason", help="With --removed: only this reason."),
    record_id: str = typer.Option(None, "--id", help="Show this one record (kept or removed)."),
) -> None:
    """Print records of a build readably."""
    b = _open(build)
    if record_id is not None:
        rec = b.record(record_id)
        if rec is None:
            fail(f"no record {record_id!r} in {build} (kept or removed); `mixer why {build} {record_id}` looks for prefixes", 1)
        console.print(render_record(rec))
        return
    if removed:
        frame = b.removed if source is None else b.removed.filter(pl.col("source") == source)
        if reason is not None:
            frame = frame.filter(pl.col("reason") == reason)
        if frame.height == 0:
            fail(f"no removed records{' for source ' + repr(source) if source else ''}{' with reason ' + repr(reason) if reason else ''} in {build}", 1)
        for rec in frame.head(n).iter_rows(named=True):
            console.print(render_record(rec))
        return
    frame = b.frame if source is None else b.frame.filter(pl.col("source") == source)
    if frame.height == 0:
        fail(f"no records{' for source ' + repr(source) if source else ''} in {build}; sources: {', '.join(b.sources)}")
    for rec in frame.head(n).iter_rows(named=True):
        console.print(render_record(rec))


def render_record(rec: dict) -> Panel:
    style = {"system": "magenta", "user": "cyan", "assistant": "green"}
    parts = []
    if rec.get("reason"):
        parts.append(f"[bold red]removed[/] by {_escape(rec['step'])}: {_escape(rec['reason'])}" + (f" ({_escape(rec['detail'])})" if rec.get("detail") else ""))
        if all(rec.get(c) is None for c in ("messages", "chosen", "rejected")):
            why = "not drawn by the sample; read it in the source" if rec["reason"] == "not_sampled" else "removed before it was parsed into messages"
            parts.append(f"[dim](no text: {why})[/]")
    for col in [c for c in ("messages", "chosen", "rejected") if rec.get(c) is not None]:
        if col != "messages":
            parts.append(f"[bold underline]{col}[/]")
        for m in rec[col]:
            parts.append(f"[bold {style.get(m['role'], 'red')}]{m['role']}[/]: {_escape(m['content'])}")
    return Panel("\n".join(parts), title=f"{rec['id']} ({rec['source']})", title_align="left")


def _escape(text: str) -> str:
    return text.replace("[", r"\[")


def why_cmd(build: Path = typer.Argument(..., help="Build folder."), record_id: str = typer.Argument(..., help="Record id, or a raw-row prefix like 'sharegpt:12'.")) -> None:
    """Say where a record went: kept (and where), or removed by which step, why."""
    b = _open(build)
    facts = b.why(record_id)
    for line in b.why_lines(record_id):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if not facts:
        raise typer.Exit(1)


def _open(build: Path) -> BuildDir:
    try:
        return BuildDir(build)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
        raise  # unreachable


def register(app: typer.Typer) -> None:
    app.command("build")(build_cmd)
    app.command("validate")(validate_cmd)
    app.command("show")(show_cmd)
    app.command("why")(why_cmd)


__all__ = ["register", "summary_table", "render_record"]
