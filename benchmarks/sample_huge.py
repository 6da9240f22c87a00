"""``sample: {n: 10000}`` from one JSON-lines source larger than the machine's memory.

Data (``--dir``, default /tmp/mixer-sample-huge; reused when present): one JSON-lines file of
at least ``--gb`` GB (default 25) of alpaca records composed from the real records of
``../shared/data/train`` (the pool of ``benchmarks/scale.py``): record i joins two real
instructions and two real answers picked by a seeded generator and puts a real word drawn
from the same texts between the answers (a word-level edit), so texts differ. Written in
blocks of about 256 MB, each block built by vectorized polars expressions.

Run: ``mixer build`` on a spec with that one source and ``sample: {n: 10000}`` in a child
process; wall time, peak RSS of the whole process tree (sampled from /proc every 0.2 s) and
the bytes the child read from the source file (its ``open`` counts the bytes read from
that path, whatever opens it) against the file size: one pass reads it once. All the
child's reads and writes (``/proc/self/io`` ``rchar``/``wchar``: source, spilled batches,
outputs) are reported beside it.

Checks, by a separate computation (pure Python FNV-1a + splitmix64, not
``mixer.steps.sample``): the 10,000 kept ids are exactly the records with the smallest
(rank, id), verified on the kept ids and on a seeded random 100,000 of the ledger's
``not_sampled`` ids (every one ranks above the largest kept rank); kept + removed = the
records in the file.

    python benchmarks/sample_huge.py                 # 25 GB (generation about 10 min, build about 20 min on 2 cores)
    python benchmarks/sample_huge.py --gb 1          # a quick look

Writes benchmarks/results/sample_huge.json (sample_huge_<gb>gb / _memory-<m> for other sizes and
budgets) and prints a summary.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import hashlib  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BLOCK_BYTES = 256 << 20
N = 10_000
SEED = 5
MASK = (1 << 64) - 1


def _scale():
    """benchmarks/scale.py as a module (its pool of real records)."""
    spec = importlib.util.spec_from_file_location("mixer_bench_scale", Path(_HERE) / "scale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def make_data(folder: Path, gb: float, seed: int = 0, records: int | None = None) -> Path:
    """``folder/huge.jsonl`` of at least ``gb`` GB, or of exactly ``records`` records
    (reused when its DONE marker says so)."""
    import numpy as np
    import polars as pl
    from rich.progress import Progress

    path, done = folder / "huge.jsonl", folder / "DONE"
    target = int(gb * 1e9)
    if done.exists():
        meta = json.loads(done.read_text())
        if (meta["records"] == records) if records else meta["bytes"] >= target:
            return path
    folder.mkdir(parents=True, exist_ok=True)
    base = _scale().real_triples()
    words = (base["output"].str.extract_all(r"[A-Za-z]{4,12}").explode().drop_nulls().unique().sort())
    rng = np.random.default_rng(seed)
    per_row = (base["instruction"].str.len_bytes().mean() + base["output"].str.len_bytes().mean()) * 2 + 80
    rows = max(1000, int(BLOCK_BYTES / per_row))
    written = n = 0
    with open(path, "wb") as f, Progress() as bar:
        task = bar.add_task(f"writing {path.name}", total=records or target)
        while (n < records) if records else (written < target):
            rows = min(rows, records - n) if records else rows
            a, b = rng.integers(0, base.height, rows), rng.integers(0, base.height, rows)
            w = words.gather(rng.integers(0, words.len(), rows))
            A, B = base[a], base[b]
            block = pl.DataFrame({
                "instruction": A["instruction"] + "\n\n" + B["instruction"],
                "input": A["input"],
                "output": A["output"] + " " + w + "\n\n" + B["output"],
            })
            data = block.write_ndjson().encode()
            f.write(data)
            written += len(data)
            n += rows
            bar.update(task, completed=n if records else written)
    done.write_text(json.dumps({"bytes": written, "records": n, "seed": seed, "base_records": base.height}))
    return path


def write_spec(folder: Path, data: Path) -> Path:
    import yaml

    spec = {"name": "sample-huge", "seed": SEED,
            "sources": {"huge": {"load": {"path": str(data)}, "format": "alpaca", "sample": {"n": N}}}}
    path = folder / "sample_huge.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


CHILD = """
import builtins, json, sys
from mixer.cli import main

# count the bytes read from the source file itself, whatever opens it
out, source, sys.argv = sys.argv[1], sys.argv[2], ["mixer", *sys.argv[3:]]
counted, opened, _open = [0], [0], builtins.open

class Counted:
    def __init__(self, f):
        self._f = f
    def read(self, *a):
        b = self._f.read(*a)
        counted[0] += len(b)
        return b
    def __getattr__(self, k):
        return getattr(self._f, k)
    def __enter__(self):
        return self
    def __exit__(self, *a):
        return self._f.__exit__(*a)

def counting_open(file, *a, **k):
    f = _open(file, *a, **k)
    if isinstance(file, (str, bytes)) or hasattr(file, "__fspath__"):
        if str(file) == source:
            opened[0] += 1
            return Counted(f)
    return f

