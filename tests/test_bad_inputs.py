"""The bad-input suite: every case of ``bad_inputs.py`` under ``on_error: raise`` and
``skip``, built in-process. Each run either fails with one line naming the file (and line
or index where one exists) or builds with ``read = kept + removed``, the removals under the
expected reasons, no garbled text in the mixture, and nothing written or removed outside
the build folder. A few cases run through the CLI to check that no traceback is printed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from bad_inputs import MODES, Case, all_cases

from helpers import write_spec
from mixer.io import InputError
from mixer.json_values import NOT_TEXT_OPEN
from mixer.pipeline import build
from mixer.spec import SpecError, load_spec

CASES = all_cases()


def snapshot(root: Path, skip: set[str]) -> dict[str, tuple[int, str]]:
    """Every file under ``root`` (but the named top-level entries): size and digest."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        if rel == Path("."):
            dirnames[:] = [d for d in dirnames if d not in skip]
        for f in filenames:
            p = Path(dirpath) / f
            if rel == Path(".") and f in skip:
                continue
            out[str(p.relative_to(root))] = (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def write_case(case: Case, root: Path) -> None:
    for name, data in case.files.items():
        (root / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "data" / name).write_bytes(data)


def case_spec(case: Case, root: Path, mode: str) -> Path:
    source = json.loads(json.dumps(case.source))
    source["load"]["path"] = "data/" + source["load"]["path"]
    return write_spec(root, {"name": "bad", "seed": 1, "sources": {"s": {**source, "on_error": mode}}}, f"{mode}.yaml")


def check_built(out: Path, case: Case, mode: str) -> pl.DataFrame:
    exp = case.expect[mode]
    manifest = json.loads((out / "manifest.json").read_text())
    mix, removed = pl.read_parquet(out / "mixture.parquet"), pl.read_parquet(out / "removed.parquet")
    info = manifest["sources"]["s"]
    assert info["read"] == info["kept"] + sum(info["removed"].values()), info
    assert info["kept"] == mix.height and sum(info["removed"].values()) == removed.height
    assert mix["id"].n_unique() == mix.height and removed["id"].n_unique() == removed.height
    assert mix.height == exp.kept, (mix.height, removed.select("reason", "detail").rows())
    assert set(removed["reason"]) == set(exp.reasons), removed.select("reason", "detail").rows()
    assert removed["detail"].is_not_null().all()
    cols = ["messages"] if "messages" in mix.columns else ["chosen", "rejected"]
    for c in cols:
        text = mix[c].list.eval(pl.element().struct.field("content")).explode().drop_nulls()
        assert not text.str.contains(NOT_TEXT_OPEN, literal=True).any()
        assert not text.str.contains("\x00", literal=True).any() or case.id == "jsonl/nul_escape_in_text"
    return mix


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path) -> None:
    write_case(case, tmp_path)
    kept: dict[str, pl.DataFrame] = {}
    for mode in MODES:
        spec = case_spec(case, tmp_path, mode)
        out = f"out_{mode}"
        before = snapshot(tmp_path, {out})
        exp = case.expect[mode]
        try:
            res = build(load_spec(spec), tmp_path / out)
        except (InputError, SpecError, ValueError) as e:
            msg = str(e)
            assert exp.kind == "error", f"{mode}: unexpected error: {msg}"
            assert "\n" not in msg.strip(), msg
            for needle in exp.needles:
                assert needle in msg, (needle, msg)
        else:
            assert exp.kind == "built", f"{mode}: built, expected an error with {exp.needles}"
            kept[mode] = check_built(res.output, case, mode)
        assert snapshot(tmp_path, {out}) == before, "files outside the build folder changed"
    if len(kept) == 2:  # raise and skip agree on every record they both keep
        both = set(kept["raise"]["id"]) & set(kept["skip"]["id"])
        pick = {m: kept[m].filter(pl.col("id").is_in(list(both))).sort("id") for m in MODES}
        assert pick["raise"].equals(pick["skip"])


def test_suite_is_big_and_varied() -> None:
    families = {c.id.split("/")[0] for c in CASES}
    assert len(CASES) >= 120 and {"compressed", "table", "jsonl", "json", "types", "parts", "encoding", "schema", "glob", "filetype"} <= families
    for fmt in ("alpaca", "messages", "sharegpt", "pairs", "oasst"):
        assert sum(c.id.startswith(f"types/{fmt}/") for c in CASES) >= 5, fmt


CLI_CASES = ["compressed/gz_half.jsonl.gz", "compressed/zst_last_frame_cut.jsonl.zst", "table/garbage.parquet", "table/empty.csv", "jsonl/broken_middle", "types/messages_field/all_strings"]


@pytest.mark.parametrize("case_id", CLI_CASES)
def test_cli_prints_one_line_and_no_traceback(case_id: str, tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == case_id)
    write_case(case, tmp_path)
    spec = case_spec(case, tmp_path, "skip" if case_id.startswith("compressed") else "raise")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "COLUMNS": "400"}
    r = subprocess.run([sys.executable, "-m", "mixer.cli", "build", str(spec), "-o", str(tmp_path / "out"), "--quiet"], capture_output=True, text=True, env=env, timeout=120)
    err = (r.stdout + r.stderr).strip()
    assert r.returncode != 0
    assert "Traceback" not in err and "Aborted" not in err, err
    assert len(err.splitlines()) == 1, err
    assert Path(next(iter(case.files))).name in err, err
