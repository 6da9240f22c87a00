"""Shared fixtures. Tests that need ../shared/data fail loudly under CI when it is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["train_fixtures"]

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _require(path: Path) -> Path:
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"required shared data is missing under CI: {path}")
        pytest.skip(f"shared data not available: {path}")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real evaluation sets and training-side samples)."""
    return _require(SHARED / "data")


@pytest.fixture(scope="session")
def shared_tokenizers() -> Path:
    """``../shared/tokenizers`` (llama2 tokenizer.model, gpt2 and olmo2 tokenizer.json)."""
    return _require(SHARED / "tokenizers")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
