"""Ranking: each pool item's best cosine to a task's targets (faiss inner product over unit
vectors), each task's top items, and the round-robin that spends the budget across tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import faiss
import numpy as np

Index = Literal["exact", "ivf"]


def _task_index(vecs: np.ndarray, index: Index, nlist: int | None, nprobe: int) -> faiss.Index:
    """An inner-product index over one task's targets. IVF pays off when a task has many
    targets (e.g. a whole test split): each pool vector then visits ``nprobe`` of ``nlist``
    cells instead of every target, at the cost of an approximate maximum."""
    d = vecs.shape[1]
    if index == "exact" or vecs.shape[0] < 64:
        ix = faiss.IndexFlatIP(d)
    else:
        cells = nlist or int(np.sqrt(vecs.shape[0]))
        cells = max(1, min(cells, vecs.shape[0] // 8))
        ix = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, cells, faiss.METRIC_INNER_PRODUCT)
        ix.cp.min_points_per_centroid = 1  # few targets per cell is the normal case here, not a mistake
        ix.train(vecs)
        ix.nprobe = min(nprobe, cells)
    ix.add(vecs)
    return ix


def task_scores(
    pool: np.ndarray,
    targets: np.ndarray,
    target_task: np.ndarray,
    n_tasks: int,
    index: Index = "exact",
    nlist: int | None = None,
    nprobe: int = 8,
    chunk: int = 262_144,
    advance: Callable[[int], None] | None = None,
) -> np.ndarray:
    """(n_pool, n_tasks) float32: max cosine of each pool item to each task's targets.

    Vectors must be L2-normalized. A task without targets scores -inf everywhere (it never
    claims anything)."""
    pool = np.ascontiguousarray(pool, dtype=np.float32)
    targets = np.ascontiguousarray(targets, dtype=np.float32)
    out = np.full((pool.shape[0], n_tasks), -np.inf, dtype=np.float32)
    for t in range(n_tasks):
        vecs = targets[target_task == t]
        if vecs.shape[0] == 0:
            continue
        ix = _task_index(vecs, index, nlist, nprobe)
        for lo in range(0, pool.shape[0], chunk):
            d, _ = ix.search(pool[lo : lo + chunk], 1)
            out[lo : lo + chunk, t] = d[:, 0]
            if advance is not None:
                advance(min(chunk, pool.shape[0] - lo))
    # IVF may find no neighbour in the probed cells: faiss reports -3.4e38; call it -inf.
    out[out < -1e30] = -np.inf
    return out


def top_order(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best scores, best first; ties go to the lower index, so the
    result depends only on the scores (argpartition picks among ties arbitrarily)."""
    n = scores.shape[0]
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    s = np.where(np.isnan(scores), -np.inf, scores)
    if k < n:
        thr = s[np.argpartition(-s, k - 1)[k - 1]]
        above = np.flatnonzero(s > thr)
        ties = np.flatnonzero(s == thr)[: k - above.size]
        cand = np.concatenate([above, ties])
    else:
        cand = np.arange(n)
    return cand[np.lexsort((cand, -s[cand]))].astype(np.int64)


def round_robin(orders: Sequence[np.ndarray], budget: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spend ``budget`` picks across tasks: each round, every task in turn takes its best
    item not yet taken. Returns (item, task, position of the item in its task's order) per
    pick, in pick order. A task whose order runs out drops out of later rounds.

    The loop is over picks: skipping makes each pick depend on all earlier ones, and a task
    walks at most ``budget`` positions, so the cost is O(budget x tasks), small next to
    embedding the pool."""
    taken = np.zeros(n, dtype=bool)
    lists = [o.tolist() for o in orders]
    ptr = [0] * len(lists)
    items: list[int] = []
    tasks: list[int] = []
    ranks: list[int] = []
    active = [t for t in range(len(lists)) if lists[t]]
    while len(items) < budget and active:
        still = []
        for t in active:
            if len(items) >= budget:
                still.append(t)
                continue
            lst, p = lists[t], ptr[t]
            while p < len(lst) and taken[lst[p]]:
                p += 1
            if p == len(lst):
                continue
            taken[lst[p]] = True
            items.append(lst[p])
            tasks.append(t)
            ranks.append(p)
            ptr[t] = p + 1
            still.append(t)
        active = still
    return np.asarray(items, dtype=np.int64), np.asarray(tasks, dtype=np.int32), np.asarray(ranks, dtype=np.int64)
