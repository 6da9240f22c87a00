"""Embeddings on disk, keyed by (encoder fingerprint, text), in append-only shards.

A folder per fingerprint under the cache root (default ``~/.cache/mixer/embeddings``, or
``$MIXER_CACHE/embeddings``) holds shards ``NAME.vecs.npy`` + ``NAME.keys.npy`` (128-bit
BLAKE2b of each text). A shard counts once its keys file exists, and that file is renamed
into place after the vectors: an interrupted pass loses at most the shard in progress and
the next run computes only what is missing. The same texts in another build, spec or
selection are never embedded twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from mixer.progress import step_bar

if TYPE_CHECKING:  # encoders imports torch; the static path never needs it
    from mixer.select.encoders import Encoder

KEY = np.dtype([("hi", ">u8"), ("lo", ">u8")])
STORE = {"float32": np.float32, "float16": np.float16}


def cache_home() -> Path:
    """The mixer cache (``$MIXER_CACHE``, default ``~/.cache/mixer``)."""
    return Path(os.environ.get("MIXER_CACHE") or "~/.cache/mixer").expanduser()


def default_root() -> Path:
    return cache_home() / "embeddings"


def text_keys(texts: list[str]) -> np.ndarray:
    """128-bit content keys. hashlib per text: a C call each, ~1 s per million texts, and
    stable across library versions (polars' hash is not)."""
    digests = b"".join(hashlib.blake2b(t.encode("utf-8"), digest_size=16).digest() for t in texts)
    return np.frombuffer(digests, dtype=KEY).copy()


def _write_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + f".tmp-{uuid.uuid4().hex[:8]}")
    with tmp.open("wb") as f:
        np.save(f, arr)
    tmp.replace(path)


@dataclass
class EmbedStats:
    texts: int = 0
    unique: int = 0
    reused: int = 0
    computed: int = 0
    seconds: float = 0.0
    shards_written: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["seconds"] = round(self.seconds, 3)
        d["rate_per_s"] = round(self.computed / self.seconds, 2) if self.seconds and self.computed else None
        return d


