"""Scale-out: one 1M-record spec built by the local engine and by the Ray engine.

Data: 1,000,000 instruction records composed from the real records of
``../shared/data/train`` (T0 templates, alpaca_1k, codealpaca, gpteacher): record i joins two
real instructions and their two real answers, picked by a seeded generator; then 3% exact
copies and 3% near copies (one word dropped) of earlier records are planted, so the dedup
steps have real work. Four sources of 250k records, two JSON-lines shards each.

Spec (``benchmarks/.cache/scale/scale.yaml``): per source alpaca format, keyword filter,
exact dedup, a 90% sample; over the mix exact dedup, MinHash near-dup removal and
decontamination against GSM8K, HumanEval and AlpacaEval (``../shared/data/eval``).

Each build runs in its own process: wall time and peak RSS (of the driver; for Ray, also
the workers' summed peak). The Ray build starts a single-node Ray instance with the
machine's CPUs, so the ratio ray/local measures the engine's overhead where a cluster
cannot help. Both builds must give the same mixture.parquet (sha256 compared).

Projection to a cluster (method, also in docs/scale-out.md): for every stage s of the Ray
build, ``W_s`` = the summed duration of its Ray tasks (from ``ray.timeline()``: the
distributable work) and ``T_s`` = its wall time; ``D_s = max(0, T_s - W_s / P)`` is what
did not run in parallel on P CPUs (driver work, scheduling, transfers). For N nodes of C
CPUs and a pool k times larger, ``T(N, C, k) = sum_s (k * D_s + k * W_s / (N * C))``:
linear in data, perfectly parallel task work, the serial part unchanged per record. It
ignores network transfer between nodes (measured here on one machine) and assumes the
driver keeps up (its memory grows with ids and ledger rows).

    python benchmarks/scale.py                 # 1M records (about 15 minutes on 2 cores)
    python benchmarks/scale.py --records 100000

Writes benchmarks/results/scale.json and prints a summary.

Streaming against the in-memory build (``--baseline 2ea0dc9``): the same spec and records
built by this checkout's local engine (batches spilled, bounded memory) and by the commit
before streaming, checked out with ``git worktree`` under ``.cache`` and run from its own
sources; wall time, peak RSS of the whole process tree and their ratios, per size
(``--sizes 1000000``), and per stage its seconds, peak RSS and the RSS it started from
(sampled in the build's process). Writes benchmarks/results/scale_streaming.json.

    python benchmarks/scale.py --baseline 2ea0dc9 --sizes 200000 1000000

Sizes the in-memory build cannot reach (``--streaming-alone 10000000``: ~19 GB of JSON
lines, generated shard by shard): the streaming build alone, the same figures. Writes
benchmarks/results/scale_streaming_N.json.

    python benchmarks/scale.py --streaming-alone 10000000
"""

from __future__ import annotations

import os
import sys

# benchmarks/ holds scripts named like stdlib modules (select.py): never import from it
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CACHE = ROOT / "benchmarks" / ".cache" / "scale"
RESULTS = ROOT / "benchmarks" / "results"
SOURCES = 4
SHARDS_PER_SOURCE = 2


# ----------------------------------------------------------------------------- data


