"""Encoders turn a batch of texts into unit vectors.

``CausalLMEncoder`` is RDS+: the base LM's final-layer hidden states (after its final norm),
position-weighted mean over real tokens, L2-normalized; right padding keeps each text's
positions what they would be alone, so a text embeds the same at any batch size.
``SentenceEncoder`` wraps a sentence-transformers model (its own pooling and truncation),
offline all-MiniLM-L6-v2 by default, on a GPU when one is present. ``StaticEncoder``
(``mixer.select.static``) is a model2vec static model, by default MiniLM distilled once
(``static:all-MiniLM-L6-v2``): ~1000x MiniLM's speed on CPU. ``models.sentence_encoder``
picks one from the model name.

Each encoder has a ``fingerprint``: what, besides the text, decides its vectors. The
embedding cache is keyed by it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from mixer.select.models import (  # noqa: F401 - re-exported
    MINILM,
    STATIC_MINILM,
    _identity,
    files_fingerprint,
    resolve_model,
    resolve_sentence_model,
)
from mixer.select.pooling import l2_normalize, weighted_mean

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class Encoder(Protocol):
    name: str
    eos: str  # closes assistant turns in the ``tulu`` template
    batch_size: int

    def fingerprint(self) -> dict[str, Any]: ...

    def encode(self, texts: list[str]) -> np.ndarray: ...


def pick_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


class CausalLMEncoder:
    """Final hidden states of a causal LM (hub name or local folder), RDS+ pooling."""

    def __init__(self, model: str, max_length: int = 2048, batch_size: int = 8, device: str = "auto",
                 dtype: str | None = None, base: Path | None = None):
        from transformers import AutoModel, AutoTokenizer

        target, folder = resolve_model(model, base)
        self.device = pick_device(device)
        self.dtype_name = dtype or ("bfloat16" if self.device.startswith("cuda") else "float32")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(target)
            with _quiet_transformers():  # the unused lm_head is expected, not news
                self.model = AutoModel.from_pretrained(target, dtype=_DTYPES[self.dtype_name])
        except OSError as e:
            raise OSError(f"cannot load causal LM {model!r} ({e.__class__.__name__}); download it "
                          f"(`huggingface-cli download {model}`) and pass the local folder") from None
        self.model.eval().to(self.device)
        tok = self.tokenizer
        tok.padding_side = "right"
        if tok.pad_token is None:
            tok.pad_token = tok.unk_token if tok.unk_token is not None else tok.eos_token
        self.name = model
        self.eos = tok.eos_token or ""
        self.max_length = max_length
        self.batch_size = batch_size
        self._id = _identity(model, folder)
        self.revision = getattr(self.model.config, "_commit_hash", None)

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "causal_lm", **self._id, "revision": self.revision, "max_length": self.max_length,
                "dtype": self.dtype_name, "pooling": "position_weighted_mean", "layer": "final"}

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        hidden = self.model(**enc).last_hidden_state
        return l2_normalize(weighted_mean(hidden, enc["attention_mask"])).cpu().numpy()


class SentenceEncoder:
    """A sentence-transformers model with its own pooling; outputs re-normalized in float32."""

    def __init__(self, model: str = MINILM, max_length: int | None = None, batch_size: int = 32,
                 device: str = "auto", base: Path | None = None):
        from sentence_transformers import SentenceTransformer

        target, folder = resolve_model(resolve_sentence_model(model), base)
        self.device = pick_device(device)
        try:
            self.model = SentenceTransformer(target, device=self.device)
        except OSError as e:
            raise OSError(f"cannot load sentence-transformers model {model!r} ({e.__class__.__name__}); "
                          f"pass a local folder") from None
        if max_length is not None:
            self.model.max_seq_length = max_length
        self.name = model
        self.eos = ""
        self.batch_size = batch_size
        self._id = _identity(model, folder)
        modules = [type(m).__name__ for m in self.model]
        self._modules = json.dumps(modules)

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "sentence_transformers", **self._id, "max_length": self.model.max_seq_length,
                "modules": self._modules}

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> np.ndarray:
        v = self.model.encode(texts, batch_size=len(texts), convert_to_tensor=True, show_progress_bar=False)
        return l2_normalize(v.to(torch.float32)).cpu().numpy()

