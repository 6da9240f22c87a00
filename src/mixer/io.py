"""Reading raw sources: local files (jsonl, json, parquet, csv; plain, .gz or .zst; globs)
and Hugging Face hub datasets, with fingerprints of what was read.

Every raw frame gets ``_row`` (global row number across the source's files, in sorted
file order) and ``_origin`` (``file:line`` for JSON lines, ``file#index`` otherwise) so that
formats can build stable ids and ledger rows can point at the input.

Building blocks, each raising ``InputError`` naming the file: ``iter_decompressed`` /
``open_decompressed`` (bytes of a plain, .gz or .zst file; a cut or corrupt file is an
error, never a short read), ``parse_json_text`` (JSON or JSON lines told by content, one
parse path for both ``on_error`` modes; bad items come back as ``Bad``), ``iter_file`` (a
file in parts: lines, array items, record batches or CSV blocks), ``read_file``
(one file to a raw frame) and ``ledger_name`` (unique, readable ids for bad items).
"""

from __future__ import annotations

import glob
import hashlib
import io
import itertools
import os
import tempfile
import zlib
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from mixer.json_array import ArrayError, ArrayItems, Item
from mixer.json_values import json_type, unify
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


CHUNK = 1 << 20


def iter_decompressed(path: Path, chunk: int = CHUNK, digest: Any = None) -> Generator[bytes, None, None]:
    """The bytes of a file, decompressed by its suffix (.gz, .zst/.zstd), chunk by chunk;
    ``digest`` (a hashlib object) sees the file's own bytes as they are read.

    Every frame (zstd) or member (gzip) must be complete: a cut or corrupt file raises
    InputError naming it, like ``zstd -t`` / ``gzip -t``, because its records cannot be
    accounted for. Concatenated frames/members are read across.
    """
    name = path.name.lower()
    if name.endswith(".gz"):
        codec = "gzip"
    elif name.endswith((".zst", ".zstd")):
        codec = "zstd"
    else:
        codec = ""
    with open(path, "rb") as f:
        raw = _hashed(iter(lambda: f.read(chunk), b""), digest)
        yield from (_decompress(raw, codec, path) if codec else raw)


def _hashed(chunks: Iterator[bytes], digest: Any) -> Iterator[bytes]:
    """The file's bytes, fed to ``digest`` (a hashlib object) on the way: a fingerprint of
    what was read, computed in the same pass."""
    for c in chunks:
        if digest is not None:
            digest.update(c)
        yield c


def _new_decompressor(codec: str) -> Any:
    if codec == "gzip":
        return zlib.decompressobj(wbits=31)
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj()


def _decompress(chunks: Iterator[bytes], codec: str, path: Path) -> Iterator[bytes]:
    """Decompress frame after frame; a frame still open when the input ends is a truncation."""
    import zstandard

    dec, started, seen, frames = _new_decompressor(codec), False, False, 0
    try:
        for data in chunks:
            seen = True
            while data:
                if codec == "gzip" and frames and not started and not data.strip(b"\0"):
                    data = b""  # zero padding after the last member, as gzip(1) allows
                    break
                started = True
                out = dec.decompress(data)
                if out:
                    yield out
                if not dec.eof:
                    data = b""
                    break
                data, dec, started, frames = dec.unused_data, _new_decompressor(codec), False, frames + 1
    except (zlib.error, zstandard.ZstdError) as e:
        raise InputError(f"{path}: corrupt {codec} data ({e})") from None
    if not seen:
        raise InputError(f"{path}: empty file, not valid {codec} data")
    if started:
        raise InputError(f"{path}: truncated {codec} data (premature end of a compressed frame; the file is cut)")


def open_decompressed(path: Path, digest: Any = None) -> io.BufferedReader:
    """A readable binary stream over :func:`iter_decompressed` (raises InputError on a cut
    or corrupt file when the reader reaches it); ``digest`` sees the file's own bytes."""
    return io.BufferedReader(_ChunkStream(iter_decompressed(path, digest=digest)), CHUNK)


class _ChunkStream(io.RawIOBase):
    def __init__(self, chunks: Generator[bytes, None, None]):
        self._chunks, self._buf = chunks, memoryview(b"")

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self._chunks.close()  # closes the file the generator holds open
        super().close()

    def readinto(self, b: Any) -> int:
        while not self._buf:
            self._buf = memoryview(next(self._chunks, b""))
            if not self._buf:
                return 0
        n = min(len(b), len(self._buf))
        b[:n], self._buf = self._buf[:n], self._buf[n:]
        return n


