"""The ``mixer`` command. Each feature keeps its commands in ``mixer.commands.<name>``,
a module with ``register(app)``; this file lists them and holds the global options
(``--version``, ``-q``, ``--log-level``, shell completion)."""

from __future__ import annotations

import importlib
import logging
import os
import sys

import typer

from mixer import __version__

app = typer.Typer(
    name="mixer",
    help="Build reproducible, decontaminated instruction-tuning mixtures, and train on them.",
    no_args_is_help=True,
    add_completion=True,  # mixer --install-completion / --show-completion
    pretty_exceptions_enable=False,
)

# One line per command module; a module registers its commands with ``register(app)``.
COMMAND_MODULES = [
    "mixer.commands.build",
    "mixer.commands.train",
    "mixer.commands.stats",
    "mixer.commands.report",
    "mixer.commands.diff",
    "mixer.commands.select",
    "mixer.commands.decontam",
    "mixer.commands.dedup",
    "mixer.commands.hub",
]

LOG_LEVELS = ("debug", "info", "warning", "error")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mixer {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or progress log lines from any command (sets MIXER_NO_PROGRESS)."),
    log_level: str = typer.Option(os.environ.get("MIXER_LOG_LEVEL", "warning"), "--log-level", help=f"Logging level: {', '.join(LOG_LEVELS)} (env MIXER_LOG_LEVEL)."),
) -> None:
    """Build reproducible, decontaminated instruction-tuning mixtures, and train on them."""
    level = log_level.lower()
    if level not in LOG_LEVELS:
        raise typer.BadParameter(f"expected one of {', '.join(LOG_LEVELS)}, got {log_level!r}", param_hint="--log-level")
    logging.basicConfig(level=getattr(logging, level.upper()), format="%(levelname)s %(name)s: %(message)s")
    if quiet:
        os.environ["MIXER_NO_PROGRESS"] = "1"


for _mod in COMMAND_MODULES:
    importlib.import_module(_mod).register(app)


def main() -> None:
    """Run the app; a feature whose optional dependencies are missing fails in one line
    naming the extra to install."""
    from mixer.extras import MissingExtra, extra_for

    try:
        app()
    except MissingExtra as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except ModuleNotFoundError as e:
        command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
        extra = extra_for(e, command)
        if extra is None:
            raise
        print(f"error: {command or 'this command'} needs the '{extra}' extra ({e.name} is not installed): pip install 'mixer[{extra}]'", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
