"""Tokenizer loading: the SentencePiece conversion is cached on disk and reloads identically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixer import tokenizers
from mixer.tokenizers import convert_sentencepiece, load_tokenizer


def test_cached_conversion_tokenizes_like_a_fresh_one(shared_data: Path, shared_tokenizers: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXER_CACHE", str(tmp_path))
    model = shared_tokenizers / "llama2" / "tokenizer.model"
    load_tokenizer.cache_clear()
    first = load_tokenizer(str(model))  # converts and saves
    saved = list((tmp_path / "tokenizers").iterdir())
    assert len(saved) == 1 and (saved[0] / "tokenizer.json").exists()
    load_tokenizer.cache_clear()
    second = load_tokenizer(str(model))  # from the cache
    fresh = convert_sentencepiece(model)
    convs = json.loads((shared_data / "train" / "sharegpt_dummy" / "dummy_conversation.json").read_text())
    texts = [t["value"] for c in convs[:200] for t in c["conversations"]] + ["  two  spaces\n\nand  tabs\t", " leading", "</s> glued"]
    ids = fresh(texts)["input_ids"]
    assert first(texts)["input_ids"] == ids
    assert second(texts)["input_ids"] == ids
    assert ids[0][0] == fresh.bos_token_id == 1 and fresh.eos_token_id == 2 and len(fresh) == 32000
    load_tokenizer.cache_clear()
    assert tokenizers.cache_root() == tmp_path / "tokenizers"


def test_missing_and_hub_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="tokenizer file not found"):
        load_tokenizer(str(tmp_path / "nope.model"))
    with pytest.raises(FileNotFoundError, match="has no tokenizer.json"):
        load_tokenizer(str(tmp_path))