def read_bytes(path: Path) -> bytes:
    """The whole decompressed content of a file (InputError when cut or corrupt)."""
    return b"".join(iter_decompressed(path))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


BOM = b"\xef\xbb\xbf"


@dataclass
class Bad:
    """A raw item that could not become a row: where in the file (``:line`` or ``#index``),
    the ledger reason, and the parser's message."""

    at: str
    reason: str
    error: str


def _frame_from_dicts(rows: list[dict], where: str) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame()
    unify(rows)
    try:
        return pl.from_dicts(rows, infer_schema_length=None, strict=False)
    except Exception as e:  # noqa: BLE001 - polars raises several types here
        raise InputError(f"{where}: records do not share a consistent schema ({str(e).splitlines()[0]})") from None


def _parse_lines(data: bytes, path: Path, on_error: str, first_line: int = 1) -> tuple[pl.DataFrame, list[Bad]]:
    """JSON lines, one ``orjson`` parse per line in both modes, so ``raise`` and ``skip``
    read every good line identically (duplicate keys: the last wins; a lone surrogate
    escape is a malformed line, never a NUL)."""
    rows, lines, bad = [], [], []
    for i, line in enumerate(data.split(b"\n"), start=first_line):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            if on_error == "raise":
                raise InputError(f"{path}:{i}: malformed JSON line ({e})") from None
            bad.append(Bad(f":{i}", "malformed_json", str(e)))
            continue
        if not isinstance(obj, dict):
            if on_error == "raise":
                raise InputError(f"{path}:{i}: expected a JSON object, got {json_type(obj)}")
            bad.append(Bad(f":{i}", "not_an_object", f"expected a JSON object, got {json_type(obj)}"))
            continue
        rows.append(obj)
        lines.append(i)
    df = _frame_from_dicts(rows, str(path))
    if df.height:
        df = df.with_columns(pl.format("{}:{}", pl.lit(str(path)), pl.Series(lines)).alias("_origin"))
    return df, bad


def _parse_document(obj: Any, path: Path, on_error: str, json_field: str | None) -> tuple[pl.DataFrame, list[Bad]]:
    """A whole JSON document: an array of objects (or one object); non-objects are removed
    under ``skip``, one by one."""
    if json_field:
        for key in json_field.split("."):
            if not isinstance(obj, dict) or key not in obj:
                raise InputError(f"{path}: load.field {json_field!r} not found in the JSON document")
            obj = obj[key]
    if isinstance(obj, dict):
        obj = [obj]
    if not isinstance(obj, list):
        raise InputError(f"{path}: expected a JSON array of objects, got {json_type(obj)}")
    return _items_frame(enumerate(obj), path, on_error)


def _items_frame(items: Iterable[tuple[int, Any]], path: Path, on_error: str) -> tuple[pl.DataFrame, list[Bad]]:
    """The items of a JSON array (index, value) as rows; non-objects are removed under
    ``skip``, one by one, and are an error naming the index under ``raise``."""
    rows, index, bad = [], [], []
    for i, r in items:
        if isinstance(r, dict):
            rows.append(r)
            index.append(i)
            continue
        if on_error == "raise":
            raise InputError(f"{path}#{i}: expected a JSON object, got {json_type(r)}")
        bad.append(Bad(f"#{i}", "not_an_object", f"expected a JSON object, got {json_type(r)}"))
    df = _frame_from_dicts(rows, str(path))
    if df.height:
        df = df.with_columns(pl.format("{}#{}", pl.lit(str(path)), pl.Series(index)).alias("_origin"))
    return df, bad


def parse_json_text(data: bytes, path: Path, kind: str, on_error: str, json_field: str | None = None) -> tuple[pl.DataFrame, list[Bad]]:
    """JSON or JSON lines, told apart by content, not by the file name or the error mode:
    a document that parses whole (an array, or an object with ``load.field``) is a JSON
    document; anything else is read line by line. A leading UTF-8 BOM is dropped."""
    if data.startswith(BOM):
        data = data[len(BOM):]
    head = data.lstrip()[:1]
    if kind == "json" or head == b"[":
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            # A ".json" file holding JSON lines, or JSON lines that open with an array line.
            if kind == "json" and not (head == b"{" and b"\n" in data.strip()):
                line = data[: getattr(e, "pos", 0)].count(b"\n") + 1
                raise InputError(f"{path}:{line}: malformed JSON ({e})") from None
        else:
            if kind == "json" or isinstance(obj, list):
                return _parse_document(obj, path, on_error, json_field)
    return _parse_lines(data, path, on_error)


