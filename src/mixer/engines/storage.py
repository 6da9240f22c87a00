"""Sources and builds on shared storage: fsspec URLs (``s3://``, ``gs://``, ``file://``, ...).

On a cluster, the node that loads a source must see its files, and the build must land
where every user can read it. Local paths work when all nodes mount the same file system;
otherwise give URLs (with the fsspec extra for the scheme installed, e.g. ``s3fs``):

- a source ``load.path`` URL (globs allowed) is copied to a private staging folder on the
  loading node, read by the ordinary loader, and every trace of the staging folder in
  ``_origin``, ledger details and the manifest's inputs is replaced by the URL, so a build
  reads the same whichever node loaded it;
- a build output URL (``mixer build -o s3://bucket/builds/v2``) is built into a local
  temp folder and uploaded file by file, ``manifest.json`` last after removing the old one:
  a reader (``BuildDir``) never sees a half-uploaded build as complete.
"""

from __future__ import annotations

import dataclasses
import glob as _glob
import shutil
import tempfile
from pathlib import Path
from typing import Any

import polars as pl

from mixer.io import InputError, Loaded
from mixer.spec import SourceSpec, Spec


def is_url(path: str | Path) -> bool:
    return isinstance(path, str) and "://" in path


def load_source_anywhere(src: SourceSpec, spec: Spec) -> Loaded:
    """``stages.load_source``, with URL paths staged locally first."""
    from mixer.stages import load_source

    if src.load.hub is not None or not any(is_url(p) for p in src.load.paths):
        return load_source(src, spec)
    stage = Path(tempfile.mkdtemp(prefix="mixer-stage-"))
    try:
        local_src, mapping = _stage(src, stage)
        loaded = load_source(local_src, spec)
        return _unstage(loaded, mapping)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _stage(src: SourceSpec, stage: Path) -> tuple[SourceSpec, dict[str, str]]:
    """Copy every file a URL pattern matches; local paths pass through unchanged."""
    import fsspec

    paths: list[str] = []
    mapping: dict[str, str] = {}
    for i, pattern in enumerate(src.load.paths):
        if not is_url(pattern):
            paths.append(pattern)
            continue
        fs, root = fsspec.core.url_to_fs(pattern)
        matches = sorted(fs.glob(root)) if _glob.has_magic(root) else ([root] if fs.exists(root) else [])
        matches = [m for m in matches if fs.isfile(m)]
        if not matches:
            raise InputError(f"no file matches {pattern!r}")
        for m in matches:
            local = stage / f"p{i}" / m.lstrip("/")
            local.parent.mkdir(parents=True, exist_ok=True)
            fs.get(m, str(local))
            paths.append(str(local))
            mapping[str(local)] = fs.unstrip_protocol(m)
    load = src.load.model_copy(update={"path": paths})
    return dataclasses.replace(src, load=load), mapping


def _unstage(loaded: Loaded, mapping: dict[str, str]) -> Loaded:
    """Put the URLs back wherever the staged paths show (longest paths first)."""
    pairs = sorted(mapping.items(), key=lambda kv: -len(kv[0]))

    def fix(expr: pl.Expr) -> pl.Expr:
        for local, url in pairs:
            expr = expr.str.replace(local, url, literal=True)
        return expr

    raw = loaded.raw
    if "_origin" in raw.columns and raw.height:
        raw = raw.with_columns(fix(pl.col("_origin")).alias("_origin"))
    removed = loaded.removed
    if removed.height:
        removed = removed.with_columns(fix(pl.col("detail")).alias("detail"))
    inputs: list[dict[str, Any]] = []
    for info in loaded.inputs:
        info = dict(info)
        if info.get("path") in mapping:
            info["path"] = mapping[info["path"]]
        inputs.append(info)
    return Loaded(raw, removed, inputs)


def publish(build_dir: Path, url: str) -> str:
    """Upload a finished build folder to ``url``; ``manifest.json`` goes last."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    root = root.rstrip("/")
    if fs.exists(f"{root}/manifest.json"):
        fs.rm(f"{root}/manifest.json")  # the old build stops looking complete first
    files = sorted(p for p in build_dir.rglob("*") if p.is_file() and p.name != "manifest.json")
    for p in files:
        target = f"{root}/{p.relative_to(build_dir).as_posix()}"
        fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(str(p), target)
    fs.put_file(str(build_dir / "manifest.json"), f"{root}/manifest.json")
    return fs.unstrip_protocol(root)
