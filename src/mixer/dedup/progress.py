"""Progress of long dedup phases: the project's one step bar (``mixer.progress.step_bar``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def progress_task(description: str, total: float, progress: Any = None) -> Iterator[Callable[[float], None]]:
    """Yield ``advance(amount)``; a task on ``progress`` (the build's bar) when given."""
    from mixer.progress import step_bar

    with step_bar(description, total, progress) as advance:
        yield advance
