"""MinHash signatures in bulk, bit-compatible with ``datasketch.MinHash`` (scheme "affine32").

datasketch's default scheme pre-mixes each 32-bit shingle hash with MurmurHash3's fmix32
and applies ``a_k * h + b_k mod 2**32`` per permutation, with ``(a, b)`` drawn from
``RandomState(seed)``. We take the permutations from datasketch itself and do the same
arithmetic for a whole block of records at once: a (num_perm x shingles) uint32 matrix,
min-reduced per record with ``np.minimum.reduceat`` along the contiguous axis. Blocks are
kept cache-sized (a few thousand shingles), which is ~10x faster than one big matrix.
So ``datasketch.MinHash(num_perm, seed, hashfunc=shingle_hash)`` fed the same shingles
holds exactly the row we compute, and ``MinHash(hashvalues=row, scheme="affine32")``
compares with it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

EMPTY = np.uint32(0xFFFFFFFF)  # datasketch's value for "no shingle seen"
_BLOCK_SHINGLES = 4096


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int = 1) -> np.ndarray:
    """(2, num_perm) uint32 ``[a, b]``: exactly ``datasketch.MinHash(num_perm, seed).permutations``."""
    from datasketch import MinHash

    perms = np.asarray(MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations, dtype=np.uint32)
    perms.setflags(write=False)
    return perms


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (datasketch applies it before permuting)."""
    h = h.astype(np.uint32, copy=True)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def minhash(hashes: np.ndarray, offsets: np.ndarray, perms: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Signatures (n, num_perm) uint32 of the n shingle sets ``hashes[offsets[i]:offsets[i+1]]``.

    A record without shingles gets the all-``EMPTY`` row, as an untouched datasketch MinHash."""
    n = len(offsets) - 1
    a, b = perms[0][:, None], perms[1][:, None]
    num_perm = perms.shape[1]
    if out is None:
        out = np.empty((n, num_perm), dtype=np.uint32)
    out[:] = EMPTY
    mixed = fmix32(hashes)
    nonempty = np.flatnonzero(np.diff(offsets) > 0)
    if len(nonempty) == 0:
        return out
    starts = offsets[:-1][nonempty]
    ends = offsets[1:][nonempty]
    buf = np.empty((num_perm, _BLOCK_SHINGLES), dtype=np.uint32)
    i = 0
    while i < len(starts):
        j = int(np.searchsorted(starts, starts[i] + _BLOCK_SHINGLES, side="right"))
        j = max(j, i + 1)  # one record larger than a block gets a block of its own
        s0, s1 = int(starts[i]), int(ends[j - 1])
        width = s1 - s0
        block = buf[:, :width] if width <= _BLOCK_SHINGLES else np.empty((num_perm, width), dtype=np.uint32)
        np.multiply(a, mixed[None, s0:s1], out=block)
        block += b
        out[nonempty[i:j]] = np.minimum.reduceat(block, starts[i:j] - s0, axis=1).T
        i = j
    return out


def similarity(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard of row pairs: the share of equal hash values (datasketch's estimate)."""
    return (sig_a == sig_b).mean(axis=-1)
