"""Reading raw sources: local files (jsonl, json, parquet, csv; plain, .gz or .zst; globs)
and Hugging Face hub datasets, with fingerprints of what was read.

Every raw frame gets ``_row`` (global row number across the source's files, in sorted
file order) and ``_origin`` (``file:line`` for JSON lines, ``file#index`` otherwise) so that
formats can build stable ids and ledger rows can point at the input.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from mixer.records import empty_removed, removed_frame

COMPRESSIONS = (".gz", ".zst", ".zstd")
TYPES = ("jsonl", "json", "parquet", "csv", "tsv")


class InputError(Exception):
    """Bad or missing input; the message names the file and line."""


class HubUnavailable(InputError):
    """The hub could not be reached for a dataset; the message says how to pre-download it."""


@dataclass
class Loaded:
    raw: pl.DataFrame
    removed: pl.DataFrame = field(default_factory=empty_removed)
    inputs: list[dict[str, Any]] = field(default_factory=list)


def expand_paths(patterns: list[str], root: Path) -> list[Path]:
    """Resolve globs relative to ``root``; sorted so the row order is stable."""
    out: list[Path] = []
    for pat in patterns:
        p = Path(os.path.expanduser(pat))
        full = p if p.is_absolute() else root / p
        matches = sorted(Path(m) for m in glob.glob(str(full), recursive=True))
        matches = [m for m in matches if m.is_file()]
        if not matches:
            raise InputError(f"no file matches {pat!r} (looked in {full})")
        out.extend(matches)
    return out


def file_type(path: Path, declared: str | None = None) -> str:
    if declared:
        return declared
    name = path.name.lower()
    for c in COMPRESSIONS:
        if name.endswith(c):
            name = name[: -len(c)]
    ext = name.rsplit(".", 1)[-1] if "." in name else ""
    if ext in ("jsonl", "ndjson"):
        return "jsonl"
    if ext in TYPES:
        return ext
    raise InputError(f"{path}: cannot tell the file type from its name; set load.type to one of {TYPES}")


def read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.decompress(data)
    if name.endswith((".zst", ".zstd")):
        import zstandard

        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as r:
            return r.read()
    return data


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _frame_from_dicts(rows: list[dict], where: str) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame()
    try:
        return pl.from_dicts(rows, infer_schema_length=None, strict=False)
    except Exception as e:  # noqa: BLE001 - polars raises several types here
        raise InputError(f"{where}: records do not share a consistent schema ({e})") from None


def _parse_jsonl(data: bytes, path: Path, on_error: str, source: str, first_row: int) -> tuple[pl.DataFrame, list[tuple[int, str]]]:
    """Fast path through polars; on any failure, line by line to name the bad line."""
    if on_error == "raise":
        try:
            df = pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
            lines = [i + 1 for i, ln in enumerate(data.split(b"\n")) if ln.strip()]
            if len(lines) == df.height:
                return df.with_columns(pl.Series("_origin", [f"{path}:{n}" for n in lines])), []
        except Exception:  # noqa: BLE001 - fall through to the precise path
            pass
    rows, origins, bad = [], [], []
    for i, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
            if not isinstance(obj, dict):
                raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
        except (orjson.JSONDecodeError, ValueError) as e:
            if on_error == "raise":
                raise InputError(f"{path}:{i}: malformed JSON line ({e})") from None
            bad.append((i, str(e)))
            continue
        rows.append(obj)
        origins.append(f"{path}:{i}")
    df = _frame_from_dicts(rows, str(path))
    if df.height:
        df = df.with_columns(pl.Series("_origin", origins))
    return df, bad


def _parse_json(data: bytes, path: Path, json_field: str | None) -> pl.DataFrame:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        # Many ".json" files are really JSON lines.
        if data.lstrip()[:1] == b"{" and b"\n{" in data:
            raise _JsonLines() from None
        line = data[: getattr(e, "pos", 0)].count(b"\n") + 1
        raise InputError(f"{path}:{line}: malformed JSON ({e})") from None
    if json_field:
        for key in json_field.split("."):
            if not isinstance(obj, dict) or key not in obj:
                raise InputError(f"{path}: load.field {json_field!r} not found in the JSON document")
            obj = obj[key]
    if isinstance(obj, dict):
        obj = [obj]
    if not isinstance(obj, list):
        raise InputError(f"{path}: expected a JSON array of objects, got {type(obj).__name__}")
    bad = [i for i, r in enumerate(obj) if not isinstance(r, dict)]
    if bad:
        raise InputError(f"{path}#{bad[0]}: expected a JSON object, got {type(obj[bad[0]]).__name__}")
    df = _frame_from_dicts(obj, str(path))
    if df.height:
        df = df.with_columns(pl.format("{}#{}", pl.lit(str(path)), pl.int_range(pl.len())).alias("_origin"))
    return df


class _JsonLines(Exception):
    pass


def read_file(path: Path, ftype: str | None, on_error: str, source: str, json_field: str | None = None, first_row: int = 0) -> tuple[pl.DataFrame, list[tuple[int, str]]]:
    """One file to a raw frame; returns also the (line, error) of skipped malformed lines."""
    kind = file_type(path, ftype)
    if kind == "parquet":
        df = pl.read_parquet(path) if not path.name.endswith(COMPRESSIONS) else pl.read_parquet(io.BytesIO(read_bytes(path)))
        return df.with_columns(pl.format("{}#{}", pl.lit(str(path)), pl.int_range(pl.len())).alias("_origin")), []
    data = read_bytes(path)
    if kind in ("csv", "tsv"):
        try:
            df = pl.read_csv(io.BytesIO(data), separator="\t" if kind == "tsv" else ",", infer_schema_length=0)
        except pl.exceptions.ComputeError as e:
            raise InputError(f"{path}: malformed {kind.upper()} ({str(e).splitlines()[0]})") from None
        # CSV line numbers: header is line 1 (multi-line quoted fields make this approximate).
        return df.with_columns(pl.format("{}#{}", pl.lit(str(path)), pl.int_range(pl.len())).alias("_origin")), []
    if kind == "json":
        try:
            return _parse_json(data, path, json_field), []
        except _JsonLines:
            kind = "jsonl"
    return _parse_jsonl(data, path, on_error, source, first_row)


def load_files(patterns: list[str], root: Path, source: str, ftype: str | None = None, on_error: str = "raise", json_field: str | None = None) -> Loaded:
    """Read and concatenate files; malformed lines become ledger rows under ``on_error: skip``."""
    paths = expand_paths(patterns, root)
    frames, removed, inputs = [], [], []
    n = 0
    for path in paths:
        df, bad = read_file(path, ftype, on_error, source, json_field, n)
        inputs.append({"path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size, "rows": df.height + len(bad)})
        if bad:
            # Malformed lines take row numbers after the good ones of their file so ids stay unique.
            ids = [f"{source}:bad:{path.name}:{line}" for line, _ in bad]
            removed.append(removed_frame(ids, source, "load", "malformed_json", [f"{path}:{line}: {err}" for line, err in bad]))
        if df.height:
            frames.append(df.with_columns(pl.int_range(n, n + df.height, dtype=pl.Int64).alias("_row")))
            n += df.height
    raw = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame({"_row": [], "_origin": []}, schema={"_row": pl.Int64, "_origin": pl.Utf8})
    return Loaded(raw, pl.concat(removed) if removed else empty_removed(), inputs)


def load_hub(path: str, name: str | None, split: str, revision: str | None, data_files: Any, source: str, root: Path) -> Loaded:
    """``datasets.load_dataset``; the same code path serves packaged builders on local files
    (``hub: json`` with ``data_files``), which is how the tests exercise it offline."""
    import datasets

    if data_files is not None:
        def _abs(p: str) -> str:
            return p if "://" in p or Path(p).is_absolute() else str(root / p)

        if isinstance(data_files, str):
            data_files = _abs(data_files)
        elif isinstance(data_files, list):
            data_files = [_abs(p) for p in data_files]
        elif isinstance(data_files, dict):
            data_files = {k: ([_abs(x) for x in v] if isinstance(v, list) else _abs(v)) for k, v in data_files.items()}
    try:
        ds = datasets.load_dataset(path, name=name, split=split, revision=revision, data_files=data_files)
    except Exception as e:  # noqa: BLE001 - datasets raises many kinds when offline
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        rev = f" --revision {revision}" if revision else ""
        raise HubUnavailable(
            f"cannot load hub dataset {path!r} (name={name}, split={split}, revision={revision}): {msg}. "
            f"Pre-download it with `huggingface-cli download --repo-type dataset {path}{rev} --local-dir DIR` "
            f"and point load.path at DIR's files (or set HF_DATASETS_OFFLINE=1 with a warm cache)."
        ) from None
    raw = pl.from_arrow(ds.data.table)
    if isinstance(raw, pl.Series):
        raw = raw.to_frame()
    raw = raw.with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("_row"),
        pl.format("{}[{}]#{}", pl.lit(path), pl.lit(split), pl.int_range(pl.len())).alias("_origin"),
    )
    info = {"hub": path, "name": name, "split": split, "revision": revision, "fingerprint": getattr(ds, "_fingerprint", None), "rows": raw.height}
    if data_files is not None:
        info["data_files"] = data_files
    return Loaded(raw, empty_removed(), [info])
