"""``mixer select-report BUILD``: what a ``select`` step kept and why, per task and source."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)
BARS = " ▁▂▃▄▅▆▇█"


def _spark(counts: list[int]) -> str:
    top = max(counts) or 1
    return "".join(BARS[min(8, int(round(8 * c / top)))] if c else " " for c in counts)


def _q(d: dict | None, keys=("p0", "p25", "p50", "p75", "p100")) -> str:
    return " / ".join(f"{d[k]:.3f}" for k in keys) if d else "-"


def select_report_cmd(
    build: Path = typer.Argument(..., help="Build folder."),
    step: str = typer.Option(None, "--step", help="Which selection (select, select-2, ...); default the first."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Records claimed per task, score distributions, source composition of the selection."""
    from mixer.select.report import selection_report

    try:
        rep = selection_report(build, step)
    except (FileNotFoundError, ValueError) as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        console.print_json(json.dumps(rep))
        return
    console.print(f"[bold]{rep['step']}[/]: {rep['method']} kept {rep['selected']:,} of {rep['pool']:,} (budget {rep['budget']:,})")
    for note in rep["notes"]:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    t = Table(title="claimed per task (score min / p25 / median / p75 / max)", title_justify="left")
    for c in ("task", "targets", "claimed", "score"):
        t.add_column(c, justify="right" if c in ("targets", "claimed") else "left")
    for r in rep["claimed"]:
        t.add_row(str(r["task"] or "-"), str(r.get("targets") or "-"), f"{r['claimed']:,}", _q(r.get("score")))
    console.print(t)
    if rep.get("scores"):
        t = Table(title="score to each task: selected vs unselected (min / p25 / median / p75 / max)", title_justify="left")
        for c in ("task", "selected", "unselected", "histogram sel | unsel", "range"):
            t.add_column(c)
        for task, d in rep["scores"].items():
            h = d["histogram"]
            t.add_row(task, _q(d["selected"]), _q(d["unselected"]), f"{_spark(h['selected'])} | {_spark(h['unselected'])}",
                      f"{h['range'][0]:.2f}..{h['range'][1]:.2f}")
        console.print(t)
    console.print(_composition(rep["composition"], "source", "source composition: selection vs pool"))
    if rep.get("topics"):
        console.print(_composition(rep["topics"], "topic", "topic composition (keyword heuristic): selection vs pool"))


def _composition(rows: list[dict], by: str, title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for c in (by, "pool", "pool %", "selected", "selected %", "lift"):
        t.add_column(c, justify="left" if c == by else "right")
    for r in rows:
        t.add_row(r[by], f"{r['pool']:,}", f"{100 * r['pool_share']:.1f}", f"{r['selected']:,}",
                  f"{100 * r['selected_share']:.1f}", f"{r['lift']:.2f}")
    return t


def register(app: typer.Typer) -> None:
    app.command("select-report")(select_report_cmd)
