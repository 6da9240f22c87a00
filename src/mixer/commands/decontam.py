"""``mixer decontaminate FILE...`` (any dataset file, no build needed) and
``mixer contamination BUILD`` (print a build's contamination report)."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def iter_records(path: Path, fmt: str, fmt_config: dict, source: str) -> Iterator[tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]]:
    """(raw rows, records, rows the load or the format rejected) of one file, part by part
    (``mixer.io.iter_files``); formats that need the whole file get it in one part."""
    from mixer.formats.base import FormatContext, get_format
    from mixer.infos import format_rules
    from mixer.io import InputError, concat_loaded, iter_files
    from mixer.records import conform, empty_removed

    parts = iter_files([str(path)], Path.cwd(), source)
    try:
        first = next(parts)
    except InputError as e:
        fail(str(e))
    cols = [c for c in first.raw.columns if not c.startswith("_")]
    if fmt == "auto":
        fmt, guessed = guess_format(cols, path)
        fmt_config = {**guessed, **fmt_config}
    try:
        spec = get_format(fmt)
        cfg = spec.config(**fmt_config)
    except (KeyError, ValueError) as e:
        fail(f"{path}: format {fmt!r}: {e}")
    stream = itertools.chain([first], parts)
    if format_rules(fmt, cfg) is None:
        stream = iter([concat_loaded(stream)])
    seen = 0
    try:
        for loaded in stream:
            raw = loaded.raw
            seen += raw.height
            res = spec.fn(raw, cfg, FormatContext(source)) if raw.height else None
            kept = conform(res.kept) if res is not None and res.kept.height else None
            bad = [f for f in (loaded.removed, res.removed if res is not None else None) if f is not None and f.height]
            yield raw, kept if kept is not None else pl.DataFrame(), pl.concat(bad) if bad else empty_removed()
    except InputError as e:
        fail(str(e))
    except (KeyError, ValueError) as e:
        fail(f"{path}: format {fmt!r}: {e}")
    if seen == 0:
        fail(f"{path}: no records")


def _row_of(ids: pl.Series) -> pl.Series:
    return ids.str.extract(r":(\d+)(?:\.\d+)?$", 1).cast(pl.Int64)


class _Writer:
    """The clean file, written part by part in the format its name says."""

    def __init__(self, path: Path):
        name = path.name.lower()
        if not name.endswith((".parquet", ".jsonl", ".ndjson", ".json", ".csv")):
            fail(f"{path}: output must end in .parquet, .jsonl, .json or .csv")
        self.path, self.kind = path, name.rsplit(".", 1)[-1]
        self.file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.parquet: Any = None
        self.rows = 0

    def write(self, frame: pl.DataFrame) -> None:
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            table = frame.to_arrow()
            if self.parquet is None:
                self.parquet = pq.ParquetWriter(self.file, table.schema)
            self.parquet.write_table(table.cast(self.parquet.schema))
        elif self.kind in ("jsonl", "ndjson"):
            frame.write_ndjson(self.file)
        elif self.kind == "json":
            for row in frame.iter_rows(named=True):
                self.file.write((b"[\n" if self.rows == 0 else b",\n") + json.dumps(row, ensure_ascii=False).encode())
                self.rows += 1
            return
        else:
            frame.write_csv(self.file, include_header=self.rows == 0)
        self.rows += frame.height

    def close(self) -> None:
        if self.kind == "json":
            self.file.write(b"[]\n" if self.rows == 0 else b"\n]\n")
        if self.parquet is not None:
            self.parquet.close()
        self.file.close()


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
    report (contamination.json, contamination_matches.parquet, removed.parquet). Files are
    read twice, part by part (match, then write), so memory does not grow with their size."""
    from pydantic import ValidationError

    from mixer.decontam import report as report_io
    from mixer.decontam.apply import DecontamConfig
    from mixer.evalsets import EvalSetError
    from mixer.infos import merge_infos
    from mixer.records import empty_removed
    from mixer.steps.base import StepContext
    from mixer.steps.decontam import Decontaminate

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
    step = Decontaminate(cfg)
    try:
        step.prepare(StepContext())
    except EvalSetError as e:
        fail(str(e))

    # pass 1: match every part of every file against the eval index, keep only the keys
    names: list[str] = []
    keys, infos, rejected = [], [], []
    for f in files:
        if not f.exists():
            fail(f"{f}: no such file")
        source = re.sub(r"[^A-Za-z0-9_.-]", "_", f.name)
        while source in names:
            source += "_"
        names.append(source)
        bad = 0
        for _, recs, gone in iter_records(f, fmt, extra, source):
            bad += gone.height
            if recs.height:
                m = step.map(recs, StepContext())
                keys.append(m.keys)
                infos.append(m.info)
        rejected.append(bad)
    rdir = report_dir or _default_output(files[0]).with_suffix("").with_suffix(".contamination")
    decision = step.decide((pl.concat(keys) if keys else pl.DataFrame()).lazy(), StepContext(work_dir=rdir), merge_infos(infos, step.info_rules))
    del keys

    # pass 2: read the files again, write what stays and the ledger
    removed, written = [], []
    for f, source in zip(files, names, strict=True):
        dest = output or _default_output(f)
        w = _Writer(dest)
        try:
            for raw, recs, _ in iter_records(f, fmt, extra, source):
                kept, gone = step.apply(recs, decision, StepContext()) if recs.height else (recs, None)
                if gone is not None and gone.height:
                    removed.append(gone)
                if records:
                    w.write(kept)
                else:
                    rows = _row_of(gone["id"]).drop_nulls() if gone is not None and gone.height else pl.Series([], dtype=pl.Int64)
                    w.write(raw.filter(~pl.col("_row").is_in(rows.implode())).drop(["_row", "_origin"], strict=False))
        finally:
            w.close()
        written.append(dest)
    (pl.concat(removed) if removed else empty_removed()).write_parquet(rdir / "removed.parquet")
    rep, matches = report_io.read(rdir)
    report_io.render(rep, console, top=top, matches=matches)
    for f, dest, bad in zip(files, written, rejected, strict=True):
        note = f" ({bad} rows the format could not read)" if bad else ""
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
