"""Peak memory of ``mixer decontaminate FILE`` on 1M records.

Data (``--dir``, default /tmp/h19b/decontam_memory; reused when present): one JSON-lines
file of ``--records`` alpaca records composed from the real records of ``../shared/data/train``
(the generator of ``benchmarks/sample_huge.py``: two real instructions and answers per
record, a real word between the answers). Command: ``mixer decontaminate FILE -f alpaca
--eval tulu2 --eval-dir ../shared/data/eval`` (the Tulu 2 suite, rule tulu3), in a child
process; wall time and peak RSS of the whole process tree, sampled from /proc every 0.2 s.

    python benchmarks/decontam_memory.py                   # 1M records
    python benchmarks/decontam_memory.py --records 100000

Writes benchmarks/results/decontam_memory.json and prints a summary.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT.parent / "shared" / "data" / "eval"
RESULTS = ROOT / "benchmarks" / "results"


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(f"mixer_bench_{name}", Path(_HERE) / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/h19b/decontam_memory"))
    args = ap.parse_args()
    data = _bench("sample_huge").make_data(args.dir / f"records-{args.records}", 0, records=args.records)
    report = args.dir / f"records-{args.records}" / "report"
    cmd = [sys.executable, "-m", "mixer.cli", "decontaminate", str(data), "-f", "alpaca", "--eval", "tulu2",
           "--eval-dir", str(EVAL), "--report-dir", str(report), "-o", str(data.with_name("clean.jsonl"))]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    tree_rss = _bench("scale")._tree_rss_mb
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    peak = 0
    while p.poll() is None:
        peak = max(peak, tree_rss(p.pid))
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"mixer decontaminate failed ({p.returncode})")
    rep = json.loads((report / "contamination.json").read_text())
    removed = __import__("pyarrow.parquet", fromlist=["ParquetFile"]).ParquetFile(report / "removed.parquet").metadata.num_rows
    result = {
        "command": f"python benchmarks/decontam_memory.py --records {args.records}",
        "records": args.records, "bytes": data.stat().st_size, "wall_s": round(wall, 1),
        "process_tree_peak_rss_mb": peak, "removed": removed,
        "records_per_s": round(args.records / wall),
        "report_keys": sorted(rep)[:10],
    }
    print(json.dumps(result, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "decontam_memory.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
