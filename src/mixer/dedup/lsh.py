"""LSH banding over signature matrices, and clusters as connected components.

Each band of ``r`` rows is folded into one 64-bit key per record; records sharing a key in
any band are candidates. Per band, records are sorted by key (a stable sort, so a group's
first member is its earliest record) and every other member is linked to that first one
(a star), plus to its predecessor in the group (a chain) so that a verification that cuts
one link rarely cuts a member off its group. Edges from all bands are deduplicated and the
clusters are the connected components of that graph (scipy, in C): no Python loop per
record or per pair.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from mixer.dedup.jaccard import sorted_unique

_ROW_MULS = np.random.Generator(np.random.PCG64(0x5EED)).integers(1, 2**63, 4096, dtype=np.uint64) | np.uint64(1)


def lsh_params(threshold: float, num_perm: int, bands: int | None = None, rows: int | None = None,
               false_positive_weight: float = 0.5, false_negative_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows): given, or datasketch's optimum for the threshold (weighted FP/FN areas)."""
    if bands is not None and rows is not None:
        if bands * rows > num_perm:
            raise ValueError(f"bands*rows = {bands * rows} exceeds num_perm = {num_perm}")
        return int(bands), int(rows)
    if bands is not None or rows is not None:
        raise ValueError("give both bands and rows, or neither")
    from datasketch.lsh import _optimal_param

    b, r = _optimal_param(threshold, num_perm, false_positive_weight, false_negative_weight)
    return int(b), int(r)


def candidate_probability(similarity: float, bands: int, rows: int) -> float:
    """Chance that a pair of this Jaccard similarity shares at least one band."""
    return 1.0 - (1.0 - similarity**rows) ** bands


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(bands, n) uint64 keys: band ``j`` hashes columns ``j*rows .. (j+1)*rows-1``."""
    n = sig.shape[0]
    keys = np.empty((bands, n), dtype=np.uint64)
    for j in range(bands):  # loops over bands and rows only; each step is a vector over records
        k = np.full(n, (j * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64)
        for t in range(rows):
            k ^= sig[:, j * rows + t].astype(np.uint64) * _ROW_MULS[(j * rows + t) % len(_ROW_MULS)]
            k = (k << np.uint64(29)) | (k >> np.uint64(35))
        k ^= k >> np.uint64(33)
        k *= np.uint64(0xFF51AFD7ED558CCD)
        k ^= k >> np.uint64(33)
        keys[j] = k
    return keys


def band_edges(keys: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
    """Candidate edges (m, 2) int64 ``[member, linked]`` from one band's keys.

    ``index`` maps positions in ``keys`` to record numbers (identity when None)."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    new = np.empty(len(sk), dtype=bool)
    if len(sk):
        new[0] = True
        np.not_equal(sk[1:], sk[:-1], out=new[1:])
    member = np.flatnonzero(~new)
    if len(member) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    group_first = np.maximum.accumulate(np.where(new, np.arange(len(sk)), 0))
    star = np.stack([order[member], order[group_first[member]]], axis=1)
    chain_m = member[group_first[member] != member - 1]
    chain = np.stack([order[chain_m], order[chain_m - 1]], axis=1)
    edges = np.concatenate([star, chain])
    if index is not None:
        edges = index[edges]
    return edges.astype(np.int64)


def unique_edges(edges: np.ndarray) -> np.ndarray:
    """Deduplicate undirected edges (sorted as (low, high), in increasing order)."""
    if len(edges) == 0:
        return edges.reshape(0, 2)
    lo = np.minimum(edges[:, 0], edges[:, 1])
    hi = np.maximum(edges[:, 0], edges[:, 1])
    packed = sorted_unique(lo.astype(np.uint64) << np.uint64(32) | hi.astype(np.uint64))
    return np.stack([(packed >> np.uint64(32)).astype(np.int64), (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)], axis=1)


def components(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected-component label per record (singletons included); deterministic."""
    if len(edges) == 0:
        return np.arange(n, dtype=np.int64)
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)
