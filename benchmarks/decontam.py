"""Decontamination at scale: 1M real training records (resampled from ../shared/data/train)
against the whole Tulu 2 suite + IFEval, MATH, MT-Bench, with time, peak memory and matches;
datatrove's n-gram decontamination on the same records in the same run, when it installs.

    python benchmarks/decontam.py                  # 1M records, datatrove on a 30k subsample
    python benchmarks/decontam.py --records 200000 --datatrove-records 20000 --verify 40

Each measured method runs in its own process (peak RSS is per method). datatrove runs from
``benchmarks/.cache/venv-datatrove`` (``pip install datatrove spacy "xxhash<3.6" pyarrow regex``: xxhash 4 rejects the str keys datatrove hashes); its
index is built with its own ``NGramsDecontIndexer.compute_hashes`` from the same instances
(its ``run`` needs lighteval and the hub), then ``NGramsDecontFilter.filter`` runs per record.
Writes ``benchmarks/results/decontam.json``.
"""

from __future__ import annotations

import sys

# this folder holds other benchmarks named like stdlib modules (select.py): keep it off the path
sys.path[:] = [p for p in sys.path if p not in ("", __file__.rsplit("/", 1)[0])]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = HERE / ".cache"
SHARED = REPO.parent / "shared" / "data"
DT_PY = CACHE / "venv-datatrove" / "bin" / "python"
RESULTS = HERE / "results" / "decontam.json"


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: ru_maxrss survives fork+exec, so a
    worker would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------- data


def pools():
    """Real training pools as (source, user text, assistant text) frames."""
    import polars as pl

    from mixer import evalsets

    t = SHARED / "train"

    def alpaca(path: Path, out: str = "output") -> pl.DataFrame:
        df = pl.read_json(path, infer_schema_length=None)
        inp = pl.col("input").fill_null("") if "input" in df.columns else pl.lit("")
        user = pl.when(inp.str.len_chars() > 0).then(pl.col("instruction") + "\n\n" + inp).otherwise(pl.col("instruction"))
        return df.select(user.alias("user"), pl.col(out).cast(pl.Utf8).alias("assistant"))

    out = {
        "alpaca": alpaca(t / "alpaca_1k/alpaca_data_1k.json"),
        "code_alpaca": pl.concat([alpaca(t / "codealpaca/data/code_alpaca_2k.json"), alpaca(t / "codealpaca/data/new_codealpaca.json")]),
        "gpteacher": pl.concat([alpaca(p, "response") for p in sorted(t.glob("gpteacher/*/*.json"))]),
        "lima": alpaca(t / "llama_factory/data/lima.json"),
        "alpaca_en_demo": alpaca(t / "llama_factory/data/alpaca_en_demo.json"),
    }
    t0 = []
    for f in sorted(t.glob("self_instruct/data/finetuning/t0_train_50k/data_per_template/*.jsonl")):
        if f.stat().st_size:
            t0.append(pl.read_ndjson(f).select(pl.col("prompt").alias("user"), pl.col("completion").alias("assistant")))
    out["t0_flan_like"] = pl.concat(t0)
    outs = []
    for f in sorted(t.glob("alpaca_eval_outputs/results/*/model_outputs.json")):
        outs.append(pl.read_json(f).select(pl.col("instruction").alias("user"), pl.col("output").alias("assistant")))
    out["alpaca_eval_outputs"] = pl.concat(outs)
    sg = pl.read_json(t / "sharegpt_dummy/dummy_conversation.json")
    out["sharegpt_dummy"] = sg.select(
        pl.col("conversations").list.eval(pl.element().struct.field("value")).list.first().alias("user"),
        pl.col("conversations").list.eval(pl.element().struct.field("value")).list.get(1, null_on_oob=True).alias("assistant"),
    )
    g = evalsets.load("gsm8k", split="train", data_dir=SHARED / "eval")
    out["gsm8k_train"] = g.select(pl.col("prompt").alias("user"), pl.col("answer").alias("assistant"))
    ty = evalsets.load("tydiqa", split="train", data_dir=SHARED / "eval")
    out["tydiqa_en_train"] = ty.select(pl.col("prompt").alias("user"), pl.col("answer").alias("assistant"))
    return {k: v.drop_nulls("user") for k, v in out.items()}


