"""Fixtures the training tests share: one torch thread, the sample build, a tiny Llama, a
tokenized cache per module.

Loaded as a plugin by ``conftest.py``; a module opts into the single thread with
``pytestmark = pytest.mark.usefixtures("one_thread")``, and a module's own ``work`` wins.
"""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from mixer.cli import app
from mixer_train.testing import tiny_llama


@pytest.fixture(scope="module")
def one_thread():
    """Two cores shared with other jobs: one intra-op thread is faster and steadier."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module", autouse=True)
def token_cache_dir(tmp_path_factory):
    """Each test module gets its own tokenized cache (never the user's ~/.cache)."""
    before = os.environ.get("MIXER_CACHE")
    os.environ["MIXER_CACHE"] = str(tmp_path_factory.mktemp("mixer-cache"))
    yield os.environ["MIXER_CACHE"]
    if before is None:
        os.environ.pop("MIXER_CACHE", None)
    else:
        os.environ["MIXER_CACHE"] = before


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("train")


@pytest.fixture(scope="module")
def sample_build(repo, work):
    out = work / "build"
    r = CliRunner().invoke(app, ["build", str(repo / "mixtures" / "sample.yaml"), "-o", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def model(work, shared_tokenizers):
    return tiny_llama(work / "tiny-llama", str(shared_tokenizers / "llama2" / "tokenizer.model"))
