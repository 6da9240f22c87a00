"""Where a source's raw rows come from, beyond plain local paths.

- Hub sources with ``data_files`` are loaded one file (or glob) at a time, so every row's
  ``_origin`` names its file (``repo/file#index``): formats can derive a submix from the
  file name, and ``mixer why`` can point at the file.
- Offline: with ``--source-dir DIR`` a hub source is read from a local mirror instead of
  the hub: ``DIR/<owner>/<name>/<data file>`` (the layout ``huggingface-cli download
  --repo-type dataset <owner>/<name> --local-dir DIR/<owner>/<name>`` produces); a URL data
  file is looked up at ``DIR/<host>/<path>`` (what ``wget -x`` writes). The spec check
  lists every missing file with the command that fetches it.
- ``.xlsx`` workbooks (the Tulu hardcoded examples) are read with ``mixer.xlsx``.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import polars as pl

from mixer.io import (
    HubUnavailable,
    InputError,
    Loaded,
    concat_loaded,
    expand_paths,
    iter_files,
    iter_hub,
    sha256_file,
)
from mixer.records import empty_removed
from mixer.spec import LoadConfig, SourceSpec, Spec


def is_repo(hub: str) -> bool:
    """``owner/name`` hub repos, as opposed to packaged builders (``json``, ``parquet``)."""
    return "/" in hub and not hub.startswith((".", "/", "~"))


def data_file_list(load: LoadConfig) -> list[str]:
    files = load.data_files
    if files is None:
        return []
    if isinstance(files, str):
        return [files]
    if isinstance(files, list):
        return list(files)
    return [f for v in files.values() for f in ([v] if isinstance(v, str) else v)]


def mirror_path(load: LoadConfig, pattern: str, source_dir: Path) -> Path | None:
    """Where a hub data file lives in a local mirror (None: not mirrored, e.g. a local file
    of a packaged builder, which resolves against the source dir as before)."""
    if "://" in pattern:
        u = urlparse(pattern)
        return source_dir / u.netloc / u.path.lstrip("/")
    if load.hub and is_repo(load.hub):
        return source_dir / load.hub / pattern
    return None


def missing_mirror_files(load: LoadConfig, source_dir: Path) -> list[str]:
    """One line per mirrored data file that is not there, with how to fetch it."""
    out = []
    if load.hub and is_repo(load.hub) and not data_file_list(load):
        return [f"hub dataset {load.hub!r} names no data_files, so it cannot be read from --source-dir; list its files in load.data_files"]
    for pattern in data_file_list(load):
        path = mirror_path(load, pattern, source_dir)
        if path is None or glob.glob(str(path)):
            continue
        if "://" in pattern:
            how = f"wget -x -P {source_dir} {pattern}"
        else:
            rev = f" --revision {load.revision}" if load.revision else ""
            what = f"--include '{pattern}'" if glob.has_magic(pattern) else pattern
            how = f"huggingface-cli download --repo-type dataset {load.hub} {what}{rev} --local-dir {source_dir / str(load.hub)}"
        out.append(f"missing raw file {path} (fetch: {how})")
    return out


def _mirrored(load: LoadConfig, source_dir: Path | None) -> bool:
    if source_dir is None or load.hub is None:
        return False
    return any(mirror_path(load, p, source_dir) is not None for p in data_file_list(load)) or is_repo(load.hub)


def iter_raw(src: SourceSpec, spec: Spec, scratch: Path | None = None) -> Iterator[Loaded]:
    """The raw rows of one source as consecutive parts of bounded size (local files and
    mirrors stream; hub datasets by record batches of their Arrow cache). ``scratch``: a
    folder in the build where a compressed parquet file is decompressed to be streamed
    (without it, such a file is read whole)."""
    load = src.load
    source_dir = getattr(spec, "source_dir", None)
    if load.hub is None:
        yield from _local(load.paths, spec.root, src, load, scratch)
        return
    if _mirrored(load, source_dir):
        problems = missing_mirror_files(load, source_dir)  # type: ignore[arg-type]
        if problems:
            raise InputError(f"source {src.name!r}: " + "; ".join(problems))
        paths = [str(mirror_path(load, p, source_dir) or p) for p in data_file_list(load)]  # type: ignore[arg-type]
        for part in _local(paths, spec.root, src, load, scratch):
            for info in part.inputs:
                info.update({"mirror_of": load.hub, "revision_expected": load.revision})
            yield part
        return
    yield from _hub(src, spec)


def load_raw(src: SourceSpec, spec: Spec) -> Loaded:
    """The raw frame of one source (``_row``, ``_origin``) and what was read."""
    return concat_loaded(iter_raw(src, spec))


def _hub(src: SourceSpec, spec: Spec) -> Iterator[Loaded]:
    """A hub source part by part from the dataset's Arrow cache: one dataset, or its data
    files one after the other (``_row`` renumbered across them)."""
    load = src.load
    files = load.data_files
    if not isinstance(files, (str, list)):
        yield from iter_hub(load.hub, load.name, load.split, load.revision, files, src.name, spec.root)  # type: ignore[arg-type]
        return
    n = 0
    for f in data_file_list(load):
        for part in _hub_file(load, f, src, spec):
            part.raw = part.raw.with_columns(pl.int_range(n, n + part.raw.height, dtype=pl.Int64).alias("_row"))
            n += part.raw.height
            yield part


def _hub_file(load: LoadConfig, pattern: str, src: SourceSpec, spec: Spec) -> Iterator[Loaded]:
    if pattern.lower().endswith(".xlsx"):
        yield _hub_xlsx(load, pattern, src, spec.root)
        return
    try:
        parts = iter_hub(load.hub, load.name, load.split, load.revision, pattern, src.name, spec.root)  # type: ignore[arg-type]
    except HubUnavailable as e:
        if not is_repo(str(load.hub)):
            raise
        raise HubUnavailable(f"source {src.name!r}: {e} Or mirror the file as DIR/{load.hub}/{pattern} and build with --source-dir DIR.") from None
    where = f"{load.hub}/{pattern}" if is_repo(str(load.hub)) else pattern
    at = 0
    for part in parts:
        part.raw = part.raw.with_columns(pl.format("{}#{}", pl.lit(where), pl.int_range(at, at + part.raw.height)).alias("_origin"))
        at += part.raw.height
        yield part


def _hub_xlsx(load: LoadConfig, pattern: str, src: SourceSpec, root: Path) -> Loaded:
    """``datasets`` has no Excel builder: fetch the file itself, then read it locally."""
    if not is_repo(str(load.hub)):
        return _xlsx(expand_paths([pattern], root), src.name)
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(str(load.hub), pattern, repo_type="dataset", revision=load.revision)
    except Exception as e:  # noqa: BLE001 - offline errors come in many kinds
        raise InputError(f"cannot fetch {pattern!r} from hub dataset {load.hub!r} ({e.__class__.__name__}); download it and use --source-dir") from None
    loaded = _xlsx([Path(path)], src.name)
    loaded.raw = loaded.raw.with_columns(pl.format("{}/{}#{}", pl.lit(load.hub), pl.lit(pattern), pl.int_range(pl.len())).alias("_origin"))
    loaded.inputs[0].update({"hub": load.hub, "revision": load.revision, "file": pattern})
    return loaded


def _local(patterns: list[str], root: Path, src: SourceSpec, load: LoadConfig, scratch: Path | None = None) -> Iterator[Loaded]:
    paths = expand_paths(patterns, root)
    xlsx = [p for p in paths if p.name.lower().endswith(".xlsx")]
    if xlsx and len(xlsx) != len(paths):
        raise InputError(f"source {src.name!r}: mixes .xlsx workbooks with other files ({[str(p) for p in paths[:3]]})")
    if xlsx:
        yield _xlsx(xlsx, src.name)
        return
    yield from iter_files(patterns, root, src.name, load.type, src.on_error, load.field, scratch=scratch)


def _xlsx(paths: list[Path], source: str) -> Loaded:
    from mixer.xlsx import read_xlsx

    frames, inputs = [], []
    for path in paths:
        try:
            df = read_xlsx(path)
        except ValueError as e:
            raise InputError(str(e)) from None
        frames.append(df.with_columns(pl.format("{}#{}", pl.lit(str(path)), pl.int_range(pl.len())).alias("_origin")))
        inputs.append({"path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size, "rows": df.height})
    return _concat([Loaded(f, empty_removed(), [i]) for f, i in zip(frames, inputs, strict=True)])


def _concat(parts: list[Loaded]) -> Loaded:
    """Concatenate loads and renumber ``_row`` globally, in the order the files were named."""
    frames, n = [], 0
    for p in parts:
        if p.raw.height:
            frames.append(p.raw.drop("_row", strict=False).with_columns(pl.int_range(n, n + p.raw.height, dtype=pl.Int64).alias("_row")))
            n += p.raw.height
    raw = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame(schema={"_row": pl.Int64, "_origin": pl.Utf8})
    removed = [p.removed for p in parts if p.removed.height]
    inputs: list[dict[str, Any]] = [i for p in parts for i in p.inputs]
    return Loaded(raw, pl.concat(removed) if removed else empty_removed(), inputs)