def prepare(n: int, n_dt: int, seed: int = 0) -> dict:
    """Resample the pools (weighted by size, with replacement) to ``n`` records."""
    import numpy as np
    import polars as pl

    from mixer import evalsets

    path = CACHE / f"decontam_train_{n}_{seed}.parquet"
    user = CACHE / f"decontam_user_{n}_{seed}_{n_dt}.parquet"
    evp = CACHE / "decontam_evals.parquet"
    if not path.exists():
        ps = pools()
        base = pl.concat([v.with_columns(pl.lit(k).alias("source")) for k, v in ps.items()])
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, base.height, n)
        fr = base[idx].with_columns(pl.format("{}:{}", pl.col("source"), pl.int_range(pl.len())).alias("id"))
        fr = fr.select(
            "id", "source",
            pl.concat_list(
                pl.struct(pl.lit("user").alias("role"), pl.col("user").alias("content")),
                pl.struct(pl.lit("assistant").alias("role"), pl.col("assistant").fill_null("").alias("content")),
            ).alias("messages"),
            pl.lit(None, dtype=pl.Utf8).alias("meta"),
        )
        CACHE.mkdir(parents=True, exist_ok=True)
        fr.write_parquet(path)
    if not user.exists():
        fr = pl.read_parquet(path).head(n_dt)
        fr.select("id", pl.col("messages").list.first().struct.field("content").alias("text")).write_parquet(user)
    if not evp.exists():
        evalsets.load_many("tulu2+", data_dir=SHARED / "eval").write_parquet(evp)
    return {"train": str(path), "user": str(user), "evals": str(evp)}


# ----------------------------------------------------------------------- workers


def worker_mixer(args) -> dict:
    import polars as pl

    from mixer.decontam import DecontamConfig
    from mixer.decontam.apply import decide
    from mixer.decontam.core import find_matches

    frame = pl.read_parquet(args.data)
    if args.limit:
        frame = frame.head(args.limit)
    evals = pl.read_parquet(args.evals)
    rss_loaded = peak_rss_mb()
    cfg = DecontamConfig(**json.loads(args.params))
    t0 = time.perf_counter()
    c0 = time.process_time()
    res = find_matches(frame, evals, cfg, progress=False)
    out = decide(frame.select("id", "source"), evals, cfg, res, t0)
    wall = time.perf_counter() - t0
    per_bench = {r["benchmark"]: {"pct_instances": r["pct_instances"], "records": r["records"], "short": r["short_instances_hit"], "template_records": r["template_records"]}
                 for r in out.report["matrix"] if r["source"] == "(all)"}
    result = {
        "records": frame.height, "distinct_records": res.distinct, "tokens": res.tokens, "wall_s": round(wall, 2), "cpu_s": round(time.process_time() - c0, 2),
        "index_s": round(res.timings["index_s"], 2), "match_s": round(res.timings["match_s"], 2),
        "peak_rss_mb": round(peak_rss_mb(), 1), "rss_after_loading_mb": round(rss_loaded, 1),
        "matched_records": out.report["matched_records"], "pairs": out.report["matches"], "removed": out.report["removed"],
        "index": out.report["index"], "per_benchmark": per_bench,
    }
    if args.verify:
        result["verify"] = verify(frame, evals, cfg, res.pairs, args.verify)
    return result


