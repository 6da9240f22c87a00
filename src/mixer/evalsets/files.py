"""User-defined eval sets read from a file: name, path, format, prompt field, answer field.

Fields are dotted paths into the record, with integers indexing lists
(``instances.0.input``); a list of fields is joined with newlines, so an Alpaca-style
``[instruction, input]`` pair becomes one prompt.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import polars as pl

from mixer.evalsets.base import EvalSetError

FORMATS = ("auto", "jsonl", "json", "parquet", "csv", "txt")


def read_table(path: Path, fmt: str = "auto") -> pl.DataFrame:
    """A local jsonl/json/parquet/csv/txt file (optionally .gz/.zst) as a frame."""
    name = path.name
    comp = None
    for ext in (".gz", ".zst"):
        if name.endswith(ext):
            comp, name = ext, name[: -len(ext)]
    if fmt == "auto":
        suffix = Path(name).suffix.lstrip(".")
        fmt = {"ndjson": "jsonl", "tsv": "csv"}.get(suffix, suffix)
    if fmt not in FORMATS[1:]:
        raise EvalSetError(f"{path}: unknown eval-set format {fmt!r}; use one of {FORMATS[1:]}")
    if not path.exists():
        raise EvalSetError(f"eval-set file not found: {path}")
    data: bytes | Path = path
    if comp is not None:
        raw = path.read_bytes()
        if comp == ".gz":
            data = gzip.decompress(raw)
        else:
            import zstandard

            data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
    src = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        if fmt == "jsonl":
            return pl.read_ndjson(src, infer_schema_length=None)
        if fmt == "json":
            return pl.read_json(src, infer_schema_length=None)
        if fmt == "parquet":
            return pl.read_parquet(src)
        if fmt == "csv":
            return pl.read_csv(src, infer_schema=False)
        text = data.decode() if isinstance(data, bytes) else Path(data).read_text(encoding="utf-8")
        return pl.DataFrame({"text": [t for t in text.splitlines() if t.strip()]}, schema={"text": pl.Utf8})
    except Exception as e:
        raise EvalSetError(f"{path}: cannot read as {fmt} ({e.__class__.__name__}: {str(e)[:200]})") from None


def field_expr(schema: pl.Schema, path: str, where: str) -> pl.Expr:
    """An expression reading dotted ``path`` (``a.b.0.c``) out of a frame with ``schema``."""
    parts = path.split(".")
    if parts[0] not in schema:
        raise EvalSetError(f"{where}: no field {parts[0]!r} (fields: {', '.join(schema)})")
    expr, dtype = pl.col(parts[0]), schema[parts[0]]
    for part in parts[1:]:
        if isinstance(dtype, pl.List) and part.lstrip("-").isdigit():
            expr, dtype = expr.list.get(int(part), null_on_oob=True), dtype.inner
        elif isinstance(dtype, pl.Struct) and part in {f.name for f in dtype.fields}:
            expr = expr.struct.field(part)
            dtype = next(f.dtype for f in dtype.fields if f.name == part)
        else:
            raise EvalSetError(f"{where}: cannot follow {part!r} in {path!r} (type there: {dtype})")
    if isinstance(dtype, pl.List):
        return expr.cast(pl.List(pl.Utf8)).list.join("\n")
    return expr.cast(pl.Utf8)


def join_fields(schema: pl.Schema, fields: str | list[str], where: str) -> pl.Expr:
    fs = [fields] if isinstance(fields, str) else list(fields)
    exprs = [field_expr(schema, f, where) for f in fs]
    if len(exprs) == 1:
        return exprs[0]
    # skip empty parts (an Alpaca item with no input) rather than leaving blank lines
    parts = [pl.when(e.fill_null("").str.strip_chars() != "").then(e) for e in exprs]
    return pl.concat_str(parts, separator="\n", ignore_nulls=True)


def load_file_evalset(
    name: str,
    path: Path,
    fmt: str = "auto",
    prompt_field: str | list[str] = "prompt",
    answer_field: str | list[str] | None = None,
    id_field: str | None = None,
) -> pl.DataFrame:
    """Instances from one file; ids are ``id_field`` values or ``name/row``."""
    df = read_table(path, fmt)
    where = f"eval set {name!r} ({path})"
    if fmt in ("txt",) or (fmt == "auto" and path.name.endswith((".txt", ".txt.gz"))):
        prompt_field = "text" if prompt_field == "prompt" else prompt_field
    ids = (
        pl.format("{}/{}", pl.lit(name), field_expr(df.schema, id_field, where))
        if id_field
        else pl.format("{}/{}", pl.lit(name), pl.int_range(pl.len()))
    )
    answer = join_fields(df.schema, answer_field, where) if answer_field else pl.lit(None, dtype=pl.Utf8)
    return df.select(ids.alias("instance_id"), join_fields(df.schema, prompt_field, where).alias("prompt"), answer.alias("answer"))
