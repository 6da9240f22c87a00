"""One training process: ``python -m mixer_train.worker RUN_DIR [--resume-from CKPT]``.

Everything it needs is in the run folder (written by ``mixer_train.launch``), so the same entry
point serves a single in-process run and every rank under torchrun or accelerate.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from rich.console import Console

from mixer_train.callbacks import (
    CheckpointMarker,
    MetricsCallback,
    PaddingCounter,
    RichProgressCallback,
)
from mixer_train.card import write_card
from mixer_train.common import (
    attention_implementation,
    check_quantization,
    init_distributed,
    is_main,
    load_tokenizer_with_template,
    resolve_packing,
    shutdown_distributed,
)
from mixer_train.data import Build, load_records
from mixer_train.run import load_run
from mixer_train.token_cache import make_cache


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def _quiet_other_ranks() -> None:
    if not is_main():
        import datasets
        import transformers

        transformers.logging.set_verbosity_error()
        datasets.logging.set_verbosity_error()
        datasets.disable_progress_bars()
        logging.getLogger("mixer_train").setLevel(logging.ERROR)


def train(run_dir: str | Path, resume_from: str | None = None, progress: bool | None = None) -> dict:
    """Train the run in ``run_dir`` in this process; returns the final train metrics."""
    run = load_run(run_dir)
    cfg = run.config
    check_quantization(cfg)
    init_distributed(cfg)
    _quiet_other_ranks()
    try:
        build = Build(Path(run.info["build"]), json.loads((run.folder / "build_manifest.json").read_text()))
        tokenizer, added = load_tokenizer_with_template(run.info["tokenizer"], cfg.template)
        if not is_main():
            _barrier()  # rank 0 fills the datasets cache first
        dataset = load_records(build, num_proc=cfg.dataset_num_proc)
        if is_main():
            _barrier()
        metrics = MetricsCallback(run.metrics)
        if progress is None:
            progress = os.environ.get("MIXER_PROGRESS", "1") != "0"
        say = Console(highlight=False).print if progress and is_main() else (lambda *a, **k: None)
        packing, reason = resolve_packing(cfg, attention_implementation(cfg, run.info["model"]))
        say(reason)
        live = RichProgressCallback(metrics, enabled=progress)
        callbacks = [metrics, live, CheckpointMarker(run.info["spec_hash"])]
        if cfg.kind == "sft":
            from mixer_train.sft import build_trainer
        else:
            from mixer_train.dpo import build_trainer

        def cache_for(args):
            return make_cache(build, run.info["tokenizer"], tokenizer, args, cfg.kind) if cfg.tokenized_cache else None

        trainer = build_trainer(
            cfg, run.info["model"], tokenizer, added, dataset, str(run.folder), callbacks, packing=packing, cache_for=cache_for
        )
        cache = trainer.token_cache
        if cache is not None:
            say(
                f"tokenized cache: hit, loaded {cache.rows} rows in {cache.seconds:.1f}s ({cache.path})"
                if cache.hit
                else f"tokenized cache: miss, prepared {cache.rows} rows in {cache.seconds:.1f}s, saved to {cache.path}"
            )
        if trainer.args.dataloader_num_workers == 0:  # the counter must live in this process
            live.counter = trainer.data_collator = PaddingCounter(trainer.data_collator)
        if progress:  # the live display replaces the printed log dicts
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)
        result = trainer.train(resume_from_checkpoint=resume_from)
        final = run.folder / "final"
        trainer.save_model(str(final))
        if is_main():
            tokenizer.save_pretrained(str(final))
            (run.folder / "training_args.json").write_text(trainer.args.to_json_string())
            run.info.update(
                status="complete",
                global_step=trainer.state.global_step,
                resumed_from=resume_from,
                train_metrics=result.metrics,
                summary=live.summary,
                packing={"enabled": packing, "reason": reason},
                tokenized_cache=cache.summary() if cache is not None else None,
            )
            run.save()
            write_card(run.folder, run.info, tokenizer.chat_template)
        return result.metrics
    finally:
        shutdown_distributed()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m mixer_train.worker")
    p.add_argument("run_dir")
    p.add_argument("--resume-from", default=None)
    a = p.parse_args(argv)
    train(a.run_dir, a.resume_from)


if __name__ == "__main__":
    main()
