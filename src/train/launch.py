"""``mixer train sft|dpo``: check everything cheap first (config, build, run folder), then
train in this process (one process) or under torchrun / accelerate (``--nproc N``)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from mixer_train.common import (
    check_model,
    check_quantization,
    free_port,
    load_tokenizer_with_template,
)
from mixer_train.config import ConfigError, load_config
from mixer_train.data import open_build
from mixer_train.run import RUN_FILE, Run, last_checkpoint, mark_failed, prepare_run

log = logging.getLogger("mixer_train")
LAUNCHERS = ("auto", "torchrun", "accelerate", "none")


def _recorded(output: Path | None) -> dict[str, Any]:
    if output is not None and (output / RUN_FILE).is_file():
        return json.loads((output / RUN_FILE).read_text())
    return {}


def launcher_command(launcher: str, nproc: int, run_dir: Path, resume_from: Path | None) -> list[str]:
    """The command that starts ``nproc`` workers."""
    worker = ["-m", "mixer_train.worker", str(run_dir)] + (["--resume-from", str(resume_from)] if resume_from else [])
    port = str(free_port())
    if launcher == "accelerate":
        # --multi_gpu only picks accelerate's torch.distributed launcher; on CPU the workers run
        # with use_cpu over gloo (--cpu would drop DeepSpeed for plain DDP). Precision comes
        # from the training arguments.
        return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(nproc),
                "--num_machines", "1", "--main_process_port", port, "--mixed_precision", "no", "--dynamo_backend", "no",
                *worker]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1",
            "--master_port", port, *worker]


def launch(
    kind: str,
    build: str | Path | None,
    model: str | None,
    config: str | None = None,
    overrides: dict[str, Any] | None = None,
    output: str | Path | None = None,
    nproc: int = 1,
    resume: bool = False,
    tokenizer: str | None = None,
    launcher: str = "auto",
    progress: bool | None = None,
) -> Run:
    """Validate and run a training job; returns the run (folder, recorded info)."""
    if launcher not in LAUNCHERS:
        raise ConfigError(f"--launcher must be one of {', '.join(LAUNCHERS)}")
    if nproc < 1:
        raise ConfigError("--nproc must be at least 1")
    if launcher == "none" and nproc > 1:
        raise ConfigError("--launcher none runs one process; use torchrun or accelerate for --nproc > 1")
    out = Path(output).expanduser() if output else None
    recorded = _recorded(out) if resume else {}
    if recorded and recorded.get("kind") != kind:
        raise ConfigError(f"--resume: {out} is a {recorded.get('kind')} run; continue it with `mixer train {recorded.get('kind')}`")
    build = build or recorded.get("build")
    model = model or recorded.get("model")
    tokenizer = tokenizer or (recorded.get("tokenizer") if recorded else None)
    if build is None or model is None:
        raise ConfigError("--build and --model are required (they may be omitted only with --resume)")
    config_given = config is not None or bool(overrides)
    if resume and recorded and not config_given:
        from mixer_train.config import TrainConfig

        cfg = TrainConfig(**recorded["config"])
    else:
        cfg = load_config(config, overrides, kind=kind)
    cfg.grad_accum(nproc)  # fail now, not in every rank
    check_quantization(cfg)
    b = open_build(build, kind="sft" if kind == "sft" else "preference")
    check_model(str(model))
    load_tokenizer_with_template(str(tokenizer or model), cfg.template)  # a template it cannot take fails here
    if Path(str(model)).expanduser().exists():  # recorded absolute: resume and the card work from anywhere
        model = str(Path(str(model)).expanduser().resolve())
    if out is None:
        out = Path("runs") / f"{b.manifest.get('name') or b.path.name}-{kind}"
    run = prepare_run(out, b, cfg, model, tokenizer, resume, config_given)
    resume_from = last_checkpoint(run.folder) if resume else None
    if resume and resume_from is None:
        log.warning("--resume: no complete checkpoint in %s; starting from step 0", run.folder)
    run.info.update(nproc=nproc, launcher=launcher)
    run.save()
    try:
        _start(run, nproc, launcher, resume_from, progress)
    except BaseException as e:
        mark_failed(run.folder, e)
        raise
    return Run(run.folder, json.loads((run.folder / RUN_FILE).read_text()))


def _start(run: Run, nproc: int, launcher: str, resume_from: Path | None, progress: bool | None) -> None:
    if nproc == 1 and launcher in ("auto", "none"):
        from mixer_train.worker import train

        train(run.folder, str(resume_from) if resume_from else None, progress=progress)
    else:
        cmd = launcher_command("torchrun" if launcher == "auto" else launcher, nproc, run.folder, resume_from)
        # PYTHONSAFEPATH: `python -m` would put the working directory first on sys.path, so a
        # user's file named like one of our modules could replace it in every worker
        env = dict(os.environ, PYTHONSAFEPATH="1")
        if progress is False:
            env["MIXER_PROGRESS"] = "0"
        rc = subprocess.run(cmd, env=env).returncode
        if rc != 0:
            raise RuntimeError(f"training failed (exit {rc}); command: {' '.join(cmd)}")
