"""MinHash-LSH near-duplicate clustering over a record frame, bounded in memory.

Records are processed in chunks of about ``chunk_bytes`` of text, on ``threads`` worker
threads (numpy and polars release the GIL in the heavy parts). Each chunk is normalized,
shingled, hashed, signed and banded; only its signature rows and band keys are kept. When
the signature matrix would exceed ``memory_mb``, signatures and band keys live in
memory-mapped files under a spill folder (deleted afterwards), so a pool of millions needs
only the per-band sort in RAM. For exact Jaccard verification the shingle sets are written
to a file as they are computed and read back memory-mapped.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mixer.cpus import parallel_map, usable_cpus
from mixer.dedup import lsh
from mixer.dedup.jaccard import pair_jaccard, set_fingerprints, sorted_unique, unique_sets
from mixer.dedup.progress import progress_task
from mixer.dedup.shingle import Shingling, hash_shingles, normalize_bytes
from mixer.dedup.signatures import minhash, permutations
from mixer.records import message_lists, text_of


@dataclass(frozen=True)
class MinHashParams:
    """Everything that determines signatures and band keys (saved with a build)."""

    shingling: Shingling = field(default_factory=Shingling)
    text: str = "all"
    num_perm: int = 128
    seed: int = 1
    threshold: float = 0.8
    bands: int = 9
    rows: int = 13

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MinHashParams:
        data = dict(data)
        data["shingling"] = Shingling(**data.get("shingling", {}))
        return cls(**data)


class SetStore:
    """Every record's sorted unique shingle hashes, appended chunk by chunk (in any order)
    to a file and read back memory-mapped: exact verification without recomputing shingles
    and without holding them all in RAM."""

    def __init__(self, n: int, folder: Path, threads: int = 1):
        self.path = folder / "shingle_sets.u32"
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in finish()
        self._lock = threading.Lock()
        self._pos = 0
        self.starts = np.zeros(n, dtype=np.int64)
        self.sizes = np.zeros(n, dtype=np.int64)
        self.fingerprints = np.zeros(n, dtype=np.uint64)
        self.values: np.ndarray = np.zeros(0, dtype=np.uint32)
        self.threads = threads  # for jaccard()

    def add(self, i0: int, hashes: np.ndarray, offsets: np.ndarray) -> None:
        set_off, values = unique_sets(hashes, offsets)
        with self._lock:
            pos = self._pos
            self._file.write(values.tobytes())
            self._pos += len(values)
        self.starts[i0 : i0 + len(set_off) - 1] = pos + set_off[:-1]
        self.sizes[i0 : i0 + len(set_off) - 1] = np.diff(set_off)
        self.fingerprints[i0 : i0 + len(set_off) - 1] = set_fingerprints(set_off, values)

    def finish(self) -> None:
        self._file.close()
        if self._pos:
            self.values = np.memmap(self.path, dtype=np.uint32, mode="r", shape=(self._pos,))

    def jaccard(self, a: np.ndarray, b: np.ndarray, batch: int = 20_000) -> np.ndarray:
        """Exact Jaccard of pairs. Identical sets (same size and fingerprint: exact copies
        after normalization, common in real mixes) score 1 without reading their members;
        the rest are compared in batches on ``threads`` threads."""
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        out = np.ones(len(a), dtype=np.float64)
        same = (self.sizes[a] == self.sizes[b]) & (self.fingerprints[a] == self.fingerprints[b]) & (self.sizes[a] > 0)
        todo = np.flatnonzero(~same)

        def part(s: int) -> tuple[int, np.ndarray]:
            k = todo[s : s + batch]
            return s, pair_jaccard(self.starts, self.sizes, self.values, a[k], b[k])

        for s, jac in parallel_map(part, list(range(0, len(todo), batch)), self.threads):
            out[todo[s : s + batch]] = jac
        return out


@dataclass
class Signatures:
    sig: np.ndarray  # (n, num_perm) uint32, possibly a memmap
    keys: np.ndarray  # (bands, n) uint64, possibly a memmap
    nonempty: np.ndarray  # (n,) bool: the record has at least one shingle
    lengths: np.ndarray  # (n,) int64: characters of the compared text (before normalization)
    sets: SetStore | None = None  # shingle sets, when exact verification needs them
    spill_dir: Path | None = None

    def close(self) -> None:
        """Drop spilled files (they are intermediate, never part of the build)."""
        if self.spill_dir is not None:
            self.sig = self.keys = np.zeros((0, 0))
            self.sets = None
            shutil.rmtree(self.spill_dir, ignore_errors=True)
            self.spill_dir = None


def approx_bytes(frame: pl.DataFrame) -> np.ndarray:
    """Content bytes per record, used only to size chunks."""
    parts = [
        pl.col(c).list.eval(pl.element().struct.field("content").str.len_bytes()).list.sum().fill_null(0)
        for c in message_lists(frame)
    ]
    return frame.select(pl.sum_horizontal(parts).alias("b"))["b"].to_numpy().astype(np.int64)


def chunk_bounds(weights: np.ndarray, target: int, max_rows: int = 65_536) -> list[tuple[int, int]]:
    """Consecutive [start, end) row ranges of about ``target`` total weight each."""
    n = len(weights)
    if n == 0:
        return []
    cum = np.cumsum(np.asarray(weights, dtype=np.int64) + 64)  # + per-record overhead
    bounds, start = [], 0
    while start < n:
        base = cum[start - 1] if start else 0
        end = int(np.searchsorted(cum, base + target, side="right"))
        end = min(max(end, start + 1), start + max_rows, n)
        bounds.append((start, end))
        start = end
    return bounds


def normalized_texts(frame: pl.DataFrame, params: MinHashParams) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """The compared text view, normalized (UTF-8 bytes and offsets); and the raw view's
    length in characters."""
    raw = text_of(frame, params.text).fill_null("")
    return normalize_bytes(raw, params.shingling), raw.str.len_chars().to_numpy().astype(np.int64)


def _alloc(shape: tuple[int, ...], dtype: Any, spill: Path | None, name: str) -> np.ndarray:
    if spill is None:
        return np.empty(shape, dtype=dtype)
    return np.lib.format.open_memmap(spill / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)


def compute_signatures(frame: pl.DataFrame, params: MinHashParams, threads: int | None = None,
                       memory_mb: int = 2048, spill_root: Path | None = None, chunk_bytes: int = 2_000_000,
                       progress: Any = None, keep_sets: bool = False) -> Signatures:
    """Signatures and band keys of every record of ``frame`` (row order); with ``keep_sets``
    also every record's shingle set (on disk, memory-mapped)."""
    n = frame.height
    perms = permutations(params.num_perm, params.seed)
    big = n * params.num_perm * 4 > memory_mb * 2**20
    folder = None
    if big or keep_sets:
        if spill_root is not None:
            spill_root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="minhash-", dir=spill_root))
    sig = _alloc((n, params.num_perm), np.uint32, folder if big else None, "signatures")
    keys = _alloc((params.bands, n), np.uint64, folder if big else None, "band_keys")
    nonempty = np.zeros(n, dtype=bool)
    lengths = np.zeros(n, dtype=np.int64)
    sets = SetStore(n, folder, threads or usable_cpus()) if keep_sets and folder is not None else None
    bounds = chunk_bounds(approx_bytes(frame), chunk_bytes)

    def work(bound: tuple[int, int]) -> int:
        i0, i1 = bound
        texts, lens = normalized_texts(frame.slice(i0, i1 - i0), params)
        offsets, hashes = hash_shingles(texts, params.shingling)
        block = minhash(hashes, offsets, perms)
        sig[i0:i1] = block
        keys[:, i0:i1] = lsh.band_keys(block, params.bands, params.rows)
        nonempty[i0:i1] = np.diff(offsets) > 0
        lengths[i0:i1] = lens
        if sets is not None:
            sets.add(i0, hashes, offsets)
        return i1 - i0

    try:
        with progress_task("minhash: signatures", n, progress) as advance:
            for done in parallel_map(work, bounds, threads or usable_cpus()):
                advance(done)
    finally:
        if sets is not None:
            sets.finish()
    return Signatures(sig, keys, nonempty, lengths, sets, folder)


