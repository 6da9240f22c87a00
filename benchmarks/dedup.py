"""Near-duplicate removal: mixer's ``minhash`` step against the field, on real records.

Data: the real records of ``../shared/data/train`` (alpaca_1k, codealpaca, gpteacher,
self_instruct, llama_factory, alpaca_eval_outputs), then near-duplicates planted by
resampling them with known word edits (deletions, insertions, substitutions, swaps, case and
whitespace changes) at several edit rates, up to the requested pool size. Ground truth:
exact Jaccard of word 5-gram sets (mixer's documented normalization), found for all pairs
with an exact prefix-filtered similarity join; clusters are connected components; a
record should be removed unless it is the first of its cluster.

Tools, each in its own process (peak memory = sampled RSS of the process tree):
  mixer        the ``minhash`` step on the record frame (this project)
  datasketch   the straightforward loop: a MinHash per record, MinHashLSH query + insert
  rensa        rensa's RMinHash/RMinHashLSH as in its README (Python shingling)
  datatrove    datatrove's 4-stage MinHash pipeline (LocalPipelineExecutor)
  text-dedup   text-dedup's MinHash command
Baselines live in separate virtualenvs under benchmarks/.cache/dedup (``--setup``).

    python benchmarks/dedup.py --setup
    python benchmarks/dedup.py --sizes 100000,1000000 --quality-size 100000

datasketch and rensa run on the whole pool at every size (``--full-baselines``); the slow
baselines (datatrove, text-dedup) on the first ``--baseline-limit`` records of larger pools,
where their throughput is compared. mixer's speed is the median of ``--repeats`` runs.

Figures are printed and written to benchmarks/results/dedup.json.
"""

from __future__ import annotations

import os
import sys

# benchmarks/ holds scripts named like stdlib modules (select.py): never import from it
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import unicodedata  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "train"
CACHE = ROOT / "benchmarks" / ".cache" / "dedup"
RESULTS = ROOT / "benchmarks" / "results"
VENVS = {"rensa": "venv-rensa", "datatrove": "venv-datatrove", "text-dedup": "venv-textdedup"}
INSTALL = {"rensa": ["rensa", "polars", "pyarrow"], "datatrove": ["datatrove[processing]", "spacy", "orjson", "polars", "pyarrow"],
           "text-dedup": ["text-dedup"]}
RATES = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)
NUM_PERM = 128
NGRAM = 5


# ============================================================================ data (main env)


def _alpaca(rows: list[dict], source: str, out_key: str = "output") -> list[tuple[str, str, str]]:
    res = []
    for r in rows:
        user = (r.get("instruction") or "") + ("\n\n" + r["input"] if r.get("input") else "")
        res.append((source, user, r.get(out_key) or ""))
    return res


def _conversations(rows: list[dict], source: str) -> list[tuple[str, str, str]]:
    res = []
    for r in rows:
        turns = r.get("conversations") or r.get("messages") or []
        user = "\n".join(t.get("value", t.get("content", "")) for t in turns if t.get("from", t.get("role")) in ("human", "user"))
        bot = "\n".join(t.get("value", t.get("content", "")) for t in turns if t.get("from", t.get("role")) in ("gpt", "assistant"))
        res.append((source, user, bot))
    return res


