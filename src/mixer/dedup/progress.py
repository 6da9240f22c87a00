"""Progress bars for long dedup phases: a task on the pipeline's rich ``Progress`` when the
step context carries one, else a transient bar of our own on an interactive terminal, else
nothing (tests, logs, pipes)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def progress_task(description: str, total: float, progress: Any = None) -> Iterator[Callable[[float], None]]:
    """Yield ``advance(amount)``."""
    if progress is not None and hasattr(progress, "add_task"):
        task = progress.add_task(description, total=total, scope="  " + description.split(":")[0])
        try:
            yield lambda k: progress.advance(task, k)
        finally:
            progress.remove_task(task)
        return
    if not sys.stderr.isatty() or os.environ.get("MIXER_NO_PROGRESS"):
        yield lambda k: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as own:
        task = own.add_task(description, total=total)
        yield lambda k: own.advance(task, k)