class EmbeddingCache:
    """The shards of one encoder fingerprint (and storage dtype)."""

    def __init__(self, root: Path, fingerprint: dict[str, Any], store: str = "float32"):
        self.store = store
        fp = {**fingerprint, "store": store}
        digest = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(fingerprint.get("model", "model")))[-48:]
        self.dir = Path(root).expanduser() / f"{slug}-{digest}"
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "fingerprint.json"
        if not meta.exists():
            _write_text(meta, json.dumps(fp, indent=2, sort_keys=True))
        self.fingerprint = fp

    def shards(self) -> list[str]:
        return sorted(p.name[: -len(".keys.npy")] for p in self.dir.glob("*.keys.npy"))

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(shard number, row) per key, -1 where absent; and the shard names numbered."""
        names = self.shards()
        shard = np.full(keys.shape[0], -1, dtype=np.int64)
        row = np.full(keys.shape[0], -1, dtype=np.int64)
        if not names or keys.shape[0] == 0:
            return shard, row, names
        parts = [np.load(self.dir / f"{n}.keys.npy") for n in names]
        all_keys = np.concatenate(parts)
        all_shard = np.concatenate([np.full(p.shape[0], i, dtype=np.int64) for i, p in enumerate(parts)])
        all_row = np.concatenate([np.arange(p.shape[0], dtype=np.int64) for p in parts])
        order = np.argsort(all_keys, kind="stable")
        sk = all_keys[order]
        pos = np.searchsorted(sk, keys)
        pos_c = np.minimum(pos, sk.shape[0] - 1)
        hit = (pos < sk.shape[0]) & (sk[pos_c] == keys)
        shard[hit] = all_shard[order[pos_c[hit]]]
        row[hit] = all_row[order[pos_c[hit]]]
        return shard, row, names

    def write(self, keys: np.ndarray, vecs: np.ndarray) -> str:
        name = f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        _write_npy(self.dir / f"{name}.vecs.npy", np.ascontiguousarray(vecs, dtype=STORE[self.store]))
        _write_npy(self.dir / f"{name}.keys.npy", keys)  # last: its presence marks the shard whole
        return name

    def gather(self, shard: np.ndarray, row: np.ndarray, names: list[str], dim: int) -> np.ndarray:
        """Vectors for (shard, row) pairs, one memory-mapped shard at a time."""
        out = np.empty((shard.shape[0], dim), dtype=STORE[self.store])
        for s in np.unique(shard):
            sel = np.flatnonzero(shard == s)
            vecs = np.load(self.dir / f"{names[s]}.vecs.npy", mmap_mode="r")
            out[sel] = vecs[row[sel]]
        return out

    def dim(self, names: list[str]) -> int | None:
        if not names:
            return None
        return int(np.load(self.dir / f"{names[0]}.vecs.npy", mmap_mode="r").shape[1])


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(text)
    tmp.replace(path)


def fill(
    keys: np.ndarray,
    texts_of: Callable[[np.ndarray], list[str]],
    encoder: Encoder,
    cache: EmbeddingCache,
    shard_size: int = 8192,
    description: str = "embedding",
    shared_progress: Any = None,
    flush_seconds: float = 120.0,
    lengths: np.ndarray | None = None,
) -> EmbedStats:
    """Embed what the cache lacks of the distinct texts with ``keys`` (``texts_of(positions)``
    gives their texts, so the caller never holds them all). Longest first when ``lengths``
    is given (batches of similar length waste little on padding; an out-of-memory batch shows
    up at once, and the ETA errs high). A shard is written every ``shard_size`` texts or
    ``flush_seconds``, whichever comes first, and on the way out of an exception, so even a
    hard kill loses at most one shard of work. This is the per-batch (map) half of
    embedding: batches are independent."""
    t0 = time.perf_counter()
    stats = EmbedStats(texts=len(keys), unique=len(keys))
    shard, _, _ = cache.lookup(keys)
    missing = np.flatnonzero(shard < 0)
    stats.reused = stats.unique - int(missing.size)
    if missing.size:
        if lengths is not None:
            missing = missing[np.argsort(-lengths[missing], kind="stable")]
        bs = max(1, encoder.batch_size)
        done: list[np.ndarray] = []
        vecs: list[np.ndarray] = []
        last = time.monotonic()

        def flush() -> None:
            nonlocal done, vecs, last
            if done:
                idx = np.concatenate(done)
                stats.shards_written.append(cache.write(keys[idx], np.concatenate(vecs)))
                stats.computed += int(idx.size)
            done, vecs, last = [], [], time.monotonic()

        with step_bar(f"{description} ({encoder.name})", int(missing.size), shared_progress) as advance:
            try:
                for b in range(0, missing.size, bs):
                    idx = missing[b : b + bs]
                    vecs.append(encoder.encode(texts_of(idx)))
                    done.append(idx)
                    advance(idx.size)
                    if sum(d.size for d in done) >= shard_size or time.monotonic() - last >= flush_seconds:
                        flush()
            finally:  # Ctrl-C or an error keeps what was computed; a hard kill loses one shard
                flush()
    stats.seconds = time.perf_counter() - t0
    return stats


def _located(cache: EmbeddingCache, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str], int]:
    shard, row, names = cache.lookup(keys)
    if (shard < 0).any():
        raise RuntimeError(f"embedding cache {cache.dir}: {int((shard < 0).sum())} vectors missing after the pass")
    return shard, row, names, cache.dim(names) or 0


def fill_texts(
    texts: list[str],
    encoder: Encoder,
    cache: EmbeddingCache,
    shard_size: int = 8192,
    description: str = "embedding",
    shared_progress: Any = None,
    flush_seconds: float = 120.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, EmbedStats]:
    """Embed into the cache what it lacks of ``texts``, each distinct text once (see
    ``fill``): (each text's key, the distinct keys, each text's index among them, stats)."""
    keys = text_keys(texts)
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    lengths = pl.Series([texts[i] for i in first], dtype=pl.Utf8).str.len_bytes().to_numpy()
    stats = fill(uniq, lambda idx: [texts[i] for i in first[idx]], encoder, cache, shard_size, description,
                 shared_progress, flush_seconds, lengths)
    stats.texts = len(texts)
    return keys, uniq, inverse, stats


def embed(
    texts: list[str],
    encoder: Encoder,
    cache: EmbeddingCache,
    shard_size: int = 8192,
    description: str = "embedding",
    shared_progress: Any = None,
    flush_seconds: float = 120.0,
) -> tuple[np.ndarray, EmbedStats]:
    """Vectors for ``texts`` (rows aligned, storage dtype) in memory, computing only what the
    cache lacks (see ``fill``)."""
    t0 = time.perf_counter()
    _, uniq, inverse, stats = fill_texts(texts, encoder, cache, shard_size, description, shared_progress, flush_seconds)
    shard, row, names, dim = _located(cache, uniq)
    out = cache.gather(shard, row, names, dim)[inverse.ravel()]
    stats.seconds = time.perf_counter() - t0
    return out, stats


def write_vectors(cache: EmbeddingCache, keys: np.ndarray, path: Path) -> np.memmap:
    """The cached vectors of ``keys``, in that order, as one float32 ``.npy`` at ``path``,
    written one cache shard at a time (memory: one shard); returned read-only mapped."""
    shard, row, names, dim = _located(cache, keys)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(keys), dim))
    for s in np.unique(shard):
        sel = np.flatnonzero(shard == s)
        out[sel] = np.load(cache.dir / f"{names[s]}.vecs.npy", mmap_mode="r")[row[sel]]
    out.flush()
    del out
    return np.load(path, mmap_mode="r")
