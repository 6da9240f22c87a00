"""Build progress: one line per source showing its current stage, with rich.

A ``Reporter`` is what the pipeline talks to; ``NullReporter`` keeps library use quiet.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)


class NullReporter:
    def __enter__(self) -> NullReporter:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def begin(self, scope: str, stages: int) -> None: ...

    def stage(self, scope: str, label: str) -> None: ...

    def finish(self, scope: str, label: str = "done") -> None: ...


class RichReporter(NullReporter):
    """A bar per source (and one for the mix-level steps) advancing stage by stage."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.fields[scope]:<18}"), BarColumn(bar_width=24),
            MofNCompleteColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
            console=self.console, transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def begin(self, scope: str, stages: int) -> None:
        self.tasks[scope] = self.progress.add_task("starting", total=stages, scope=scope)

    def stage(self, scope: str, label: str) -> None:
        task = self.tasks[scope]
        if self.progress.tasks[task].description != "starting":
            self.progress.advance(task)
        self.progress.update(task, description=label)

    def finish(self, scope: str, label: str = "done") -> None:
        task = self.tasks[scope]
        t = self.progress.tasks[task]
        self.progress.update(task, completed=t.total, description=label)