def _parse_parquet(data: bytes | Path, path: Path) -> pl.DataFrame:
    """A whole parquet file; anything polars cannot read is an InputError naming the file."""
    try:
        return pl.read_parquet(data if isinstance(data, Path) else io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - polars/arrow raise many kinds on bad files
        msg = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise InputError(f"{path}: not a readable parquet file ({msg[:200]})") from None


def read_file(path: Path, ftype: str | None, on_error: str, json_field: str | None = None) -> tuple[pl.DataFrame, list[Bad]]:
    """One file to a raw frame, plus the raw items that could not be read (``skip``)."""
    kind = file_type(path, ftype)
    if kind in ("csv", "tsv"):
        frames = [df for df, _ in _iter_csv(path, kind, BATCH_BYTES, None)]
        return pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0], []
    if kind == "parquet":
        src = path if not path.name.lower().endswith(COMPRESSIONS) else read_bytes(path)
        df = _parse_parquet(src, path)
        return df.with_columns(pl.format("{}#{}", pl.lit(str(path)), pl.int_range(pl.len())).alias("_origin")), []
    return parse_json_text(read_bytes(path), path, kind, on_error, json_field)


def files_of(raw: pl.DataFrame) -> str:
    """The files a raw frame came from, for error messages (``a.jsonl``, ``a.jsonl and 2 more``)."""
    files = raw["_origin"].str.replace(r"(?::\d+|#\d+)$", "").unique(maintain_order=True) if "_origin" in raw.columns else pl.Series([], dtype=pl.Utf8)
    if files.len() == 0:
        return "(no file)"
    return files[0] + (f" and {files.len() - 1} more file(s)" if files.len() > 1 else "")


def ledger_name(path: Path, paths: list[Path]) -> str:
    """How malformed-item ids name a file: its path relative to the common folder of all the
    source's files (``a/x.jsonl`` and ``b/x.jsonl`` for ``*/x.jsonl``), so ids stay unique
    and readable."""
    if len(paths) < 2:
        return path.name
    common = Path(os.path.commonpath([str(p.parent) for p in paths]))
    return path.relative_to(common).as_posix()


BATCH_BYTES = 32 << 20


def iter_file(path: Path, ftype: str | None, on_error: str, json_field: str | None = None, digest: Any = None,
              batch_bytes: int = BATCH_BYTES, scratch: Path | None = None) -> Iterator[tuple[pl.DataFrame, list[Bad]]]:
    """One file as raw frames of about ``batch_bytes`` each, plus its unreadable items.

    JSON lines (plain or compressed) are cut at line ends and parsed part by part; parquet
    is read by record batches, CSV/TSV by blocks of about ``batch_bytes``, a JSON document
    that is one array by its items (``_iter_array``). A compressed parquet file is
    decompressed as a stream into a file in ``scratch`` (parquet needs random access) and
    read from there by record batches; without ``scratch`` it is read whole. Read whole: a
    JSON document that is an object (one record, or ``load.field`` naming the array inside
    it). ``digest`` sees the file's bytes in the same pass (else it reads the file once more)."""
    kind = file_type(path, ftype)
    if kind == "parquet" and not path.name.lower().endswith(COMPRESSIONS):
        yield from _iter_parquet(path, batch_bytes)
        _digest_file(path, digest)
        return
    if kind in ("csv", "tsv"):
        yield from _iter_csv(path, kind, batch_bytes, digest)
        return
    if kind == "parquet" and scratch is not None:
        with tempfile.NamedTemporaryFile(dir=scratch, suffix=".parquet") as plain:
            for chunk in iter_decompressed(path, digest=digest):
                plain.write(chunk)
            plain.flush()
            yield from _iter_parquet(Path(plain.name), batch_bytes, path)
        return
    if kind == "parquet":
        yield read_file(path, ftype, on_error, json_field)
        _digest_file(path, digest)
        return
    chunks = iter_decompressed(path, digest=digest)
    head = b""
    for c in chunks:  # enough of the start to tell a document from lines
        head += c
        if head.lstrip(BOM + b" \t\r\n") or len(head) > batch_bytes:
            break
    start = head[len(BOM):] if head.startswith(BOM) else head
    if start.lstrip()[:1] == b"[" and not json_field:
        yield from _iter_array(itertools.chain([start], chunks), path, kind, on_error, batch_bytes)
        return
    if kind == "json" or start.lstrip()[:1] == b"[":
        yield parse_json_text(b"".join([head, *chunks]), path, kind, on_error, json_field)
        return
    yield from _iter_lines(itertools.chain([start], chunks), path, on_error, batch_bytes)


