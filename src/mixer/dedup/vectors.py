"""Pairs of embeddings above a cosine threshold, with faiss.

Vectors are L2-normalized, so inner product is cosine. Small pools use an exact flat index
and ``range_search`` (every pair above the threshold, none missed); large pools an IVF index
(trained on a sample, ``nprobe`` lists probed per query: near neighbours in lists that are
not probed can be missed, the scores of those found are exact). With faiss-gpu and a GPU,
the index moves to the GPU, where range search is not available: each vector's ``k``
nearest neighbours are searched and kept when above the threshold (a cluster larger than
``k`` stays connected through chains). Queries run in batches so result memory stays small.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from mixer.dedup.lsh import unique_edges
from mixer.dedup.progress import progress_task

TRAIN_POINTS_PER_LIST = 64


def gpu_available() -> bool:
    import faiss

    return hasattr(faiss, "StandardGpuResources") and getattr(faiss, "get_num_gpus", lambda: 0)() > 0


def choose_index(n: int, kind: Literal["auto", "flat", "ivf"], flat_max: int) -> str:
    if kind != "auto":
        return kind
    return "flat" if n <= flat_max else "ivf"


def build_index(x: np.ndarray, kind: str, nlist: int | None = None, nprobe: int = 16, seed: int = 0) -> Any:
    import faiss

    d = x.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    else:
        nlist = nlist or max(1, min(int(4 * np.sqrt(len(x))), len(x) // 39 or 1))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        # 64 training points per list (faiss warns below 39 and caps at 256): at 1M vectors
        # and 4,000 lists, k-means on 256 per list took 231 s of a 490 s search on 2 cores
        size = TRAIN_POINTS_PER_LIST * nlist
        sample = x if len(x) <= size else x[np.sort(rng.choice(len(x), size, replace=False))]
        index.cp.seed = seed
        index.train(np.ascontiguousarray(sample))
        index.nprobe = min(nprobe, nlist)
    index.add(x)
    return index


def similar_pairs(x: np.ndarray, threshold: float, kind: str = "flat", nlist: int | None = None, nprobe: int = 16,
                  use_gpu: bool = False, k: int = 64, batch: int = 4096, progress: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Unique edges (i < j) with cosine(x_i, x_j) >= threshold, and facts about the search."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    info: dict[str, Any] = {"index": kind, "vectors": int(len(x))}
    if len(x) < 2:
        return np.zeros((0, 2), dtype=np.int64), info
    index = build_index(x, kind, nlist, nprobe)
    if kind == "ivf":
        info.update(nlist=int(index.nlist), nprobe=int(index.nprobe))
    if use_gpu:
        index = faiss.index_cpu_to_all_gpus(index)
        info.update(gpu=True, k=k)
    radius = np.float32(threshold - 1e-6)
    parts: list[np.ndarray] = []
    with progress_task("semantic: neighbours", len(x), progress) as advance:
        for s in range(0, len(x), batch):
            q = x[s : s + batch]
            if use_gpu:
                scores, nbr = index.search(q, min(k, len(x)))
                rows = np.repeat(np.arange(s, s + len(q)), nbr.shape[1])
                keep = (scores.ravel() >= radius) & (nbr.ravel() >= 0)
                a, b = rows[keep], nbr.ravel()[keep]
            else:
                lims, _, nbr = index.range_search(q, float(radius))
                a = np.repeat(np.arange(s, s + len(q)), np.diff(lims).astype(np.int64))
                b = nbr
            sel = a != b
            parts.append(np.stack([a[sel], b[sel]], axis=1).astype(np.int64))
            advance(len(q))
    edges = unique_edges(np.concatenate(parts)) if parts else np.zeros((0, 2), dtype=np.int64)
    info["pairs"] = int(len(edges))
    return edges, info
