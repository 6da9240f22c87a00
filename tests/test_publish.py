"""A build writes only its own output folder: it replaces an earlier build or an empty
folder, refuses anything else (``--force`` adds files, never removes any), and a SIGKILL at
any point, the publish window included, is undone by the next build or by opening the build.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import alpaca_rows, write_jsonl, write_spec
from mixer.build_dir import BuildDir, IncompleteBuild
from mixer.cli import app
from mixer.pipeline import build
from mixer.publish import OutputError
from mixer.spec import SpecError, load_spec

runner = CliRunner()
OUTPUTS = ("mixture.parquet", "removed.parquet")


def _spec(folder: Path, **extra: object) -> Path:
    write_jsonl(folder / "a.jsonl", alpaca_rows(30))
    spec = {"name": "t", "seed": 1, **extra, "sources": {"a": {"load": {"path": "a.jsonl"}, "format": "alpaca", "sample": {"n": 20}}}}
    return write_spec(folder, spec)


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(args: list[str], cwd: Path) -> tuple[int, str]:
    old = Path.cwd()
    os.chdir(cwd)
    try:
        r = runner.invoke(app, args)
    finally:
        os.chdir(old)
    return r.exit_code, " ".join(r.output.split())


# ---------------------------------------------------------------- what may be replaced


def test_folder_with_user_files_is_refused_and_kept(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    mine = tmp_path / "mydata"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    before = _tree(tmp_path)
    code, out = _cli(["build", str(spec), "-o", str(mine), "-q"], tmp_path)
    assert code == 2 and f"error: {mine}: exists and is not a mixer build" in out and "Traceback" not in out
    assert _tree(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "mydata", "spec.yaml"]


@pytest.mark.parametrize("output", [".", "..", "../..", "sub", "a.jsonl"])
def test_spec_output_that_is_not_a_build_is_refused(tmp_path: Path, output: str) -> None:
    """``output:`` in the spec: its own folder, a folder above (traversal), a folder with
    files, a file. Paths resolve against the working folder, here ``work/``."""
    work = tmp_path / "work" / "deep"
    work.mkdir(parents=True)
    (work / "sub").mkdir()
    (work / "sub" / "keep.txt").write_text("x")
    spec = _spec(work, output=output)
    (tmp_path / "top.txt").write_text("top")
    before = _tree(tmp_path)
    code, out = _cli(["build", str(spec), "-q"], work)
    assert code == 2 and out.startswith(f"error: {output}:"), out
    assert _tree(tmp_path) == before


def test_output_that_is_a_file_is_not_moved(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    f = tmp_path / "out"
    f.write_text("mine")
    with pytest.raises(OutputError, match="is a file"):
        build(load_spec(spec), f)
    assert f.read_text() == "mine" and not list(tmp_path.glob(".out.*"))


@pytest.mark.parametrize("name", ["../../victims/byname", "", ".", "..", "a/b", "a\\b", " x"])
def test_name_must_be_a_plain_folder_name(tmp_path: Path, name: str) -> None:
    spec = _spec(tmp_path)
    spec.write_text(spec.read_text().replace("name: t", f"name: {json.dumps(name)}"))
    with pytest.raises(SpecError, match=r"spec\.yaml:1: name: name .* must be a plain folder name"):
        load_spec(spec)


def test_earlier_build_and_empty_folder_are_replaced(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    build(load_spec(spec), out)
    first = _tree(out)
    (out / ".cache").mkdir()
    (out / ".cache" / "stats.parquet").write_bytes(b"derived")  # what mixer's tools add later
    build(load_spec(spec), out)
    assert {k: v for k, v in _tree(out).items() if k != "manifest.json"} == {k: v for k, v in first.items() if k != "manifest.json"}
    assert json.loads((out / "manifest.json").read_text())["written"] == sorted(["manifest.json", "README.md", *OUTPUTS])


def test_build_holding_a_user_file_is_refused(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    out = tmp_path / "out"
    build(load_spec(spec), out)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a mixer build"):
        build(load_spec(spec), out)
    assert (out / "notes.txt").read_text() == "mine"


def test_force_adds_the_build_and_removes_nothing(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    mine = tmp_path / "mydata"
    (mine / "deep").mkdir(parents=True)
    (mine / "notes.txt").write_text("keep")
    (mine / "deep" / "x.bin").write_bytes(b"\x00\x01")
    (mine / "mixture.parquet").write_text("an old file of the same name is replaced")
    code, out = _cli(["build", str(spec), "-o", str(mine), "-q", "--force"], tmp_path)
    assert code == 0, out
    assert (mine / "notes.txt").read_text() == "keep" and (mine / "deep" / "x.bin").read_bytes() == b"\x00\x01"
    BuildDir(mine, verify=True)
    # Still holds the user's files: a plain build refuses it, --force again keeps them.
    code, out = _cli(["build", str(spec), "-o", str(mine), "-q"], tmp_path)
    assert code == 2 and "not a mixer build" in out
    code, out = _cli(["build", str(spec), "-o", str(mine), "-q", "--force"], tmp_path)
    assert code == 0 and (mine / "notes.txt").read_text() == "keep"
    assert not list(tmp_path.glob(".mydata.*"))


def test_api_force_flag(tmp_path: Path) -> None:
    import mixer

    spec = _spec(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    with pytest.raises(OutputError):
        mixer.build(spec, mine, progress=False)
    m = mixer.build(spec, mine, progress=False, force=True)
    assert len(m) == 20 and (mine / "keep.txt").read_text() == "x"


# ---------------------------------------------------------------- kill -9 and recovery


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_hidden_work_folders_are_never_builds(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    build(load_spec(spec), tmp_path / "out")
    for hidden in (f".out.tmp-{_dead_pid()}-1", f".out.old-{_dead_pid()}-2"):
        copy = tmp_path / "copy" / hidden
        copy.parent.mkdir(exist_ok=True)
        subprocess.run(["cp", "-r", str(tmp_path / "out"), str(copy)], check=True)
        with pytest.raises(IncompleteBuild, match="hidden work folder"):
            BuildDir(copy)


def test_opening_recovers_a_build_renamed_away(tmp_path: Path) -> None:
    """The state a kill between the two renames leaves: no output, a complete old and tmp."""
    spec = _spec(tmp_path)
    out = tmp_path / "out"
    build(load_spec(spec), out)
    ref = _tree(out)
    subprocess.run(["cp", "-r", str(out), str(tmp_path / f".out.tmp-{_dead_pid()}-5")], check=True)
    out.rename(tmp_path / f".out.old-{_dead_pid()}-4")
    live = tmp_path / f".out.tmp-{os.getpid()}-9"  # a build running now: left alone
    live.mkdir()
    code, text = _cli(["show", str(out), "-n", "1"], tmp_path)
    assert code == 0, text
    assert _tree(out) == ref
    assert sorted(p.name for p in tmp_path.glob(".out.*")) == [live.name]


def _start(spec: Path, out: Path, pause: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "MIXER_TEST_PAUSE_S": "60"}
    env.pop("MIXER_TEST_PAUSE_AT", None)
    if pause:
        env["MIXER_TEST_PAUSE_AT"] = pause
    cmd = [sys.executable, "-m", "mixer.cli", "build", str(spec), "-o", str(out), "-q"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_at_pause(proc: subprocess.Popen, pause: str) -> None:
    seen = []
    for line in proc.stderr:  # warnings may come first
        seen.append(line)
        if line.strip() == f"mixer-test-paused-at {pause}":
            break
    else:
        pytest.fail(f"the build never paused at {pause}: {''.join(seen)[-2000:]}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _wait_for_tmp(proc: subprocess.Popen, out: Path) -> float:
    """Seconds until the build's temp folder exists (or it ended)."""
    t0, deadline = time.monotonic(), time.monotonic() + 60
    while proc.poll() is None and not list(out.parent.glob(f".{out.name}.tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.002)
    return time.monotonic() - t0


def _timed_run(spec: Path, out: Path) -> tuple[float, float]:
    """(seconds to the temp folder, seconds from there to the published output) of an
    uninterrupted build."""
    proc = _start(spec, out)
    start = _wait_for_tmp(proc, out)
    t0 = time.monotonic()
    while proc.poll() is None and not out.exists():
        time.sleep(0.002)
    window = time.monotonic() - t0
    assert proc.wait() == 0, proc.stderr.read()
    return start, window


def _kill_trials(repo: Path, tmp_path: Path, pauses: list[str], random_trials: int) -> tuple[int, int]:
    """(trials, how many left hidden folders behind): every kill is followed by a build
    that must give the uninterrupted build's bytes and leave no hidden folder. Random
    kills fall mostly inside the build (timed on an uninterrupted run), some anywhere."""
    spec = repo / "mixtures" / "sample.yaml"
    ref = tmp_path / "ref" / "out"
    ref.parent.mkdir()
    start, window = _timed_run(spec, ref)
    want = {f: (ref / f).read_bytes() for f in OUTPUTS}
    rng = random.Random(13)
    # "old-renamed" exists only when a build is replaced.
    plan = [("pause", p, replace) for p in pauses for replace in (False, True) if replace or p != "old-renamed"] + [("random", None, rng.random() < 0.5) for _ in range(random_trials)]
    left = 0
    print(f"build window {window:.3f} s after {start:.2f} s of start-up")
    for i, (how, pause, replace) in enumerate(plan):
        out = tmp_path / f"t{i}" / "out"
        out.parent.mkdir()
        if replace:  # an earlier build of another spec sits there: the kill must not lose it
            build(load_spec(_spec(out.parent)), out)
        proc = _start(spec, out, pause)
        if how == "pause":
            _kill_at_pause(proc, pause)
        else:
            if rng.random() < 0.85:
                _wait_for_tmp(proc, out)
                time.sleep(rng.uniform(0, window * 1.2))
            else:
                time.sleep(rng.uniform(0, start + window))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        left += bool(list(out.parent.glob(".out.*")))
        # Opening the output never sees a half-published build.
        if out.exists():
            BuildDir(out, verify=True)
        build(load_spec(spec), out)
        for f in OUTPUTS:
            assert (out / f).read_bytes() == want[f], f"trial {i} ({how} {pause}): {f} differs"
        assert sorted(p.name for p in out.parent.iterdir()) == sorted(["out", *(["a.jsonl", "spec.yaml"] if replace else [])]), f"trial {i}"
    print(f"{len(plan)} kills, {left} left hidden folders, all recovered")
    return len(plan), left


PAUSES = ["tmp-complete", "old-renamed", "published"]


def test_kill_9_in_the_publish_window_and_at_random(repo: Path, tmp_path: Path) -> None:
    """5 deterministic kills in the publish window + 10 random ones (the slow test: 45 in all)."""
    trials, left = _kill_trials(repo, tmp_path, PAUSES, 10)
    assert trials == 15 and left >= 5, left  # 4 from the pauses, the rest random kills inside the build


@pytest.mark.slow
def test_kill_9_many_random_points(repo: Path, tmp_path: Path) -> None:
    trials, left = _kill_trials(repo, tmp_path, PAUSES, 40)
    assert trials == 45 and left >= 15, left