def _iter_array(chunks: Iterator[bytes], path: Path, kind: str, on_error: str, batch_bytes: int) -> Iterator[tuple[pl.DataFrame, list[Bad]]]:
    """A JSON document that is one array, in parts of about ``batch_bytes`` of items, each
    item parsed on its own (``mixer.json_array``). A file not named ``.json`` whose array
    is followed by more data is JSON lines opening with an array line: read as lines
    (possible while no part has been handed out, which a one-line array never is)."""
    split = ArrayItems()
    seen: list[bytes] = []  # the bytes so far, while a fallback to lines is still possible
    items: list[Item] = []
    size, index, emitted = 0, 0, False
    for c in itertools.chain(chunks, [None]):
        try:
            if c is None:
                split.close()
                new = []
            else:
                if not emitted:
                    seen.append(c)
                new = split.feed(c)
        except ArrayError as e:
            raise InputError(f"{path}:{e.line}: malformed JSON ({e})") from None
        if split.after:
            if kind != "json" and not emitted:
                yield from _iter_lines(itertools.chain(seen, chunks), path, on_error, batch_bytes)
                return
            raise InputError(f"{path}:{split.line}: malformed JSON (data after the array: {split.after[:20]!r})")
        for item in new:
            items.append(item)
            size += len(item.data)
            if size >= batch_bytes:
                yield _parse_items(items, index, path, on_error)
                emitted, seen = True, []
                index += len(items)
                items, size = [], 0
        if c is None and (items or not emitted):
            yield _parse_items(items, index, path, on_error)


def _parse_items(items: list[Item], first: int, path: Path, on_error: str) -> tuple[pl.DataFrame, list[Bad]]:
    def parsed() -> Iterator[tuple[int, Any]]:
        for k, item in enumerate(items):
            try:
                yield first + k, orjson.loads(item.data)
            except orjson.JSONDecodeError as e:
                line = item.line + item.data[: getattr(e, "pos", 0)].count(b"\n")
                raise InputError(f"{path}:{line}: malformed JSON ({e})") from None

    return _items_frame(parsed(), path, on_error)


def _iter_lines(chunks: Iterator[bytes], path: Path, on_error: str, batch_bytes: int) -> Iterator[tuple[pl.DataFrame, list[Bad]]]:
    """JSON lines parsed in parts of about ``batch_bytes``, each cut at a line end (a line
    longer than that is one part); line numbers run on across parts."""
    pending: list[bytes] = []
    size, line, emitted = 0, 1, False
    for c in itertools.chain(chunks, [None]):
        final = c is None
        if c:
            pending.append(c)
            size += len(c)
        if not final and size < batch_bytes:
            continue
        data = b"".join(pending)  # joined once per part, not once per chunk
        while data and (final or len(data) >= batch_bytes):
            cut = data.rfind(b"\n", 0, batch_bytes) + 1 or data.find(b"\n", batch_bytes) + 1
            if cut == 0:
                if not final:
                    break  # a line longer than a part: read on
                cut = len(data)
            yield _parse_lines(data[:cut], path, on_error, line)
            emitted = True
            line += data.count(b"\n", 0, cut)
            data = data[cut:]
        pending, size = [data], len(data)
    if not emitted:
        yield _parse_lines(b"", path, on_error, line)


def _iter_parquet(path: Path, batch_bytes: int, named: Path | None = None) -> Iterator[tuple[pl.DataFrame, list[Bad]]]:
    """A parquet file by record batches; ``named``: the file it was decompressed from (what
    the rows' origins and errors name)."""
    import pyarrow.parquet as pq

    named = named or path
    try:
        f = pq.ParquetFile(path)
        meta = f.metadata
        per_row = 3 * path.stat().st_size / max(1, meta.num_rows)  # decoded rows are larger than stored ones
        rows = max(1024, int(batch_bytes / max(1.0, per_row)))
        at = 0
        for batch in f.iter_batches(batch_size=rows):
            df = pl.from_arrow(batch)
            assert isinstance(df, pl.DataFrame)
            yield df.with_columns(pl.format("{}#{}", pl.lit(str(named)), pl.int_range(at, at + df.height)).alias("_origin")), []
            at += df.height
        if meta.num_rows == 0:
            yield pl.DataFrame(), []
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - arrow raises many kinds on bad files
        msg = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise InputError(f"{named}: not a readable parquet file ({msg[:200]})") from None


