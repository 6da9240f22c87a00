"""Build progress: one line per source showing its current stage, with rich.

A ``Reporter`` is what the pipeline talks to; ``NullReporter`` keeps library use quiet.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def step_bar(description: str, total: float, shared: Any = None, every: float = 30.0) -> Iterator[Callable[[float], None]]:
    """Progress of one long phase inside a step; yields ``advance(amount)``.

    A task on the build's rich ``Progress`` when the step context carries one (the pipeline
    passes ``RichReporter.progress``), else a transient bar of its own on a terminal, else a
    log line to stderr at most every ``every`` seconds with the rate and ETA (batch jobs keep
    their ETA in the log). ``MIXER_NO_PROGRESS`` silences all of it.
    """
    if os.environ.get("MIXER_NO_PROGRESS") or total <= 0:
        yield lambda n: None
        return
    if shared is not None and hasattr(shared, "add_task"):
        # The reporter's columns read a ``scope`` field: every task must carry one.
        task = shared.add_task(description, total=total, scope="  " + description.split(":")[0])
        try:
            yield lambda n: shared.advance(task, n)
        finally:
            shared.remove_task(task)
        return
    if sys.stderr.isatty():
        from rich.progress import TaskProgressColumn, TimeRemainingColumn

        cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
        with Progress(*cols, console=Console(stderr=True), transient=True) as own:
            task = own.add_task(description, total=total)
            yield lambda n: own.advance(task, n)
        return
    yield _LogLines(description, total, every)


class _LogLines:
    """``advance`` that prints ``done/total, rate, ETA`` at most every ``every`` seconds."""

    def __init__(self, description: str, total: float, every: float):
        self.description, self.total, self.every = description, total, every
        self.done, self.t0 = 0.0, time.monotonic()
        self.last = self.t0

    def __call__(self, n: float) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last < self.every and self.done < self.total:
            return
        self.last = now
        rate = self.done / max(now - self.t0, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        print(f"{self.description}: {self.done:,.0f}/{self.total:,.0f} ({rate:,.1f}/s, ETA {_hms(eta)})", file=sys.stderr, flush=True)


def _hms(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
