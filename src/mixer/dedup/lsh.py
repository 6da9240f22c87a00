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

from functools import lru_cache

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

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
    return _optimal(float(threshold), int(num_perm), float(false_positive_weight), float(false_negative_weight))


@lru_cache(maxsize=64)
def _optimal(threshold: float, num_perm: int, fp: float, fn: float) -> tuple[int, int]:
    from datasketch.lsh import _optimal_param  # numerical integration: ~0.3 s, so cached

    b, r = _optimal_param(threshold, num_perm, fp, fn)
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


def pack_edges(edges: np.ndarray) -> np.ndarray:
    """Undirected edges as one uint64 each, ``low << 32 | high`` (records below 2**32)."""
    lo = np.minimum(edges[:, 0], edges[:, 1]).astype(np.uint64)
    hi = np.maximum(edges[:, 0], edges[:, 1]).astype(np.uint64)
    lo <<= np.uint64(32)
    lo |= hi
    return lo


def unpack_edges(packed: np.ndarray) -> np.ndarray:
    """(m, 2) int64 ``[low, high]`` edges of ``pack_edges`` values."""
    out = np.empty((len(packed), 2), dtype=np.int64)
    out[:, 0] = packed >> np.uint64(32)
    out[:, 1] = packed & np.uint64(0xFFFFFFFF)
    return out


def unique_edges(edges: np.ndarray) -> np.ndarray:
    """Deduplicate undirected edges (sorted as (low, high), in increasing order)."""
    if len(edges) == 0:
        return edges.reshape(0, 2)
    return unpack_edges(sorted_unique(pack_edges(edges)))


def components(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected-component label per record (singletons included); deterministic."""
    if len(edges) == 0:
        return np.arange(n, dtype=np.int64)
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


def component_groups(n: int, edges: np.ndarray, max_edges: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """``edges`` reordered so that each connected component's edges are contiguous (in their
    order within it), and bounds of groups of whole components: a group's components start
    within a window of ``max_edges`` edges, so it holds at most that many plus the rest of
    its last component. Work on one group at a time needs memory for that group, and gives
    what it would on the whole graph."""
    if len(edges) == 0:
        return edges, []
    label = components(n, edges)[edges[:, 0]]
    order = np.argsort(label, kind="stable")
    label = label[order]
    starts = np.flatnonzero(np.concatenate([[True], label[1:] != label[:-1]]))
    del label
    # a component belongs to the group its first edge falls in
    group = starts // max(1, max_edges)
    cut = starts[np.flatnonzero(np.concatenate([[True], group[1:] != group[:-1]]))]
    bounds = np.append(cut, len(edges))
    return edges[order], [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def verify_components(n: int, edges: np.ndarray, weight: np.ndarray, check,
                      advance=lambda k: None, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Edges that pass ``check`` (a function of (a, b) index arrays returning a bool mask and
    a value per pair), found with few checks: the clusters are the same as if every
    candidate were checked.

    Each round checks only a spanning forest of the candidate edges that still join two
    different clusters (a minimum spanning tree on ``weight``, so low-weight edges are
    checked first); passing edges merge clusters, failing ones are dropped; edges inside a
    cluster are never checked. With ``chunk``, the edges are taken ``chunk`` at a time in
    order of weight, the clusters carried from one chunk to the next (the work arrays follow
    the chunk, one component may be larger than memory allows otherwise); the clusters are
    the same. Returns (accepted edges, their values, number of checks)."""
    accepted: list[np.ndarray] = []
    values: list[np.ndarray] = []
    labels = np.arange(n, dtype=np.int64)
    weight = np.asarray(weight, dtype=np.float64)
    checks = 0
    if chunk is None or len(edges) <= chunk:
        chunks = [(edges, weight)]
    else:
        by_weight = np.argsort(weight, kind="stable")
        chunks = ((edges[by_weight[s : s + chunk]], weight[by_weight[s : s + chunk]]) for s in range(0, len(edges), chunk))
    for pend, pweight in chunks:
        while len(pend):
            la, lb = labels[pend[:, 0]], labels[pend[:, 1]]
            cross = la != lb
            advance(int((~cross).sum()))  # joined already: never checked
            pend, pweight, la, lb = pend[cross], pweight[cross], la[cross], lb[cross]
            if not len(pend):
                break
            nodes, inv = _compact(la, lb)
            ca, cb = inv[: len(la)], inv[len(la) :]
            del la, lb, inv
            lo, hi = np.minimum(ca, cb), np.maximum(ca, cb)
            del ca, cb
            # one edge per pair of clusters: the lowest weight (ties: first)
            order = np.lexsort((np.arange(len(lo)), pweight, hi, lo))
            lo_s, hi_s = lo[order], hi[order]
            first = np.ones(len(order), dtype=bool)
            first[1:] = (lo_s[1:] != lo_s[:-1]) | (hi_s[1:] != hi_s[:-1])
            best = order[first]
            del order, lo_s, hi_s, first
            w = pweight[best] - pweight[best].min() + 1.0  # positive: scipy ignores zero entries
            tree = minimum_spanning_tree(coo_matrix((w, (lo[best], hi[best])), shape=(len(nodes), len(nodes)))).tocoo()
            key_best = lo[best].astype(np.uint64) << np.uint64(32) | hi[best].astype(np.uint64)
            del lo, hi
            sort_best = np.argsort(key_best, kind="stable")
            t_lo, t_hi = np.minimum(tree.row, tree.col), np.maximum(tree.row, tree.col)
            key_tree = t_lo.astype(np.uint64) << np.uint64(32) | t_hi.astype(np.uint64)
            chosen = best[sort_best[np.searchsorted(key_best[sort_best], key_tree)]]
            ok, val = check(pend[chosen, 0], pend[chosen, 1])
            checks += len(chosen)
            advance(len(chosen))
            accepted.append(pend[chosen][ok])
            values.append(val[ok])
            keep = np.ones(len(pend), dtype=bool)
            keep[chosen] = False
            pend, pweight = pend[keep], pweight[keep]
            if ok.any():
                labels = components(n, np.concatenate(accepted))
    if not accepted:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0), checks
    return np.concatenate(accepted), np.concatenate(values), checks


def pair_lookup(edges: np.ndarray, values: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of the undirected pairs (a[k], b[k]) among ``edges``: (found mask, values)."""
    if len(edges) == 0:
        return np.zeros(len(a), dtype=bool), np.zeros(len(a))
    key = np.minimum(edges[:, 0], edges[:, 1]).astype(np.uint64) << np.uint64(32) | np.maximum(edges[:, 0], edges[:, 1]).astype(np.uint64)
    order = np.argsort(key, kind="stable")
    sk = key[order]
    q = np.minimum(a, b).astype(np.uint64) << np.uint64(32) | np.maximum(a, b).astype(np.uint64)
    pos = np.minimum(np.searchsorted(sk, q), len(sk) - 1)
    found = sk[pos] == q
    return found, np.where(found, values[order[pos]], 0.0)


def _compact(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of a and b, and each element's index among them (sort-based)."""
    from mixer.dedup.jaccard import unique_inverse

    return unique_inverse(np.concatenate([a, b]))