def _iter_csv(path: Path, kind: str, batch_bytes: int, digest: Any) -> Iterator[tuple[pl.DataFrame, list[Bad]]]:
    """CSV/TSV (plain or compressed) by blocks of about ``batch_bytes``, every column a
    string (as ``pl.read_csv(infer_schema_length=0)``: an empty field is null), each
    block a frame; ``_origin`` is ``file#index`` counted across blocks."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    parse = pacsv.ParseOptions(delimiter="\t" if kind == "tsv" else ",", newlines_in_values=True)
    read = pacsv.ReadOptions(block_size=max(1 << 12, min(batch_bytes, 1 << 30)), use_threads=False)
    try:
        with open_decompressed(path) as f:  # the header only: the column names, so all can be strings
            head = f.peek(1 << 16)[: 1 << 16]
            if not head.removeprefix(BOM).strip() and len(f.read(1 << 16)) < 1 << 16:
                raise InputError(f"{path}: empty {kind.upper()} file (no header, no rows)")
            names = pacsv.open_csv(f, read_options=read, parse_options=parse).schema.names
        convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=True,
                                       quoted_strings_can_be_null=False, null_values=[""])
        at = 0
        with open_decompressed(path, digest) as f:
            for batch in pacsv.open_csv(f, read_options=read, parse_options=parse, convert_options=convert):
                df = pl.from_arrow(batch)
                assert isinstance(df, pl.DataFrame)
                yield df.with_columns(pl.format("{}#{}", pl.lit(str(path)), pl.int_range(at, at + df.height)).alias("_origin")), []
                at += df.height
        if at == 0:
            yield pl.DataFrame({n: [] for n in names}, schema=dict.fromkeys(names, pl.Utf8)), []
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - arrow raises many kinds on bad files
        msg = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        if "Empty CSV file" in msg:
            raise InputError(f"{path}: empty {kind.upper()} file (no header, no rows)") from None
        raise InputError(f"{path}: not a readable {kind} file ({msg[:200]})") from None


def _digest_file(path: Path, digest: Any) -> None:
    if digest is not None:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                digest.update(chunk)


def iter_files(patterns: list[str], root: Path, source: str, ftype: str | None = None, on_error: str = "raise",
               json_field: str | None = None, batch_bytes: int = BATCH_BYTES, scratch: Path | None = None) -> Iterator[Loaded]:
    """The files of a source as consecutive parts (``_row`` numbered across all of them);
    malformed items become ledger rows under ``on_error: skip``. A file's fingerprint goes
    with its last part (``Loaded.inputs``), computed while its bytes are read. ``scratch``:
    a folder for decompressed parquet files (``iter_file``)."""
    paths = expand_paths(patterns, root)
    seen: dict[Path, int] = {}
    n = 0
    for path in paths:
        digest = hashlib.sha256()
        rows = 0
        name = ledger_name(path, paths)
        repeat = f"@{seen[path]}" if seen.get(path) else ""  # the same file named twice
        seen[path] = seen.get(path, 0) + 1
        parts = iter_file(path, ftype, on_error, json_field, digest, batch_bytes, scratch)
        part = next(parts, None)
        while part is not None:
            df, bad = part
            part = next(parts, None)
            rows += df.height + len(bad)
            removed = empty_removed()
            if bad:
                ids = [f"{source}:bad:{name}{repeat}{b.at}" for b in bad]
                removed = removed_frame(ids, source, "load", [b.reason for b in bad], [f"{path}{b.at}: {b.error}" for b in bad])
            raw = df.with_columns(pl.int_range(n, n + df.height, dtype=pl.Int64).alias("_row")) if df.height else _empty_raw()
            n += df.height
            inputs = [] if part is not None else [{"path": str(path), "sha256": digest.hexdigest(), "bytes": path.stat().st_size, "rows": rows}]
            yield Loaded(raw, removed, inputs)


def _empty_raw() -> pl.DataFrame:
    return pl.DataFrame({"_row": [], "_origin": []}, schema={"_row": pl.Int64, "_origin": pl.Utf8})


def concat_loaded(parts: Iterable[Loaded]) -> Loaded:
    """Parts of a source as one ``Loaded`` (for callers that want the whole source)."""
    frames, removed, inputs = [], [], []
    for p in parts:
        if p.raw.height:
            frames.append(p.raw)
        if p.removed.height:
            removed.append(p.removed)
        inputs.extend(p.inputs)
    raw = pl.concat(frames, how="diagonal_relaxed") if frames else _empty_raw()
    return Loaded(raw, pl.concat(removed) if removed else empty_removed(), inputs)


def load_files(patterns: list[str], root: Path, source: str, ftype: str | None = None, on_error: str = "raise", json_field: str | None = None) -> Loaded:
    """Read and concatenate files; malformed lines become ledger rows under ``on_error: skip``."""
    return concat_loaded(iter_files(patterns, root, source, ftype, on_error, json_field))


def load_hub(path: str, name: str | None, split: str, revision: str | None, data_files: Any, source: str, root: Path) -> Loaded:
    """A hub dataset whole (:func:`iter_hub`, concatenated)."""
    return concat_loaded(iter_hub(path, name, split, revision, data_files, source, root))


def iter_hub(path: str, name: str | None, split: str, revision: str | None, data_files: Any, source: str, root: Path,
             batch_bytes: int = BATCH_BYTES) -> Iterator[Loaded]:
    """``datasets.load_dataset``, then its Arrow table (memory-mapped from the local cache)
    in record batches of about ``batch_bytes``; the same code path serves packaged
    builders on local files (``hub: json`` with ``data_files``), which is how the tests
    exercise it offline. Opens the dataset at once (HubUnavailable is raised here), reads
    it lazily."""
    if data_files is not None:
        def _abs(p: str) -> str:
            return p if "://" in p or Path(p).is_absolute() else str(root / p)

        if isinstance(data_files, str):
            data_files = _abs(data_files)
        elif isinstance(data_files, list):
            data_files = [_abs(p) for p in data_files]
        elif isinstance(data_files, dict):
            data_files = {k: ([_abs(x) for x in v] if isinstance(v, list) else _abs(v)) for k, v in data_files.items()}
    ds = _open_hub(path, name, split, revision, data_files)
    info = {"hub": path, "name": name, "split": split, "revision": revision, "fingerprint": getattr(ds, "_fingerprint", None), "rows": ds.num_rows}
    if data_files is not None:
        info["data_files"] = data_files
    return _hub_parts(ds.data.table, path, split, info, batch_bytes)


def _open_hub(path: str, name: str | None, split: str, revision: str | None, data_files: Any) -> Any:
    import datasets

    try:
        return datasets.load_dataset(path, name=name, split=split, revision=revision, data_files=data_files)
    except Exception as e:  # noqa: BLE001 - datasets raises many kinds when offline
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        rev = f" --revision {revision}" if revision else ""
        raise HubUnavailable(
            f"cannot load hub dataset {path!r} (name={name}, split={split}, revision={revision}): {msg}. "
            f"Pre-download it with `huggingface-cli download --repo-type dataset {path}{rev} --local-dir DIR` "
            f"and point load.path at DIR's files (or set HF_DATASETS_OFFLINE=1 with a warm cache)."
        ) from None


def _hub_parts(table: Any, path: str, split: str, info: dict[str, Any], batch_bytes: int) -> Iterator[Loaded]:
    """The table's record batches as parts (``_row`` and ``_origin`` counted across them);
    the dataset's info goes with the last part."""
    per_row = table.nbytes / max(1, table.num_rows)
    rows = max(1024, int(batch_bytes / max(1.0, per_row)))
    batches = [b for b in table.to_batches(max_chunksize=rows) if b.num_rows] if table.num_rows else []
    if not batches:
        yield Loaded(_empty_raw(), empty_removed(), [info])
        return
    at = 0
    for k, batch in enumerate(batches):
        raw = pl.from_arrow(batch)
        if isinstance(raw, pl.Series):
            raw = raw.to_frame()
        raw = raw.with_columns(
            pl.int_range(at, at + raw.height, dtype=pl.Int64).alias("_row"),
            pl.format("{}[{}]#{}", pl.lit(path), pl.lit(split), pl.int_range(at, at + raw.height)).alias("_origin"),
        )
        at += raw.height
        yield Loaded(raw, empty_removed(), [info] if k == len(batches) - 1 else [])
