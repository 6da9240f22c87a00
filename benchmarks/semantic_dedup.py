"""Semantic near-duplicate removal on CPU: static embeddings and the exact blocked self-join,
against today's MiniLM path as the baseline, in one run.

Data: the record pools of ``benchmarks/dedup.py`` (real records of ``../shared/data/train``
plus planted copies with word edits at rates 0-0.3), read from
``benchmarks/.cache/dedup/data/pool-N-SEED.parquet`` (``python benchmarks/dedup.py`` writes
them; this script writes a missing one with dedup.py's ``make_pool``). The compared text is
``text_of(frame, "all")`` (user and assistant turns).

Phases (``--only``, comma-separated; all by default):
  embed    throughput, same texts: the static model (``static:all-MiniLM-L6-v2``, distilled
           once and cached; its distillation time is reported) on ``--n-static`` distinct
           texts of the ``--embed-pool`` pool, and MiniLM (sentence-transformers, the old default) on the first
           ``--n-minilm`` of them (it is ~1000x slower); texts/s and the ratio
  quality  the planted pool of ``--step-size`` records: exact all-pairs cosines of the
           distinct texts under MiniLM and under the static model (blocked numpy matmul).
           Pairs of the static model at each threshold of ``--static-thresholds`` against
           MiniLM's pairs at ``--thresholds`` (precision, recall); removed records of both
           against the planted truth (every planted copy duplicates the real record it was
           made from; clusters = origin + copies, scoring of dedup.py); what the two disagree
           on; the recommended static threshold (highest recall of the planted truth at
           precision >= 0.9)
  step     the ``semantic`` step class with its defaults (static model) in a child process on
           each of ``--step-sizes`` records: seconds per phase as the step reports them,
           removed records, peak RSS of the child process tree (sampled); a second run into
           the same work dir (embeddings from its cache)
  search   ``vectors.similar_pairs`` on ``--search-sizes`` synthetic vectors built from the
           real static embeddings of the ``--embed-pool`` pool (see below), each in a child process: flat (all pairs, exact)
           up to ``--flat-full-max``, the partition join at each of ``--nprobes``, and the old
           index (faiss IVFFlat, nlist 4 sqrt(n), nprobe 16, range search: the code this
           replaces) up to ``--old-ivf-max`` vectors. Recall of each against exact pairs of
           ``--truth-queries`` random query vectors (numpy brute force).

Search vectors: ``1 - copy_share`` of them are anchors, each a random real static embedding
turned at cosine ~U(anchor_cos) in a Gaussian random direction orthogonal to it; the rest
are copies, each a random anchor turned the same way at cosine ~U(copy_cos); all unit
length, rows shuffled, seeded.

    python benchmarks/semantic_dedup.py
    python benchmarks/semantic_dedup.py --only search --search-sizes 1000000
    # small development run:
    python benchmarks/semantic_dedup.py --n-static 2000 --n-minilm 50 --step-size 2000 \
        --step-sizes 2000 --search-sizes 20000

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
PHASES = ("embed", "quality", "step", "search")
STATIC = "static:all-MiniLM-L6-v2"
MINILM = "all-MiniLM-L6-v2"


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
    """(frame, facts) of the cached pool of ``size`` records (made with dedup.py's
    ``make_pool`` when missing)."""
    import polars as pl

    path = POOLS / f"pool-{size}-{seed}.parquet"
    if not path.exists():
        print(f"[data] writing pool-{size}-{seed}.parquet with benchmarks/dedup.py's make_pool", flush=True)
        _dedup_bench().make_pool(size, seed)
    info = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").exists() else {}
    return pl.read_parquet(path), {"file": str(path.relative_to(ROOT)), **info}


def pool_texts(frame) -> list[str]:
    from mixer.records import text_of

    return text_of(frame, "all").fill_null("").to_list()


def distinct(texts: list[str]):
    """(first row of each distinct text, distinct-text number per row), as the step does."""
    from mixer.select.cache import text_keys
    from mixer.steps.semantic import _key_groups

    return _key_groups(text_keys(texts))


def planted_labels(frame, size: int, seed: int):
    """True cluster per record: each planted copy shares the label of the real record it was
    made from. Replays dedup.py's ``make_pool`` random stream (checked against the pool)."""
    import numpy as np
    import polars as pl

    d = _dedup_bench()
    rng = np.random.Generator(np.random.PCG64(seed))
    real = d.load_real()
    n_real = min(real.height, size // 2)
    if n_real < real.height:
        real = real[np.sort(rng.choice(real.height, n_real, replace=False))]
    words = real.head(5000).select(
        pl.col("messages").list.eval(pl.element().struct.field("content")).list.join(" ").str.split(" ")
    ).to_series().explode().unique(maintain_order=True)
    vocab = words.filter(words.str.len_chars().is_between(2, 12)).head(20_000).to_list()
    origin, copies, todo, k = [], [], size - n_real, 0
    while k < todo:
        m = min(100_000, todo - k)
        src = rng.integers(0, n_real, m)
        out, _ = d._edit_messages(real[src].select("messages"), d.RATES, rng, vocab)
        copies.append(out.sort("_rec")["messages"])
        origin.append(src)
        k += m
    if real["id"].to_list() != frame["id"][:n_real].to_list() or (
            copies and not copies[0][:50].equals(frame["messages"][n_real : n_real + 50])):
        raise SystemExit("planted_labels: the replayed pool differs from the cached one (dedup.py changed?)")
    return np.concatenate([np.arange(n_real), *origin]) if origin else np.arange(n_real)


def minilm_vectors(frame, first, size: int, seed: int, batch_size: int):
    """MiniLM vectors of the distinct texts (``emb-SIZE-SEED.npy`` in the cache folder, else
    computed there once: ~10 minutes for 18k texts on 2 cores)."""
    import numpy as np

    npy = CACHE / f"emb-{size}-{seed}.npy"
    if npy.exists():
        vecs = np.load(npy)
        if len(vecs) == len(first):
            return vecs, "cached " + str(npy.relative_to(ROOT))
    from mixer.select.cache import EmbeddingCache, embed
    from mixer.select.encoders import SentenceEncoder

    texts = pool_texts(frame)
    enc = SentenceEncoder(MINILM, None, batch_size, "cpu")
    with tempfile.TemporaryDirectory(dir=CACHE) as d:
        vecs, st = embed([texts[i] for i in first], enc, EmbeddingCache(Path(d), enc.fingerprint()),
                         description="MiniLM: the quality pool")
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    np.save(npy, vecs)
    return vecs, f"computed ({st.seconds:.0f} s)"


def static_vectors(texts: list[str]):
    """Static-model vectors of ``texts`` and the encoder."""
    import numpy as np

    from mixer.select.models import sentence_encoder

    enc = sentence_encoder(STATIC)
    vecs = np.concatenate([enc.encode(texts[s : s + enc.batch_size]) for s in range(0, len(texts), enc.batch_size)])
    return vecs, enc


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


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_child(task: dict, threads: int, timeout: float) -> dict:
    """Run ``task`` in a fresh process; its JSON back, with the peak RSS of its process tree
    (sampled every 50 ms) next to the child's own high-water mark."""
    import threading

    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=CACHE, delete=False) as fh:
        out = Path(fh.name)
    env = {**os.environ, "MIXER_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "PYTHONPATH": str(ROOT / "src"), "POLARS_MAX_THREADS": str(threads), "RAYON_NUM_THREADS": str(threads),
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    peak = [0]
    proc = subprocess.Popen([sys.executable, __file__, "_child", json.dumps(task), str(out), str(threads)], env=env)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        rc = proc.wait(timeout=timeout)
        if rc != 0:
            return {"error": f"child exited with {rc}", "wall": round(time.perf_counter() - t0, 2)}
        res = json.loads(out.read_text())
    except subprocess.TimeoutExpired:
        proc.kill()
        return {"error": f"timeout after {timeout:.0f} s"}
    finally:
        done.set()
        sampler.join()
        out.unlink(missing_ok=True)
    res["wall"] = round(time.perf_counter() - t0, 2)
    res["peak_tree_rss_mb"] = round(peak[0] / 2**20, 1)
    return res


def child_build(task: dict) -> dict:
    """The step inside a streaming ``mixer build`` (the local engine: batches spilled, the
    step's map / decide / apply), sources written beforehand as one parquet file each."""
    import polars as pl
    import yaml

    from mixer.pipeline import build
    from mixer.spec import load_spec

    work = Path(task["work"])
    sources = {p.stem: {"load": {"path": str(p)}, "format": "messages"} for p in sorted(Path(task["sources"]).glob("*.parquet"))}
    spec = work / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "semantic-bench", "sources": sources, "mix": [{"semantic": task.get("options", {})}]}))
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    res = build(load_spec(spec), work / "build")
    secs = time.perf_counter() - t0
    info = next(s for s in res.manifest["steps"] if s["step"] == "semantic")
    removed = pl.scan_parquet(work / "build" / "removed.parquet").filter(pl.col("step") == "semantic").select("source").collect()
    return {"seconds": round(secs, 3), "records": res.manifest["records"] + res.manifest["removed"],
            "removed": removed.height, "removed_planted": int((removed["source"] == "planted").sum()),
            "rss_before_mb": rss0, "peak_rss_mb": _peak_rss_mb(), "torch_imported": "torch" in sys.modules,
            "info": info.get("info", info)}