def verify(frame, evals, cfg, pairs, k: int) -> dict:
    """Brute force on a sample: half matched records, half random, every (record, instance)."""
    import numpy as np
    import polars as pl

    from mixer.decontam.core import find_matches
    from mixer.decontam.reference import brute_force

    rng = np.random.default_rng(1)
    matched = pairs["rec"].unique().to_numpy()
    pick = np.unique(np.concatenate([rng.choice(matched, min(k // 2, len(matched)), replace=False), rng.integers(0, frame.height, k - k // 2)]))
    sample = frame[pick]
    t = time.perf_counter()
    ref = brute_force(sample, evals, cfg).sort(["rec", "inst"])
    got = find_matches(sample, evals, cfg, progress=False).pairs.sort(["rec", "inst"])
    cols = ["rec", "inst", "n_ngrams", "short"]
    same = got.select(cols).equals(ref.select(pl.col(c).cast(got.schema[c]) for c in cols))
    return {"records": len(pick), "pairs_index": got.height, "pairs_brute_force": ref.height, "identical": bool(same),
            "brute_force_s": round(time.perf_counter() - t, 1)}


def worker_datatrove(args) -> dict:
    """datatrove's own hashing and filter, per record (run with the datatrove venv)."""
    import tempfile

    import numpy as np
    import pyarrow.parquet as pq
    from datatrove.data import Document
    from datatrove.pipeline.decont.n_grams import (
        NGramsDecontConfig,
        NGramsDecontFilter,
        NGramsDecontIndexer,
    )

    n = json.loads(args.params).get("n", 12)
    cfg = NGramsDecontConfig(n_grams=n, find_query_ngrams=True, find_overlap_ngrams=True)
    ev = pq.read_table(args.evals).to_pydict()
    t0 = time.perf_counter()
    c0 = time.process_time()
    idx_dir = tempfile.mkdtemp(prefix="dt-index-")
    # the indexer class refuses to exist without lighteval (it reads tasks from the hub);
    # call its own compute_hashes with the attributes it uses
    from types import SimpleNamespace

    from datatrove.utils.hashing import create_hash_func
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    indexer = SimpleNamespace(config=cfg, tokenizer=load_word_tokenizer("eng"), hash_func=create_hash_func(cfg.hash_config))
    by_task: dict[str, set] = {}
    for bench, prompt, answer in zip(ev["benchmark"], ev["prompt"], ev["answer"], strict=True):
        by_task.setdefault(bench, set()).update(NGramsDecontIndexer.compute_hashes(indexer, answer or "", prompt))
    for task, hs in by_task.items():
        np.array(sorted(hs), dtype=np.uint64).tofile(os.path.join(idx_dir, f"{task}.index.hashes"))
    index_s = time.perf_counter() - t0
    docs = pq.read_table(args.data).to_pydict()
    if args.limit:
        docs = {k: v[: args.limit] for k, v in docs.items()}
    rss_loaded = peak_rss_mb()
    filt = NGramsDecontFilter(index_folder=idx_dir, config=cfg)
    filt.load_index_hashes()
    t1 = time.perf_counter()
    c1 = time.process_time()
    removed: dict[str, int] = {}
    for i, text in zip(docs["id"], docs["text"], strict=True):
        d = Document(text=text or "", id=i)
        if filt.filter(d) is not True:
            task = d.metadata["contaminated_task"]
            removed[task] = removed.get(task, 0) + 1
    filter_s = time.perf_counter() - t1
    return {"records": len(docs["id"]), "index_s": round(index_s, 2), "filter_s": round(filter_s, 2),
            "wall_s": round(index_s + filter_s, 2), "cpu_s": round(time.process_time() - c0, 2),
            "cpu_filter_s": round(time.process_time() - c1, 2),
            "peak_rss_mb": round(peak_rss_mb(), 1), "rss_after_loading_mb": round(rss_loaded, 1),
            "matched_records": sum(removed.values()), "per_benchmark_records": removed}


# -------------------------------------------------------------------------- main


def run_worker(python: str, kind: str, data: str, evals: str, params: dict, limit: int = 0, verify: int = 0) -> dict:
    cmd = [python, __file__, "--worker", kind, "--data", data, "--evals", evals, "--params", json.dumps(params),
           "--limit", str(limit), "--verify", str(verify)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")} if kind == "mixer" else dict(os.environ)
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{p.stderr[-3000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = round(time.perf_counter() - t, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--datatrove-records", type=int, default=30_000)
    ap.add_argument("--verify", type=int, default=None, help="records checked against the brute-force twin (default 60)")
    ap.add_argument("--skip-datatrove", action="store_true")
    ap.add_argument("--worker", choices=["mixer", "datatrove"])
    ap.add_argument("--data")
    ap.add_argument("--evals")
    ap.add_argument("--params", default="{}")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    if args.worker:
        args.verify = args.verify or 0
        res = worker_mixer(args) if args.worker == "mixer" else worker_datatrove(args)
        print(json.dumps(res))
        return

    from rich.console import Console
    from rich.table import Table

    con = Console()
    t = time.perf_counter()
    with con.status("preparing data (real records, resampled)"):
        files = prepare(args.records, args.datatrove_records)
    con.print(f"data ready in {time.perf_counter() - t:.1f}s: {files['train']}")
    load = os.getloadavg()
    results: dict = {"machine": {"cpus": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in load]}, "records": args.records}
    tulu3 = {"evals": ["tulu2+"], "rule": "tulu3"}
    ngram = {"evals": ["tulu2+"], "rule": "ngram", "n": 12, "eval_text": "both", "short": "skip", "dedup": False}
    runs = [
        ("mixer_tulu3", tulu3, 0, 60 if args.verify is None else args.verify),  # the default: identical records matched once
        ("mixer_tulu3_no_dedup", {**tulu3, "dedup": False}, 0, 0),  # every record tokenized and matched
    ]
    for key, params, limit, verify_k in runs:
        with con.status(f"{key} on {args.records:,} records"):
            results[key] = run_worker(sys.executable, "mixer", files["train"], files["evals"], params, limit=limit, verify=verify_k)
        con.print(f"{key}: {results[key]['wall_s']} s wall, {results[key]['cpu_s']} s cpu")
    if not args.skip_datatrove and DT_PY.exists():
        n_dt = args.datatrove_records
        with con.status(f"mixer ngram-12 on the {n_dt:,}-record subsample"):
            results["mixer_ngram12_subsample"] = run_worker(sys.executable, "mixer", files["train"], files["evals"], ngram, limit=n_dt)
        with con.status(f"datatrove ngram-12 on the {n_dt:,}-record subsample"):
            results["datatrove_ngram12_subsample"] = run_worker(str(DT_PY), "datatrove", files["user"], files["evals"], {"n": 12})
        m, d = results["mixer_ngram12_subsample"], results["datatrove_ngram12_subsample"]
        results["ratio_datatrove_over_mixer_same_records"] = {
            "wall": round(d["wall_s"] / m["wall_s"], 1), "cpu": round(d["cpu_s"] / m["cpu_s"], 1),
            "matching_only_wall": round(d["filter_s"] / m["match_s"], 1),
        }
        results["datatrove_projected_1M_s"] = round(d["index_s"] + d["filter_s"] * args.records / d["records"], 1)
    elif not args.skip_datatrove:
        results["datatrove"] = f"not installed at {DT_PY}"
    results["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]

    tab = Table(title=f"decontamination, {args.records:,} real records vs tulu2+ ({results['mixer_tulu3']['index']['instances']:,} instances)")
    for c in ("method", "records", "wall s", "cpu s", "peak RSS MB", "matched records"):
        tab.add_column(c, justify="right" if c != "method" else "left")
    for key, r in results.items():
        if isinstance(r, dict) and "wall_s" in r:
            tab.add_row(key, f"{r['records']:,}", str(r["wall_s"]), str(r["cpu_s"]), str(r["peak_rss_mb"]), f"{r['matched_records']:,}")
    con.print(tab)
    con.print(f"distinct records (checked turns): {results['mixer_tulu3']['distinct_records']:,} of {args.records:,}")
    for b, v in results["mixer_tulu3"]["per_benchmark"].items():
        con.print(f"  tulu3 {b:12s} {v['pct_instances']:7.3f}% of instances, {v['records']:,} records ({v['template_records']} template)")
    if "verify" in results["mixer_tulu3"]:
        con.print("exactness vs brute force:", results["mixer_tulu3"]["verify"])
    if "ratio_datatrove_over_mixer_same_records" in results:
        con.print(f"datatrove / mixer (same {args.datatrove_records:,} records, ngram-12): {results['ratio_datatrove_over_mixer_same_records']}; "
                  f"datatrove projected on {args.records:,}: {results['datatrove_projected_1M_s']} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    con.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