def band_candidates(keys: np.ndarray, nonempty: np.ndarray, progress: Any = None, threads: int | None = None) -> np.ndarray:
    """Unique candidate edges from all bands of ``keys`` (bands, n); records without
    shingles never match. Bands are sorted on ``threads`` threads."""
    index = np.flatnonzero(nonempty)
    parts: list[np.ndarray] = []  # packed edges (lsh.pack_edges): one word each
    held, bound = 0, 20_000_000
    bands = keys.shape[0]
    with progress_task("minhash: LSH bands", bands, progress) as advance:
        for packed in parallel_map(lambda j: lsh.pack_edges(lsh.band_edges(np.asarray(keys[j])[index], index)), list(range(bands)),
                                   threads or usable_cpus()):
            parts.append(packed)
            held += len(packed)
            if held > bound:  # deduplicated whenever the held edges have doubled
                parts = [_merged_unique(parts)]
                held = len(parts[0])
                bound = max(bound, 2 * held)
            advance(1)
    return lsh.unpack_edges(_merged_unique(parts))


def _merged_unique(parts: list[np.ndarray]) -> np.ndarray:
    """Distinct values of ``parts``, sorted (one copy: the merged array is sorted in place)."""
    merged = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
    parts.clear()
    return sorted_unique(merged, in_place=True)


@dataclass
class Clusters:
    """Outcome: for every record, its cluster label and the record kept for its cluster."""

    labels: np.ndarray  # (n,) component label
    kept_of: np.ndarray  # (n,) row of the kept record of the cluster (itself when kept)
    size: np.ndarray  # (n,) size of the record's cluster
    candidates: int  # candidate edges before verification
    edges: int  # edges after verification

    @property
    def removed(self) -> np.ndarray:
        return np.flatnonzero(self.kept_of != np.arange(len(self.kept_of)))


def resolve(n: int, edges: np.ndarray, rank: np.ndarray, candidates: int | None = None) -> Clusters:
    """Connected components of ``edges``; in each, the record with the lowest ``rank`` is kept."""
    labels = lsh.components(n, edges)
    order = np.lexsort((rank, labels))
    first = np.empty(len(order), dtype=bool)
    if len(order):
        first[0] = True
        first[1:] = labels[order][1:] != labels[order][:-1]
    kept_for_label = np.empty(int(labels.max()) + 1 if n else 0, dtype=np.int64)
    kept_for_label[labels[order][first]] = order[first]
    size = np.bincount(labels, minlength=len(kept_for_label))
    return Clusters(labels, kept_for_label[labels], size[labels], len(edges) if candidates is None else candidates, len(edges))
