"""Engines run the pipeline's stages: ``local`` (this process, polars) or ``ray`` (a cluster).

``make_engine("ray", address="HOST:PORT")`` connects to a running cluster; see
``docs/scale-out.md`` for how to start one and what runs where.
"""

from __future__ import annotations

from typing import Any

from mixer.engines.base import Engine, EngineError
from mixer.engines.local import LocalEngine

ENGINES = ("local", "ray")


def make_engine(name: str = "local", **options: Any) -> Engine:
    """An engine by the name used on the command line (``--engine``)."""
    if name == "local":
        unknown = sorted(set(options) - {"batch_rows", "threads", "key_rows", "memory", "spill_compression"})
        if unknown:
            raise ValueError(f"the local engine takes batch_rows, threads, key_rows, memory and spill_compression (got {unknown})")
        return LocalEngine(**options)
    if name == "ray":
        from mixer.extras import require

        require("ray", "ray")
        from mixer.engines.ray_engine import RayEngine

        return RayEngine(**options)
    raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")


__all__ = ["ENGINES", "Engine", "EngineError", "LocalEngine", "make_engine"]
