"""The polars thread count changes nothing: builds with POLARS_MAX_THREADS 1, 2, 16 and 32
give byte-identical outputs. (The pool size is fixed when polars is imported, hence one
process per setting.) With 16+ threads this spec used to panic in ``dedup.clusters.split``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import write_spec


def test_thread_count_does_not_change_the_build(shared_data: Path, tmp_path: Path) -> None:
    gpteacher = shared_data / "train" / "gpteacher"
    spec = write_spec(tmp_path, {
        "name": "threads", "seed": 7,
        "sources": {"gpteacher": {"load": {"path": str(gpteacher / "*" / "*.json")}, "format": {"name": "alpaca", "output": "response"}}},
        "mix": [{"minhash": {}}, {"exact_dedup": {}}],
    })
    outputs: dict[int, dict[str, bytes]] = {}
    for threads in (1, 2, 16, 32):
        out = tmp_path / f"t{threads}"
        env = {**os.environ, "POLARS_MAX_THREADS": str(threads)}
        proc = subprocess.run([sys.executable, "-m", "mixer.cli", "build", str(spec), "-o", str(out), "-q"], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{threads} threads: {proc.stderr[-2000:]}"
        outputs[threads] = {f: (out / f).read_bytes() for f in ("mixture.parquet", "removed.parquet", "dedup/minhash.clusters.parquet")}
    assert len(outputs[1]["removed.parquet"]) > 1000  # near and exact duplicates were found
    for threads in (2, 16, 32):
        for name, blob in outputs[threads].items():
            assert blob == outputs[1][name], f"{name} differs between 1 and {threads} threads"
