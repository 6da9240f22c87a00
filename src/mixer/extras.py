"""Optional dependencies: a data-only install builds mixtures; training, model-based
selection, semantic dedup and Ray need extras, and say which one when missing.

    pip install mixer              # load, format, filter, dedup, decontaminate, stats, report, push
    pip install 'mixer[train]'     # mixer train sft|dpo (torch, trl, deepspeed, accelerate, peft)
    pip install 'mixer[select]'    # select: rds_plus / embedding (torch, sentence-transformers, faiss)
    pip install 'mixer[semantic]'  # semantic dedup (static embeddings, faiss)
    pip install 'mixer[ray]'       # --engine ray
    pip install 'mixer[all]'       # everything
"""

from __future__ import annotations

import importlib
from types import ModuleType

# What each extra is for, in the words of the error message.
FEATURES = {
    "train": "training (mixer train)",
    "select": "the select step (model embeddings)",
    "semantic": "the semantic dedup step",
    "ray": "--engine ray",
}
# Top-level modules that only extras install, and the extra that brings each (torch: the
# smallest extra with it outside `mixer train`, which maps everything to `train`).
MODULE_EXTRA = {
    "torch": "select", "trl": "train", "deepspeed": "train", "accelerate": "train", "peft": "train",
    "sentence_transformers": "select", "faiss": "select", "model2vec": "semantic", "ray": "ray",
}


class MissingExtra(ImportError):
    """A feature needs an optional dependency that is not installed."""


def missing(extra: str, module: str) -> MissingExtra:
    feature = FEATURES.get(extra, extra)
    return MissingExtra(f"{feature} needs the '{extra}' extra ({module} is not installed): pip install 'mixer[{extra}]'")


def require(extra: str, module: str) -> ModuleType:
    """Import ``module`` or raise a one-line ``MissingExtra`` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise missing(extra, e.name or module) from None


def import_feature(extra: str, module: str) -> ModuleType:
    """Import a mixer module behind an extra: a missing third-party module becomes a
    ``MissingExtra`` naming ``extra`` (mixer's own import errors pass through)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in MODULE_EXTRA:
            raise missing(extra, e.name.split(".")[0]) from None
        raise


def extra_for(exc: ModuleNotFoundError, command: str | None = None) -> str | None:
    """The extra that would fix ``exc`` (``train`` for anything under ``mixer train``)."""
    top = (exc.name or "").split(".")[0]
    if top not in MODULE_EXTRA:
        return None
    return "train" if command == "train" else MODULE_EXTRA[top]
