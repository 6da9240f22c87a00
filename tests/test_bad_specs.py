"""Every bad spec of ``bad_specs.cases()`` (one mistake each, 90+): ``mixer build`` exits 2
with one line per problem, each ``FILE:LINE: KEY: message``, the first naming the expected
line and key; no traceback; nothing outside the build folder written or removed."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from bad_specs import Case, cases
from typer.testing import CliRunner

from helpers import alpaca_rows, write_jsonl
from mixer.cli import app

runner = CliRunner()
CASES = cases()


def _snapshot(root: Path) -> dict[str, tuple[bool, bytes]]:
    return {p.relative_to(root).as_posix(): (p.is_dir(), b"" if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def test_the_generator_makes_enough_distinct_cases() -> None:
    assert len(CASES) >= 60
    assert len({c.text if c.output is None else (c.text, c.output) for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_spec_is_one_line_error_and_writes_nothing(case: Case, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    write_jsonl(work / "a.jsonl", alpaca_rows(10))
    (work / "mydata").mkdir()
    (work / "mydata" / "notes.txt").write_text("keep")
    (tmp_path / "beside.txt").write_text("keep")
    spec = work / "spec.yaml"
    if isinstance(case.text, bytes):
        spec.write_bytes(case.text)
    else:
        spec.write_text(case.text)
    before = _snapshot(tmp_path)
    args = ["build", str(spec), "-q", *(["-o", case.output] if case.output else [])]
    old = Path.cwd()
    os.chdir(work)
    try:
        r = runner.invoke(app, args)
    finally:
        os.chdir(old)
    assert r.exit_code == 2, f"exit {r.exit_code}: {r.output}\n{r.exception!r}"
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert lines[0].startswith("error: ")
    first = lines[0].removeprefix("error: ")
    if case.line is not None:
        for ln in [first, *lines[1:]]:
            assert re.match(rf"^{re.escape(str(spec))}:\d+: \S", ln), ln
        assert first.startswith(f"{spec}:{case.line}: "), first
        assert case.key in first, first
    else:
        assert case.key in first, first
        assert len(lines) == 1
    assert _snapshot(tmp_path) == before
