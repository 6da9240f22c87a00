"""Selection benchmarks (issue 6), written to ``benchmarks/results/select.json``:

1. embedding throughput: all-MiniLM-L6-v2 on CPU over real pool texts; a causal LM on GPU
   when one is present (``--lm``: a local folder or hub name, e.g. Qwen2.5-0.5B);
2. scoring + round-robin time for 1M pool vectors x 1k targets with faiss (exact and IVF);
3. composition: 2,000 records selected from a pool drawn from ``../shared/data/train`` with
   GSM8K, MMLU and HumanEval targets (MiniLM), against random and source-balanced random.

    python benchmarks/select.py                       # all three
    python benchmarks/select.py --skip-composition    # speed only
"""

from __future__ import annotations

import os
import sys

# This file is named like the stdlib ``select`` module, and ``python benchmarks/select.py``
# puts benchmarks/ first on sys.path: drop it before anything imports ``select`` (socket,
# subprocess, asyncio...).
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results" / "select.json"

T0 = "train/self_instruct/data/finetuning/t0_train_50k/data_per_template/*.jsonl"
# source -> (path under shared/data, format) ; sizes are picked per run
SOURCES: dict[str, tuple[str, Any]] = {
    "alpaca": ("train/alpaca_1k/alpaca_data_1k.json", "alpaca"),
    "codealpaca": ("train/codealpaca/data/code_alpaca_2k.json", "alpaca"),
    "gpteacher_roleplay": ("train/gpteacher/Roleplay/roleplay-simple-deduped-roleplay-instruct.json", {"name": "alpaca", "output": "response"}),
    "lima": ("train/llama_factory/data/lima.json", "alpaca"),
    "t0": (T0, {"name": "alpaca", "instruction": "prompt", "input": None, "output": "completion"}),
    "sharegpt_dummy": ("train/sharegpt_dummy/dummy_conversation.json", "sharegpt"),
}
POOL_FULL = {"alpaca": 1000, "codealpaca": 600, "gpteacher_roleplay": 800, "lima": 1000, "t0": 2000, "sharegpt_dummy": 500}
POOL_SMALL = {"alpaca": 120, "codealpaca": 50, "gpteacher_roleplay": 60, "lima": 50, "t0": 120}
TARGETS_FULL = {
    "gsm8k": {"evalset": "gsm8k", "split": "train", "n": 100},
    "mmlu": {"evalset": "mmlu", "split": "dev"},
    "humaneval": {"evalset": "humaneval", "split": "test", "n": 40},
}
TARGETS_SMALL = {
    "gsm8k": {"evalset": "gsm8k", "split": "train", "n": 20},
    "mmlu": {"evalset": "mmlu", "split": "dev", "n": 30},
    "humaneval": {"evalset": "humaneval", "split": "test", "n": 15},
}


def pool_spec(folder: Path, sizes: dict[str, int], select: dict[str, Any], shared: Path = SHARED, seed: int = 11) -> Path:
    """A spec drawing ``sizes[source]`` records from each shared training source, then one
    mix-level ``select`` step."""
    sources = {}
    for name, n in sizes.items():
        path, fmt = SOURCES[name]
        sources[name] = {"load": {"path": str(shared / path)}, "format": fmt, "sample": {"n": n, "allow_fewer": True}}
    spec = {"name": f"select-{select['method']}", "seed": seed, "sources": sources,
            "mix": [{"exact_dedup": {}}, {"select": select}]}
    p = folder / f"{select['method']}.yaml"
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    return p


