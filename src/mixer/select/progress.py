"""Progress with ETA for embedding passes (hours on a large pool): a task on the caller's
rich ``Progress`` when one is given, a bar of our own on a terminal, otherwise a log line to
stderr every ``every`` seconds (batch jobs keep their ETA in the log). ``MIXER_NO_PROGRESS``
silences all of it."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def progress(description: str, total: int, shared: Any = None, every: float = 30.0) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``."""
    if os.environ.get("MIXER_NO_PROGRESS") or total <= 0:
        yield lambda n: None
        return
    if shared is not None and hasattr(shared, "add_task"):
        task = shared.add_task(description, total=total)
        try:
            yield lambda n: shared.advance(task, n)
        finally:
            shared.remove_task(task)
        return
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
        with Progress(*cols, console=Console(stderr=True), transient=True) as own:
            task = own.add_task(description, total=total)
            yield lambda n: own.advance(task, n)
        return
    yield _LogLines(description, total, every)


class _LogLines:
    """``advance`` that prints ``done/total, rate, ETA`` at most every ``every`` seconds."""

    def __init__(self, description: str, total: int, every: float):
        self.description, self.total, self.every = description, total, every
        self.done, self.t0 = 0, time.monotonic()
        self.last = self.t0

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last < self.every and self.done < self.total:
            return
        self.last = now
        rate = self.done / max(now - self.t0, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        print(f"{self.description}: {self.done:,}/{self.total:,} ({rate:,.1f}/s, ETA {_hms(eta)})",
              file=sys.stderr, flush=True)


def _hms(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
