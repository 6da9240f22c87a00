"""A rich progress bar for the counting pass (it takes minutes on a full mix)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from mixer.stats.count import Progress as Callback


@contextmanager
def rich_progress(description: str = "counting tokens", console: Console | None = None) -> Iterator[Callback]:
    """Yields a ``(done, total)`` callback that drives one bar (measured in characters);
    a no-op under ``mixer -q`` (``MIXER_NO_PROGRESS``)."""
    if os.environ.get("MIXER_NO_PROGRESS"):
        yield lambda done, total: None
        return
    bar = Progress(TextColumn("{task.description}"), BarColumn(bar_width=30), TaskProgressColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=console or Console(stderr=True), transient=True)
    task = bar.add_task(description, total=None)
    with bar:
        yield lambda done, total: bar.update(task, completed=done, total=total or 1)
