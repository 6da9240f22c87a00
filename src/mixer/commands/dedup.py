"""``mixer dedup --against BUILD FILE`` and ``mixer dedup-report BUILD``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def _fail(msg: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _write(frame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".jsonl", ".ndjson"):
        frame.write_ndjson(path)
    else:
        frame.write_parquet(path, compression="zstd")


def dedup_cmd(
    file: Path = typer.Argument(..., help="Records to check: record-schema parquet/jsonl, or raw rows with --format."),
    against: Path = typer.Option(..., "--against", help="A finished build folder to check the records against."),
    fmt: str = typer.Option(None, "--format", help="Format of raw rows (alpaca, sharegpt, ...); default: records as they are."),
    fmt_config: str = typer.Option("{}", "--format-config", help='Format options as JSON, e.g. \'{"output": "response"}\'.'),
    source: str = typer.Option(None, "--source", help="Source name for the records (default: the file's stem)."),
    verify: str = typer.Option("exact", "--verify", help="exact (Jaccard of shingle sets), signature, or none."),
    threshold: float = typer.Option(None, "--threshold", help="Override the build's Jaccard threshold."),
    output: Path = typer.Option(None, "--output", "-o", help="Write the records that are not duplicates here (.parquet or .jsonl)."),
    removed: Path = typer.Option(None, "--removed", help="Write ledger rows for the duplicates here (.parquet or .jsonl)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary instead of tables."),
) -> None:
    """Find records of FILE that near-duplicate the build's records (or earlier ones of FILE)."""
    from dataclasses import replace

    from mixer.build_dir import BuildDir, IncompleteBuild
    from mixer.dedup.against import build_params, check_against, load_records
    from mixer.steps.minhash import MinHashConfig

    if verify not in ("exact", "signature", "none"):
        _fail("--verify must be exact, signature or none")
    try:
        build = BuildDir(against)
        new = load_records(file, fmt, source, json.loads(fmt_config))
    except (FileNotFoundError, IncompleteBuild, ValueError, KeyError) as e:  # JSONDecodeError, ValidationError too
        _fail(str(e))
    params = build_params(against)
    origin = f"{against}/dedup/minhash.json"
    if params is None:
        params = MinHashConfig(verify=verify).params()
        origin = "defaults (the build ran no minhash step)"
    if threshold is not None:
        from mixer.dedup.lsh import lsh_params

        b, r = lsh_params(threshold, params.num_perm, false_positive_weight=0.1, false_negative_weight=0.9)
        params = replace(params, threshold=threshold, bands=b, rows=r)
    try:
        res = check_against(build.frame, new, params, verify, build_name=str(against))
    except ValueError as e:
        _fail(str(e))
    if output:
        _write(res.kept, output)
    if removed:
        _write(res.removed, removed)
    in_build = int((res.matches["where"] != "this file").sum())
    summary = {"records": new.height, "duplicates": res.matches.height, "of_build": in_build,
               "within_file": res.matches.height - in_build, "kept": res.kept.height, "threshold": params.threshold,
               "parameters": origin}
    if as_json:
        print(json.dumps({**summary, "matches": res.matches.head(1000).to_dicts()}, indent=2))
        return
    console.print(f"{new.height:,} records checked against {against} ({build.frame.height:,} records; "
                  f"Jaccard >= {params.threshold}, parameters from {origin})")
    console.print(f"[bold]{res.matches.height:,}[/] near-duplicates: {in_build:,} of build records, "
                  f"{res.matches.height - in_build:,} of earlier records in this file; {res.kept.height:,} new records kept")
    if res.matches.height:
        t = Table(title="first matches", title_justify="left")
        for c in ("id", "duplicate_of", "where", "similarity", "jaccard"):
            t.add_column(c)
        for row in res.matches.head(20).iter_rows(named=True):
            t.add_row(row["id"], row["duplicate_of"], row["where"], f"{row['similarity']:.3f}",
                      "-" if row["jaccard"] is None or row["jaccard"] != row["jaccard"] else f"{row['jaccard']:.3f}")
        console.print(t)


def report_cmd(
    build: Path = typer.Argument(..., help="A finished build folder."),
    top: int = typer.Option(5, "--top", help="How many of the largest clusters to show."),
    examples: int = typer.Option(3, "--examples", help="Removed members shown per cluster."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Near-duplicate clusters of a build: sizes, the largest ones, overlaps between sources."""
    from mixer.dedup.report import build_report

    try:
        rep = build_report(build, top, examples)
    except FileNotFoundError as e:
        _fail(str(e))
    if as_json:
        print(json.dumps(rep, indent=2))
        return
    for step, r in rep.items():
        console.rule(f"[bold]{step}[/]: {r['clusters']:,} clusters, {r['removed']:,} records removed")
        t = Table(title="cluster sizes", title_justify="left")
        for c in ("size", "clusters", "records"):
            t.add_column(c, justify="right")
        for d in r["size_distribution"]:
            t.add_row(d["size"], f"{d['clusters']:,}", f"{d['records']:,}")
        console.print(t)
        t = Table(title="duplicates per pair of sources (kept <- removed)", title_justify="left")
        for c in ("kept source", "removed source", "duplicates", "share of removed source"):
            t.add_column(c)
        for p in r["source_pairs"][:30]:
            share = p.get("share_of_removed_source")
            t.add_row(p["kept_source"], p["removed_source"], f"{p['duplicates']:,}", f"{share:.1%}" if share is not None else "-")
        console.print(t)
        for c in r["largest"]:
            console.print(f"\n[bold]cluster of {c['size']}[/], kept {c['kept']['id']} ({c['kept']['source']}): "
                          f"{_short(c['kept']['snippet'])}", highlight=False)
            for e in c["examples"]:
                score = e.get("jaccard", e.get("similarity"))
                console.print(f"   - {e['id']} ({e['source']}, {score}): {_short(e['snippet'])}", highlight=False)


def _short(text: str | None, n: int = 110) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def register(app: typer.Typer) -> None:
    app.command("dedup")(dedup_cmd)
    app.command("dedup-report")(report_cmd)
