"""Semantic near-duplicate removal at scale: mixer's ``semantic`` step on CPU.

Data: the record pools of ``benchmarks/dedup.py`` (real records of ``../shared/data/train``
plus planted copies with word edits), read from ``benchmarks/.cache/dedup/data/pool-N-SEED.parquet``
(``python benchmarks/dedup.py`` writes them; a size with no cached pool is a seeded random
subset of the next larger one). The compared text is ``text_of(frame, "all")``.

Phases (``--only``, comma-separated; all by default):
  embed    throughput of the default model (all-MiniLM-L6-v2, offline) on CPU: texts/s at
           ``--batch-size`` over ``--n-embed`` distinct real texts of the pool, through the
           step's own ``embed`` (longest first), at the model's max_length (256) and at 128;
           how far the 128-token vectors move (cosine to the 256-token ones)
  step     the ``semantic`` step class on a pool of ``--step-size`` records (default config,
           ``.run(frame, StepContext(work_dir=...))``, in a child process): seconds per phase
           as the step reports them (model load, embed, search, cluster), removed records,
           peak RSS; then a second run into the same work dir (embeddings from its cache)
  quality  on that pool, at ``--thresholds``: precision/recall/F1 of the removed records of
           the step with ``index: flat`` and ``index: ivf`` against the exact truth (cosine of
           all pairs of the same embeddings by blocked numpy matmul, clusters = connected
           components, removed = all but one per cluster; whichever member is kept)
  search   ``vectors.similar_pairs`` on ``--search-sizes`` vectors (384-d float32), each run in a
           child process (seconds, index build, peak RSS, pairs): flat (range search, exact)
           up to ``--flat-full-max`` vectors, above that estimated from a timed range search of
           ``--flat-queries`` random queries against the full index (flat is O(n^2)); IVF at the
           step's default nlist with each of ``--nprobes``. Recall of every method against exact
           pairs of ``--truth-queries`` random query vectors (numpy brute force: every pair
           with one end among those queries), and at sizes where flat ran, of IVF vs all
           flat pairs.

Search vectors: 1M real embeddings would take days on this CPU, so they are synthesized from
the real embeddings of the step pool (cached as ``emb-SIZE-SEED.npy`` in the cache folder):
``1 - copy_share`` of them are anchors, each a random real embedding turned at cosine
~U(anchor_cos) in a Gaussian random direction orthogonal to it; the rest are copies, each a
random anchor turned the same way at cosine ~U(copy_cos); all unit-normalized, rows shuffled,
seeded. Anchors of one real text stay below cosine anchor_hi^2 of each other; near-duplicate
pairs are mostly copy-anchor and copy-copy pairs.

    python benchmarks/semantic_dedup.py
    python benchmarks/semantic_dedup.py --only search --search-sizes 100000
    # small development run:
    python benchmarks/semantic_dedup.py --threads 1 --n-embed 200 --step-size 2000 --search-sizes 20000

Figures are printed and written to benchmarks/results/semantic_dedup.json (phases not run
keep their figures from the previous run). Caches: benchmarks/.cache/semantic_dedup/.
"""

from __future__ import annotations

import os
import sys