def write_sources(size: int, seed: int, folder: Path) -> Path:
    """The pool as one parquet file of ``messages`` per source (the build's inputs)."""
    frame, _ = load_pool(size, seed)
    folder.mkdir(parents=True, exist_ok=True)
    for (name,), part in frame.group_by("source", maintain_order=True):
        part.select("messages").write_parquet(folder / f"{name}.parquet", row_group_size=50_000)
    return folder


def child_step(task: dict) -> dict:
    import polars as pl

    frame, _ = load_pool(task["size"], task["seed"])
    order = frame["source"].unique(maintain_order=True).to_list()
    t = time.perf_counter()
    import mixer.select.cache  # noqa: F401 - imports are timed apart from the step
    from mixer.steps.base import StepContext
    from mixer.steps.semantic import SemanticConfig, SemanticDedup

    imports = time.perf_counter() - t
    rss0 = _rss_mb()
    cfg = SemanticConfig(**task.get("options", {}))
    t0 = time.perf_counter()
    res = SemanticDedup(cfg).run(frame, StepContext(source_order=order, work_dir=Path(task["work"])))
    secs = time.perf_counter() - t0
    planted = int(res.removed.filter(pl.col("source") == "planted").height)
    return {"seconds": round(secs, 3), "imports_seconds": round(imports, 2), "records": frame.height,
            "removed": res.removed.height, "removed_planted": planted, "rss_before_mb": rss0,
            "peak_rss_mb": _peak_rss_mb(), "torch_imported": "torch" in sys.modules, "info": res.info}


