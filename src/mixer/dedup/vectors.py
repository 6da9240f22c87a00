"""Pairs of embeddings above a cosine threshold: an exact, blocked self-join.

Vectors are unit length, so inner product is cosine, and every reported score is computed
from the stored float32 vectors by a matrix product (BLAS): no pair is scored from a
compressed code. Which pairs get compared depends on the pool's size:

- ``flat`` (small pools): every pair, in blocks of the upper triangle. Nothing is missed.
- ``ivf`` (large pools): a partition self-join. Spherical k-means (faiss, on a sample) gives
  ``nlist`` centroids; each vector lives in the list of its nearest centroid and is compared
  with the lists of its ``nprobe`` nearest centroids, one matrix product per list. A pair is
  found when either vector probes the other's list; near-duplicates (cosine >= 0.9) sit in
  the same or a neighbouring cell, so nprobe 2-3 finds >= 99% of them (measured in
  ``benchmarks/semantic_dedup.py``) at about ``nprobe / nlist`` of flat's cost.
- ``gpu``: with faiss-gpu and a GPU, each vector's ``k`` nearest neighbours come from a faiss
  GPU index, and the pairs above the threshold are rescored on the CPU from the float32
  vectors (a cluster larger than ``k`` stays connected through chains).

The vectors may be a memory map (``numpy.load(..., mmap_mode="r")`` of the step's shards):
the search reads them block by block (assignment) and list by list (join), so memory holds
one block and one list's rows, not the pool.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from mixer.dedup.lsh import unique_edges
from mixer.dedup.progress import progress_task

TRAIN_POINTS_PER_LIST = 32
KMEANS_ITERATIONS = 4  # the partition only has to put close vectors together, not be optimal
BLOCK = 4096  # rows per block of a join's matrix product (64 MiB of scores), x8 in the assignment pass
PARTITION_DIMS = 64


def gpu_available() -> bool:
    import faiss

    return hasattr(faiss, "StandardGpuResources") and getattr(faiss, "get_num_gpus", lambda: 0)() > 0


def choose_index(n: int, kind: Literal["auto", "flat", "ivf"], flat_max: int) -> str:
    if kind != "auto":
        return kind
    return "flat" if n <= flat_max else "ivf"


def default_nlist(n: int) -> int:
    """~4 sqrt(n) lists: assignment (n x nlist at 64 dims) and join (n x nprobe x n/nlist at
    full width, times the lists' imbalance) cost alike."""
    return max(1, min(int(4 * np.sqrt(n)), n // TRAIN_POINTS_PER_LIST or 1))


def _pairs(a_rows: np.ndarray, b_rows: np.ndarray, sims: np.ndarray, radius: np.float32) -> np.ndarray:
    r, c = np.nonzero(sims >= radius)
    a, b = a_rows[r], b_rows[c]
    keep = a != b
    return np.stack([np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])], axis=1)


class EdgeSink:
    """Collects the pairs a join finds. ``forest``: only connectivity is kept: whenever more
    than ``limit`` edges wait, they are replaced by a spanning forest (each component as a
    star on its lowest member), so memory stays O(n + limit) however dense the clusters
    (a planted 1M pool has ~40M pairs at 0.975, a spanning forest < 1M edges)."""

    def __init__(self, n: int, forest: bool, limit: int = 4_000_000):
        self.n, self.forest, self.limit = n, forest, limit
        self.parts: list[np.ndarray] = []
        self.waiting = 0
        self.hits = 0  # pairs found, a pair counted once per list and direction that found it

    def add(self, edges: np.ndarray) -> None:
        self.parts.append(edges)
        self.waiting += len(edges)
        self.hits += len(edges)
        if self.forest and self.waiting > self.limit:
            self.parts, self.waiting = [spanning_forest(self.n, np.concatenate(self.parts))], 0

    def edges(self) -> np.ndarray:
        if not self.parts:
            return np.zeros((0, 2), dtype=np.int64)
        edges = np.concatenate(self.parts)
        return spanning_forest(self.n, edges) if self.forest else unique_edges(edges)


def spanning_forest(n: int, edges: np.ndarray) -> np.ndarray:
    """Edges (lowest member, member) of every connected component: the same components."""
    from mixer.dedup.lsh import components

    if len(edges) == 0:
        return edges.reshape(0, 2).astype(np.int64)
    nodes = np.unique(edges)
    labels = components(n, edges)[nodes]
    order = np.lexsort((nodes, labels))  # by component, lowest member first
    lab, nod = labels[order], nodes[order]
    head = np.ones(len(lab), dtype=bool)
    head[1:] = lab[1:] != lab[:-1]
    root = nod[head][np.cumsum(head) - 1]
    keep = nod != root
    return np.stack([root[keep], nod[keep]], axis=1).astype(np.int64)


def flat_pairs(x: np.ndarray, radius: np.float32, progress: Any = None, forest: bool = False) -> tuple[np.ndarray, int]:
    """Every pair with x_i . x_j >= radius: blocks of the upper triangle; (edges, pairs found)."""
    n = len(x)
    sink = EdgeSink(n, forest)
    with progress_task("semantic: neighbours (flat)", n, progress) as advance:
        for s in range(0, n, BLOCK):
            left = np.asarray(x[s : s + BLOCK], dtype=np.float32)
            rows = np.arange(s, s + len(left))
            for t in range(s, n, BLOCK):
                right = left if t == s else np.asarray(x[t : t + BLOCK], dtype=np.float32)
                sims = left @ right.T
                sink.add(_pairs(rows, np.arange(t, t + len(right)), np.triu(sims, 1) if t == s else sims, radius))
            advance(len(left))
    return sink.edges(), sink.hits


def partition(x: np.ndarray, nlist: int, nprobe: int, seed: int = 0, progress: Any = None) -> np.ndarray:
    """The ``nprobe`` nearest of ``nlist`` spherical k-means centroids of every vector (first =
    its home list). Centroids and assignment work in the top ``PARTITION_DIMS`` principal
    directions of a seeded sample (4x cheaper than full width for 256-d vectors; the
    partition only groups vectors, every score is computed at full width later)."""
    import faiss

    rng = np.random.default_rng(seed)
    size = min(len(x), TRAIN_POINTS_PER_LIST * nlist)
    sample = np.asarray(x[np.sort(rng.choice(len(x), size, replace=False))], dtype=np.float32)
    dims = min(PARTITION_DIMS, x.shape[1])
    mean = sample.mean(axis=0)
    basis = np.linalg.svd(sample[: 20_000] - mean, full_matrices=False)[2][:dims].T.copy()

    def project(v: np.ndarray) -> np.ndarray:
        p = (np.asarray(v, dtype=np.float32) - mean) @ basis
        return p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)

    km = faiss.Kmeans(dims, nlist, niter=KMEANS_ITERATIONS, spherical=True, seed=seed,
                      max_points_per_centroid=TRAIN_POINTS_PER_LIST, verbose=False)
    km.cp.min_points_per_centroid = 1  # the sample is small on purpose: no warning
    km.train(project(sample))
    index = faiss.IndexFlatIP(dims)
    index.add(km.centroids)
    out = np.empty((len(x), nprobe), dtype=np.int64)
    with progress_task("semantic: partition", len(x), progress) as advance:
        for s in range(0, len(x), 8 * BLOCK):
            _, out[s : s + 8 * BLOCK] = index.search(project(x[s : s + 8 * BLOCK]), nprobe)
            advance(min(8 * BLOCK, len(x) - s))
    return out