# benchmarks/ holds scripts named like stdlib modules (select.py): never import from it
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import functools  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
POOLS = ROOT / "benchmarks" / ".cache" / "dedup" / "data"
CACHE = ROOT / "benchmarks" / ".cache" / "semantic_dedup"
RESULTS = ROOT / "benchmarks" / "results"
PHASES = ("embed", "step", "quality", "search")
DIM = 384


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _peak_rss_mb() -> float:
    """Peak RSS of this process since it started (VmHWM; ru_maxrss would carry over the RSS
    of the parent at fork time through exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def _rss_mb() -> float:
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)


def _set_threads(threads: int, with_torch: bool = True) -> None:
    import faiss

    faiss.omp_set_num_threads(threads)
    if with_torch:  # not in search children: importing torch alone adds hundreds of MB of RSS
        import torch

        torch.set_num_threads(threads)


def _versions() -> dict[str, str]:
    out = {}
    for mod in ("torch", "faiss", "sentence_transformers", "transformers", "numpy", "polars"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception as e:  # noqa: BLE001 - a missing library is a fact to record
            out[mod] = f"unavailable ({e.__class__.__name__})"
    return out


# ============================================================================ data


def load_pool(size: int, seed: int):
    """(frame, facts) of the cached pool of ``size`` records, or a seeded random subset of the
    next larger cached pool (fewer planted copies keep their original then)."""
    import numpy as np
    import polars as pl

    path = POOLS / f"pool-{size}-{seed}.parquet"
    if path.exists():
        info = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").exists() else {}
        return pl.read_parquet(path), {"file": str(path.relative_to(ROOT)), **info}
    larger = sorted(int(p.stem.split("-")[1]) for p in POOLS.glob(f"pool-*-{seed}.parquet")
                    if p.stem.split("-")[1].isdigit() and int(p.stem.split("-")[1]) > size)
    if not larger:
        raise SystemExit(f"no cached record pool of {size:,} (or more) records with seed {seed} under {POOLS}; create one "
                         f"with `python benchmarks/dedup.py --sizes {size} --quality-size 0 --tools mixer` (it writes "
                         f"pool-{size}-{seed}.parquet there, then times minhash on it)")
    big = POOLS / f"pool-{larger[0]}-{seed}.parquet"
    frame = pl.read_parquet(big)
    rows = np.sort(np.random.default_rng(seed).choice(frame.height, size, replace=False))
    frame = frame[rows]
    return frame, {"file": str(big.relative_to(ROOT)), "subset": size, "seed": seed,
                   "real": int((frame["source"] != "planted").sum()), "planted": int((frame["source"] == "planted").sum())}


def pool_texts(frame) -> list[str]:
    from mixer.records import text_of

    return text_of(frame, "all").fill_null("").to_list()


def step_work_dir(size: int, seed: int) -> Path:
    return CACHE / "work" / f"pool-{size}-{seed}"


def pool_embeddings(size: int, seed: int, batch_size: int) -> tuple[Any, Any, Any, Any, dict]:
    """(frame, first row of each distinct text, distinct-text number per row, vectors of the
    distinct texts, facts). Vectors come from ``emb-SIZE-SEED.npy``, else from the step's
    embedding cache in its work dir (filled by the ``step`` phase), else are computed (and
    cached there) with the step's default encoder settings."""
    import numpy as np

    from mixer.steps.semantic import _key_groups

    frame, pool = load_pool(size, seed)
    texts = pool_texts(frame)
    first, group = _key_groups(texts)
    npy = CACHE / f"emb-{size}-{seed}.npy"
    if npy.exists():
        vecs = np.load(npy)
        if len(vecs) == len(first):
            return frame, first, group, vecs, {"pool": pool, "from": str(npy.relative_to(ROOT))}
    from mixer.select.cache import EmbeddingCache, embed
    from mixer.select.encoders import SentenceEncoder
    from mixer.steps.semantic import SemanticConfig

    cfg = SemanticConfig(batch_size=batch_size)
    enc = SentenceEncoder(cfg.model, cfg.max_length, cfg.batch_size, cfg.device)
    cache = EmbeddingCache(step_work_dir(size, seed) / "cache" / "embeddings", enc.fingerprint())
    vecs, st = embed([texts[i] for i in first], enc, cache, description="embedding the pool")
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    if st.computed:
        print(f"  embedded {st.computed:,} texts for the pool ({st.seconds:.0f} s)", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(npy, vecs)
    return frame, first, group, vecs, {"pool": pool, "from": "step embedding cache" if not st.computed else "computed",
                                       "embedded": st.computed}


# ============================================================================ exact pairs


def brute_pairs(x, queries, radius: float, qblock: int = 1024, xblock: int = 65_536):
    """Unique edges (i < j), i != j, with x_i . x_j >= radius and i or j among ``queries``
    (blocked float32 matmul; every vector of x is compared with every query)."""
    import numpy as np

    parts = []
    for s in range(0, len(queries), qblock):
        qi = queries[s : s + qblock]
        xq = np.asarray(x[qi], dtype=np.float32)
        for c in range(0, len(x), xblock):
            sims = xq @ np.asarray(x[c : c + xblock], dtype=np.float32).T
            r, k = np.nonzero(sims >= radius)
            a, b = qi[r], k + c
            sel = a != b
            parts.append(np.stack([np.minimum(a[sel], b[sel]), np.maximum(a[sel], b[sel])], axis=1))
    if not parts:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(parts).astype(np.int64), axis=0)


def components(n: int, edges):
    """Connected-component label per record (mixer's own, as in the step)."""
    from mixer.dedup.lsh import components as _components

    return _components(n, edges)