def load_real():
    """All real records of the six training-side folders, as an SFT frame (file order)."""
    import polars as pl

    from mixer.records import sft_frame

    if not DATA.is_dir():
        raise SystemExit(f"missing data folder {DATA}")
    rows: list[tuple[str, str, str]] = []
    rows += _alpaca(json.loads((DATA / "alpaca_1k/alpaca_data_1k.json").read_text()), "alpaca_1k")
    for f in ("code_alpaca_2k.json", "new_codealpaca.json"):
        rows += _alpaca(json.loads((DATA / "codealpaca/data" / f).read_text()), "codealpaca")
    for f in sorted((DATA / "gpteacher").glob("*/*.json")):
        rows += _alpaca(json.loads(f.read_text()), "gpteacher", "response")
    for f in sorted((DATA / "self_instruct/data/finetuning/t0_train_50k/data_per_template").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            rows.append(("self_instruct", r["prompt"], r["completion"].replace("<|endoftext|>", "")))
    for f in ("self_instruct/data/seed_tasks.jsonl", "codealpaca/seed_tasks.jsonl"):
        src = f.split("/")[0]
        for line in (DATA / f).read_text().splitlines():
            r = json.loads(line)
            for inst in r["instances"]:
                rows.append((src, r["instruction"] + ("\n\n" + inst["input"] if inst.get("input") else ""), inst["output"]))
    for f in ("lima.json", "alpaca_en_demo.json", "oaast_sft_zh.json"):
        rows += _alpaca(json.loads((DATA / "llama_factory/data" / f).read_text()), "llama_factory")
    for f in ("glaive_toolcall_en_demo.json", "kto_en_demo.json"):
        rows += _conversations(json.loads((DATA / "llama_factory/data" / f).read_text()), "llama_factory")
    for f in sorted((DATA / "alpaca_eval_outputs/results").glob("*/model_outputs.json")):
        rows += _alpaca(json.loads(f.read_text()), "alpaca_eval_outputs")
    order = ["alpaca_1k", "codealpaca", "gpteacher", "self_instruct", "llama_factory", "alpaca_eval_outputs"]
    rows.sort(key=lambda r: order.index(r[0]))  # stable: sources grouped in this order
    ids = [f"{s}:{i}" for i, (s, _, _) in enumerate(rows)]
    msgs = [[{"role": "user", "content": u}, {"role": "assistant", "content": a}] for _, u, a in rows]
    frame = sft_frame(ids, [r[0] for r in rows], msgs)
    return frame.filter(pl.col("messages").list.eval(pl.element().struct.field("content").str.len_chars()).list.sum() > 0)


def _edit_messages(frame, rates, rng, vocab):
    """Planted copies: word edits at a per-record rate, vectorized over the exploded words."""
    import numpy as np
    import polars as pl

    n = frame.height
    rate = np.asarray(rates)[rng.integers(0, len(rates), n)]
    words = (
        frame.with_row_index("_rec").select("_rec", pl.col("messages")).explode("messages")
        .with_columns(pl.int_range(pl.len()).over("_rec").alias("_msg"))
        .with_columns(pl.col("messages").struct.field("role").alias("_role"),
                      pl.col("messages").struct.field("content").str.split(" ").alias("_w"))
        .drop("messages").explode("_w").with_columns(pl.int_range(pl.len()).over("_rec", "_msg").cast(pl.Float64).alias("_pos"))
    )
    m = words.height
    recs = words["_rec"].to_numpy()
    u = rng.random(m)
    op = rng.integers(0, 6, m)  # 0 delete 1 insert 2 substitute 3 swap 4 case 5 whitespace
    hit = u < rate[recs]
    rand_word = pl.Series(vocab).gather(rng.integers(0, len(vocab), m))
    w = pl.col("_w")
    words = words.with_columns(
        pl.Series("_hit", hit), pl.Series("_op", op), rand_word.alias("_rw"),
    ).with_columns(
        pl.when(pl.col("_hit") & (pl.col("_op") == 2)).then(pl.col("_rw"))
        .when(pl.col("_hit") & (pl.col("_op") == 4)).then(w.str.to_uppercase())
        .when(pl.col("_hit") & (pl.col("_op") == 5)).then(w + pl.lit("  \n"))
        .otherwise(w).alias("_w"),
        pl.when(pl.col("_hit") & (pl.col("_op") == 3)).then(pl.col("_pos") + 1.5).otherwise(pl.col("_pos")).alias("_pos"),
    )
    inserted = words.filter(pl.col("_hit") & (pl.col("_op") == 1)).with_columns(pl.col("_rw").alias("_w"), pl.col("_pos") - 0.5)
    kept = words.filter(~(pl.col("_hit") & (pl.col("_op") == 0)))
    skeleton = words.select("_rec", "_msg", "_role").unique(["_rec", "_msg"], keep="first", maintain_order=True)
    joined = (
        pl.concat([kept, inserted]).sort("_rec", "_msg", "_pos")
        .group_by("_rec", "_msg", maintain_order=True).agg(pl.col("_w").str.join(" "))
    )
    out = (
        skeleton.join(joined, on=["_rec", "_msg"], how="left", maintain_order="left")
        .with_columns(pl.col("_w").fill_null(""))
        .group_by("_rec", maintain_order=True)
        .agg(pl.struct(pl.col("_role").alias("role"), pl.col("_w").alias("content")).alias("messages"))
    )
    return out, rate


def make_pool(size: int, seed: int = 0):
    """(frame, info): real records first, then planted near-duplicates up to ``size``."""
    import numpy as np
    import polars as pl

    from mixer.records import SFT_SCHEMA

    path = CACHE / "data" / f"pool-{size}-{seed}.parquet"
    if path.exists():
        return pl.read_parquet(path), json.loads(path.with_suffix(".json").read_text())
    rng = np.random.Generator(np.random.PCG64(seed))
    real = load_real()
    n_real = min(real.height, size // 2)
    if n_real < real.height:
        keep = np.sort(rng.choice(real.height, n_real, replace=False))
        real = real[keep]
    words = real.head(5000).select(
        pl.col("messages").list.eval(pl.element().struct.field("content")).list.join(" ").str.split(" ")
    ).to_series().explode().unique(maintain_order=True)
    vocab = words.filter(words.str.len_chars().is_between(2, 12)).head(20_000).to_list()
    planted, rates, origin = [], [], []
    todo, k = size - n_real, 0
    while k < todo:
        m = min(100_000, todo - k)
        src = rng.integers(0, n_real, m)
        out, rate = _edit_messages(real[src].select("messages"), RATES, rng, vocab)
        planted.append(out.sort("_rec")["messages"])
        rates.append(rate)
        origin.append(src)
        k += m
    frames = [real]
    if planted:
        msgs = pl.concat(planted)
        frames.append(pl.DataFrame({
            "id": [f"planted:{i}" for i in range(todo)], "source": ["planted"] * todo,
            "messages": msgs, "meta": [None] * todo,
        }, schema=SFT_SCHEMA))
    frame = pl.concat(frames)
    info = {"size": frame.height, "real": n_real, "planted": todo, "rates": list(RATES),
            "sources": frame["source"].value_counts(sort=True).to_dicts()}
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    path.with_suffix(".json").write_text(json.dumps(info))
    return frame, info


def texts_file(frame, size: int, seed: int, limit: int | None = None, shards: int = 8) -> Path:
    """The compared text of every record (what every tool gets), as parquet id/text, plus the
    same rows split in ``shards`` files under ``<stem>.parts/`` (datatrove parallelizes over
    files). ``limit``: only the first rows (baselines too slow for the whole pool)."""
    import polars as pl

    from mixer.records import text_of

    stem = f"texts-{size}-{seed}" + (f"-first{limit}" if limit else "")
    path = CACHE / "data" / f"{stem}.parquet"
    if not path.exists():
        sub = frame.head(limit) if limit else frame
        table = pl.DataFrame({"id": sub["id"], "text": text_of(sub, "all")})
        table.write_parquet(path)
        parts = path.with_suffix(".parts")
        parts.mkdir(exist_ok=True)
        step = -(-table.height // shards)
        for k in range(shards):
            table.slice(k * step, step).write_parquet(parts / f"part-{k:03d}.parquet")
    return path


# ============================================================================ ground truth


def truth_pairs(frame, t_min: float):
    """All pairs (a < b) with exact Jaccard >= t_min of their word 5-gram sets.

    AllPairs-style exact join: order each set's shingles rarest first; two sets with Jaccard
    >= t share a shingle within their first |s| - ceil(t|s|) + 1 (the prefix). Candidates from
    shared prefix shingles, then length filter, then exact verification (vectorized)."""
    import numpy as np
    import polars as pl

    from mixer.dedup.jaccard import pair_jaccard, ranges, sorted_unique, unique_inverse
    from mixer.dedup.near import MinHashParams, approx_bytes, chunk_bounds, normalized_texts
    from mixer.dedup.shingle import hash_shingles

    params = MinHashParams()
    offs, vals = [0], []
    base = 0
    for i0, i1 in chunk_bounds(approx_bytes(frame), 20_000_000):
        texts, _ = normalized_texts(frame.slice(i0, i1 - i0), params)
        off, h = hash_shingles(texts, params.shingling, bits=64)
        rec = np.repeat(np.arange(i1 - i0, dtype=np.int64), np.diff(off))
        # per-record unique: sort by (rec, hash)
        order = np.lexsort((h, rec))
        h, rec = h[order], rec[order]
        keep = np.ones(len(h), dtype=bool)
        keep[1:] = (h[1:] != h[:-1]) | (rec[1:] != rec[:-1])
        h, rec = h[keep], rec[keep]
        vals.append(h)
        offs.append(base + np.cumsum(np.bincount(rec, minlength=i1 - i0)))
        base += len(h)
    offsets = np.concatenate([np.asarray(o, dtype=np.int64).ravel() for o in offs])
    values64 = np.concatenate(vals)
    del vals
    uniq, dense = unique_inverse(values64)
    freq = np.bincount(dense, minlength=len(uniq))
    del uniq
    del values64
    dense = dense.astype(np.uint32)  # exact: one id per distinct 64-bit shingle hash
    n = len(offsets) - 1
    size = np.diff(offsets)
    rec = np.repeat(np.arange(n, dtype=np.int64), size)
    # rarest first within each record (ties by id)
    order = np.lexsort((dense, freq[dense], rec))
    dense_sorted = dense[order]
    pos = np.arange(len(rec)) - offsets[rec]
    prefix_len = size - np.ceil(t_min * size - 1e-9).astype(np.int64) + 1
    in_prefix = pos < prefix_len[rec]
    p_tok, p_rec = dense_sorted[in_prefix], rec[in_prefix]
    o = np.lexsort((p_rec, p_tok))
    p_tok, p_rec = p_tok[o], p_rec[o]
    new = np.ones(len(p_tok), dtype=bool)
    new[1:] = p_tok[1:] != p_tok[:-1]
    starts = np.flatnonzero(new)
    glen = np.diff(np.append(starts, len(p_tok)))
    pairs_a, pairs_b = [], []
    # all pairs within each group: element i pairs with the later ones of its group
    gid = np.cumsum(new) - 1
    after = (starts + glen)[gid] - np.arange(len(p_tok)) - 1
    big = glen.max() if len(glen) else 0
    step = 2_000_000
    idx = np.arange(len(p_tok))
    for s in range(0, len(idx), step):
        sl = idx[s : s + step]
        cnt = after[sl]
        a = np.repeat(p_rec[sl], cnt)
        b = p_rec[ranges(sl + 1, cnt)]
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        ok = (lo != hi) & (np.minimum(size[lo], size[hi]) >= t_min * np.maximum(size[lo], size[hi]))
        pairs_a.append(lo[ok])
        pairs_b.append(hi[ok])
    a = np.concatenate(pairs_a) if pairs_a else np.zeros(0, dtype=np.int64)
    b = np.concatenate(pairs_b) if pairs_b else np.zeros(0, dtype=np.int64)
    packed = sorted_unique(a.astype(np.uint64) << np.uint64(32) | b.astype(np.uint64))
    a = (packed >> np.uint64(32)).astype(np.int64)
    b = (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)
    jac = np.empty(len(a))
    for s in range(0, len(a), 200_000):
        jac[s : s + 200_000] = pair_jaccard(offsets[:-1], np.diff(offsets), dense, a[s : s + 200_000], b[s : s + 200_000])
    keep = jac >= t_min
    stats = {"records": n, "prefix_tokens": int(len(p_tok)), "largest_prefix_group": int(big),
             "candidate_pairs": int(len(a)), "pairs": int(keep.sum())}
    del pl
    return a[keep], b[keep], jac[keep], stats


def cached_truth(frame, size: int, seed: int, t_min: float):
    """``truth_pairs`` kept in the cache folder (it takes minutes on 100k records)."""
    import numpy as np

    path = CACHE / "data" / f"truth-{size}-{seed}-{t_min}.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        return z["a"], z["b"], z["jac"], json.loads(str(z["stats"]))
    t0 = time.perf_counter()
    a, b, jac, stats = truth_pairs(frame, t_min)
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    np.savez(path, a=a, b=b, jac=jac, stats=json.dumps(stats))
    return a, b, jac, stats


def truth_clusters(n: int, a, b, jac, t: float):
    """Cluster label of every record at threshold t (connected components of true pairs)."""
    import numpy as np

    from mixer.dedup.lsh import components

    sel = jac >= t
    return components(n, np.stack([a[sel], b[sel]], axis=1))


def prf(pred, labels) -> dict:
    """Precision/recall of removed records against true clusters, whichever member is kept:
    in a true cluster of k records, up to k-1 removals are right; any other removal is a
    false positive, and each of the k-1 not made is a false negative."""
    import numpy as np

    size = np.bincount(labels)
    removed_in = np.bincount(labels[pred], minlength=len(size))
    right = np.minimum(removed_in, size - 1)
    tp = int(right.sum())
    fp = int(pred.sum()) - tp
    fn = int((size - 1).sum()) - tp
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "tp": tp, "fp": fp, "fn": fn}


# ============================================================================ workers (one per process)


_WORD = re.compile(r"[\W_]+")


def py_shingles(text: str, n: int = NGRAM) -> list[str]:
    """Python shingling with mixer's documented normalization (NFKC, lower, punctuation)."""
    words = _WORD.sub(" ", unicodedata.normalize("NFKC", text).lower()).split()
    if len(words) < n:
        return [" ".join(words)] if words else []
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def _read_texts(path: str) -> tuple[list[str], list[str]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return table.column("id").to_pylist(), table.column("text").to_pylist()


def worker_mixer(args) -> dict:
    import polars as pl

    from mixer.steps.base import StepContext
    from mixer.steps.minhash import MinHashConfig, MinHashDedup

    frame = pl.read_parquet(args.input)
    order = frame["source"].unique(maintain_order=True).to_list()
    cfg = MinHashConfig(threshold=args.threshold, num_perm=NUM_PERM, ngram=NGRAM, threads=args.threads,
                        **json.loads(args.options or "{}"))
    t0 = time.perf_counter()
    res = MinHashDedup(cfg).run(frame, StepContext(source_order=order))
    secs = time.perf_counter() - t0
    return {"seconds": secs, "removed": res.removed["id"].to_list(), "info": res.info}


def worker_datasketch(args) -> dict:
    from datasketch import MinHash, MinHashLSH

    ids, texts = _read_texts(args.input)
    t0 = time.perf_counter()
    lsh = MinHashLSH(threshold=args.threshold, num_perm=NUM_PERM)
    removed = []
    for i in range(len(ids)):
        m = MinHash(num_perm=NUM_PERM)
        m.update_batch([s.encode("utf-8") for s in py_shingles(texts[i])])
        if lsh.query(m):
            removed.append(ids[i])
        else:
            lsh.insert(ids[i], m)
    return {"seconds": time.perf_counter() - t0, "removed": removed}


def worker_rensa(args) -> dict:
    from rensa import RMinHash, RMinHashLSH

    ids, texts = _read_texts(args.input)
    t0 = time.perf_counter()
    lsh = RMinHashLSH(threshold=args.threshold, num_perm=NUM_PERM, num_bands=16)
    hashes, removed = [], []
    for i in range(len(ids)):
        m = RMinHash(num_perm=NUM_PERM, seed=42)
        m.update(py_shingles(texts[i]))
        hashes.append(m)
        if any(hashes[c].jaccard(m) >= args.threshold for c in lsh.query(m)):
            removed.append(ids[i])
        else:
            lsh.insert(i, m)
    return {"seconds": time.perf_counter() - t0, "removed": removed}


def worker_datatrove(args) -> dict:
    import shutil

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import JsonlWriter

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    cfg = MinhashConfig(n_grams=NGRAM, num_buckets=9, hashes_per_bucket=13)
    parts = str(Path(args.input).with_suffix(".parts"))
    tasks = len(list(Path(parts).glob("*.parquet")))

    def reader():
        return ParquetReader(parts, text_key="text", id_key="id")

    t0 = time.perf_counter()
    stages = [
        LocalPipelineExecutor([reader(), MinhashDedupSignature(output_folder=str(work / "sigs"), config=cfg)],
                              tasks=tasks, workers=args.threads, logging_dir=str(work / "logs/s1")),
        LocalPipelineExecutor([MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"), config=cfg)],
                              tasks=cfg.num_buckets, workers=args.threads, logging_dir=str(work / "logs/s2")),
        LocalPipelineExecutor([MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"), config=cfg)],
                              tasks=1, logging_dir=str(work / "logs/s3")),
        LocalPipelineExecutor([reader(), MinhashDedupFilter(input_folder=str(work / "remove"),
                                                            exclusion_writer=JsonlWriter(str(work / "removed"), compression=None))],
                              tasks=tasks, workers=args.threads, logging_dir=str(work / "logs/s4")),
    ]
    for st in stages:
        st.run()
    secs = time.perf_counter() - t0
    removed = []
    for f in sorted((work / "removed").glob("*.jsonl")):
        removed += [json.loads(line)["id"] for line in f.read_text().split("\n") if line]
    return {"seconds": secs, "removed": removed}


def worker_textdedup(args) -> dict:
    raise NotImplementedError("filled in by run_textdedup (CLI)")


WORKERS = {"mixer": worker_mixer, "datasketch": worker_datasketch, "rensa": worker_rensa, "datatrove": worker_datatrove}


# ============================================================================ driver


def _python_for(tool: str) -> str:
    if tool in VENVS:
        py = CACHE / VENVS[tool] / "bin" / "python"
        if not py.exists():
            raise FileNotFoundError(f"{tool}: no virtualenv at {py.parent.parent}; run with --setup")
        return str(py)
    return sys.executable


def _tree_rss(pid: int, cpu: dict[int, float] | None = None) -> int:
    """RSS of the process tree; records each member's CPU seconds so far in ``cpu``."""
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
            if cpu is not None:
                t = q.cpu_times()
                cpu[q.pid] = max(cpu.get(q.pid, 0.0), t.user + t.system)
        except psutil.NoSuchProcess:
            pass
    return total


def run_process(cmd: list[str], timeout: float, env: dict | None = None) -> dict:
    """Run ``cmd``; wall time and peak RSS of its process tree (sampled every 50 ms)."""
    import resource

    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = [0]
    seen: dict[int, float] = {}  # CPU seconds per process of the tree (pool workers included)
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(proc.pid, seen))
            done.wait(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        rc = "timeout"
    done.set()
    th.join()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # waited-for children (exact), or the sampled tree when workers were never waited for
    cpu = max((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime), sum(seen.values()))
    return {"rc": rc, "wall": time.perf_counter() - t0, "cpu": round(cpu, 2), "peak_rss_mb": round(peak[0] / 2**20, 1),
            "stdout": out, "stderr": err}


def run_tool(tool: str, frame_path: Path, text_path: Path, threshold: float, threads: int, timeout: float,
             options: str | None = None) -> dict:
    """One tool on one input (the record frame for mixer, the texts for the others)."""
    out = CACHE / "runs" / f"{tool}-{text_path.stem}-{threshold}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if tool == "text-dedup":
        return run_textdedup(text_path, threshold, threads, timeout)
    inp = frame_path if tool == "mixer" else text_path
    cmd = [_python_for(tool), __file__, "_worker", tool, "--input", str(inp), "--out", str(out),
           "--threshold", str(threshold), "--threads", str(threads), "--work", str(CACHE / "work" / tool)]
    if options:
        cmd += ["--options", options]
    env = {**os.environ, "MIXER_NO_PROGRESS": "1", "PYTHONPATH": str(ROOT / "src")}
    res = run_process(cmd, timeout, env)
    if res["rc"] != 0:
        return {"tool": tool, "error": f"rc={res['rc']}: {res['stderr'][-2000:]}", "wall": res["wall"]}
    data = json.loads(out.read_text())
    return {"tool": tool, "seconds": data["seconds"], "wall": res["wall"], "cpu": res["cpu"], "peak_rss_mb": res["peak_rss_mb"],
            "records": data.get("records"), "removed": data["removed"], "info": data.get("info")}


def run_textdedup(text_path: Path, threshold: float, threads: int, timeout: float) -> dict:
    """text-dedup's MinHash through its own command line (it reads and writes datasets)."""
    work = CACHE / "work" / "text-dedup"
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    py = _python_for("text-dedup")
    cmd = [py, str(Path(__file__)), "_textdedup", "--input", str(text_path), "--work", str(work),
           "--threshold", str(threshold), "--threads", str(threads)]
    res = run_process(cmd, timeout, {**os.environ})
    if res["rc"] != 0:
        return {"tool": "text-dedup", "error": f"rc={res['rc']}: {res['stderr'][-3000:]}", "wall": res["wall"]}
    data = json.loads((work / "result.json").read_text())
    return {"tool": "text-dedup", "seconds": data["seconds"], "wall": res["wall"], "cpu": res["cpu"],
            "peak_rss_mb": res["peak_rss_mb"], "removed": data["removed"]}


def _worker_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("tool")
    ap.add_argument("--input", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=str(CACHE / "work"))
    ap.add_argument("--options", default=None)
    args = ap.parse_args(argv)
    result = WORKERS[args.tool](args)
    Path(args.out).write_text(json.dumps(result))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        return _worker_main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "_textdedup":
        return _textdedup_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000", help="pool sizes for speed and memory (comma-separated)")
    ap.add_argument("--quality-size", type=int, default=100_000, help="pool size for precision/recall (0: skip)")
    ap.add_argument("--thresholds", default="0.5,0.6,0.7,0.8,0.9,0.95", help="thresholds of the quality curve")
    ap.add_argument("--tools", default="mixer,datasketch,rensa,datatrove,text-dedup")
    ap.add_argument("--quality-tools", default=None, help="baselines in the quality run (default: --tools)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=7200)
    ap.add_argument("--baseline-limit", type=int, default=100_000,
                    help="on larger pools, baselines run on the first N records (their throughput is what is compared)")
    ap.add_argument("--full-baselines", default="datasketch,rensa",
                    help="baselines that run on the whole pool at every size, never limited (comma-separated)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="mixer runs per speed size; the median is reported (the machine is shared and noisy)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--setup", action="store_true", help="create the baseline virtualenvs and exit")
    ap.add_argument("--out", default=str(RESULTS / "dedup.json"))
    args = ap.parse_args()
    if args.setup:
        return setup()
    run(args)


def setup() -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    for tool, venv in VENVS.items():
        path = CACHE / venv
        if not (path / "bin" / "python").exists():
            subprocess.run(["python3", "-m", "venv", str(path)], check=True)
        r = subprocess.run([str(path / "bin" / "pip"), "install", "-q", *INSTALL[tool]], capture_output=True, text=True)
        print(f"{tool}: {'ok' if r.returncode == 0 else 'FAILED'}")
        if r.returncode:
            print(r.stderr[-2000:])


def _textdedup_main(argv: list[str]) -> None:
    """Inside text-dedup's virtualenv: its MinHash command, timed; kept ids read back."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    import datasets
    import pyarrow.parquet as pq
    from text_dedup.minhash import main as td_main

    work = Path(args.work)
    cli = ["--path", "parquet", "--data_files", args.input, "--split", "train", "--cache_dir", str(work / "cache"),
           "--column", "text", "--output", str(work / "out"), "--num_perm", str(NUM_PERM), "--ngram", str(NGRAM),
           "--min_length", "0", "--threshold", str(args.threshold), "--hash_func", "xxh3", "--num_proc", str(args.threads)]
    t0 = time.perf_counter()
    td_main(cli, standalone_mode=False)
    secs = time.perf_counter() - t0
    kept = set(datasets.load_from_disk(str(work / "out"))["id"])
    ids = pq.read_table(args.input, columns=["id"]).column("id").to_pylist()
    removed = [i for i in ids if i not in kept]
    (work / "result.json").write_text(json.dumps({"seconds": secs, "removed": removed}))


MIXER_VARIANTS = {"mixer": None, "mixer verify=signature": '{"verify": "signature"}',
                  "mixer verify=none": '{"verify": "none"}'}


def _pred(frame_ids: dict, removed: list[str], n: int):
    import numpy as np

    pred = np.zeros(n, dtype=bool)
    pred[[frame_ids[i] for i in removed]] = True
    return pred


def run(args) -> None:
    sizes = [int(s) for s in args.sizes.split(",") if s]
    tools = [t for t in args.tools.split(",") if t]
    full = {t for t in args.full_baselines.split(",") if t}
    qtools = [t for t in (args.quality_tools or args.tools).split(",") if t and t not in ("mixer", "none")]
    thresholds = [float(t) for t in args.thresholds.split(",")]
    results: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                                 "note": "shared machine: other jobs ran concurrently; compare tools within a run"},
                     "settings": {"num_perm": NUM_PERM, "ngram": NGRAM, "threads": args.threads, "edit_rates": list(RATES),
                                  "baseline_limit": args.baseline_limit, "full_baselines": sorted(full),
                                  "mixer_repeats": args.repeats},
                     "load_average_at_start": os.getloadavg(),
                     "quality": {}, "speed": {}}
    RESULTS.mkdir(parents=True, exist_ok=True)

    def save():
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))

    measured: dict = {}  # (size, tool) -> run, so a pool is not deduplicated twice by one tool
    if args.quality_size:
        size = args.quality_size
        frame, info = make_pool(size, args.seed)
        a, b, jac, stats = cached_truth(frame, size, args.seed, min(thresholds))
        print(f"[truth] {size:,} records: {stats}", flush=True)
        q = {"pool": info, "truth": stats, "curve": {}, "at_0.8": {}}
        pos = {i: k for k, i in enumerate(frame["id"].to_list())}
        fpath = CACHE / "data" / f"pool-{size}-{args.seed}.parquet"
        tpath = texts_file(frame, size, args.seed)
        for t in thresholds:
            labels = truth_clusters(frame.height, a, b, jac, t)
            row = {"truth_removed": int(frame.height - labels.max() - 1)}
            for label, opts in MIXER_VARIANTS.items():
                r = run_tool("mixer", fpath, tpath, t, args.threads, args.timeout, options=opts)
                if t == 0.8 and label == "mixer":
                    measured[(size, "mixer")] = r
                row[label] = ({**prf(_pred(pos, r["removed"], frame.height), labels), "seconds": round(r["seconds"], 2)}
                              if "error" not in r else {"error": r["error"][-500:]})
            q["curve"][str(t)] = row
            print(f"[quality] t={t}: {row}", flush=True)
            save()
        labels = truth_clusters(frame.height, a, b, jac, 0.8)
        q["at_0.8"] = {k: v for k, v in q["curve"].get("0.8", {}).items() if k.startswith("mixer")}
        for tool in qtools:
            r = run_tool(tool, fpath, tpath, 0.8, args.threads, args.timeout)
            measured[(size, tool)] = r
            q["at_0.8"][tool] = (prf(_pred(pos, r["removed"], frame.height), labels) if "error" not in r
                                 else {"error": r["error"][-500:]})
            print(f"[quality] {tool} at 0.8: {q['at_0.8'][tool]}", flush=True)
            results["quality"] = q
            save()
        results["quality"] = q
        save()
    for size in sizes:
        frame, info = make_pool(size, args.seed)
        fpath = CACHE / "data" / f"pool-{size}-{args.seed}.parquet"
        row: dict = {"pool": info}
        results["speed"][str(size)] = row
        for tool in tools:
            limit = args.baseline_limit if tool not in full | {"mixer"} and size > args.baseline_limit else None
            tpath = texts_file(frame, size, args.seed, limit)
            if tool == "mixer":
                r = _median_run(tpath, fpath, args, [measured[(size, tool)]] if (size, tool) in measured else [])
            else:
                r = measured.get((size, tool)) or run_tool(tool, fpath, tpath, 0.8, args.threads, args.timeout)
            if "error" in r:
                row[tool] = {"error": r["error"][-800:]}
            else:
                recs = limit or size
                row[tool] = {"records": recs, "seconds": round(r["seconds"], 2), "wall": round(r["wall"], 2),
                             "cpu_seconds": r["cpu"], "records_per_s": round(recs / r["seconds"]),
                             "peak_rss_mb": r["peak_rss_mb"], "removed": len(r["removed"]),
                             **({"measured_on_first": limit} if limit else {})}
                if tool == "mixer" and r.get("info"):
                    row[tool]["phases"] = r["info"].get("seconds")
                if r.get("all_seconds"):
                    row[tool]["all_seconds"] = r["all_seconds"]
            print(f"[speed] {size:,} {tool}: {row[tool]}", flush=True)
            save()
        base = row.get("mixer", {}).get("records_per_s")
        if base:
            row["mixer_speedup"] = {t: round(base / row[t]["records_per_s"], 2) for t in tools
                                    if t != "mixer" and "records_per_s" in row.get(t, {})}
            print(f"[speed] {size:,} mixer throughput / tool throughput: {row['mixer_speedup']}", flush=True)
        save()
    results["load_average_at_end"] = os.getloadavg()
    save()
    print(f"wrote {args.out}")


def _median_run(tpath: Path, fpath: Path, args, runs: list[dict]) -> dict:
    """mixer run ``args.repeats`` times (reusing a run already made): the median by time."""
    while len(runs) < max(1, args.repeats):
        r = run_tool("mixer", fpath, tpath, 0.8, args.threads, args.timeout)
        if "error" in r:
            return r
        runs.append(r)
    ordered = sorted(runs, key=lambda r: r["seconds"])
    return {**ordered[len(ordered) // 2], "all_seconds": [round(r["seconds"], 2) for r in runs]}


if __name__ == "__main__":
    main()
