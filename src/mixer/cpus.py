"""The CPUs this process may use (its affinity, not the machine's count: a job given 4 of
64 cores must not start 64 threads)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def parallel_map(fn: Callable[[Any], Any], items: list[Any], threads: int) -> Iterator[Any]:
    """``map(fn, items)`` on ``threads`` threads (in order; inline for one thread or item):
    for numpy and polars work, which releases the GIL."""
    if threads <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(threads) as pool:
        yield from pool.map(fn, items)
