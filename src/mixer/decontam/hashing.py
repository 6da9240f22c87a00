"""Vectorized n-gram hashing over flat token-id arrays (numpy, uint64 wrap-around).

A window hash is a polynomial over mixed token values, built up one length at a time
(``h_L+1[s] = h_L[s] * B + v[s+L]``), so every window length 1..n costs one pass.
Hashes only nominate candidates: every hit is verified on the token ids, so a collision
can cost time but never a wrong match, and equal windows always hash equal (no misses).
"""

from __future__ import annotations

import numpy as np

BASE = np.uint64(0x100000001B3)  # odd: multiplication by it is a bijection mod 2**64


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: spreads small consecutive ids over all 64 bits."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def extend(h: np.ndarray, v: np.ndarray, length: int) -> np.ndarray:
    """From hashes of windows of ``length - 1`` to windows of ``length`` (one shorter array)."""
    return h[:-1] * BASE + v[length - 1 :]


def windows(v: np.ndarray, length: int) -> np.ndarray:
    """Hashes of every window of ``length`` over ``v`` (mixed token values)."""
    h = v.copy()
    for L in range(2, length + 1):
        h = extend(h, v, L)
    return h


def runs(ids: np.ndarray, offsets: np.ndarray, oov: int) -> tuple[np.ndarray, np.ndarray]:
    """Run labels so that a window ``[s, s+L)`` lies inside one segment and holds no
    out-of-vocabulary token iff ``run[s] == run[s+L-1] and not oov[s]``."""
    n = len(ids)
    bad = ids == oov
    new = bad.copy()
    new[1:] |= bad[:-1]
    starts = offsets[:-1][np.diff(offsets) > 0]
    new[starts[starts < n]] = True
    dtype = np.int32 if n < 2**31 - 1 else np.int64
    return np.cumsum(new, dtype=dtype), bad


def valid_windows(run: np.ndarray, bad: np.ndarray, length: int) -> np.ndarray:
    """Mask over window starts (``len(run) - length + 1`` of them)."""
    m = len(run) - length + 1
    if m <= 0:
        return np.zeros(0, dtype=bool)
    ok = ~bad[:m]
    if length > 1:
        ok &= run[:m] == run[length - 1 :]
    return ok


class HashSet:
    """Sorted unique uint64 hashes with a bit-table prefilter: bulk membership for tens of
    millions of queries without a binary search per query."""

    def __init__(self, hashes: np.ndarray, presorted: bool = False):
        h = hashes.astype(np.uint64, copy=False)
        if not presorted:
            h = np.sort(h)
        keep = np.ones(len(h), dtype=bool)
        keep[1:] = h[1:] != h[:-1]
        self.sorted = h[keep]
        bits = int(np.clip(np.ceil(np.log2(max(len(self.sorted), 1))) + 4, 10, 28))
        self.shift = np.uint64(64 - bits)
        self.table = np.zeros(1 << bits, dtype=bool)
        self.table[self.sorted >> self.shift] = True

    def __len__(self) -> int:
        return len(self.sorted)

    def candidates(self, h: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Positions of ``h`` whose hash is in the set (exact on hashes)."""
        hit = self.table[h >> self.shift]
        if mask is not None:
            hit &= mask
        pos = np.flatnonzero(hit)
        if len(pos) == 0 or len(self.sorted) == 0:
            return pos[:0]
        hv = h[pos]
        idx = np.searchsorted(self.sorted, hv)
        idx[idx == len(self.sorted)] = 0
        return pos[self.sorted[idx] == hv]

    def index_of(self, h: np.ndarray) -> np.ndarray:
        """Rank of each (present) hash in ``sorted``."""
        return np.searchsorted(self.sorted, h)
