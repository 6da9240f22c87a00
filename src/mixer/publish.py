"""Where a build may write, and how a finished build replaces the old one.

A build never touches what it did not write. It builds in a hidden temp folder beside the
output (``.NAME.tmp-PID-NS``) and publishes by renaming: the old build, if any, is renamed
to ``.NAME.old-PID-NS``, the temp folder to ``NAME``, then the old one is deleted. The
output may be replaced only when it is missing, an empty folder, or an earlier mixer build
(a complete ``manifest.json`` whose ``written`` list covers every file in the folder but
what mixer's tools add later, ``DERIVED``; older builds without that list qualify by their
manifest alone). Anything else is refused unless ``force``: then the build's files are
moved into the folder one by one, replacing files of the same name, and nothing else in it
is removed. A kill during that merge leaves no complete manifest (it is written last).

A kill at any point leaves at most one hidden folder per dead process. ``recover`` (run by
the next build and when a build folder is opened) puts a renamed-away old build back when
the output is missing, and deletes the temp/old folders of processes that are gone; only
the published folder is ever read as a build. (Liveness is a local PID check: builds of
one output from several machines on shared storage are not supported.)

``MIXER_TEST_PAUSE_AT=<point>`` makes a build print ``mixer-test-paused-at <point>`` to
stderr and sleep at that point (``tmp-complete``, ``old-renamed``, ``published``), so a
test can SIGKILL it inside the publish window.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

MANIFEST = "manifest.json"
# What mixer's own tools add to a finished build (stats cache, report, saved stats).
DERIVED = frozenset({".cache", "report", "stats.json"})
_HIDDEN = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-(?P<ns>\d+)$")


class OutputError(ValueError):
    """The output path cannot take a build (it holds files no build wrote, is a file, ...)."""


def is_hidden_work_dir(path: Path) -> bool:
    """True for ``.NAME.tmp-*`` / ``.NAME.old-*``: never a build, whatever they hold."""
    return _HIDDEN.match(Path(path).name) is not None


def _pause(point: str) -> None:
    if os.environ.get("MIXER_TEST_PAUSE_AT") == point:
        print(f"mixer-test-paused-at {point}", file=sys.stderr, flush=True)
        time.sleep(float(os.environ.get("MIXER_TEST_PAUSE_S", "60")))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (ours counts; another user's too)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _siblings(output: Path) -> list[tuple[str, int, int, Path]]:
    """(kind, pid, ns, path) of the hidden folders that belong to ``output``."""
    if not output.parent.is_dir():
        return []
    out = []
    for p in output.parent.iterdir():
        m = _HIDDEN.match(p.name)
        if m and m["name"] == output.name:
            out.append((m["kind"], int(m["pid"]), int(m["ns"]), p))
    return out


def _manifest(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("complete") is True and isinstance(data.get("files"), dict) else None


def recover(output: str | Path) -> None:
    """Undo what a killed build left beside ``output``: restore a renamed-away old build
    when the output is missing, delete temp/old folders of processes that are gone."""
    output = Path(output)
    dead = [s for s in _siblings(output) if not pid_alive(s[1])]
    if not dead:
        return
    if not output.exists() and not output.is_symlink():
        olds = sorted((s for s in dead if s[0] == "old" and _manifest(s[3]) is not None), key=lambda s: s[2])
        if olds:
            olds[-1][3].rename(output)
            dead = [s for s in dead if s is not olds[-1]]
    for _, _, _, p in dead:
        shutil.rmtree(p, ignore_errors=True)


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}


def _is_build(folder: Path) -> bool:
    """A complete mixer build holding nothing but what a build wrote."""
    manifest = _manifest(folder)
    if manifest is None:
        return False
    written = manifest.get("written")
    if written is None:  # a build from before the inventory: its manifest is the proof
        return True
    extra = _files(folder) - set(written) if isinstance(written, list) else {""}
    return all(f.split("/", 1)[0] in DERIVED for f in extra)


def check_output(output: str | Path, force: bool = False) -> None:
    """Raise OutputError unless a build may be published at ``output``."""
    output = Path(output)
    if is_hidden_work_dir(output):
        raise OutputError(f"{output}: a hidden work folder of a build, not an output folder")
    if output.is_symlink():
        raise OutputError(f"{output}: is a symbolic link; give the folder it points to")
    if not output.exists():
        return
    if not output.is_dir():
        raise OutputError(f"{output}: is a file, not a build folder; choose another output")
    here = Path.cwd().resolve()
    if output.resolve() == here or output.resolve() in here.parents:
        raise OutputError(f"{output}: is the working folder or one above it; choose another output")
    if force or _is_build(output) or not any(output.iterdir()):
        return
    raise OutputError(f"{output}: exists and is not a mixer build (it holds files no build wrote); "
                      "choose another output, empty it, or pass --force to add the build's files to it")


def prepare(output: str | Path, force: bool = False) -> Path:
    """Recover what killed builds left, check the output, and make the temp folder."""
    output = Path(output)
    if output.parent.is_dir():
        recover(output)
    check_output(output, force)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.parent / f".{output.name}.tmp-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir()
    return tmp


def publish(tmp: Path, output: Path, manifest: dict, force: bool = False) -> None:
    """Write the manifest (with the ``written`` inventory) and put ``tmp`` in place."""
    manifest["written"] = sorted(_files(tmp) | {MANIFEST})
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    _pause("tmp-complete")
    check_output(output, force)  # the output may have changed while the build ran
    if output.exists() and not _is_build(output) and any(output.iterdir()):
        _merge_into(tmp, output)
        return
    old = None
    if output.exists():
        old = output.parent / f".{output.name}.old-{os.getpid()}-{time.time_ns()}"
        output.rename(old)
        _pause("old-renamed")
    try:
        tmp.rename(output)
    except OSError:
        if old is not None and not output.exists():
            old.rename(output)  # another build got there first, or the disk failed: keep the old one
        raise
    _pause("published")
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _merge_into(tmp: Path, output: Path) -> None:
    """``force`` into a folder with other files: replace only the build's own files, the
    manifest last (a kill before it leaves no complete manifest), and remove nothing else."""
    (output / MANIFEST).unlink(missing_ok=True)
    for rel in sorted(_files(tmp) - {MANIFEST}):
        dst = output / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_dir() and not dst.is_symlink():
            raise OutputError(f"{dst}: a folder where the build writes a file; move it away")
        os.replace(tmp / rel, dst)
    os.replace(tmp / MANIFEST, output / MANIFEST)
    shutil.rmtree(tmp, ignore_errors=True)


def discard(tmp: Path) -> None:
    """Remove the temp folder of a build that failed."""
    shutil.rmtree(tmp, ignore_errors=True)
