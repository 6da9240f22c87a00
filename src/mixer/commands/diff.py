"""``mixer diff BUILD_A BUILD_B``: which records entered or left, per source and reason."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import typer
from rich.console import Console
from rich.table import Table

from mixer.commands.build import fail

console = Console()


def frame_to_table(frame: pl.DataFrame, title: str) -> Table:
    from mixer.report.render import fmt

    t = Table(title=title, title_justify="left")
    for i, c in enumerate(frame.columns):
        t.add_column(c, justify="left" if i == 0 or frame[c].dtype == pl.Utf8 else "right")
    for row in frame.iter_rows():
        t.add_row(*[fmt(v) for v in row])
    return t


def diff_cmd(
    build_a: Path = typer.Argument(..., help="The earlier build."),
    build_b: Path = typer.Argument(..., help="The later build."),
    tokenizer: str = typer.Option(None, "--tokenizer", "-t", help="Count both builds with this tokenizer (default: the spec's; none: words)."),
    ids: int = typer.Option(5, "--ids", help="Show this many example ids per direction and source."),
    no_stats: bool = typer.Option(False, "--no-stats", help="Skip the side-by-side statistics."),
) -> None:
    """Records that entered or left B relative to A (and why), changed contents, spec
    changes, and statistics side by side."""
    from mixer.build_dir import BuildDir
    from mixer.diff import diff_builds
    from mixer.stats.progress import rich_progress

    try:
        a, b = BuildDir(build_a), BuildDir(build_b)
        with rich_progress() as progress:
            d = diff_builds(a, b, tokenizer, not no_stats, progress)
    except (OSError, ValueError) as e:
        fail(str(e))
    console.print(f"[bold]{build_a}[/] -> [bold]{build_b}[/]: {a.manifest['records']:,} -> {b.manifest['records']:,} records")
    if d.spec:
        console.print("[bold]spec changes[/]")
        for c in d.spec:
            console.print(f"  {c}", highlight=False)
    console.print(frame_to_table(d.per_source, "per source"))
    if d.identical:
        console.print("[green]same records, same contents[/]")
    else:
        console.print(frame_to_table(d.by_reason, "entered (why it was out of A) / left (why it is out of B)"))
        for name, frame in (("entered", d.entered), ("left", d.left), ("changed", d.changed)):
            if frame.height and ids:
                ex = frame.group_by("source", maintain_order=True).head(ids)
                cols = [c for c in ("id", "source", "reason", "detail") if c in ex.columns]
                console.print(frame_to_table(ex.select(cols), f"{name}: examples"))
    if d.stats is not None:
        from mixer.diff import arrows

        console.print(frame_to_table(arrows(d.stats), "statistics, A -> B"))


def register(app: typer.Typer) -> None:
    app.command("diff")(diff_cmd)
