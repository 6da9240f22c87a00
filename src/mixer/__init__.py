"""mixer: declarative, reproducible instruction-tuning mixtures.

``mixer.open(build_dir)``, ``mixer.build(spec)``, ``mixer.validate(spec)``,
``mixer.contamination(build)``, ``mixer.dedup_report(build)`` and ``mixer.push(build, repo)``
mirror the CLI; they load lazily so that ``import mixer`` stays fast.
"""

import os
import sys
import types
from typing import Any

# polars' allocator (jemalloc) keeps freed pages for 10 s by default, which carries one
# batch's or stage's peak into the next; set before polars loads, a user's setting wins
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:500,muzzy_decay_ms:0")

__version__ = "0.1.0"

_API = ("open", "build", "validate", "contamination", "dedup_report", "push", "Mixture")


def __getattr__(name: str) -> Any:
    if name in _API:
        from mixer import api

        return getattr(api, name)
    raise AttributeError(f"module 'mixer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


class _Package(types.ModuleType):
    """``mixer.validate`` stays the API function after the record-validation submodule
    ``mixer.validate`` is imported (importing a submodule would otherwise rebind it)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