def composition_run(work: Path, sizes: dict[str, int], budget: int, targets: dict[str, Any], cache_dir: Path,
                    methods: tuple[str, ...] = ("embedding", "random", "random_balanced"), shared: Path = SHARED,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the pool once per method and report what each selection holds (``extra``:
    more ``select`` parameters for the scored methods, e.g. ``max_length``)."""
    from mixer.pipeline import build
    from mixer.select.report import selection_report
    from mixer.spec import load_spec

    out: dict[str, Any] = {}
    for method in methods:
        sel: dict[str, Any] = {"method": method, "budget": budget}
        if method in ("embedding", "rds_plus"):
            sel.update(targets=targets, eval_dir=str(shared / "eval"), cache_dir=str(cache_dir), **(extra or {}))
        t0 = time.perf_counter()
        res = build(load_spec(pool_spec(work, sizes, sel, shared)), work / f"build-{method}")
        rep = selection_report(work / f"build-{method}")
        info = next(e for e in res.manifest["steps"] if e["step"] == "select")["info"]
        out[method] = {
            "pool": rep["pool"], "selected": rep["selected"], "seconds": round(time.perf_counter() - t0, 2),
            "by_source": {r["source"]: {k: r[k] for k in ("pool", "selected", "selected_share", "pool_share", "lift")} for r in rep["composition"]},
            "by_topic": {r["topic"]: {k: r[k] for k in ("pool", "selected", "selected_share", "pool_share", "lift")} for r in rep["topics"]},
            "claimed": {str(r["task"]): r["claimed"] for r in rep["claimed"]},
        }
        if "embedding" in info:
            out[method]["embedding"] = {k: info["embedding"][k] for k in ("pool", "targets")}
            out[method]["tasks"] = info["tasks"]
            out[method]["notes"] = info.get("notes", [])
    return out


def pool_texts(n: int) -> list[str]:
    """Real texts for throughput: Alpaca then LIMA records, as the ``plain`` template joins them."""
    recs = json.loads((SHARED / "train/alpaca_1k/alpaca_data_1k.json").read_text())
    recs += json.loads((SHARED / "train/llama_factory/data/lima.json").read_text())
    texts = ["\n".join(x for x in (r["instruction"], r.get("input") or "", r["output"]) if x) for r in recs]
    return texts[:n]


def bench_minilm(n: int, batch_size: int) -> dict[str, Any]:
    from mixer.select.cache import EmbeddingCache, embed
    from mixer.select.encoders import SentenceEncoder

    enc = SentenceEncoder(batch_size=batch_size, device="cpu")
    texts = pool_texts(n)
    tokens = [len(enc.model.tokenizer(t, truncation=True, max_length=enc.model.max_seq_length)["input_ids"]) for t in texts]
    with tempfile.TemporaryDirectory() as d:
        _, st = embed(texts, enc, EmbeddingCache(Path(d), enc.fingerprint()), shard_size=4096)
        _, st2 = embed(texts, enc, EmbeddingCache(Path(d), enc.fingerprint()))
    return {"model": "all-MiniLM-L6-v2", "device": "cpu", "texts": n, "batch_size": batch_size,
            "mean_tokens": round(float(np.mean(tokens)), 1), "max_length": enc.model.max_seq_length,
            "seconds": round(st.seconds, 2), "texts_per_s": round(st.computed / st.seconds, 2),
            "tokens_per_s": round(sum(tokens) / st.seconds, 1), "cached_rerun_seconds": round(st2.seconds, 3)}


def bench_causal_lm(model: str | None, n: int, batch_size: int) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no GPU on this machine (a GPU was not lent to this task)"}
    if model is None:
        return {"skipped": "no --lm given"}
    from mixer.select.cache import EmbeddingCache, embed
    from mixer.select.encoders import CausalLMEncoder

    enc = CausalLMEncoder(model, max_length=2048, batch_size=batch_size, device="cuda")
    texts = pool_texts(n)
    with tempfile.TemporaryDirectory() as d:
        _, st = embed(texts, enc, EmbeddingCache(Path(d), enc.fingerprint()))
    return {"model": model, "device": torch.cuda.get_device_name(0), "texts": n, "batch_size": batch_size,
            "dtype": enc.dtype_name, "seconds": round(st.seconds, 2), "texts_per_s": round(st.computed / st.seconds, 2)}


def bench_faiss(n_pool: int, n_targets: int, dim: int, n_tasks: int, budget: int, seed: int = 0) -> dict[str, Any]:
    """Scoring 1M unit vectors against 1k targets split over tasks, exact and IVF, then the
    round-robin. Random vectors: the cost does not depend on what they encode."""
    import faiss

    from mixer.select.rank import round_robin, task_scores, top_order

    rng = np.random.default_rng(seed)
    pool = rng.standard_normal((n_pool, dim), dtype=np.float32)
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    tgt = rng.standard_normal((n_targets, dim), dtype=np.float32)
    tgt /= np.linalg.norm(tgt, axis=1, keepdims=True)
    task = np.arange(n_targets, dtype=np.int32) % n_tasks
    out: dict[str, Any] = {"pool": n_pool, "targets": n_targets, "dim": dim, "tasks": n_tasks, "budget": budget,
                           "faiss_threads": faiss.omp_get_max_threads()}
    t0 = time.perf_counter()
    exact = task_scores(pool, tgt, task, n_tasks)
    out["score_exact_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    ivf = task_scores(pool, tgt, task, n_tasks, index="ivf", nlist=16, nprobe=4)
    out["score_ivf_s"] = round(time.perf_counter() - t0, 2)
    out["ivf_nlist_nprobe"] = [16, 4]
    out["ivf_exact_max_fraction"] = round(float(np.isclose(ivf, exact, atol=1e-5).mean()), 4)
    t0 = time.perf_counter()
    orders = [top_order(exact[:, t], budget) for t in range(n_tasks)]
    out["top_order_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    items, _, _ = round_robin(orders, budget, n_pool)
    out["round_robin_s"] = round(time.perf_counter() - t0, 2)
    assert items.size == budget
    out["select_total_exact_s"] = round(out["score_exact_s"] + out["top_order_s"] + out["round_robin_s"], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-composition", action="store_true")
    ap.add_argument("--skip-faiss", action="store_true")
    ap.add_argument("--embed-texts", type=int, default=256)
    ap.add_argument("--lm", default=None, help="causal LM for the GPU throughput (folder or hub name)")
    ap.add_argument("--pool", type=int, default=1_000_000)
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--cache-dir", default=str(REPO / "benchmarks" / ".cache" / "embeddings"))
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    result: dict[str, Any] = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                          "torch_threads": torch.get_num_threads(), "load_avg": os.getloadavg(),
                                          "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}}
    prev = json.loads(Path(a.out).read_text()) if Path(a.out).exists() else {}
    result["embedding"] = {"minilm_cpu": bench_minilm(a.embed_texts, 64), "causal_lm_gpu": bench_causal_lm(a.lm, a.embed_texts, 16)}
    print(json.dumps(result["embedding"], indent=1), file=sys.stderr)
    result["faiss"] = prev.get("faiss") if a.skip_faiss else bench_faiss(a.pool, a.targets, a.dim, 3, 50_000)
    print(json.dumps(result["faiss"], indent=1), file=sys.stderr)
    if a.skip_composition:
        result["composition"] = prev.get("composition")
    else:
        with tempfile.TemporaryDirectory() as d:
            result["composition"] = {"pool_sizes": POOL_FULL, "targets": TARGETS_FULL, "budget": a.budget,
                                     **composition_run(Path(d), POOL_FULL, a.budget, TARGETS_FULL, Path(a.cache_dir))}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
