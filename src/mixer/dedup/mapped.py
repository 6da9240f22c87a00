"""Arrays kept in an unlinked file of the build's temp folder and mapped shared.

A step's large scratch arrays (MinHash signatures and shingle sets of the edge endpoints)
live in the page cache while memory is free and go to disk when it is not, instead of in
the process's own memory; ``release`` drops the pages this process has touched from its
resident set (the data stays in the file), so a pass over the array costs its pages only
while it runs.
"""

from __future__ import annotations

import mmap
import tempfile
from pathlib import Path
from typing import IO

import numpy as np


class MappedArray:
    def __init__(self, file: IO[bytes], shape: tuple[int, ...], dtype: type, writable: bool):
        self._file = file  # kept open as long as the mapping
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        self._map = mmap.mmap(file.fileno(), nbytes, access=mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ) if nbytes else None
        self.array = np.frombuffer(self._map, dtype).reshape(shape) if self._map is not None else np.zeros(shape, dtype)

    @classmethod
    def zeros(cls, shape: tuple[int, ...], dtype: type, folder: Path | None) -> MappedArray:
        f = tempfile.TemporaryFile(dir=folder)
        f.truncate(int(np.prod(shape)) * np.dtype(dtype).itemsize)
        return cls(f, shape, dtype, writable=True)

    @classmethod
    def of_file(cls, file: IO[bytes], count: int, dtype: type) -> MappedArray:
        """The first ``count`` items written to ``file``, read-only."""
        file.flush()
        return cls(file, (count,), dtype, writable=False)

    def release(self) -> None:
        if self._map is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)
