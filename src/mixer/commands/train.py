"""``mixer train sft`` and ``mixer train dpo``: hand a build to TRL + DeepSpeed (src/train)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

err_console = Console(stderr=True)
console = Console()


def _fail(msg: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _run(
    kind: str,
    build: Path | None,
    model: str | None,
    config: str | None,
    sets: list[str],
    output: Path | None,
    nproc: int,
    resume: bool,
    tokenizer: str | None,
    launcher: str,
    template: str | None,
    deepspeed: str | None,
    packing: bool | None,
    max_steps: int | None,
) -> None:
    from mixer_train.config import ConfigError, parse_overrides
    from mixer_train.data import BuildError
    from mixer_train.launch import launch
    from mixer_train.run import RunError
    from mixer_train.template import TemplateError

    try:
        overrides = parse_overrides(sets)
        for key, value in (("template", template), ("deepspeed", deepspeed), ("packing", packing), ("max_steps", max_steps)):
            if value is not None:
                overrides[key] = value
        run = launch(kind, build, model, config, overrides, output, nproc, resume, tokenizer, launcher)
    except (ConfigError, BuildError, RunError, TemplateError) as e:
        _fail(str(e))
    except RuntimeError as e:
        _fail(str(e), code=1)
    info = run.info
    console.print(
        f"[bold green]done[/]: {info.get('global_step', '?')} steps, model in {run.folder / 'final'}; "
        f"metrics in {run.metrics}",
        highlight=False,
    )


def _options(kind: str):
    def command(
        build: Path = typer.Option(None, "--build", "-b", help="Build folder written by `mixer build`."),
        model: str = typer.Option(None, "--model", "-m", help="Model folder or hub name to start from."),
        config: str = typer.Option(
            None, "--config", "-c", help=f"Preset name (tulu2-sft, tulu2-dpo, tulu2-qlora) or YAML file (default: tulu2-{kind})."
        ),
        sets: list[str] = typer.Option([], "--set", "-s", help="Override a config key: key=value (repeatable; lora.r=16)."),
        output: Path = typer.Option(None, "--output", "-o", help="Run folder (default: runs/<build>-<kind>)."),
        nproc: int = typer.Option(1, "--nproc", "-n", help="Processes (GPUs); >1 launches torchrun or accelerate."),
        resume: bool = typer.Option(False, "--resume", help="Continue the run in --output from its last complete checkpoint."),
        tokenizer: str = typer.Option(None, "--tokenizer", help="Tokenizer path or name (default: the model's)."),
        launcher: str = typer.Option("auto", "--launcher", help="auto | torchrun | accelerate | none."),
        template: str = typer.Option(None, "--template", help="Chat template: tulu, chatml, zephyr, tokenizer."),
        deepspeed: str = typer.Option(None, "--deepspeed", help="zero2 | zero3 | zero3_offload | none | a JSON file."),
        packing: bool = typer.Option(None, "--packing/--no-packing", help="Pack sequences (bfd, padding-free) or pad (default: pack where the attention keeps sequences apart)."),
        max_steps: int = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps."),
    ) -> None:
        _run(kind, build, model, config, sets, output, nproc, resume, tokenizer, launcher, template, deepspeed, packing, max_steps)

    command.__doc__ = (
        "Supervised fine-tuning on an SFT build (Tulu template, loss on assistant tokens)."
        if kind == "sft"
        else "DPO on a preference build (Tulu 2 + DPO recipe by default)."
    )
    return command


def register(app: typer.Typer) -> None:
    train_app = typer.Typer(help="Train on a build with TRL + DeepSpeed.", no_args_is_help=True)
    train_app.command("sft")(_options("sft"))
    train_app.command("dpo")(_options("dpo"))
    app.add_typer(train_app, name="train")
