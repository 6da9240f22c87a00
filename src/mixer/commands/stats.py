"""``mixer stats BUILD|SPEC``: lengths per source and for the whole mix, in tokens."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import typer
from rich.console import Console

from mixer.build_dir import BuildDir
from mixer.commands.build import fail

console = Console()


def open_target(target: Path, quiet: bool = False) -> tuple[BuildDir, tempfile.TemporaryDirectory | None]:
    """A finished build for ``target``: the folder itself, or for a spec its up-to-date
    output folder, else a fresh build into a temporary folder (nothing in the repo changes)."""
    from mixer.spec import SpecError, load_spec

    if target.is_dir():
        return BuildDir(target), None
    try:
        spec = load_spec(target)
    except SpecError as e:
        fail(str(e))
    if (spec.output / "manifest.json").exists():
        b = BuildDir(spec.output)
        if b.manifest.get("spec_hash") == spec.hash:
            return b, None
    from mixer.pipeline import build
    from mixer.progress import NullReporter, RichReporter

    tmp = tempfile.TemporaryDirectory(prefix="mixer-stats-")
    quiet = quiet or bool(os.environ.get("MIXER_NO_PROGRESS"))
    res = build(spec, Path(tmp.name) / spec.name, NullReporter() if quiet else RichReporter())
    return BuildDir(res.output), tmp


def stats_cmd(
    target: Path = typer.Argument(..., help="Build folder, or a spec (built to a temp folder unless its build is current)."),
    tokenizer: str = typer.Option(None, "--tokenizer", "-t", help="Hub name, folder, tokenizer.json or SentencePiece .model (default: the spec's; none: whitespace words)."),
    thresholds: str = typer.Option("2048,4096,8192", "--over", help="Report the share of records over these lengths."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
    output: Path = typer.Option(None, "--output", "-o", help="Also write the statistics JSON here."),
) -> None:
    """Instances, rounds, user/assistant turn lengths, tokens per record (mean, p25..p95,
    max), share over each length and the rounds distribution, per source and total."""
    from mixer.io import InputError
    from mixer.stats import stats_for_build
    from mixer.stats.progress import rich_progress

    if not target.exists():
        fail(f"{target}: no such build folder or spec")
    try:
        limits = tuple(int(x) for x in thresholds.split(",") if x.strip())
    except ValueError:
        fail(f"--over expects comma-separated integers, got {thresholds!r}")
    try:
        build, tmp = open_target(target, quiet=as_json)
        with rich_progress() as progress:
            stats = stats_for_build(build, tokenizer, limits, progress)
    except (OSError, ValueError, InputError) as e:
        fail(str(e))
    if output is not None:
        stats.save(output)
    if as_json:
        print(json.dumps(stats.to_dict(), indent=2))
    else:
        console.print(stats)
    if tmp is not None:
        tmp.cleanup()


def register(app: typer.Typer) -> None:
    app.command("stats")(stats_cmd)
