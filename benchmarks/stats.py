"""Speed of the statistics pass: tokens per second on 100k real records, on 1 and 2 cores.

The records are real: a pool built by mixer itself from ``../shared/data/train`` (Alpaca,
Code-Alpaca, GPTeacher, Self-Instruct/T0, AlpacaEval model outputs, OpenAssistant trees,
ShareGPT-format conversations), resampled with replacement to 100,000 records (seeded).
Each configuration runs in a fresh process pinned to N cores (CPU affinity, and the Rayon
and polars thread pools sized N), timing ``record_lengths`` + ``summarize`` with the
tokenizer already loaded (wall clock and CPU time). A baseline times the plain way (one
tokenizer call per message in a Python loop, as the Tulu statistics script does) against
mixer's batched counting on the same slice.

    python benchmarks/stats.py                    # llama2, 1 and 2 cores
    python benchmarks/stats.py --tokenizers llama2 gpt2 --cores 1 2
Writes benchmarks/results/stats.json.
"""

from __future__ import annotations

import sys

# benchmarks/ holds scripts named like stdlib modules (select.py): keep it off the path.
sys.path[:] = [p for p in sys.path if p not in ("", __file__.rsplit("/", 1)[0])]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared"
CACHE = HERE / ".cache"
POOL = CACHE / "stats_pool_100k.parquet"
RECORDS = 100_000
SEED = 2024
TOKENIZERS = {
    "llama2": SHARED / "tokenizers" / "llama2" / "tokenizer.model",
    "gpt2": SHARED / "tokenizers" / "gpt2" / "tokenizer.json",
    "olmo2": SHARED / "tokenizers" / "olmo2" / "tokenizer.json",
}


def pool_spec(train: Path) -> dict:
    resp = {"name": "alpaca", "output": "response"}
    t0 = {"name": "alpaca", "instruction": "prompt", "input": None, "output": "completion"}
    return {
        "name": "stats-bench-pool", "seed": SEED,
        "sources": {
            "alpaca": {"load": {"path": str(train / "alpaca_1k/alpaca_data_1k.json")}, "format": "alpaca"},
            "code_alpaca": {"load": {"path": str(train / "codealpaca/data/code_alpaca_2k.json")}, "format": "alpaca"},
            "gpteacher_codegen": {"load": {"path": str(train / "gpteacher/Codegen/codegen-instruct.json")}, "format": resp},
            "gpteacher_roleplay": {"load": {"path": str(train / "gpteacher/Roleplay/roleplay-simple-deduped-roleplay-instruct.json")}, "format": resp},
            "gpteacher_toolformer": {"load": {"path": str(train / "gpteacher/Toolformer/toolformer-dedupe-only-dataset.json")}, "format": resp},
            "self_instruct_t0": {"load": {"path": str(train / "self_instruct/data/finetuning/t0_train_50k/data_per_template/*.jsonl")},
                                 "format": t0, "sample": {"n": 10_000}},
            "alpaca_eval_outputs": {"load": {"path": str(train / "alpaca_eval_outputs/results/*/model_outputs.json")},
                                    "format": {"name": "alpaca", "input": None}},
            "oasst": {"load": {"path": str(train / "oasst/model/model_training/tests/resources/en_100_tree.jsonl")}, "format": "oasst_tree"},
            "sharegpt": {"load": {"path": str(train / "sharegpt_dummy/dummy_conversation.json")}, "format": "sharegpt"},
        },
    }


def make_pool() -> dict:
    """Build the real pool with mixer, resample it to RECORDS rows (ids made unique)."""
    import numpy as np
    import polars as pl
    import yaml

    from mixer.pipeline import build
    from mixer.spec import parse_spec

    train = SHARED / "data" / "train"
    oasst = next(train.glob("oasst/**/en_100_tree.jsonl"))
    spec = pool_spec(train)
    spec["sources"]["oasst"]["load"]["path"] = str(oasst)
    res = build(parse_spec(yaml.safe_dump(spec), str(CACHE / "pool.yaml"), CACHE), CACHE / "pool-build")
    pool = res.mixture
    pick = np.random.default_rng(SEED).integers(0, pool.height, RECORDS)
    frame = pool[pick].with_columns(pl.format("{}#{}", "id", pl.int_range(pl.len())).alias("id"))
    frame.write_parquet(POOL)
    return {"pool_records": pool.height, "per_source": {s: int(n) for s, n in pool.group_by("source").len().sort("source").iter_rows()}}


def _cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(fn):  # noqa: ANN001, ANN202
    w, c = time.perf_counter(), _cpu()
    out = fn()
    return out, time.perf_counter() - w, _cpu() - c


