"""``mixer push``: publish a finished build as a Hugging Face dataset repo.

What goes up: the dataset card (``README.md``, regenerated from the manifest so it is
current), ``manifest.json`` and every file the manifest lists (mixture, ledger, stats). The
build is verified against its hashes first, so a modified or half-written build is never
published. Offline, the one-line error names the repo and the network problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixer.build_dir import BuildDir
from mixer.card import CARD_FILE, card


class PushError(RuntimeError):
    """The build could not be published (network, permissions, bad repo id)."""


@dataclass
class PushPlan:
    """What a push would send: the repo, its revision, and the files of the build."""

    build: Path
    repo_id: str
    files: list[str]
    private: bool = False
    revision: str | None = None

    @property
    def url(self) -> str:
        return f"https://huggingface.co/datasets/{self.repo_id}" + (f"/tree/{self.revision}" if self.revision else "")


def plan(build: str | Path, repo_id: str, private: bool = False, revision: str | None = None) -> PushPlan:
    """Verify the build, refresh its card and list the files to upload."""
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PushError(f"repo id {repo_id!r} should look like OWNER/NAME")
    b = BuildDir(build, verify=True)
    (b.path / CARD_FILE).write_text(card(b.manifest))
    files = [CARD_FILE, "manifest.json", *b.manifest.get("files", {})]
    return PushPlan(b.path, repo_id, files, private, revision)


def push(build: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
         token: str | None = None, api: Any = None) -> str:
    """Create (or reuse) the dataset repo and upload the build in one commit; returns the
    repo URL. ``api`` defaults to ``huggingface_hub.HfApi()`` (``HF_ENDPOINT``, ``HF_TOKEN``)."""
    p = plan(build, repo_id, private, revision)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, repo_type="dataset", branch=revision, exist_ok=True)
        api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(p.build), revision=revision,
                          allow_patterns=p.files, commit_message=f"mixer build {p.build.name} ({len(p.files)} files)")
    except Exception as e:  # network, HTTP and auth errors all end here, as one line
        raise PushError(f"could not push {p.build} to dataset repo {repo_id!r} at {_endpoint(api)}: {_one_line(e)}") from None
    return p.url


def _endpoint(api: Any) -> str:
    return str(getattr(api, "endpoint", None) or "the Hugging Face Hub")


def _one_line(e: BaseException) -> str:
    """The innermost cause's message, first line (a connection refused, not a traceback)."""
    while e.__cause__ is not None or e.__context__ is not None:
        nxt = e.__cause__ or e.__context__
        if nxt is None or nxt is e:
            break
        e = nxt
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}"[:300]
