"""``mixer push`` (a build to the Hugging Face Hub) and ``mixer card`` (rewrite its card)."""

from __future__ import annotations

from pathlib import Path

import typer

from mixer.commands.build import console, fail


def push_cmd(
    build: Path = typer.Argument(..., help="Build folder."),
    repo_id: str = typer.Argument(..., help="Dataset repo, OWNER/NAME (created if missing)."),
    private: bool = typer.Option(False, "--private", help="Create the repo private."),
    revision: str = typer.Option(None, "--revision", help="Branch to push to (created if missing; default: main)."),
) -> None:
    """Publish a build as a Hugging Face dataset: card, mixture, ledger, manifest."""
    from mixer.hub import PushError, push

    try:
        url = push(build, repo_id, private, revision)
    except (PushError, FileNotFoundError, ValueError) as e:
        fail(str(e), 1)
    console.print(f"pushed [bold]{build}[/] to {url}")


def card_cmd(build: Path = typer.Argument(..., help="Build folder.")) -> None:
    """Rewrite BUILD/README.md (the dataset card) from BUILD/manifest.json."""
    from mixer.build_dir import BuildDir
    from mixer.card import write_card

    try:
        BuildDir(build)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    console.print(f"wrote {write_card(build)}")


def register(app: typer.Typer) -> None:
    app.command("push")(push_cmd)
    app.command("card")(card_cmd)
