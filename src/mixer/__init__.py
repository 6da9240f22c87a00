"""mixer: declarative, reproducible instruction-tuning mixtures.

``mixer.open(build_dir)`` and ``mixer.build(spec)`` are the notebook entry points; they
load lazily so that ``import mixer`` stays fast.
"""

from typing import Any

__version__ = "0.1.0"

_API = ("open", "build", "validate", "contamination", "dedup_report", "push", "Mixture")


def __getattr__(name: str) -> Any:
    if name in _API:
        from mixer import api

        return getattr(api, name)
    raise AttributeError(f"module 'mixer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
