"""Offline checks of a loaded spec beyond its schema: what would otherwise fail mid-build.

Eval set names and splits, ``eval_dir`` layout (one sub-folder per benchmark), eval and
target files, tokenizer paths, and select models given as local folders. Hub names are
not checked (no network); anything that looks like a path must exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixer.spec import Spec, StepSpec


def check(spec: Spec, files: bool = True) -> list[str]:
    """Every problem found, one line each, naming the spec line of the step; ``files``
    False keeps only the checks that need no local files (names and splits). The helpers
    take ``root``, the spec's folder, or None when local files are not to be checked."""
    probs: list[str] = []
    root = spec.root if files else None
    if spec.tokenizer:
        probs += _path_like(spec.tokenizer, root, "tokenizer", "tokenizer")
    for step in [s for src in spec.sources.values() for s in src.steps] + list(spec.mix):
        cfg = step.config
        where = step.where
        tok = getattr(cfg, "tokenizer", None)
        if isinstance(tok, str):
            probs += _path_like(tok, root, where, f"{step.name}.tokenizer")
        if step.name == "decontaminate":
            probs += _evals(step, root)
        if step.name == "select":
            probs += _select(step, root)
    return probs


def _rel(p: str, root: Path) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else root / q


def _looks_local(value: str) -> bool:
    return value.startswith((".", "/", "~")) or value.endswith((".model", ".json")) or value.count("/") > 1


def _path_like(value: str, root: Path | None, where: str, key: str) -> list[str]:
    if root is not None and _looks_local(value) and not _rel(value, root).exists():
        return [f"{where}: {key}: {value} does not exist (relative paths resolve against {root})"]
    return []


def _evals(step: StepSpec, root: Path | None) -> list[str]:
    from mixer import evalsets

    cfg: Any = step.config
    probs: list[str] = []
    try:
        specs = evalsets.parse_specs(cfg.evals)
    except (evalsets.EvalSetError, ValueError) as e:
        return [f"{step.where}: decontaminate.evals: {e}"]
    eval_dir = _rel(cfg.eval_dir, root) if cfg.eval_dir and root is not None else None
    if eval_dir is not None and not eval_dir.is_dir():
        probs.append(f"{step.where}: decontaminate.eval_dir: {eval_dir} is not a folder")
        eval_dir = None
    registered = [s for s in specs if s.path is None]
    for s in specs:
        if s.path is not None:
            if root is not None and not _rel(s.path, root).exists():
                probs.append(f"{step.where}: decontaminate.evals: {s.name}: file {_rel(s.path, root)} does not exist")
            continue
        split = s.split or evalsets.EVALSETS[s.name].default_split
        if split not in evalsets.splits(s.name):
            probs.append(f"{step.where}: decontaminate.evals: eval set {s.name!r} has no split {split!r}; splits: {', '.join(evalsets.splits(s.name))}")
        d = _rel(s.data_dir, root) if s.data_dir and root is not None else eval_dir
        if d is not None and len(registered) > 1 and not (d / s.name).is_dir() and d.is_dir():
            probs.append(f"{step.where}: decontaminate.eval_dir: {d} has no sub-folder {s.name}/ (one sub-folder per benchmark)")
    return probs


def _select(step: StepSpec, root: Path | None) -> list[str]:
    from mixer import evalsets
    from mixer.select.targets import parse_target

    cfg: Any = step.config
    probs: list[str] = []
    if isinstance(cfg.model, str):
        probs += _path_like(cfg.model, root, step.where, "select.model")
    for task, value in (getattr(cfg, "targets", None) or {}).items():
        try:
            t = parse_target(value)
        except ValueError as e:
            probs.append(f"{step.where}: select.targets.{task}: {e}")
            continue
        if t.path is not None and root is not None and not _rel(t.path, root).exists():
            probs.append(f"{step.where}: select.targets.{task}: file {_rel(t.path, root)} does not exist")
        elif t.evalset is not None:
            if t.evalset not in evalsets.names():
                probs.append(f"{step.where}: select.targets.{task}: unknown eval set {t.evalset!r}; known: {', '.join(evalsets.names())}")
            elif t.split is not None and t.split not in evalsets.splits(t.evalset):
                probs.append(f"{step.where}: select.targets.{task}: eval set {t.evalset!r} has no split {t.split!r}; splits: {', '.join(evalsets.splits(t.evalset))}")
    return probs
