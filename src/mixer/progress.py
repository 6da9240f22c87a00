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

    def update(self, scope: str, done: int, total: int) -> None:
        """Progress inside the current stage (e.g. characters tokenized); optional."""


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

    def update(self, scope: str, done: int, total: int) -> None:
        task = self.tasks[scope]
        label = self.progress.tasks[task].description.split(" [")[0]
        self.progress.update(task, description=f"{label} [{100 * done / max(total, 1):.0f}%]")

    def finish(self, scope: str, label: str = "done") -> None:
        task = self.tasks[scope]
        t = self.progress.tasks[task]
        self.progress.update(task, completed=t.total, description=label)


class NotebookReporter(NullReporter):
    """The same per-source stages as an HTML table of progress bars in Jupyter, updated in
    place through one display handle (no ipywidgets needed)."""

    def __init__(self, min_interval: float = 0.25):
        self.rows: dict[str, list[Any]] = {}  # scope -> [done, total, label]
        self.handle: Any = None
        self.min_interval, self._last = min_interval, 0.0

    def __enter__(self) -> NotebookReporter:
        from IPython.display import HTML, display

        self.handle = display(HTML(self._html()), display_id=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._show(force=True)

    def _html(self) -> str:
        import html

        rows = "".join(
            f"<tr><td><b>{html.escape(s)}</b></td><td><progress value='{d}' max='{max(t, 1)}' style='width:160px'></progress></td>"
            f"<td style='text-align:right'>{d}/{t}</td><td>{html.escape(str(label))}</td></tr>"
            for s, (d, t, label) in self.rows.items()
        )
        return f"<table class='mixer-progress'>{rows}</table>"

    def _show(self, force: bool = False) -> None:
        import time

        now = time.monotonic()
        if self.handle is not None and (force or now - self._last >= self.min_interval):
            from IPython.display import HTML

            self.handle.update(HTML(self._html()))
            self._last = now

    def begin(self, scope: str, stages: int) -> None:
        self.rows[scope] = [0, stages, "starting"]
        self._show()

    def stage(self, scope: str, label: str) -> None:
        row = self.rows[scope]
        if row[2] != "starting":
            row[0] = min(row[0] + 1, row[1])
        row[2] = label
        self._show()

    def update(self, scope: str, done: int, total: int) -> None:
        row = self.rows[scope]
        row[2] = f"{str(row[2]).split(' [')[0]} [{100 * done / max(total, 1):.0f}%]"
        self._show()

    def finish(self, scope: str, label: str = "done") -> None:
        self.rows[scope][0] = self.rows[scope][1]
        self.rows[scope][2] = label
        self._show(force=True)


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where rich's live bars do not redraw)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def auto_reporter() -> NullReporter:
    """A notebook table in Jupyter, rich bars in a terminal."""
    return NotebookReporter() if in_notebook() else RichReporter()