@functools.lru_cache(maxsize=1)
def _dedup_bench():
    """benchmarks/dedup.py, loaded once by path (benchmarks/ is not importable: it holds
    scripts named like stdlib modules)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_bench_dedup", Path(__file__).with_name("dedup.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prf(pred, labels) -> dict:
    """Removed records against true clusters: the scoring of benchmarks/dedup.py."""
    return _dedup_bench().prf(pred, labels)


def _keys(edges, n: int):
    import numpy as np

    return np.unique(edges[:, 0].astype(np.int64) * n + edges[:, 1].astype(np.int64))


def recall(found, truth, n: int) -> dict:
    """Pairs of ``truth`` that ``found`` has, and pairs of ``found`` not in ``truth``."""
    import numpy as np

    f, t = _keys(found, n), _keys(truth, n)
    hit = int(np.isin(t, f, assume_unique=True).sum())
    return {"recall": round(hit / len(t), 4) if len(t) else 1.0, "truth_pairs": int(len(t)), "found_pairs": int(len(f)),
            "missed": int(len(t) - hit), "extra": int(len(f) - hit)}


# ============================================================================ child processes


def run_child(task: dict, threads: int, timeout: float) -> dict:
    """Run ``task`` in a fresh process (its own peak RSS, nothing loaded before); its JSON back."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=CACHE, delete=False) as fh:
        out = Path(fh.name)
    env = {**os.environ, "MIXER_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "PYTHONPATH": str(ROOT / "src"),
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    try:
        rc = subprocess.run([sys.executable, __file__, "_child", json.dumps(task), str(out), str(threads)], env=env,
                            timeout=timeout).returncode
        if rc != 0:
            return {"error": f"child exited with {rc}", "wall": round(time.perf_counter() - t0, 2)}
        res = json.loads(out.read_text())
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    finally:
        out.unlink(missing_ok=True)
    res["wall"] = round(time.perf_counter() - t0, 2)
    return res


def child_step(task: dict) -> dict:
    import polars as pl

    frame, _ = load_pool(task["size"], task["seed"])
    order = frame["source"].unique(maintain_order=True).to_list()
    t = time.perf_counter()
    import sentence_transformers  # noqa: F401 - imports are timed apart from the step

    import mixer.select.cache  # noqa: F401
    import mixer.select.encoders  # noqa: F401
    from mixer.steps.base import StepContext
    from mixer.steps.semantic import SemanticConfig, SemanticDedup

    imports = time.perf_counter() - t
    rss0 = _rss_mb()
    cfg = SemanticConfig(**task.get("options", {}))
    t0 = time.perf_counter()
    res = SemanticDedup(cfg).run(frame, StepContext(source_order=order, work_dir=Path(task["work"])))
    secs = time.perf_counter() - t0
    removed = res.removed["id"].to_list()
    planted = int(res.removed.filter(pl.col("source") == "planted").height)
    return {"seconds": round(secs, 3), "imports_seconds": round(imports, 2), "records": frame.height,
            "removed": len(removed), "removed_planted": planted, "rss_before_mb": rss0, "peak_rss_mb": _peak_rss_mb(),
            "info": res.info}


def child_search(task: dict) -> dict:
    import numpy as np

    from mixer.dedup import vectors

    x = np.load(task["vectors"])
    rss0 = _rss_mb()
    spent: dict[str, float] = {}
    if task["kind"] == "flat_subset":  # flat index on all vectors, range search of some queries
        import faiss

        q = np.load(task["queries"])
        t = time.perf_counter()
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
        spent["build"] = time.perf_counter() - t
        radius = np.float32(task["threshold"] - 1e-6)
        parts = []
        t = time.perf_counter()
        for s in range(0, len(q), 4096):
            qi = q[s : s + 4096]
            lims, _, nbr = index.range_search(x[qi], float(radius))
            a = np.repeat(qi, np.diff(lims).astype(np.int64))
            sel = a != nbr
            parts.append(np.stack([np.minimum(a[sel], nbr[sel]), np.maximum(a[sel], nbr[sel])], axis=1))
        spent["search"] = time.perf_counter() - t
        edges = np.unique(np.concatenate(parts).astype(np.int64), axis=0) if parts else np.zeros((0, 2), dtype=np.int64)
        info = {"index": "flat", "queries": int(len(q))}
        total = spent["build"] + spent["search"]
    else:
        build = vectors.build_index

        def timed_build(*a, **k):  # similar_pairs builds the index: time that part apart
            t = time.perf_counter()
            index = build(*a, **k)
            spent["build"] = time.perf_counter() - t
            return index

        vectors.build_index = timed_build
        t = time.perf_counter()
        edges, info = vectors.similar_pairs(x, task["threshold"], task["kind"], None, task.get("nprobe", 16))
        total = time.perf_counter() - t
        spent["search"] = total - spent["build"]
    np.save(task["edges"], edges)
    return {"seconds": round(total, 2), "build_seconds": round(spent["build"], 2), "search_seconds": round(spent["search"], 2),
            "pairs": int(len(edges)), "params": info, "rss_loaded_mb": rss0, "peak_rss_mb": _peak_rss_mb()}


def _child_main(argv: list[str]) -> None:
    task, out, threads = json.loads(argv[0]), Path(argv[1]), int(argv[2])
    t = time.perf_counter()
    _set_threads(threads, with_torch=task["task"] == "step")
    imports = time.perf_counter() - t
    res = {"step": child_step, "search": child_search}[task["task"]](task)
    if "imports_seconds" in res:  # the step's child: torch and faiss count as imports too
        res["imports_seconds"] = round(res["imports_seconds"] + imports, 2)
    out.write_text(json.dumps(res, default=str))


# ============================================================================ phases


def phase_embed(args) -> dict:
    import numpy as np

    from mixer.select.cache import EmbeddingCache, embed
    from mixer.select.encoders import SentenceEncoder

    frame, pool = load_pool(args.step_size, args.seed)
    real = frame.filter(frame["source"] != "planted")
    texts = list(dict.fromkeys(t for t in pool_texts(real) if t))
    rng = np.random.default_rng(args.seed)
    texts = [texts[i] for i in np.sort(rng.choice(len(texts), min(args.n_embed, len(texts)), replace=False))]
    out: dict[str, Any] = {"texts": len(texts), "pool": pool, "batch_size": args.batch_size, "device": "cpu",
                           "torch_threads": args.threads, "mean_chars": round(float(np.mean([len(t) for t in texts])), 1)}
    vecs = {}
    for max_length in (None, 128):
        t = time.perf_counter()
        enc = SentenceEncoder(max_length=max_length, batch_size=args.batch_size, device="cpu")
        load = time.perf_counter() - t
        L = enc.model.max_seq_length
        tokens = np.array([len(ids) for ids in enc.model.tokenizer(texts, truncation=False)["input_ids"]])
        enc.encode(texts[: min(8, len(texts))])  # first call: one-time setup, not throughput
        with tempfile.TemporaryDirectory(dir=CACHE) as d:
            v, st = embed(texts, enc, EmbeddingCache(Path(d), enc.fingerprint()), description=f"max_length {L}")
        vecs[L] = v
        used = np.minimum(tokens, L)
        row = {"max_length": L, "model_load_seconds": round(load, 2), "seconds": round(st.seconds, 2),
               "texts_per_s": round(len(texts) / st.seconds, 2), "tokens_per_s": round(float(used.sum()) / st.seconds, 1),
               "mean_tokens_used": round(float(used.mean()), 1), "share_truncated": round(float((tokens > L).mean()), 4)}
        out[f"max_length_{L}"] = row
        print(f"[embed] max_length {L}: {row['texts_per_s']} texts/s ({row['seconds']} s for {len(texts):,} texts; "
              f"{row['mean_tokens_used']} tokens/text, {row['share_truncated']:.1%} truncated)", flush=True)
    out["mean_tokens_untruncated"] = round(float(tokens.mean()), 1)
    if len(vecs) == 2:
        a, b = (np.asarray(v, dtype=np.float32) for v in vecs.values())
        cos = np.einsum("ij,ij->i", a, b)
        out["cosine_128_vs_default"] = {"mean": round(float(cos.mean()), 4), "p01": round(float(np.quantile(cos, 0.01)), 4),
                                        "min": round(float(cos.min()), 4), "share_below_0.95": round(float((cos < 0.95).mean()), 4)}
        keys = list(vecs)
        out["speedup_128"] = round(out[f"max_length_{keys[0]}"]["seconds"] / out[f"max_length_{keys[1]}"]["seconds"], 2)
        print(f"[embed] max_length 128 is {out['speedup_128']}x the default's speed; cosine to default vectors: "
              f"{out['cosine_128_vs_default']}", flush=True)
    return out


def phase_step(args) -> dict:
    work = step_work_dir(args.step_size, args.seed)
    shutil.rmtree(work, ignore_errors=True)  # a cold first run: nothing cached
    (CACHE / f"emb-{args.step_size}-{args.seed}.npy").unlink(missing_ok=True)  # re-read from the new cache later
    work.mkdir(parents=True)
    task = {"task": "step", "size": args.step_size, "seed": args.seed, "work": str(work),
            "options": {"batch_size": args.batch_size}}
    out: dict[str, Any] = {"records": args.step_size, "work_dir": str(work.relative_to(ROOT))}
    for label in ("first_run", "cached_rerun"):
        r = run_child(task, args.threads, args.timeout)
        out[label] = r
        if "error" in r:
            print(f"[step] {label}: {r['error']}", flush=True)
            return out
        i = r["info"]
        print(f"[step] {label}: {r['seconds']:.1f} s (phases {i['seconds']}; imports before it {r['imports_seconds']} s), "
              f"{i['distinct_texts']:,} distinct texts, "
              f"embedded {i['embedded']:,}, from cache {i['from_cache']:,}, index {i['params'].get('index')}, "
              f"removed {r['removed']:,} ({r['removed_planted']:,} planted), peak RSS {r['peak_rss_mb']:,.0f} MB", flush=True)
    first, again = out["first_run"], out["cached_rerun"]
    out["rerun_speedup"] = round(first["seconds"] / again["seconds"], 1)
    out["rerun_speedup_with_imports"] = round((first["seconds"] + first["imports_seconds"])
                                              / (again["seconds"] + again["imports_seconds"]), 1)
    out["same_removed"] = first["removed"] == again["removed"]
    print(f"[step] cached re-run: {again['seconds']:.1f} s vs {first['seconds']:.1f} s ({out['rerun_speedup']}x; "
          f"{out['rerun_speedup_with_imports']}x counting the imports too)", flush=True)
    return out


def phase_quality(args) -> dict:
    import numpy as np
    import polars as pl

    from mixer.steps.base import StepContext
    from mixer.steps.semantic import SemanticConfig, SemanticDedup

    frame, first, group, vecs, facts = pool_embeddings(args.step_size, args.seed, args.batch_size)
    n = frame.height
    pos = {rid: k for k, rid in enumerate(frame["id"].to_list())}
    planted = (frame["source"] == "planted").to_numpy()
    order = frame["source"].unique(maintain_order=True).to_list()
    work = step_work_dir(args.step_size, args.seed)
    work.mkdir(parents=True, exist_ok=True)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    t = time.perf_counter()
    truth_all = brute_pairs(vecs, np.arange(len(vecs)), np.float32(min(thresholds) - 1e-6))
    sims = np.einsum("ij,ij->i", vecs[truth_all[:, 0]], vecs[truth_all[:, 1]]) if len(truth_all) else np.zeros(0)
    out: dict[str, Any] = {"records": n, "distinct_texts": int(len(first)), "embeddings": facts,
                           "truth": {"method": "all pairs of distinct-text embeddings, blocked numpy matmul (float32), "
                                               "cosine >= t - 1e-6 (the step's radius); identical texts linked",
                                     "seconds": round(time.perf_counter() - t, 2)},
                           "ivf_nlist": "default (min(4 sqrt(n), n/39))", "curve": {}}
    variants = {"flat": {"index": "flat"}, **{f"ivf nprobe={p}": {"index": "ivf", "nprobe": p} for p in args.nprobes}}
    for th in thresholds:
        labels = components(len(first), truth_all[sims >= np.float32(th - 1e-6)])[group]
        size = np.bincount(labels)
        row: dict[str, Any] = {"truth_pairs": int((sims >= np.float32(th - 1e-6)).sum()), "truth_removed": int((size - 1).sum()),
                               "truth_removed_planted": int(planted.sum() - np.isin(np.flatnonzero(planted), _firsts(labels)).sum())}
        for label, opts in variants.items():
            cfg = SemanticConfig(threshold=th, batch_size=args.batch_size, **opts)
            res = SemanticDedup(cfg).run(frame, StepContext(source_order=order, work_dir=work))
            pred = np.zeros(n, dtype=bool)
            pred[[pos[i] for i in res.removed["id"].to_list()]] = True
            row[label] = {**prf(pred, labels), "removed": int(pred.sum()),
                          "removed_planted": int(res.removed.filter(pl.col("source") == "planted").height),
                          "pairs": res.info["params"].get("pairs"), "search_seconds": res.info["seconds"].get("search"),
                          **{k: res.info["params"][k] for k in ("nlist", "nprobe") if k in res.info["params"]}}
        out["curve"][str(th)] = row
        print(f"[quality] t={th}: truth removes {row['truth_removed']:,} | "
              + " | ".join(f"{k}: P {row[k]['precision']} R {row[k]['recall']} F1 {row[k]['f1']}" for k in variants), flush=True)
    return out


def _firsts(labels):
    """Row of the first member of every cluster."""
    import numpy as np

    return np.unique(labels, return_index=True)[1]


def synth_vectors(base, n: int, seed: int, anchor_cos: tuple[float, float], copy_cos: tuple[float, float],
                  copy_share: float, chunk: int = 100_000):
    """n unit vectors: anchors turned from random real ones, copies turned from random anchors
    (see the module docstring), rows shuffled."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def turn(v, lo, hi):
        c = rng.uniform(lo, hi, len(v)).astype(np.float32)[:, None]
        g = rng.standard_normal(v.shape, dtype=np.float32)
        g -= np.einsum("ij,ij->i", g, v)[:, None] * v
        g /= np.linalg.norm(g, axis=1, keepdims=True)
        w = c * v + np.sqrt(1 - c * c) * g
        return w / np.linalg.norm(w, axis=1, keepdims=True)

    n_copy = int(round(copy_share * n))
    n_anchor = n - n_copy
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for s in range(0, n_anchor, chunk):
        m = min(chunk, n_anchor - s)
        out[s : s + m] = turn(base[rng.integers(0, len(base), m)], *anchor_cos)
    for s in range(n_anchor, n, chunk):
        m = min(chunk, n - s)
        out[s : s + m] = turn(out[rng.integers(0, n_anchor, m)], *copy_cos)
    return out[rng.permutation(n)]


def search_vectors(args, n: int) -> tuple[Path, dict]:
    import numpy as np

    base_npy = CACHE / f"emb-{args.step_size}-{args.seed}.npy"
    if not base_npy.exists():
        print(f"[search] real embeddings of the {args.step_size:,}-record pool are not cached yet: embedding them", flush=True)
        pool_embeddings(args.step_size, args.seed, args.batch_size)
    base = np.load(base_npy)
    params = {"base": str(base_npy.relative_to(ROOT)), "base_vectors": int(len(base)), "anchor_cos": list(args.anchor_cos),
              "copy_cos": list(args.copy_cos), "copy_share": args.copy_share, "seed": args.seed}
    tag = hashlib.sha256(json.dumps({**params, "base_sum": float(base.sum())}, sort_keys=True).encode()).hexdigest()[:10]
    path = CACHE / f"vectors-{n}-{tag}.npy"
    if not path.exists():
        t = time.perf_counter()
        x = synth_vectors(base, n, args.seed, tuple(args.anchor_cos), tuple(args.copy_cos), args.copy_share)
        np.save(path, x)
        params["seconds"] = round(time.perf_counter() - t, 1)
    return path, params


def _on_queries(edges, qmask):
    """The edges with an end among the queries."""
    return edges[qmask[edges[:, 0]] | qmask[edges[:, 1]]]


def phase_search(args) -> dict:
    import numpy as np

    out: dict[str, Any] = {"threshold": args.search_threshold, "dim": DIM}
    radius = np.float32(args.search_threshold - 1e-6)
    sdir = CACHE / "search"
    sdir.mkdir(parents=True, exist_ok=True)
    for n in args.search_sizes:
        path, gen = search_vectors(args, n)
        x = np.load(path, mmap_mode="r")
        perm = np.random.default_rng(args.seed + 1).permutation(n)
        q_truth = np.sort(perm[: min(args.truth_queries, n)])
        row: dict[str, Any] = {"vectors": n, "vectors_mb": round(n * x.shape[1] * 4 / 2**20, 1), "generation": gen}
        out[str(n)] = row
        qmask = np.zeros(n, dtype=bool)
        qmask[q_truth] = True
        t = time.perf_counter()
        truth = brute_pairs(x, q_truth, radius)
        row["truth"] = {"queries": int(len(q_truth)), "pairs": int(len(truth)), "numpy_seconds": round(time.perf_counter() - t, 2),
                        "method": "numpy blocked matmul of the query vectors against all vectors"}
        print(f"[search] {n:,} vectors: exact pairs of {len(q_truth):,} queries by numpy: {len(truth):,} "
              f"({row['truth']['numpy_seconds']} s)", flush=True)

        flat_edges = None
        if n <= args.flat_full_max:
            e = sdir / f"edges-{n}-flat.npy"
            r = run_child({"task": "search", "kind": "flat", "vectors": str(path), "threshold": args.search_threshold,
                           "edges": str(e)}, args.threads, args.timeout)
            if "error" not in r:
                flat_edges = np.load(e)
                r["on_truth_queries"] = recall(_on_queries(flat_edges, qmask), truth, n)
            row["flat"] = r
        else:
            nq = min(args.flat_queries, n)
            qf = np.sort(perm[:nq])  # holds the truth queries when flat_queries >= truth_queries
            qfile, e = sdir / f"queries-{n}.npy", sdir / f"edges-{n}-flat-subset.npy"
            np.save(qfile, qf)
            r = run_child({"task": "search", "kind": "flat_subset", "vectors": str(path), "queries": str(qfile),
                           "threshold": args.search_threshold, "edges": str(e)}, args.threads, args.timeout)
            if "error" not in r:
                r["pairs_with_a_query"] = r.pop("pairs")
                r["estimated_seconds"] = round(r["build_seconds"] + r["search_seconds"] * n / nq, 1)
                r["note"] = (f"not run in full (range search of all {n:,} vectors is O(n^2)): flat index of all vectors, range "
                             f"search of {nq:,} random queries timed, search time scaled by {n:,}/{nq:,}")
                if nq >= len(q_truth):
                    r["on_truth_queries"] = recall(_on_queries(np.load(e), qmask), truth, n)
            row["flat_estimate"] = r
        key = "flat" if "flat" in row else "flat_estimate"
        fr = row[key]
        if "error" in fr:
            print(f"[search] {n:,} {key}: {fr['error']}", flush=True)
        else:
            est = f" -> estimated {fr['estimated_seconds']:,.0f} s for all" if "estimated_seconds" in fr else ""
            pairs = f"{fr['pairs']:,} pairs" if "pairs" in fr else f"{fr['pairs_with_a_query']:,} pairs with a timed query"
            print(f"[search] {n:,} {key}: {fr['seconds']:,.1f} s{est} (build {fr['build_seconds']} s), {pairs}, "
                  f"peak RSS {fr['peak_rss_mb']:,.0f} MB, recall on queries {fr.get('on_truth_queries', {}).get('recall')}",
                  flush=True)
        for p in args.nprobes:
            e = sdir / f"edges-{n}-ivf-{p}.npy"
            r = run_child({"task": "search", "kind": "ivf", "nprobe": p, "vectors": str(path),
                           "threshold": args.search_threshold, "edges": str(e)}, args.threads, args.timeout)
            if "error" not in r:
                ivf = np.load(e)
                r["on_truth_queries"] = recall(_on_queries(ivf, qmask), truth, n)
                if flat_edges is not None:
                    r["vs_all_flat_pairs"] = recall(ivf, flat_edges, n)
                print(f"[search] {n:,} ivf nlist={r['params'].get('nlist')} nprobe={r['params'].get('nprobe')}: {r['seconds']:,.1f} s "
                      f"(build+train {r['build_seconds']} s), {r['pairs']:,} pairs, peak RSS {r['peak_rss_mb']:,.0f} MB, "
                      f"recall on queries {r['on_truth_queries']['recall']}"
                      + (f", vs all flat pairs {r['vs_all_flat_pairs']['recall']}" if flat_edges is not None else ""), flush=True)
            else:
                print(f"[search] {n:,} ivf nprobe={p}: {r['error']}", flush=True)
            row[f"ivf_nprobe{p}"] = r
        del x
    return out


# ============================================================================ driver


def table(results: dict) -> str:
    """The figures of this results file, compactly."""
    lines = []
    e = results.get("embed")
    if e:
        for k in sorted(k for k in e if k.startswith("max_length_")):
            r = e[k]
            lines.append(f"embed     max_length {r['max_length']:>4}: {r['texts_per_s']:>8.1f} texts/s  "
                         f"{r['tokens_per_s']:>9.0f} tokens/s  ({e['texts']:,} texts, batch {e['batch_size']}, "
                         f"{e['torch_threads']} threads)")
    s = results.get("step")
    if s and "cached_rerun" in s and "error" not in s["cached_rerun"]:
        for k in ("first_run", "cached_rerun"):
            r = s[k]
            lines.append(f"step      {k:<13} {s['records']:>9,} records: {r['seconds']:>8.1f} s (+{r['imports_seconds']} s imports)  "
                         f"phases {r['info']['seconds']}  "
                         f"removed {r['removed']:,}  peak RSS {r['peak_rss_mb']:,.0f} MB")
        lines.append(f"step      cached re-run speedup: {s['rerun_speedup']}x ({s.get('rerun_speedup_with_imports')}x with imports)")
    q = results.get("quality")
    if q:
        for th, row in q["curve"].items():
            cells = "  ".join(f"{k}: P {v['precision']:.3f} R {v['recall']:.3f} F1 {v['f1']:.3f}"
                              for k, v in row.items() if isinstance(v, dict))
            lines.append(f"quality   t={th}: truth removes {row['truth_removed']:,}  {cells}")
    se = results.get("search")
    if se:
        for n, row in se.items():
            if not isinstance(row, dict) or "vectors" not in row:
                continue
            for k, r in row.items():
                if not (k.startswith("flat") or k.startswith("ivf")) or "error" in r:
                    continue
                secs = f"~{r['estimated_seconds']:,.0f} s (est.)" if "estimated_seconds" in r else f"{r['seconds']:,.1f} s"
                lines.append(f"search    {int(n):>9,} {k:<14} {secs:>18}  build {r['build_seconds']:>8.1f} s  "
                             f"peak RSS {r['peak_rss_mb']:>7,.0f} MB  recall {r.get('on_truth_queries', {}).get('recall')}")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        return _child_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)

    def floats(s: str) -> list[float]:
        return [float(v) for v in s.split(",") if v]

    def ints(s: str) -> list[int]:
        return [int(v) for v in s.split(",") if v]

    ap.add_argument("--only", default=",".join(PHASES), help="phases to run, comma-separated: " + ",".join(PHASES))
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch, faiss and BLAS threads (default: all cores)")
    ap.add_argument("--n-embed", type=int, default=2000, help="texts for the embedding throughput")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--step-size", type=int, default=20_000, help="records of the pool for the step and quality phases")
    ap.add_argument("--thresholds", default="0.90,0.95,0.98", help="cosine thresholds of the quality phase")
    ap.add_argument("--search-sizes", type=ints, default=[100_000, 1_000_000], help="vector counts of the search phase")
    ap.add_argument("--search-threshold", type=float, default=0.95)
    ap.add_argument("--nprobes", type=ints, default=[16, 64], help="IVF nprobe settings (16 is the step's default)")
    ap.add_argument("--flat-full-max", type=int, default=200_000, help="above this many vectors flat is estimated")
    ap.add_argument("--flat-queries", type=int, default=20_000, help="queries timed for the flat estimate")
    ap.add_argument("--truth-queries", type=int, default=10_000, help="query vectors with exact (numpy) pairs")
    ap.add_argument("--anchor-cos", type=floats, default=[0.80, 0.95], help="synthetic anchors: cosine to their real vector")
    ap.add_argument("--copy-cos", type=floats, default=[0.85, 1.0], help="synthetic copies: cosine to their anchor")
    ap.add_argument("--copy-share", type=float, default=0.5, help="share of synthetic vectors that are copies")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per child process")
    ap.add_argument("--out", default=str(RESULTS / "semantic_dedup.json"))
    args = ap.parse_args()
    only = [p for p in args.only.split(",") if p]
    bad = [p for p in only if p not in PHASES]
    if bad:
        ap.error(f"unknown phase(s) {bad}; choose from {PHASES}")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy/torch load their thread pools
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MIXER_NO_PROGRESS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    _set_threads(args.threads)
    CACHE.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    results: dict = json.loads(out.read_text()) if out.exists() else {}
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          "threads": args.threads, "gpu": None, "versions": _versions(), "loadavg_at_start": _loadavg(),
                          "phases_run": only,
                          "note": "shared machine: other jobs may have run concurrently (load averages per phase)"}
    try:
        import torch

        results["machine"]["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001
        pass
    results.setdefault("settings", {})
    results["settings"].update({"model": "all-MiniLM-L6-v2", "batch_size": args.batch_size, "seed": args.seed})

    def save():
        out.write_text(json.dumps(results, indent=2, default=str) + "\n")

    fns = {"embed": phase_embed, "step": phase_step, "quality": phase_quality, "search": phase_search}
    for phase in PHASES:
        if phase not in only:
            continue
        t0, load0, started = time.perf_counter(), _loadavg(), time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"== {phase} (load average {load0[0]})", flush=True)
        res = fns[phase](args)
        res.update(started=started, phase_seconds=round(time.perf_counter() - t0, 1),
                   loadavg_start=load0, loadavg_end=_loadavg())
        results[phase] = res
        results["machine"]["loadavg_at_end"] = _loadavg()
        save()
    results["machine"]["loadavg_at_end"] = _loadavg()
    save()
    print("\n" + table(results))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
