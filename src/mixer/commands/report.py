"""``mixer report BUILD``: a self-contained HTML report plus PNG charts."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from mixer.commands.build import fail

console = Console()


def report_cmd(
    build: Path = typer.Argument(..., help="Build folder."),
    output: Path = typer.Option(None, "--output", "-o", help="Folder for report.html and the charts (default: BUILD/report)."),
    tokenizer: str = typer.Option(None, "--tokenizer", "-t", help="Count lengths with this tokenizer (default: the spec's; none: whitespace words)."),
) -> None:
    """Per-source table, length histograms, removal waterfall, duplicates and contamination;
    opens from disk in a browser (charts embedded)."""
    from mixer.build_dir import BuildDir
    from mixer.report import write_report
    from mixer.stats.progress import rich_progress

    try:
        b = BuildDir(build)
        with rich_progress() as progress:
            path = write_report(b, output, tokenizer, progress)
    except (OSError, ValueError) as e:
        fail(str(e))
    console.print(f"wrote [bold]{path}[/] (charts: {', '.join(p.name for p in sorted(path.parent.glob('*.png')))})")
    console.print(f"open it: file://{path.resolve()}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
