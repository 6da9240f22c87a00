"""A JSON document that is one big array: read by its items (streaming) vs parsed whole.

Data: the real training records of ``../shared/data/train`` (alpaca_1k, codealpaca,
gpteacher) repeated with a running number in the instruction until the array is about
``--mb`` MB, written as one pretty-printed JSON array under /tmp. Each reader runs in a
fresh process (``mixer.io.iter_file`` with the default part size, and the whole-document
parse ``mixer.io.parse_json_text``); peak RSS is the child's ``ru_maxrss``. Both must give
the same rows. Writes benchmarks/results/json_array.json.

    python benchmarks/json_array.py --mb 500
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]  # benchmarks/select.py shadows select

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "train"
FILES = ["alpaca_1k/alpaca_data_1k.json", "codealpaca/data/code_alpaca_2k.json", "gpteacher/Codegen/codegen-instruct.json"]

CHILD = """
import resource, sys, time, hashlib
from pathlib import Path
from mixer.io import iter_file, parse_json_text, read_bytes
p, mode = Path(sys.argv[1]), sys.argv[2]
t = time.perf_counter()
if mode == "stream":
    rows = n = 0
    for df, _ in iter_file(p, None, "raise"):  # each part dropped when the next comes, as a build spills it
        if not n:
            first = df.head(3).write_json()
        rows, n, last_origin = rows + df.height, n + 1, df["_origin"][-1]
else:
    df, _ = parse_json_text(read_bytes(p), p, "json", "raise")
    rows, n, first, last_origin = df.height, 1, df.head(3).write_json(), df["_origin"][-1]
print(rows, n, round(time.perf_counter() - t, 2), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
      hashlib.sha256(first.encode()).hexdigest()[:16], last_origin)
"""


def make(path: Path, mb: int) -> int:
    records = [r for f in FILES for r in json.loads((SHARED / f).read_text())]
    n = 0
    with path.open("w") as out:
        out.write("[\n")
        while out.tell() < mb * 1_000_000:
            r = dict(records[n % len(records)])
            r["instruction"] = f"{r['instruction']} ({n})"
            out.write((",\n" if n else "") + json.dumps(r, indent=1))
            n += 1
        out.write("\n]\n")
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=500)
    args = ap.parse_args()
    path = Path("/tmp") / f"mixer-json-array-{args.mb}mb.json"
    t = time.perf_counter()
    n = make(path, args.mb)
    print(f"data: {n:,} records, {path.stat().st_size / 1e6:,.0f} MB ({time.perf_counter() - t:.0f} s)", flush=True)
    runs = {}
    for mode in ("stream", "whole"):
        out = subprocess.run([sys.executable, "-c", CHILD, str(path), mode], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        rows, parts, secs, rss, head, last = out.stdout.split()
        runs[mode] = {"rows": int(rows), "parts": int(parts), "seconds": float(secs), "peak_rss_mb": int(rss), "head_sha": head, "last_origin": last}
        print(f"  {mode}: {int(rows):,} rows in {parts} part(s), {secs} s, peak RSS {rss} MB", flush=True)
    same = all(runs["stream"][k] == runs["whole"][k] for k in ("rows", "head_sha", "last_origin"))
    result = {
        "benchmark": "a JSON array file read by items (streaming) vs parsed whole, each in a fresh process",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average_end": round(os.getloadavg()[0], 1)},
        "data": {"records": n, "mb": round(path.stat().st_size / 1e6)},
        "runs": runs,
        "same_rows": same,
        "rss_ratio": round(runs["stream"]["peak_rss_mb"] / runs["whole"]["peak_rss_mb"], 3),
        "wall_ratio": round(runs["stream"]["seconds"] / runs["whole"]["seconds"], 3),
    }
    print(f"  stream/whole: peak RSS {result['rss_ratio']}, wall {result['wall_ratio']}; same rows: {same}")
    (ROOT / "benchmarks" / "results" / "json_array.json").write_text(json.dumps(result, indent=2) + "\n")
    path.unlink()


if __name__ == "__main__":
    main()
