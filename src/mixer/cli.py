"""The ``mixer`` command. Each feature keeps its commands in ``mixer.commands.<name>``,
a module with ``register(app)``; this file only lists them."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="mixer",
    help="Build reproducible, decontaminated instruction-tuning mixtures, and train on them.",
    no_args_is_help=True,
    add_completion=False,
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
]

for _mod in COMMAND_MODULES:
    importlib.import_module(_mod).register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