def old_ivf_pairs(x, threshold: float, nprobe: int = 16):
    """The search this issue replaced: faiss IVFFlat (nlist min(4 sqrt(n), n/39), 64 training
    points per list), range search of every vector in batches of 4096."""
    import faiss
    import numpy as np

    from mixer.dedup.lsh import unique_edges

    d, n = x.shape[1], len(x)
    nlist = max(1, min(int(4 * np.sqrt(n)), n // 39 or 1))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    size = 64 * nlist
    index.cp.seed = 0
    index.train(x if n <= size else x[np.sort(rng.choice(n, size, replace=False))])
    index.nprobe = min(nprobe, nlist)
    index.add(x)
    parts = []
    for s in range(0, n, 4096):
        lims, _, nbr = index.range_search(x[s : s + 4096], float(np.float32(threshold - 1e-6)))
        a = np.repeat(np.arange(s, s + len(lims) - 1), np.diff(lims).astype(np.int64))
        sel = a != nbr
        parts.append(np.stack([a[sel], nbr[sel]], axis=1).astype(np.int64))
    return unique_edges(np.concatenate(parts)), {"index": "old ivf (faiss IVFFlat)", "nlist": nlist, "nprobe": nprobe}


def child_search(task: dict) -> dict:
    import numpy as np

    from mixer.dedup import vectors

    x = np.load(task["vectors"])
    rss0 = _rss_mb()
    t = time.perf_counter()
    if task["kind"] == "old_ivf":
        edges, info = old_ivf_pairs(x, task["threshold"])
    else:
        edges, info = vectors.similar_pairs(x, task["threshold"], task["kind"], None, task.get("nprobe", 2))
    total = time.perf_counter() - t
    np.save(task["edges"], edges)
    return {"seconds": round(total, 2), "pairs": int(len(edges)), "params": info, "rss_loaded_mb": rss0,
            "peak_rss_mb": _peak_rss_mb()}


def _child_main(argv: list[str]) -> None:
    task, out, threads = json.loads(argv[0]), Path(argv[1]), int(argv[2])
    import faiss

    faiss.omp_set_num_threads(threads)
    res = {"step": child_step, "build": child_build, "search": child_search}[task["task"]](task)
    out.write_text(json.dumps(res, default=str))


# ============================================================================ phases


def phase_embed(args) -> dict:
    import numpy as np

    frame, pool = load_pool(args.embed_pool, args.seed)
    texts = [t for t in dict.fromkeys(pool_texts(frame)) if t]
    rng = np.random.default_rng(args.seed)
    texts = [texts[i] for i in rng.permutation(len(texts))[: args.n_static]]
    out: dict[str, Any] = {"pool": pool, "mean_chars": round(float(np.mean([len(t) for t in texts])), 1),
                           "threads": args.threads}
    t = time.perf_counter()
    from mixer.select.models import sentence_encoder

    enc = sentence_encoder(STATIC)
    load = time.perf_counter() - t
    enc.encode(texts[:64])  # warm-up of the thread pool and tokenizer; not throughput
    enc = sentence_encoder(STATIC)  # fresh: no word seen yet, as in a first build
    t, c = time.perf_counter(), time.process_time()
    for s in range(0, len(texts), enc.batch_size):
        enc.encode(texts[s : s + enc.batch_size])
    secs, cpu = time.perf_counter() - t, time.process_time() - c
    out["static"] = {"model": STATIC, "texts": len(texts), "seconds": round(secs, 3), "texts_per_s": round(len(texts) / secs, 1),
                     "cpu_seconds": round(cpu, 3), "texts_per_cpu_s": round(len(texts) / cpu, 1),
                     "batch_size": enc.batch_size, "load_seconds": round(load, 2), "distillation": enc.distill,
                     "distinct_words_learned": enc._words.height, "dim": enc.dim}
    print(f"[embed] static: {out['static']['texts_per_s']:,.0f} texts/s ({len(texts):,} texts, {secs:.2f} s, "
          f"{len(texts) / cpu:,.0f} texts per CPU second; model load "
          f"{load:.1f} s, distilled {'now' if enc.distill and enc.distill.get('distilled_now') else 'earlier'}"
          f" in {enc.distill.get('seconds') if enc.distill else '-'} s)", flush=True)
    import torch

    torch.set_num_threads(args.threads)
    from mixer.select.encoders import SentenceEncoder

    mini = SentenceEncoder(MINILM, None, args.batch_size, "cpu")
    sub = texts[: args.n_minilm]
    mini.encode(sub[:8])
    t, c = time.perf_counter(), time.process_time()
    for s in range(0, len(sub), args.batch_size):
        mini.encode(sub[s : s + args.batch_size])
    msecs, mcpu = time.perf_counter() - t, time.process_time() - c
    out["minilm"] = {"model": MINILM, "texts": len(sub), "seconds": round(msecs, 2), "texts_per_s": round(len(sub) / msecs, 2),
                     "cpu_seconds": round(mcpu, 2), "texts_per_cpu_s": round(len(sub) / mcpu, 2),
                     "batch_size": args.batch_size, "max_length": mini.model.max_seq_length}
    out["ratio"] = round(out["static"]["texts_per_s"] / out["minilm"]["texts_per_s"], 1)
    out["ratio_cpu"] = round(out["static"]["texts_per_cpu_s"] / out["minilm"]["texts_per_cpu_s"], 1)
    print(f"[embed] MiniLM: {out['minilm']['texts_per_s']} texts/s ({len(sub):,} texts, {msecs:.1f} s); "
          f"static / MiniLM = {out['ratio']:,}x", flush=True)
    return out


def _pairs_at(pairs, sims, t: float):
    import numpy as np

    return pairs[sims >= np.float32(t - 1e-6)]


def _removed(n_rows: int, first, group, pairs):
    """Removed rows when keeping the first row of each component (pairs of distinct texts
    plus identical texts), as the step does with keep: first."""
    import numpy as np

    same = np.flatnonzero(first[group] != np.arange(len(group)))
    edges = np.concatenate([first[pairs].reshape(-1, 2), np.stack([same, first[group[same]]], axis=1)])
    labels = components(n_rows, edges)
    pred = np.ones(n_rows, dtype=bool)
    pred[_firsts(labels)] = False
    return pred


def phase_quality(args) -> dict:
    import numpy as np

    frame, pool = load_pool(args.step_size, args.seed)
    texts = pool_texts(frame)
    first, group = distinct(texts)
    truth_labels = planted_labels(frame, args.step_size, args.seed)
    mini, mini_from = minilm_vectors(frame, first, args.step_size, args.seed, args.batch_size)
    stat, _ = static_vectors([texts[i] for i in first])
    m_th = [float(t) for t in args.thresholds.split(",")]
    s_th = [float(t) for t in args.static_thresholds.split(",")]
    t = time.perf_counter()
    all_q = np.arange(len(first))
    mp = brute_pairs(mini, all_q, np.float32(min(m_th) - 1e-6))
    sp = brute_pairs(stat, all_q, np.float32(min(s_th) - 1e-6))
    ms = np.einsum("ij,ij->i", mini[mp[:, 0]], mini[mp[:, 1]])
    ss = np.einsum("ij,ij->i", stat[sp[:, 0]], stat[sp[:, 1]])
    n = len(first)
    out: dict[str, Any] = {"records": frame.height, "distinct_texts": n, "pool": pool, "minilm_vectors": mini_from,
                           "exact_pairs_seconds": round(time.perf_counter() - t, 1),
                           "method": "exact all-pairs cosines of the distinct texts' vectors (numpy); pair sets compared "
                                     "on distinct texts; removed records (keep first) against planted truth",
                           "vs_minilm": {}, "vs_planted": {}}
    for tm in m_th:
        ref = _pairs_at(mp, ms, tm)
        row = {"minilm_pairs": int(len(ref))}
        for ts in s_th:
            r = recall(_pairs_at(sp, ss, ts), ref, n)
            prec = round((r["found_pairs"] - r["extra"]) / r["found_pairs"], 4) if r["found_pairs"] else 1.0
            f1 = round(2 * prec * r["recall"] / (prec + r["recall"]), 4) if prec + r["recall"] else 0.0
            row[str(ts)] = {"precision": prec, "recall": r["recall"], "f1": f1, "static_pairs": r["found_pairs"]}
        best = max(s_th, key=lambda ts: row[str(ts)]["f1"])
        row["best_static_threshold"] = best
        out["vs_minilm"][str(tm)] = row
        same = row.get(str(tm))
        print(f"[quality] MiniLM t={tm}: {len(ref):,} pairs; static at the same threshold: "
              + (f"P {same['precision']} R {same['recall']}; " if same else "")
              + f"best static threshold {best}: P {row[str(best)]['precision']} R {row[str(best)]['recall']} "
              f"F1 {row[str(best)]['f1']}", flush=True)
    same_cluster = truth_labels[first]  # planted cluster of each distinct text
    for label, pairs, sims, ths in (("minilm", mp, ms, m_th), ("static", sp, ss, s_th)):
        out["vs_planted"][label] = {}
        for th in ths:
            at = _pairs_at(pairs, sims, th)
            pred = _removed(frame.height, first, group, at)
            true_pair = same_cluster[at[:, 0]] == same_cluster[at[:, 1]]
            out["vs_planted"][label][str(th)] = {**prf(pred, truth_labels), "removed": int(pred.sum()), "pairs": int(len(at)),
                                                 "pairs_within_a_planted_cluster": round(float(true_pair.mean()), 4) if len(at) else None}
    # what the disagreement is made of, at MiniLM 0.95 and the static model's thresholds
    ref = _pairs_at(mp, ms, 0.95)
    ref_keys = _keys(ref, n)
    out["disagreement_at_minilm_0.95"] = {}
    for ts in s_th:
        at = _pairs_at(sp, ss, ts)
        k = at[:, 0].astype(np.int64) * n + at[:, 1]
        only_static = at[~np.isin(k, ref_keys)]
        only_minilm = ref[~np.isin(ref_keys, k)]
        share = lambda e: round(float((same_cluster[e[:, 0]] == same_cluster[e[:, 1]]).mean()), 4) if len(e) else None  # noqa: E731
        out["disagreement_at_minilm_0.95"][str(ts)] = {
            "static_only_pairs": int(len(only_static)), "static_only_within_planted_cluster": share(only_static),
            "minilm_only_pairs": int(len(only_minilm)), "minilm_only_within_planted_cluster": share(only_minilm)}
    truth_removed = int(frame.height - len(np.unique(truth_labels)))
    out["vs_planted"]["truth_removed"] = truth_removed
    # recommended: the highest recall of the planted truth at precision >= 0.9 (removed records)
    ok = [float(t) for t, v in out["vs_planted"]["static"].items() if v["precision"] >= 0.9]
    rec = min(ok) if ok else max(s_th)
    out["recommended_static_threshold"] = rec
    out["recommendation_rule"] = "lowest static threshold whose removed records have precision >= 0.9 against the planted truth"
    print(f"[quality] planted truth removes {truth_removed:,}: "
          + " | ".join(f"{k} t={t}: P {v['precision']} R {v['recall']}" for k in ("minilm", "static")
                       for t, v in out["vs_planted"][k].items() if t in ("0.95", str(rec))), flush=True)
    return out


def phase_step(args) -> dict:
    out: dict[str, Any] = {}
    for size in args.step_sizes:
        work = CACHE / "work" / f"pool-{size}-{args.seed}"
        shutil.rmtree(work, ignore_errors=True)  # a cold first run: nothing cached in the build
        work.mkdir(parents=True)
        load_pool(size, args.seed)  # written here if missing, not inside the timed child
        task = {"task": "step", "size": size, "seed": args.seed, "work": str(work), "options": {}}
        row: dict[str, Any] = {"records": size}
        out[str(size)] = row
        for label in ("first_run", "cached_rerun"):
            r = run_child(task, args.threads, args.timeout)
            row[label] = r
            _print_step(size, label, r)
            if "error" in r:
                break
        if "error" not in row.get("cached_rerun", {"error": 1}):
            build_work = CACHE / "work" / f"build-{size}-{args.seed}"
            shutil.rmtree(build_work, ignore_errors=True)
            build_work.mkdir(parents=True)
            folder = write_sources(size, args.seed, CACHE / "work" / f"sources-{size}-{args.seed}")
            r = run_child({"task": "build", "work": str(build_work), "sources": str(folder), "options": {}}, args.threads, args.timeout)
            row["in_streaming_build"] = r
            _print_step(size, "in_streaming_build", r)
            shutil.rmtree(build_work, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return out


def _print_step(size: int, label: str, r: dict) -> None:
    if "error" in r:
        print(f"[step] {size:,} {label}: {r['error']}", flush=True)
        return
    i = r["info"]
    print(f"[step] {size:,} {label}: {r['seconds']:.1f} s (phases {i['seconds']}), {i['distinct_texts']:,} distinct, "
          f"embedded {i['embedded']:,}, cached {i['from_cache']:,}, {i['params']}, removed {r['removed']:,} "
          f"({r['removed_planted']:,} planted), peak RSS {r['peak_tree_rss_mb']:,.0f} MB (tree) / "
          f"{r['peak_rss_mb']:,.0f} MB (own), torch imported: {r['torch_imported']}", flush=True)


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

    base_npy = CACHE / f"static-{args.embed_pool}-{args.seed}.npy"
    if not base_npy.exists():
        frame, _ = load_pool(args.embed_pool, args.seed)
        texts = pool_texts(frame)
        first, _ = distinct(texts)
        np.save(base_npy, static_vectors([texts[i] for i in first])[0])
    base = np.load(base_npy)
    params = {"base": str(base_npy.relative_to(ROOT)), "base_vectors": int(len(base)), "dim": int(base.shape[1]),
              "anchor_cos": list(args.anchor_cos), "copy_cos": list(args.copy_cos), "copy_share": args.copy_share,
              "seed": args.seed}
    tag = hashlib.sha256(json.dumps({**params, "base_sum": float(base.sum())}, sort_keys=True).encode()).hexdigest()[:10]
    path = CACHE / f"vectors-{n}-{tag}.npy"
    if not path.exists():
        x = synth_vectors(base, n, args.seed, tuple(args.anchor_cos), tuple(args.copy_cos), args.copy_share)
        np.save(path, x)
    return path, params


def _on_queries(edges, qmask):
    """The edges with an end among the queries."""
    return edges[qmask[edges[:, 0]] | qmask[edges[:, 1]]]


def phase_search(args) -> dict:
    import numpy as np

    out: dict[str, Any] = {"threshold": args.search_threshold}
    radius = np.float32(args.search_threshold - 1e-6)
    sdir = CACHE / "search"
    sdir.mkdir(parents=True, exist_ok=True)
    for n in args.search_sizes:
        path, gen = search_vectors(args, n)
        x = np.load(path, mmap_mode="r")
        q_truth = np.sort(np.random.default_rng(args.seed + 1).permutation(n)[: min(args.truth_queries, n)])
        row: dict[str, Any] = {"vectors": n, "vectors_mb": round(x.nbytes / 2**20, 1), "generation": gen}
        out[str(n)] = row
        qmask = np.zeros(n, dtype=bool)
        qmask[q_truth] = True
        t = time.perf_counter()
        truth = brute_pairs(x, q_truth, radius)
        row["truth"] = {"queries": int(len(q_truth)), "pairs": int(len(truth)), "numpy_seconds": round(time.perf_counter() - t, 2)}
        print(f"[search] {n:,} vectors ({gen['dim']}-d): exact pairs of {len(q_truth):,} queries: {len(truth):,}", flush=True)
        runs = [(f"ivf_nprobe{p}", {"kind": "ivf", "nprobe": p}) for p in args.nprobes]
        if n <= args.flat_full_max:
            runs.insert(0, ("flat", {"kind": "flat"}))
        if n <= args.old_ivf_max:
            runs.append(("old_ivf_nprobe16", {"kind": "old_ivf"}))
        for label, opts in runs:
            e = sdir / f"edges-{n}-{label}.npy"
            r = run_child({"task": "search", "vectors": str(path), "threshold": args.search_threshold, "edges": str(e), **opts},
                          args.threads, args.timeout)
            row[label] = r
            if "error" in r:
                print(f"[search] {n:,} {label}: {r['error']}", flush=True)
                continue
            r["on_truth_queries"] = recall(_on_queries(np.load(e), qmask), truth, n)
            print(f"[search] {n:,} {label}: {r['seconds']:,.1f} s, {r['pairs']:,} pairs, {r['params']}, peak RSS "
                  f"{r['peak_tree_rss_mb']:,.0f} MB, recall on queries {r['on_truth_queries']['recall']}", flush=True)
        del x
    return out


# ============================================================================ driver


def table(results: dict) -> str:
    """The figures of this results file, compactly."""
    lines = []
    e = results.get("embed")
    if e and "static" in e:
        lines.append(f"embed     static {e['static']['texts_per_s']:>10,.0f} texts/s   MiniLM {e['minilm']['texts_per_s']:>7,.1f} "
                     f"texts/s   ratio {e['ratio']:,}x   ({e['threads']} threads)")
    q = results.get("quality")
    if q and "vs_minilm" in q:
        for tm, row in q["vs_minilm"].items():
            b = row["best_static_threshold"]
            same = row.get(tm, {})
            lines.append(f"quality   MiniLM t={tm} ({row['minilm_pairs']:,} pairs): static same t P {same.get('precision')} "
                         f"R {same.get('recall')}; static t={b}: P {row[str(b)]['precision']} R {row[str(b)]['recall']}")
        lines.append(f"quality   recommended static threshold: {q.get('recommended_static_threshold')}")
    s = results.get("step")
    if s:
        for size, row in s.items():
            if not size.isdigit():
                continue
            for k in ("first_run", "cached_rerun", "in_streaming_build"):
                r = row.get(k)
                if r and "error" not in r:
                    lines.append(f"step      {int(size):>9,} {k:<18} {r['seconds']:>8.1f} s  peak RSS {r['peak_tree_rss_mb']:>7,.0f} MB  "
                                 f"removed {r['removed']:,}  phases {r['info']['seconds']}")
    se = results.get("search")
    if se:
        for n, row in se.items():
            if not isinstance(row, dict) or "vectors" not in row:
                continue
            for k, r in row.items():
                if isinstance(r, dict) and "seconds" in r and "on_truth_queries" in r:
                    lines.append(f"search    {int(n):>9,} {k:<17} {r['seconds']:>8,.1f} s  peak RSS {r['peak_tree_rss_mb']:>7,.0f} MB  "
                                 f"recall {r['on_truth_queries']['recall']}")
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
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch, faiss, polars and BLAS threads")
    ap.add_argument("--n-static", type=int, default=20_000, help="texts for the static model's throughput")
    ap.add_argument("--n-minilm", type=int, default=600, help="texts for MiniLM's throughput (~30 texts/s)")
    ap.add_argument("--batch-size", type=int, default=64, help="MiniLM batch size")
    ap.add_argument("--embed-pool", type=int, default=20_000,
                    help="records of the pool whose distinct texts the embed phase times and the search phase's vectors start from")
    ap.add_argument("--step-size", type=int, default=4000, help="records of the planted pool of the quality and embed phases "
                    "(MiniLM embeds its distinct texts once: ~4,000 at ~5-30 texts/s)")
    ap.add_argument("--thresholds", default="0.9,0.95,0.98", help="MiniLM cosine thresholds of the quality phase")
    ap.add_argument("--static-thresholds", default="0.9,0.93,0.95,0.96,0.97,0.975,0.98,0.985,0.99,0.995",
                    help="static-model thresholds compared with them")
    ap.add_argument("--step-sizes", type=ints, default=[20_000, 1_000_000], help="records of the step phase's runs")
    ap.add_argument("--search-sizes", type=ints, default=[100_000, 1_000_000], help="vector counts of the search phase")
    ap.add_argument("--search-threshold", type=float, default=0.95)
    ap.add_argument("--nprobes", type=ints, default=[2, 3], help="partition join nprobe settings (2 is the step's default)")
    ap.add_argument("--flat-full-max", type=int, default=100_000, help="flat (all pairs) up to this many vectors")
    ap.add_argument("--old-ivf-max", type=int, default=100_000, help="the old faiss IVFFlat search up to this many vectors")
    ap.add_argument("--truth-queries", type=int, default=10_000, help="query vectors with exact (numpy) pairs")
    ap.add_argument("--anchor-cos", type=floats, default=[0.80, 0.95], help="synthetic anchors: cosine to their real vector")
    ap.add_argument("--copy-cos", type=floats, default=[0.85, 1.0], help="synthetic copies: cosine to their anchor")
    ap.add_argument("--copy-share", type=float, default=0.5, help="share of synthetic vectors that are copies")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per child process")
    ap.add_argument("--out", default=str(RESULTS / "semantic_dedup.json"))
    args = ap.parse_args()
    only = [p for p in args.only.split(",") if p]
    bad = [p for p in only if p not in PHASES]
    if bad:
        ap.error(f"unknown phase(s) {bad}; choose from {PHASES}")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "POLARS_MAX_THREADS", "RAYON_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy/polars/torch load their thread pools
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MIXER_NO_PROGRESS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import faiss

    faiss.omp_set_num_threads(args.threads)
    CACHE.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    results: dict = json.loads(out.read_text()) if out.exists() else {}
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          "threads": args.threads, "gpu": None, "versions": _versions(), "loadavg_at_start": _loadavg(),
                          "phases_run": only,
                          "note": "shared machine: other jobs ran concurrently (load averages per phase)"}
    results.setdefault("settings", {})
    results["settings"].update({"static_model": STATIC, "baseline_model": MINILM, "seed": args.seed})

    def save():
        out.write_text(json.dumps(results, indent=2, default=str) + "\n")

    fns = {"embed": phase_embed, "quality": phase_quality, "step": phase_step, "search": phase_search}
    for phase in PHASES:
        if phase not in only:
            continue
        t0, load0, started = time.perf_counter(), _loadavg(), time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"== {phase} (load average {load0})", flush=True)
        res = fns[phase](args)
        if phase in ("step", "search"):  # sizes not re-run this time keep their earlier figures
            res = {**{k: v for k, v in results.get(phase, {}).items() if k.isdigit()}, **res}
        res.update(started=started, phase_seconds=round(time.perf_counter() - t0, 1),
                   loadavg_start=load0, loadavg_end=_loadavg())
        results[phase] = res
        results["machine"]["loadavg_at_end"] = _loadavg()
        save()
    save()
    print("\n" + table(results))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