def worker(cores: int, tokenizer: str, baseline: int) -> dict:
    """Runs inside a fresh process already limited to ``cores``."""
    import polars as pl

    from mixer.stats import TokenCounter, record_lengths
    from mixer.stats.summary import summarize
    from mixer.tokenizers import load_tokenizer

    frame = pl.read_parquet(POOL)
    tok, load_s, _ = _timed(lambda: load_tokenizer(tokenizer))
    counter = TokenCounter(tokenizer)

    def stats_pass() -> tuple[pl.DataFrame, pl.DataFrame]:
        lengths = record_lengths(frame, counter)
        return lengths, summarize(lengths)

    (lengths, summary), secs, cpu = _timed(stats_pass)
    tokens = int(lengths["tokens"].sum())
    out = {"cores": cores, "records": frame.height, "messages": int(lengths["messages_n"].sum()), "tokens": tokens,
           "seconds": round(secs, 3), "cpu_seconds": round(cpu, 3), "cpu_utilization": round(cpu / secs, 2),
           "tokens_per_s": round(tokens / secs), "tokens_per_cpu_s": round(tokens / cpu), "records_per_s": round(frame.height / secs),
           "tokenizer_load_seconds": round(load_s, 3), "mean_tokens_per_record": round(float(summary["tokens_mean"][-1]), 1)}
    if baseline:  # the plain way vs ours, on the same slice of messages
        sub = frame.head(baseline)
        texts = sub.select(pl.col("messages").list.eval(pl.element().struct.field("content"))).explode("messages")["messages"]
        plain = texts.fill_null("").to_list()
        n, b, bc = _timed(lambda: sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in plain))
        ours, o, oc = _timed(lambda: int(counter.count(texts).sum()))
        assert ours == n, (ours, n)
        out["same_slice"] = {
            "records": baseline, "tokens": n,
            "per_message_loop": {"seconds": round(b, 3), "cpu_seconds": round(bc, 3), "tokens_per_s": round(n / b), "tokens_per_cpu_s": round(n / bc)},
            "mixer_batched": {"seconds": round(o, 3), "cpu_seconds": round(oc, 3), "tokens_per_s": round(n / o), "tokens_per_cpu_s": round(n / oc)},
        }
    return out


def run(cores: int, name: str, baseline: int) -> dict:
    env = dict(os.environ, RAYON_NUM_THREADS=str(cores), RAYON_RS_NUM_CPUS=str(cores), POLARS_MAX_THREADS=str(cores),
               TOKENIZERS_PARALLELISM="true")
    cpus = sorted(os.sched_getaffinity(0))[:cores]
    cmd = ["taskset", "-c", ",".join(map(str, cpus)), sys.executable, __file__, "--worker", str(cores), str(TOKENIZERS[name]), str(baseline)]
    load_before = os.getloadavg()[0]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return {"tokenizer": name, **out, "loadavg_1min_before": round(load_before, 2), "loadavg_1min_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokenizers", nargs="+", default=["llama2"], choices=sorted(TOKENIZERS))
    ap.add_argument("--cores", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--baseline", type=int, default=5_000, help="records for the per-message loop baseline (0: skip)")
    ap.add_argument("--output", type=Path, default=HERE / "results" / "stats.json")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(int(a.worker[0]), a.worker[1], int(a.worker[2]))))
        return
    from rich.console import Console

    con = Console(stderr=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    with con.status("building the real record pool"):
        pool = make_pool()
    runs = []
    for name in a.tokenizers:
        for cores in a.cores:
            with con.status(f"{name} on {cores} core(s)"):
                r = run(cores, name, a.baseline if cores == max(a.cores) else 0)
            con.print(f"{name:7} {cores} core(s): {r['tokens']:,} tokens in {r['seconds']:.1f} s = {r['tokens_per_s']:,} tokens/s "
                      f"({r['tokens_per_cpu_s']:,} per CPU-second, CPU use {r['cpu_utilization']}; load avg {r['loadavg_1min_before']})")
            runs.append(r)
    speedup = {}
    for name in a.tokenizers:
        by = {r["cores"]: r["seconds"] for r in runs if r["tokenizer"] == name}
        if 1 in by and 2 in by:
            speedup[name] = round(by[1] / by[2], 2)
    import polars
    import tokenizers
    import transformers

    result = {
        "what": "statistics pass (per-message token counts + per-source aggregation) on real records",
        "records": RECORDS, "seed": SEED, "pool": pool,
        "machine": {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "platform": platform.platform(),
                    "python": platform.python_version(), "polars": polars.__version__, "tokenizers": tokenizers.__version__,
                    "transformers": transformers.__version__},
        "runs": runs, "speedup_2_vs_1_core": speedup,
        "note": ("measured on a shared 2-core machine with other jobs running (loadavg); wall-clock figures and the "
                 "1-vs-2-core speedup depend on that load, tokens_per_cpu_s much less"),
    }
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text(json.dumps(result, indent=2) + "\n")
    con.print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