def real_triples():
    """(instruction, input, output) of the real training records, as a polars frame."""
    import polars as pl

    train = SHARED / "train"
    parts = []
    t0 = train / "self_instruct/data/finetuning/t0_train_50k/data_per_template"
    parts.append(pl.concat([pl.read_ndjson(f).select("prompt", "completion") for f in sorted(t0.glob("*.jsonl")) if f.stat().st_size])
                 .select(pl.col("prompt").alias("instruction"), pl.lit("").alias("input"), pl.col("completion").alias("output")))
    for f, out in [(train / "alpaca_1k/alpaca_data_1k.json", "output"),
                   (train / "codealpaca/data/code_alpaca_2k.json", "output"),
                   (train / "codealpaca/data/new_codealpaca.json", "output"),
                   (train / "gpteacher/Codegen/codegen-instruct.json", "response"),
                   (train / "gpteacher/Toolformer/toolformer-dedupe-only-dataset.json", "response"),
                   (train / "gpteacher/Roleplay/roleplay-simple-deduped-roleplay-instruct.json", "response")]:
        df = pl.from_dicts(json.loads(f.read_text()), infer_schema_length=None)
        parts.append(df.select(pl.col("instruction").cast(pl.Utf8), pl.col("input").cast(pl.Utf8).fill_null("") if "input" in df.columns else pl.lit(""),
                               pl.col(out).cast(pl.Utf8).alias("output")))
    return pl.concat(parts).drop_nulls()