builtins.open = counting_open
try:
    main()
except SystemExit as e:
    code = e.code
else:
    code = 0
finally:
    io = dict(l.split(": ") for l in _open("/proc/self/io").read().split("\\n") if l)
    io = {k: int(v) for k, v in io.items()}
    io.update(source_bytes_read=counted[0], source_opens=opened[0])
    _open(out, "w").write(json.dumps(io))
sys.exit(code)
"""


def run_build(spec: Path, out: Path, memory: str | None) -> dict:
    """``mixer build`` in a child process: wall time, process-tree peak RSS, bytes read."""
    scale = _scale()
    io_file = out.parent / "child_io.json"
    source = __import__("yaml").safe_load(spec.read_text())["sources"]["huge"]["load"]["path"]
    cmd = [sys.executable, "-c", CHILD, str(io_file), source, "build", str(spec), "-o", str(out), "--force"]
    if memory:
        cmd += ["--memory", memory]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env)
    peak = 0
    while p.poll() is None:
        peak = max(peak, scale._tree_rss_mb(p.pid))
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"mixer build failed ({p.returncode})")
    return {"wall_s": round(wall, 1), "process_tree_peak_rss_mb": peak, "io": json.loads(io_file.read_text())}


def _fnv_mix(text: str, s: int) -> int:
    """The rank rule, written out separately: splitmix64(fnv1a64(id) ^ salt)."""
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & MASK
    z = (h ^ s) & MASK
    z = (z + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def check_draw(out: Path, records: int) -> dict:
    """The kept ids are the n smallest ranks: kept ranks against a sample of the others."""
    import polars as pl

    digest = hashlib.sha256(repr((SEED, "huge", "sample")).encode()).digest()
    s = int.from_bytes(digest[:8], "little")
    kept = pl.read_parquet(out / "mixture.parquet", columns=["id"])["id"].to_list()
    pf = __import__("pyarrow.parquet", fromlist=["ParquetFile"]).ParquetFile(out / "removed.parquet")
    removed_rows = pf.metadata.num_rows
    rng = random.Random(0)
    picks = sorted(rng.sample(range(removed_rows), min(100_000, removed_rows)))
    others: list[str] = []
    at, k = 0, 0
    for batch in pf.iter_batches(columns=["id", "reason"], batch_size=1 << 20):
        ids, reasons = batch.column(0).to_pylist(), batch.column(1).to_pylist()
        while k < len(picks) and picks[k] < at + len(ids):
            j = picks[k] - at
            assert reasons[j] == "not_sampled", reasons[j]
            others.append(ids[j])
            k += 1
        at += len(ids)
    top = max((_fnv_mix(i, s), i) for i in kept)
    below = [i for i in others if (_fnv_mix(i, s), i) <= top]
    return {"kept": len(kept), "removed": removed_rows, "records": records, "checked_not_sampled": len(others),
            "not_sampled_ranked_below_kept": len(below), "ok": len(kept) == N and not below and len(kept) + removed_rows == records}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gb", type=float, default=25.0)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/mixer-sample-huge"))
    ap.add_argument("--memory", default=None, help="--memory for mixer build (default: its own default)")
    ap.add_argument("--generate-only", action="store_true")
    args = ap.parse_args()
    data = make_data(args.dir, args.gb)
    meta = json.loads((args.dir / "DONE").read_text())
    size = data.stat().st_size
    print(f"data: {data} {size / 1e9:.2f} GB, {meta['records']:,} records", flush=True)
    if args.generate_only:
        return
    spec = write_spec(args.dir, data)
    out = args.dir / "out"
    run = run_build(spec, out, args.memory)
    manifest = json.loads((out / "manifest.json").read_text())
    draw = check_draw(out, meta["records"])
    io = run.pop("io")
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "data": {"bytes": size, "records": meta["records"]},
        "command": f"python benchmarks/sample_huge.py --gb {args.gb}" + (f" --memory {args.memory}" if args.memory else ""),
        **run,
        "read_mb_per_s": round(size / 1e6 / run["wall_s"], 1),
        "source_bytes_read": io["source_bytes_read"], "source_opens": io["source_opens"],
        "passes_over_source": round(io["source_bytes_read"] / size, 3),
        "bytes_read_all_files": io["rchar"], "bytes_written_all_files": io["wchar"],
        "removed_parquet_bytes": (out / "removed.parquet").stat().st_size,
        "steps": [{"stage": f"{e['scope']}/{e['step']}", "seconds": e["seconds"]} for e in manifest["steps"]],
        "draw": draw,
    }
    print(json.dumps(result, indent=1))
    RESULTS.mkdir(exist_ok=True)
    name = "sample_huge" + ("" if args.gb >= 25 else f"_{args.gb:g}gb") + (f"_memory-{args.memory}" if args.memory else "")
    name += ".json"
    (RESULTS / name).write_text(json.dumps(result, indent=1) + "\n")
    assert draw["ok"], draw


if __name__ == "__main__":
    main()
