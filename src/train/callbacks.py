"""What a run tells the user while it runs: a rich progress line with loss and tokens/s,
every log record appended to ``metrics.jsonl``, and a marker written into each checkpoint
once it is complete on every rank (resume trusts only marked checkpoints)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

MARKER = "mixer_checkpoint.json"


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class MetricsCallback(TrainerCallback):
    """Appends one JSON line per log event and adds ``tokens_per_second`` (all ranks)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._last: tuple[float, float] | None = None  # (time, num_tokens)
        self.last_logs: dict[str, Any] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = (time.perf_counter(), 0.0)
        if state.is_world_process_zero:  # a resumed run starts at its checkpoint's step
            self._write({"event": "train_begin", "step": state.global_step, "max_steps": state.max_steps, "time": time.time()})

    def _write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None:
            return
        now = time.perf_counter()
        if "num_tokens" in logs and self._last is not None:
            t0, n0 = self._last
            n = float(logs["num_tokens"])
            # TRL's counter restarts at 0 in a resumed run
            done = n - n0 if n >= n0 else n
            if now > t0:
                logs["tokens_per_second"] = round(done / (now - t0), 2)
            self._last = (now, n)
        self.last_logs = dict(logs)
        if state.is_world_process_zero:
            self._write({"step": state.global_step, "epoch": state.epoch, "time": time.time(), **logs})


class RichProgressCallback(TrainerCallback):
    """One progress bar on the main process: step, loss, tokens/s, time left."""

    def __init__(self, metrics: MetricsCallback, enabled: bool = True):
        self.metrics = metrics
        self.enabled = enabled
        self.progress = None
        self.task = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not (self.enabled and state.is_world_process_zero):
            return
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]train[/bold] {task.completed}/{task.total}"),
            BarColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, stats="")

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None:
            return
        m = self.metrics.last_logs
        parts = []
        if "loss" in m:
            parts.append(f"loss {m['loss']:.4f}")
        if "rewards/margins" in m:
            parts.append(f"margin {m['rewards/margins']:.4f}")
        if "tokens_per_second" in m:
            parts.append(f"{m['tokens_per_second']:.0f} tok/s")
        self.progress.update(self.task, stats="  ".join(parts))

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)
            self.progress.stop()
            self.progress = None


class CheckpointMarker(TrainerCallback):
    """Marks ``checkpoint-N`` complete after every rank has written its part."""

    def __init__(self, spec_hash: str):
        self.spec_hash = spec_hash

    def on_save(self, args, state, control, **kwargs):
        _barrier()
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                tmp = folder / (MARKER + ".tmp")
                tmp.write_text(json.dumps({"step": state.global_step, "spec_hash": self.spec_hash, "time": time.time()}))
                tmp.replace(folder / MARKER)
        _barrier()
