"""The CPUs this process may use (its affinity, not the machine's count: a job given 4 of
64 cores must not start 64 threads)."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)