def centroids(x: np.ndarray, nlist: int, seed: int = 0) -> np.ndarray:
    """Full-width spherical k-means centroids of a seeded sample (the GPU index's lists)."""
    import faiss

    rng = np.random.default_rng(seed)
    size = min(len(x), TRAIN_POINTS_PER_LIST * nlist)
    sample = np.asarray(x[np.sort(rng.choice(len(x), size, replace=False))], dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], nlist, niter=KMEANS_ITERATIONS, spherical=True, seed=seed,
                      max_points_per_centroid=TRAIN_POINTS_PER_LIST, verbose=False)
    km.cp.min_points_per_centroid = 1
    km.train(sample)
    return km.centroids


def ivf_pairs(x: np.ndarray, radius: np.float32, nlist: int, nprobe: int, seed: int = 0,
              progress: Any = None, forest: bool = False) -> tuple[np.ndarray, int]:
    """Pairs found by the partition self-join (see the module docstring), scores exact;
    (edges, pairs found counting a pair once per list and direction that found it)."""
    cells = partition(x, nlist, min(nprobe, nlist), seed, progress)
    home = cells[:, 0]
    members = np.argsort(home, kind="stable")
    m_bounds = np.searchsorted(home[members], np.arange(nlist + 1))
    probes = np.argsort(cells.ravel(), kind="stable")
    p_bounds = np.searchsorted(cells.ravel()[probes], np.arange(nlist + 1))
    probers = probes // cells.shape[1]
    del cells, probes
    sink = EdgeSink(len(x), forest)
    with progress_task("semantic: neighbours (ivf)", nlist, progress) as advance:
        for cell in range(nlist):
            d_rows = members[m_bounds[cell] : m_bounds[cell + 1]]
            q_rows = np.sort(probers[p_bounds[cell] : p_bounds[cell + 1]])
            if len(d_rows) and len(q_rows):
                d = np.asarray(x[d_rows], dtype=np.float32)
                for s in range(0, len(q_rows), BLOCK):
                    q = q_rows[s : s + BLOCK]
                    sink.add(_pairs(q, d_rows, np.asarray(x[q], dtype=np.float32) @ d.T, radius))
            advance(1)
    return sink.edges(), sink.hits


