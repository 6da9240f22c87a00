"""What a run tells the user while it runs: loss, learning rate, tokens/s and ETA on the
console (rich), a summary table at the end, every log record appended to ``metrics.jsonl``,
and a marker written into each checkpoint once it is complete on every rank (resume trusts
only marked checkpoints)."""

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


class PaddingCounter:
    """Wraps the trainer's collator to count real tokens against tensor slots (padding waste)."""

    def __init__(self, collate):
        self.collate = collate
        self.real = 0
        self.slots = 0

    def __call__(self, features):
        batch = self.collate(features)
        ids = batch.get("input_ids")
        if ids is not None:
            self.slots += ids.numel()
            mask = batch.get("attention_mask")
            self.real += int(mask.sum()) if mask is not None else ids.numel()  # padding-free: no pad slots
        return batch

    @property
    def waste(self) -> float | None:
        return 1 - self.real / self.slots if self.slots else None


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process and its children (GiB), and of the GPU when used."""
    import resource

    import torch

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = {"peak_rss_gib": round(kib / 2**20, 3)}
    if torch.cuda.is_available():
        out["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class RichProgressCallback(TrainerCallback):
    """Live feedback on the main process: a progress bar with loss, learning rate, tokens/s
    and time left on a terminal, one line per log event elsewhere (CI, Slurm logs); then a
    summary table (steps, tokens, wall time, padding waste, peak memory)."""

    def __init__(self, metrics: MetricsCallback, enabled: bool = True, counter: PaddingCounter | None = None):
        self.metrics = metrics
        self.enabled = enabled
        self.counter = counter
        self.console = None
        self.progress = None
        self.task = None
        self.t0 = 0.0
        self.step0 = 0
        self.summary: dict[str, Any] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0, self.step0 = time.perf_counter(), state.global_step
        if not (self.enabled and state.is_world_process_zero):
            return
        from rich.console import Console

        self.console = Console()
        if not self.console.is_terminal:
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
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, stats="")

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def _eta(self, state) -> str:
        done = state.global_step - self.step0
        if done <= 0:
            return "?"
        return _clock((time.perf_counter() - self.t0) / done * (state.max_steps - state.global_step))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.console is None:
            return
        m = self.metrics.last_logs
        parts = []
        if "loss" in m:
            parts.append(f"loss {m['loss']:.4f}")
        if "learning_rate" in m:
            parts.append(f"lr {m['learning_rate']:.2e}")
        if "rewards/margins" in m:
            parts.append(f"margin {m['rewards/margins']:.4f}")
        if "tokens_per_second" in m:
            parts.append(f"{m['tokens_per_second']:.0f} tok/s")
        if not parts:
            return
        if self.progress is not None:
            self.progress.update(self.task, stats="  ".join(parts))
        else:
            self.console.print(f"step {state.global_step}/{state.max_steps}  " + "  ".join(parts) + f"  eta {self._eta(state)}", highlight=False)

    def on_train_end(self, args, state, control, **kwargs):
        wall = time.perf_counter() - self.t0
        logs = [r for r in state.log_history if "num_tokens" in r]
        tokens = int(logs[-1]["num_tokens"]) if logs else None
        losses = [r["loss"] for r in state.log_history if "loss" in r]
        waste = self.counter.waste if self.counter is not None else None
        self.summary = {
            "steps": state.global_step,
            "steps_this_run": state.global_step - self.step0,
            "tokens": tokens,
            "wall_seconds": round(wall, 2),
            "tokens_per_second": round(tokens / wall, 1) if tokens and wall > 0 else None,
            "padding_waste": round(waste, 4) if waste is not None else None,
            "final_loss": losses[-1] if losses else None,
            **peak_memory(),
        }
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)
            self.progress.stop()
            self.progress = None
        if self.console is not None:
            self.console.print(summary_table(self.summary))


def summary_table(summary: dict[str, Any]):
    from rich.table import Table

    t = Table(title="training summary", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    labels = {
        "steps": ("steps", str),
        "tokens": ("tokens trained", lambda v: f"{v:,}"),
        "wall_seconds": ("wall time", _clock),
        "tokens_per_second": ("tokens/s", lambda v: f"{v:,.0f}"),
        "padding_waste": ("padding waste", lambda v: f"{v:.1%}"),
        "final_loss": ("final loss", lambda v: f"{v:.4f}"),
        "peak_rss_gib": ("peak memory (RSS)", lambda v: f"{v:.2f} GiB"),
        "peak_gpu_gib": ("peak GPU memory", lambda v: f"{v:.2f} GiB"),
    }
    for key, (label, fmt) in labels.items():
        if summary.get(key) is not None:
            t.add_row(label, fmt(summary[key]))
    return t


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