def make_data(records: int, seed: int = 0) -> Path:
    """Shards under CACHE/records-N (reused when present)."""
    import numpy as np
    import polars as pl

    folder = CACHE / f"records-{records}"
    done = folder / "DONE"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    base = real_triples()
    rng = np.random.default_rng(seed)
    a = rng.integers(0, base.height, records)
    b = rng.integers(0, base.height, records)
    # plant exact and near copies of earlier records (3% each)
    n_copy = records * 3 // 100
    idx = np.arange(records)
    exact_at = rng.choice(np.arange(records // 10, records), n_copy, replace=False)
    near_at = rng.choice(np.setdiff1d(np.arange(records // 10, records), exact_at), n_copy, replace=False)
    src_exact = (rng.random(n_copy) * exact_at).astype(np.int64)
    src_near = (rng.random(n_copy) * near_at).astype(np.int64)
    idx[exact_at] = src_exact
    idx[near_at] = src_near
    near = np.zeros(records, bool)
    near[near_at] = True
    # record p pairs base rows a[idx[p]] and b[idx[p]]; written shard by shard, so that
    # 10M records (~19 GB of JSON lines) never sit in memory at once
    per_shard = records // (SOURCES * SHARDS_PER_SOURCE)
    for k in range(SOURCES * SHARDS_PER_SOURCE):
        lo, hi = k * per_shard, records if k == SOURCES * SHARDS_PER_SOURCE - 1 else (k + 1) * per_shard
        rows = idx[lo:hi]
        A, B = base[a[rows]], base[b[rows]]
        frame = pl.DataFrame({
            "instruction": A["instruction"] + "\n\n" + B["instruction"],
            "input": A["input"],
            "output": A["output"] + "\n\n" + B["output"],
        }).with_columns(
            pl.when(pl.Series(near[lo:hi])).then(pl.col("output").str.replace(r"\s\S+\s", " ")).otherwise(pl.col("output")).alias("output")
        )
        frame.write_ndjson(folder / f"pool{k // SHARDS_PER_SOURCE}-{k % SHARDS_PER_SOURCE}.jsonl")
        del frame, A, B
    done.write_text(json.dumps({"records": records, "seed": seed, "base_records": base.height}))
    return folder


def write_spec(folder: Path) -> Path:
    import yaml

    spec = {
        "name": f"scale-{folder.name}", "seed": 11,
        "sources": {
            f"pool{s}": {
                "load": {"path": str(folder / f"pool{s}-*.jsonl")},
                "format": "alpaca",
                "steps": [{"keyword_filter": {"preset": "tulu_v2"}}, {"exact_dedup": {}}],
                "sample": {"fraction": 0.9},
            } for s in range(SOURCES)
        },
        "mix": [
            {"exact_dedup": {}},
            {"minhash": {"threshold": 0.8}},
            {"decontaminate": {"evals": ["tulu2"], "eval_dir": str(SHARED / "eval"), "rule": "tulu3"}},
        ],
    }
    path = folder / "scale.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# ----------------------------------------------------------------------------- runs


def run_one(engine: str, spec: Path, out: Path, cpus: int, store_mb: int, memory: str | None = None) -> dict:
    """Child process: one build; prints a JSON line with its figures. ``memory``: the local
    engine's budget (its default when None)."""
    from mixer.engines import make_engine
    from mixer.pipeline import build
    from mixer.spec import load_spec

    s = load_spec(spec)
    stage_peaks = _sample_stage_peaks()
    local = {"memory": memory} if memory else {}
    eng = make_engine("local", **local) if engine == "local" else make_engine("ray", num_cpus=cpus, object_store_memory=store_mb * 2**20)
    t0 = time.perf_counter()
    res = build(s, out, engine=eng)
    wall = time.perf_counter() - t0
    result = {
        "engine": engine, "wall_s": round(wall, 2), "records_out": res.manifest["records"],
        "mixture_sha256": _mixture_sha256(res.manifest["files"]),
        "mixture_files": len([k for k in res.manifest["files"] if k.startswith("mixture")]),
        "format_version": res.manifest.get("format_version", 1),
        "removed_sha256": res.manifest["files"]["removed.parquet"]["sha256"],
        "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "steps": [{"stage": f"{e['scope']}/{e['step']}", "seconds": e["seconds"], **stage_peaks.get(f"{e['scope']}/{e['step']}", {})}
                  for e in res.manifest["steps"]],
    }
    if engine == "ray":
        result["stages"] = _task_work(eng)
        result["nodes"] = eng.describe()
        eng.close()
    return result


def _mixture_sha256(files: dict) -> str:
    """The shard's sha256, or for several shards the sha256 of their hashes in order."""
    shas = [files[k]["sha256"] for k in sorted(files) if k.startswith("mixture")]
    return shas[0] if len(shas) == 1 else hashlib.sha256("".join(shas).encode()).hexdigest()


def _sample_stage_peaks() -> dict[str, dict[str, int]]:
    """Peak RSS of this process per ledger stage (MB), sampled every 50 ms by a thread: the
    peak between the end of the previous stage and the end of this one (a source's
    ``format`` falls into its ``validate``), and the RSS it started from (memory
    the allocators kept). Filled as ``Ledger.record`` is called."""
    import threading

    from mixer import pipeline

    page = os.sysconf("SC_PAGE_SIZE")
    peaks: dict[str, dict[str, int]] = {}
    state = {"peak": 0, "start": 0}

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page // 2**20

    def sample() -> None:
        while True:
            state["peak"] = max(state["peak"], rss())
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    record = pipeline.Ledger.record

    def recorded(self, scope, step, *a, **k):  # noqa: ANN001, ANN002, ANN003
        record(self, scope, step, *a, **k)
        peaks[f"{scope}/{step}"] = {"rss_start_mb": state["start"], "peak_rss_mb": max(state["peak"], rss())}
        state["peak"] = state["start"] = rss()

    pipeline.Ledger.record = recorded  # type: ignore[method-assign]
    return peaks


def _task_work(eng) -> list[dict]:
    """Per stage: wall time and the summed duration of the Ray tasks that ran inside it."""
    import ray

    time.sleep(2.0)  # task events reach the GCS asynchronously
    events = [e for e in ray.timeline() if e.get("ph") == "X" and str(e.get("cat", "")).startswith("task::")]
    spans = []
    for st in eng.stages:
        lo, hi = st["start"] * 1e6, st["end"] * 1e6
        inside = [e for e in events if lo <= e["ts"] <= hi]
        spans.append({"stage": st["stage"], "wall_s": round(st["end"] - st["start"], 3),
                      "tasks": len(inside), "task_s": round(sum(e["dur"] for e in inside) / 1e6, 3),
                      "driver_rss_mb": st.get("driver_rss_mb")})
    return spans


def child(engine: str, spec: Path, out: Path, cpus: int, store_mb: int, src: Path | None = None, memory: str | None = None) -> dict:
    """Run ``run_one`` in a fresh process (clean memory figures); worker RSS sampled for Ray.
    ``src``: import mixer from this source folder (a baseline checkout) instead."""
    cmd = [sys.executable, __file__, "--child", engine, "--spec", str(spec), "--out", str(out),
           "--cpus", str(cpus), "--store-mb", str(store_mb), *(["--memory", memory] if memory else [])]
    env = {**os.environ, "PYTHONPATH": str(src or ROOT / "src")}
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    peak_tree = 0
    while p.poll() is None:
        peak_tree = max(peak_tree, _tree_rss_mb(p.pid))
        time.sleep(0.5)
    out_text = p.stdout.read() if p.stdout else ""
    if p.returncode:
        raise RuntimeError(f"{engine} build failed ({p.returncode}):\n{out_text[-3000:]}")
    res = json.loads(out_text.strip().splitlines()[-1])
    res["process_tree_peak_rss_mb"] = peak_tree
    return res


def _tree_rss_mb(pid: int) -> int:
    """RSS of a process and all its descendants (Ray workers included), from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(stat[1]), []).append(int(d.name))
            rss[int(d.name)] = int(stat[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        q = todo.pop()
        total += rss.get(q, 0)
        todo.extend(children.get(q, []))
    return total // 2**20


def totals(ray_run: dict, cpus_here: int) -> dict:
    """Serial part D and task work W of a Ray build (warm-up kept apart as a fixed cost)."""
    serial = work = warm = 0.0
    for st in ray_run["stages"]:
        if st["stage"].startswith("engine/"):
            warm += st["wall_s"]
            continue
        serial += max(0.0, st["wall_s"] - st["task_s"] / cpus_here)
        work += st["task_s"]
    return {"serial_s": round(serial, 2), "task_s": round(work, 2), "warmup_s": round(warm, 2)}


def fit(n: list[int], y: list[float]) -> tuple[float, float]:
    """y = a + b * n through two measurements (a clipped at 0)."""
    b = (y[1] - y[0]) / (n[1] - n[0])
    return max(0.0, y[0] - b * n[0]), b


def project(sizes: list[int], ray_totals: list[dict], local_runs: list[dict], targets: list[int], shapes: list[tuple[int, int]]) -> dict:
    """T(N, C, n) = D0 + d*n + (W0 + w*n)/(N*C) + warm-up; local: L0 + l*n and its memory."""
    d0, d = fit(sizes, [t["serial_s"] for t in ray_totals])
    w0, w = fit(sizes, [t["task_s"] for t in ray_totals])
    warm = ray_totals[-1]["warmup_s"]
    l0, lr = fit(sizes, [r["wall_s"] for r in local_runs])
    m0, m = fit(sizes, [r["process_tree_peak_rss_mb"] for r in local_runs])
    rows = []
    for n in targets:
        row = {"records": n, "local_s": round(l0 + lr * n), "local_peak_gb": round((m0 + m * n) / 1024, 1)}
        for nodes, cpus in shapes:
            row[f"ray_{nodes}x{cpus}_s"] = round(warm + d0 + d * n + (w0 + w * n) / (nodes * cpus))
        rows.append(row)
    return {
        "method": "two Ray builds (n1, n2) give per stage the summed Ray task seconds W (ray.timeline) and the part "
                  "that did not run in parallel, D = max(0, wall - W/P) on P local CPUs; D and W are fitted as a + b*n; "
                  "T(N nodes, C CPUs, n) = warmup + D(n) + W(n)/(N*C). Local: wall and peak RSS fitted as a + b*n. "
                  "Network transfers between nodes are not modelled (one machine).",
        "fit": {"serial": [round(d0, 2), d], "task": [round(w0, 2), w], "warmup_s": warm,
                "local_wall": [round(l0, 2), lr], "local_rss_mb": [round(m0, 1), m]},
        "table": rows,
    }


def baseline_checkout(commit: str) -> Path:
    """``git worktree`` of ``commit`` under .cache (created once); its ``src`` folder."""
    folder = CACHE / f"baseline-{commit}"
    if not (folder / "src" / "mixer").is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "worktree", "add", "--detach", str(folder), commit], cwd=ROOT, check=True, capture_output=True)
    return folder / "src"


def compare_baseline(commit: str, sizes: list[int], cpus: int) -> dict:
    """This checkout's local engine against ``commit``'s, same spec and records, per size."""
    base_src = baseline_checkout(commit)
    out: dict = {}
    for n in sizes:
        spec = write_spec(make_data(n))
        row: dict = {}
        for name, src in (("baseline", base_src), ("streaming", None)):
            row[name] = child("local", spec, CACHE / "out" / name, cpus, 0, src)
            r = row[name]
            print(f"  {n:,} {name}: {r['wall_s']} s, process tree peak {r['process_tree_peak_rss_mb']} MB, "
                  f"{r['records_out']:,} records out", flush=True)
            print("    per stage (s / peak MB): " + ", ".join(f"{st['stage']} {st['seconds']:.0f}/{st.get('peak_rss_mb')}"
                                                       for st in r["steps"]), flush=True)
        row["wall_ratio"] = round(row["streaming"]["wall_s"] / row["baseline"]["wall_s"], 3)
        row["rss_ratio"] = round(row["streaming"]["process_tree_peak_rss_mb"] / row["baseline"]["process_tree_peak_rss_mb"], 3)
        print(f"  {n:,}: streaming/baseline wall {row['wall_ratio']}, peak RSS {row['rss_ratio']}", flush=True)
        out[str(n)] = row
    result = {
        "benchmark": f"streaming local engine vs the in-memory build of {commit}, same spec and records",
        "machine": {"cpus": cpus, "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_end": round(os.getloadavg()[0], 1)},
        "spec": "benchmarks/.cache/scale/records-N/scale.yaml: per source keyword filter, exact dedup, 90% sample; "
                "mix: exact dedup, minhash 0.8, decontamination against the tulu2 suite",
        "note": "the sample draw differs between the two (format_version 2 ranks ids), so the outputs differ",
        "runs": out,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale_streaming.json").write_text(json.dumps(result, indent=2))
    return result


def streaming_alone(n: int, cpus: int, memory: str | None = None) -> dict:
    """The local engine alone on ``n`` records (sizes the in-memory build cannot reach),
    with its default budget or ``memory``."""
    t = time.perf_counter()
    folder = make_data(n)
    data_s = time.perf_counter() - t
    gb = sum(f.stat().st_size for f in folder.glob("pool*.jsonl")) / 1e9
    print(f"data: {n:,} records, {gb:.1f} GB of JSON lines ({data_s:.0f} s); load average {os.getloadavg()[0]:.1f}", flush=True)
    load0 = round(os.getloadavg()[0], 1)
    r = child("local", write_spec(folder), CACHE / "out" / "streaming", cpus, 0, memory=memory)
    print(f"  {n:,} streaming{' --memory ' + memory if memory else ''}: {r['wall_s']} s, process tree peak {r['process_tree_peak_rss_mb']} MB, "
          f"{r['records_out']:,} records out in {r['mixture_files']} shard(s)", flush=True)
    for st in r["steps"]:
        print(f"    {st['stage']:<24} {st['seconds']:>8.1f} s  peak {st.get('peak_rss_mb')} MB", flush=True)
    result = {
        "benchmark": f"streaming local engine alone on {n:,} records",
        "machine": {"cpus": cpus, "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_start": load0, "load_average_end": round(os.getloadavg()[0], 1)},
        "data": {"records": n, "jsonl_gb": round(gb, 2)},
        "memory": memory or "default",
        "spec": "benchmarks/.cache/scale/records-N/scale.yaml: per source keyword filter, exact dedup, 90% sample; "
                "mix: exact dedup, minhash 0.8, decontamination against the tulu2 suite",
        "run": r,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"scale_streaming_{n}{'_memory-' + memory if memory else ''}.json").write_text(json.dumps(result, indent=2))
    shutil.rmtree(CACHE / "out" / "streaming", ignore_errors=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000, help="the large build; a tenth of it is the second point")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--store-mb", type=int, default=3000, help="Ray object store for the single-node run")
    ap.add_argument("--reuse", action="store_true", help="reuse runs saved under .cache/scale/runs (after a crash)")
    ap.add_argument("--child", choices=["local", "ray"])
    ap.add_argument("--spec", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--baseline", help="compare the local engine with this commit's (e.g. 2ea0dc9)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000], help="record counts for --baseline")
    ap.add_argument("--streaming-alone", type=int, metavar="N", help="the local engine alone on N records (e.g. 10000000)")
    ap.add_argument("--memory", help="the local engine's budget for --streaming-alone (e.g. 1G; its default when unset)")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.spec, args.out, args.cpus, args.store_mb, args.memory)))
        return
    if args.baseline:
        compare_baseline(args.baseline, args.sizes, args.cpus)
        return
    if args.streaming_alone:
        streaming_alone(args.streaming_alone, args.cpus, args.memory)
        return

    sizes = [args.records // 10, args.records]
    runs: dict[int, dict] = {}
    for n in sizes:
        t = time.perf_counter()
        spec = write_spec(make_data(n))
        print(f"data: {n:,} records ({time.perf_counter() - t:.0f} s); load average {os.getloadavg()[0]:.1f}", flush=True)
        runs[n] = {}
        for engine in ("local", "ray"):
            saved = CACHE / "runs" / f"{n}-{engine}.json"
            if args.reuse and saved.exists():
                runs[n][engine] = json.loads(saved.read_text())
            else:
                runs[n][engine] = child(engine, spec, CACHE / "out" / engine, args.cpus, args.store_mb)
                saved.parent.mkdir(parents=True, exist_ok=True)
                saved.write_text(json.dumps(runs[n][engine]))
            r = runs[n][engine]
            print(f"  {engine}: {r['wall_s']} s, driver peak {r['driver_peak_rss_mb']} MB, process tree peak {r['process_tree_peak_rss_mb']} MB", flush=True)
        runs[n]["identical_mixture"] = runs[n]["local"]["mixture_sha256"] == runs[n]["ray"]["mixture_sha256"]
        runs[n]["identical_removed"] = runs[n]["local"]["removed_sha256"] == runs[n]["ray"]["removed_sha256"]
        runs[n]["ratio_ray_over_local"] = round(runs[n]["ray"]["wall_s"] / runs[n]["local"]["wall_s"], 2)
        runs[n]["ray_totals"] = totals(runs[n]["ray"], args.cpus)
        print(f"  identical mixture {runs[n]['identical_mixture']}, removed {runs[n]['identical_removed']}; "
              f"ray/local {runs[n]['ratio_ray_over_local']}; {runs[n]['ray_totals']}", flush=True)
    shapes = [(1, args.cpus), (1, 16), (10, 16)]
    projection = project(sizes, [runs[n]["ray_totals"] for n in sizes], [runs[n]["local"] for n in sizes],
                         [1_000_000, 5_800_000, 10_000_000, 100_000_000], shapes)
    result = {
        "benchmark": "scale-out: local vs ray engine, same spec",
        "machine": {"cpus": args.cpus, "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_end": round(os.getloadavg()[0], 1)},
        "spec": "benchmarks/.cache/scale/records-N/scale.yaml (written by this script)",
        "sizes": sizes,
        "runs": {str(n): runs[n] for n in sizes},
        "projection": projection,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(projection["table"], indent=1))


if __name__ == "__main__":
    main()
