"""Per-record lengths cached by (build, tokenizer): counting a large mix takes minutes.

The cache lives inside the build (``.cache/stats/<tokenizer key>.parquet``): a build folder
never changes after it is published, and a rebuild replaces the folder, cache and all.
Read-only builds fall back to the user cache, keyed by the mixture's hash as well.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

IN_BUILD = Path(".cache") / "stats"


def user_cache_dir() -> Path:
    root = os.environ.get("MIXER_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mixer"
    return Path(root) / "stats"


def candidates(build_path: Path, mixture_sha: str, key: str) -> list[Path]:
    """Where the lengths for (build, tokenizer) may be, in order of preference."""
    return [build_path / IN_BUILD / f"{key}.parquet", user_cache_dir() / f"{mixture_sha.removeprefix('sha256:')[:16]}-{key}.parquet"]


def read(paths: list[Path], rows: int) -> pl.DataFrame | None:
    for p in paths:
        if p.exists():
            try:
                frame = pl.read_parquet(p)
            except Exception:  # noqa: BLE001 - a damaged cache is just a miss
                continue
            if frame.height == rows:
                return frame
    return None


def write(frame: pl.DataFrame, paths: list[Path]) -> Path | None:
    """Write to the first writable place; caching never fails a command."""
    for p in paths:
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(f".tmp-{os.getpid()}")
            frame.write_parquet(tmp, compression="zstd")
            os.replace(tmp, p)
            return p
        except OSError:
            continue
    return None
