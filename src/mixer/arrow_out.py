"""Writing build frames with the Arrow types ordinary Hugging Face datasets have.

polars writes ``large_string`` / ``large_list``; ``datasets.concatenate_datasets`` then
refuses to mix a build with ``Dataset.from_list([{"messages": [...]}])`` (``string`` /
``list``). Casting the whole schema down before writing keeps builds interchangeable.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq


def small_type(t: pa.DataType) -> pa.DataType:
    """``t`` with every large/view string and list replaced by its 32-bit-offset form."""
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_large_list(t) or pa.types.is_list(t) or pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return pa.list_(pa.field("item", small_type(t.value_type), nullable=True))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, small_type(f.type), f.nullable) for f in t])
    return t


def to_table(frame: pl.DataFrame) -> pa.Table:
    """The frame as an Arrow table with ``string`` / ``list`` types."""
    table = frame.to_arrow()
    schema = pa.schema([pa.field(f.name, small_type(f.type), f.nullable) for f in table.schema])
    return table.cast(schema)


def write_frame(frame: pl.DataFrame, path: Path, row_group_size: int = 50_000) -> None:
    """Parquet with zstd, statistics and ``string`` / ``list`` types (same bytes for the
    same frame: no timestamps are written)."""
    # one contiguous chunk: the writer's page breaks follow the input's chunks, which depend
    # on how the frame was assembled (batches, engine), never on its rows
    pq.write_table(to_table(frame).combine_chunks(), path, compression="zstd", write_statistics=True, row_group_size=row_group_size)