def gpu_pairs(x: np.ndarray, radius: np.float32, k: int, nlist: int | None, nprobe: int) -> np.ndarray:
    """k nearest neighbours on a faiss GPU index (flat, or IVF for large pools), rescored on
    the CPU from the float32 vectors."""
    import faiss

    d = x.shape[1]
    if nlist:
        cpu = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        cpu.train(centroids(x, nlist))  # k-means on the CPU sample; lists filled on the GPU
        cpu.nprobe = nprobe
    else:
        cpu = faiss.IndexFlatIP(d)
    index = faiss.index_cpu_to_all_gpus(cpu)
    for s in range(0, len(x), 8 * BLOCK):
        index.add(np.asarray(x[s : s + 8 * BLOCK], dtype=np.float32))
    parts = []
    kk = min(k, len(x))
    for s in range(0, len(x), BLOCK):
        q = np.asarray(x[s : s + BLOCK], dtype=np.float32)
        _, nbr = index.search(q, kk)
        a = np.repeat(np.arange(s, s + len(q)), kk)
        b = nbr.ravel()
        ok = (b >= 0) & (a != b)
        a, b = a[ok], b[ok]
        exact = np.einsum("ij,ij->i", np.asarray(x[a], dtype=np.float32), np.asarray(x[b], dtype=np.float32))
        keep = exact >= radius
        parts.append(np.stack([np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])], axis=1))
    return unique_edges(np.concatenate(parts)) if parts else np.zeros((0, 2), dtype=np.int64)


def similar_pairs(x: np.ndarray, threshold: float, kind: str = "flat", nlist: int | None = None, nprobe: int = 2,
                  use_gpu: bool = False, k: int = 64, seed: int = 0, progress: Any = None,
                  forest: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Unique edges (i < j) with cosine(x_i, x_j) >= threshold, and facts about the search.
    ``x``: unit vectors (an array or a read-only memory map). ``forest``: return only a
    spanning forest of those edges (the same clusters, memory bounded: what dedup needs)."""
    info: dict[str, Any] = {"index": kind, "vectors": int(len(x))}
    if len(x) < 2:
        return np.zeros((0, 2), dtype=np.int64), info
    radius = np.float32(threshold - 1e-6)
    if kind == "ivf":
        nlist = min(nlist or default_nlist(len(x)), len(x))
        info.update(nlist=int(nlist), nprobe=int(min(nprobe, nlist)))
    if use_gpu:
        info.update(gpu=True, k=k)
        edges = gpu_pairs(x, radius, k, nlist if kind == "ivf" else None, nprobe)
        hits = len(edges)
        if forest:
            edges = spanning_forest(len(x), edges)
    elif kind == "ivf":
        edges, hits = ivf_pairs(x, radius, int(nlist), nprobe, seed, progress, forest)
    else:
        edges, hits = flat_pairs(x, radius, progress, forest)
    if forest:
        info.update(pair_hits=int(hits), forest_edges=int(len(edges)))
    else:
        info["pairs"] = int(len(edges))
    return edges, info
