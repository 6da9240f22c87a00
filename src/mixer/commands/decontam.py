"""``mixer decontaminate FILE...`` (any dataset file, no build needed) and
``mixer contamination BUILD`` (print a build's contamination report)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import typer
from rich.console import Console

from mixer.commands.build import fail

console = Console()

# raw columns -> (format, format config); first match wins
AUTO_FORMATS: list[tuple[tuple[str, ...], str, dict]] = [
    (("messages",), "messages", {}),
    (("conversations",), "sharegpt", {}),
    (("chosen", "rejected"), "chosen_rejected", {}),
    (("instruction", "output"), "alpaca", {}),
    (("instruction", "response"), "alpaca", {"output": "response"}),
    (("prompt", "completion"), "alpaca", {"instruction": "prompt", "input": None, "output": "completion"}),
    (("question", "answer"), "alpaca", {"instruction": "question", "input": None, "output": "answer"}),
]


def guess_format(columns: list[str], path: Path) -> tuple[str, dict]:
    for need, name, cfg in AUTO_FORMATS:
        if all(c in columns for c in need):
            if name == "alpaca" and "input" not in columns:
                cfg = {**cfg, "input": None}
            return name, cfg
    fail(f"{path}: cannot tell the record format from its fields {columns}; pass --format (e.g. messages, alpaca, sharegpt)")
    raise AssertionError  # fail() exits


def load_records(path: Path, fmt: str, fmt_config: dict, source: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(raw rows, records, rows the format itself rejected) for one file."""
    from mixer.formats.base import FormatContext, get_format
    from mixer.io import InputError, load_files
    from mixer.records import conform, empty_removed

    try:
        loaded = load_files([str(path)], Path.cwd(), source)
    except InputError as e:
        fail(str(e))
    raw = loaded.raw
    if raw.height == 0:
        fail(f"{path}: no records")
    cols = [c for c in raw.columns if not c.startswith("_")]
    if fmt == "auto":
        fmt, guessed = guess_format(cols, path)
        fmt_config = {**guessed, **fmt_config}
    try:
        spec = get_format(fmt)
        cfg = spec.config(**fmt_config)
        res = spec.fn(raw, cfg, FormatContext(source))
    except (KeyError, ValueError) as e:
        fail(f"{path}: format {fmt!r}: {e}")
    removed = pl.concat([loaded.removed, res.removed]) if res.removed.height else loaded.removed
    return raw, conform(res.kept), removed if removed.height else empty_removed()


def _row_of(ids: pl.Series) -> pl.Series:
    return ids.str.extract(r":(\d+)(?:\.\d+)?$", 1).cast(pl.Int64)


def _write_like(frame: pl.DataFrame, path: Path) -> None:
    name = path.name.lower()
    if name.endswith(".parquet"):
        frame.write_parquet(path)
    elif name.endswith((".jsonl", ".ndjson")):
        frame.write_ndjson(path)
    elif name.endswith(".json"):
        path.write_text(json.dumps(frame.to_dicts(), ensure_ascii=False, indent=1) + "\n")
    elif name.endswith(".csv"):
        frame.write_csv(path)
    else:
        fail(f"{path}: output must end in .parquet, .jsonl, .json or .csv")


def _default_output(path: Path) -> Path:
    name = re.sub(r"\.(gz|zst|zstd)$", "", path.name)
    stem, _, ext = name.rpartition(".")
    if not stem or ext not in ("jsonl", "ndjson", "json", "parquet", "csv"):
        stem, ext = name, "parquet"
    return path.with_name(f"{stem}.decontaminated.{ext}")


