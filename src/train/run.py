"""The run folder: what was trained on, with what, and where to resume.

``run.json`` holds the resolved config, the model, the build path and its spec hash; the
build's manifest is copied beside it, so a checkpoint can always be traced back to the exact
mixture. Resume trusts only checkpoints carrying the completion marker; a newer unmarked one
(a process killed while saving) is moved aside, never loaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixer_train.callbacks import MARKER
from mixer_train.config import TrainConfig
from mixer_train.data import Build

RUN_FILE = "run.json"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


class RunError(RuntimeError):
    """The run folder cannot be used as asked (exists without --resume, different build...)."""


@dataclass
class Run:
    folder: Path
    info: dict[str, Any]

    @property
    def config(self) -> TrainConfig:
        return TrainConfig(**self.info["config"])

    @property
    def metrics(self) -> Path:
        return self.folder / "metrics.jsonl"

    def save(self) -> None:
        tmp = self.folder / (RUN_FILE + ".tmp")
        tmp.write_text(json.dumps(self.info, indent=2, default=str))
        tmp.replace(self.folder / RUN_FILE)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("mixer", "torch", "transformers", "trl", "deepspeed", "accelerate", "peft", "datasets"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _config_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def prepare_run(
    folder: str | Path,
    build: Build,
    cfg: TrainConfig,
    model: str,
    tokenizer: str | None,
    resume: bool,
    config_given: bool,
) -> Run:
    """Create (or, with ``resume``, reopen and check) the run folder."""
    folder = Path(folder).expanduser().resolve()
    run_file = folder / RUN_FILE
    if resume:
        if not run_file.is_file():
            raise RunError(f"--resume: {folder} has no {RUN_FILE}; nothing to resume")
        run = Run(folder, json.loads(run_file.read_text()))
        if run.info["spec_hash"] != build.spec_hash:
            raise RunError(
                f"--resume: {folder} was trained on a build with spec hash {run.info['spec_hash']}, "
                f"but {build.path} has {build.spec_hash}; use a new --output"
            )
        if config_given:
            diff = _config_diff(run.info["config"], cfg.model_dump())
            if diff:
                raise RunError(f"--resume: the config differs from the recorded run in {diff}; use a new --output")
        run.info["resumed"] = [*run.info.get("resumed", []), time.strftime("%Y-%m-%dT%H:%M:%S")]
        run.info.update(status="running", pid=os.getpid(), host=socket.gethostname())
        run.save()
        return run
    if folder.exists() and any(folder.iterdir()):
        if not _clear_failed_attempt(folder):
            raise RunError(f"{folder} already holds a run; pass --resume to continue it or choose another --output")
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(build.path / "manifest.json", folder / "build_manifest.json")
    (folder / "spec_hash").write_text(build.spec_hash + "\n")
    run = Run(
        folder,
        {
            "kind": cfg.kind,
            "model": model,
            "tokenizer": tokenizer or model,
            "build": str(build.path),
            "build_name": build.manifest.get("name"),
            "build_rows": build.rows,
            "spec_hash": build.spec_hash,
            "config": cfg.model_dump(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "versions": _versions(),
            "status": "running",
            "pid": os.getpid(),
            "host": socket.gethostname(),
        },
    )
    run.save()
    return run


# What a run writes before its first checkpoint (tensorboard events go to runs/)
_EARLY_FILES = {RUN_FILE, RUN_FILE + ".tmp", "build_manifest.json", "spec_hash", "metrics.jsonl", "runs", "README.md",
                "training_args.json"}


def _clear_failed_attempt(folder: Path) -> bool:
    """Remove what an attempt that never reached a checkpoint left (it failed or was killed),
    so it cannot block the next one. Only a folder holding nothing but those files counts;
    anything else in it (a checkpoint, a final model, a user's file) is kept."""
    run_file = folder / RUN_FILE
    if not run_file.is_file():
        return False
    try:
        info = json.loads(run_file.read_text())
        status = info.get("status")
    except (ValueError, OSError, AttributeError):
        return False
    names = {p.name for p in folder.iterdir()}
    if status == "complete" or not names <= _EARLY_FILES or (status == "running" and _alive(info)):
        return False
    for name in names:
        p = folder / name
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return True


def _alive(info: dict[str, Any]) -> bool:
    """Whether the process that started the run still runs (same host, pid exists)."""
    from mixer.publish import pid_alive

    pid = info.get("pid")
    return isinstance(pid, int) and info.get("host") == socket.gethostname() and pid_alive(pid)


def mark_failed(folder: Path, error: BaseException) -> None:
    """Record in run.json that the attempt ended without finishing."""
    run_file = folder / RUN_FILE
    try:
        run = Run(folder, json.loads(run_file.read_text()))
    except (ValueError, OSError):
        return
    if run.info.get("status") != "complete":
        run.info.update(status="failed", error=f"{type(error).__name__}: {error}".splitlines()[0][:500])
        run.save()


def load_run(folder: str | Path) -> Run:
    folder = Path(folder)
    return Run(folder, json.loads((folder / RUN_FILE).read_text()))


def checkpoints(folder: Path) -> list[tuple[int, Path, bool]]:
    """``(step, path, complete)`` for every ``checkpoint-N``, oldest first."""
    out = []
    for p in folder.iterdir() if folder.is_dir() else []:
        m = _CKPT.match(p.name)
        if m and p.is_dir():
            out.append((int(m.group(1)), p, (p / MARKER).is_file() and (p / "trainer_state.json").is_file()))
    return sorted(out)


def last_checkpoint(folder: Path, quarantine: bool = True) -> Path | None:
    """Newest complete checkpoint; newer incomplete ones are renamed ``*.incomplete``."""
    found = checkpoints(folder)
    complete = [p for _, p, ok in found if ok]
    last = complete[-1] if complete else None
    if quarantine:
        last_step = int(_CKPT.match(last.name).group(1)) if last else -1
        for step, p, ok in found:
            if not ok and step > last_step:
                p.rename(p.with_name(f"{p.name}.incomplete-{int(time.time())}"))
    return last