def decontaminate_cmd(
    files: list[Path] = typer.Argument(..., help="Dataset files (jsonl/json/parquet/csv, .gz/.zst); each is one source."),
    evals: str = typer.Option("tulu2", "--eval", "-e", help="Benchmarks or suites, comma-separated: gsm8k,mmlu:dev,tulu2,tulu2+."),
    eval_dir: Path = typer.Option(None, "--eval-dir", help="Local folder with one sub-folder per benchmark (default: the hub)."),
    eval_file: list[str] = typer.Option([], "--eval-file", help="Your own eval set: NAME=PATH[:PROMPT_FIELD[:ANSWER_FIELD]] (fields: dotted, '+' joins)."),
    rule: str = typer.Option("tulu3", "--rule", help="tulu3 | ngram | exact"),
    n: int = typer.Option(None, "--n", help="n-gram size (default 8 for tulu3/exact, 13 for ngram)."),
    threshold: float = typer.Option(0.5, "--threshold", help="tulu3: coverage must be above this."),
    roles: str = typer.Option("user", "--roles", help="Training turns to check, comma-separated."),
    eval_text: str = typer.Option("prompt", "--eval-text", help="prompt | answer | both (eval side)."),
    short: str = typer.Option("contain", "--short", help="Instances shorter than n: contain | skip."),
    action: str = typer.Option("remove", "--action", help="remove | report"),
    drop_source_above: float = typer.Option(None, "--drop-source-above", help="Drop a whole file overlapping more than this % of a benchmark."),
    fmt: str = typer.Option("auto", "--format", "-f", help="Record format (messages, alpaca, sharegpt, chosen_rejected, ...); auto guesses."),
    fmt_config: str = typer.Option("{}", "--format-config", help='Format options as JSON, e.g. \'{"output": "response"}\'.'),
    output: Path = typer.Option(None, "--output", "-o", help="Clean file (one input only); default FILE.decontaminated.EXT beside it."),
    report_dir: Path = typer.Option(None, "--report-dir", help="Where the report goes (default FILE.contamination/ beside the first file)."),
    records: bool = typer.Option(False, "--records", help="Write converted records (id, source, messages) instead of the original rows."),
    top: int = typer.Option(10, "--top", help="Show this many matches."),
) -> None:
    """Decontaminate dataset files against eval sets: writes the clean file(s) and a
    report (contamination.json, contamination_matches.parquet, removed.parquet)."""
    from pydantic import ValidationError

    from mixer.decontam import report as report_io
    from mixer.decontam.apply import DecontamConfig, decontaminate, load_evals
    from mixer.evalsets import EvalSetError

    if output is not None and len(files) > 1:
        fail("--output takes one input file; with several, each gets FILE.decontaminated.EXT")
    specs: list = [e.strip() for e in evals.split(",") if e.strip()]
    for item in eval_file:
        name, _, rest = item.partition("=")
        parts = rest.split(":")
        if not name or not parts[0]:
            fail(f"--eval-file {item!r}: expected NAME=PATH[:PROMPT_FIELD[:ANSWER_FIELD]]")
        spec = {"name": name, "path": str(Path(parts[0]).resolve())}
        if len(parts) > 1 and parts[1]:
            spec["prompt_field"] = parts[1].split("+")
        if len(parts) > 2 and parts[2]:
            spec["answer_field"] = parts[2].split("+")
        specs.append(spec)
    try:
        cfg = DecontamConfig(
            evals=specs, eval_dir=str(eval_dir) if eval_dir else None, rule=rule, n=n, threshold=threshold,
            roles=[r.strip() for r in roles.split(",")], eval_text=eval_text, short=short, action=action,
            drop_source_above=drop_source_above,
        )
        extra = json.loads(fmt_config)
    except ValidationError as e:
        fail("; ".join(f"--{'-'.join(str(x) for x in err['loc']).replace('_', '-')}: {err['msg']}" for err in e.errors()))
    except json.JSONDecodeError as e:
        fail(f"--format-config is not JSON: {e}")
    try:
        ev = load_evals(cfg)
    except EvalSetError as e:
        fail(str(e))

    raws, frames, rejected, names = [], [], [], []
    for f in files:
        if not f.exists():
            fail(f"{f}: no such file")
        source = re.sub(r"[^A-Za-z0-9_.-]", "_", f.name)
        while source in names:
            source += "_"
        names.append(source)
        raw, recs, bad = load_records(f, fmt, extra, source)
        raws.append(raw)
        frames.append(recs)
        rejected.append(bad)
    frame = pl.concat(frames, how="vertical_relaxed")
    out = decontaminate(frame, ev, cfg)

    rdir = report_dir or _default_output(files[0]).with_suffix("").with_suffix(".contamination")
    report_io.write(rdir, out.report, out.matches)
    out.removed.write_parquet(rdir / "removed.parquet")
    written = []
    for f, source, raw, recs in zip(files, names, raws, frames, strict=True):
        dest = output or _default_output(f)
        gone = out.removed.filter(pl.col("source") == source)["id"]
        if records:
            _write_like(recs.filter(~pl.col("id").is_in(gone.implode())), dest)
        else:
            rows = _row_of(gone).drop_nulls()
            _write_like(raw.filter(~pl.col("_row").is_in(rows.implode())).drop(["_row", "_origin"], strict=False), dest)
        written.append(dest)
    report_io.render(out.report, console, top=top, matches=out.matches)
    for f, dest, bad in zip(files, written, rejected, strict=True):
        note = f" ({bad.height} rows the format could not read)" if bad.height else ""
        console.print(f"{f} -> {dest}{note}")
    console.print(f"report: {rdir}/")


def contamination_cmd(
    build: Path = typer.Argument(..., help="A build folder (or a contamination.json)."),
    top: int = typer.Option(0, "--top", help="Also list this many matches, highest coverage first."),
    benchmark: str = typer.Option(None, "--benchmark", "-b", help="Only matches of this benchmark in the list."),
    as_json: bool = typer.Option(False, "--json", help="Print the report JSON."),
) -> None:
    """Print a build's contamination report: per source and benchmark, the % of benchmark
    instances overlapped and the records matched (template matches flagged)."""
    from mixer.decontam import report as report_io

    try:
        rep, matches = report_io.read(build)
    except FileNotFoundError as e:
        fail(str(e))
    if as_json:
        print(json.dumps(rep, indent=2))
        return
    if benchmark and matches is not None:
        matches = matches.filter(pl.col("benchmark") == benchmark)
    report_io.render(rep, console, top=top, matches=matches)


def register(app: typer.Typer) -> None:
    app.command("decontaminate")(decontaminate_cmd)
    app.command("contamination")(contamination_cmd)
