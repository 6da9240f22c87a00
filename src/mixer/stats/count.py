"""Counting tokens of many texts at once: one batched fast-tokenizer call per chunk.

The Rust backend (``encode_batch_fast``) spreads each chunk over all cores; only the
lengths come back to Python. Without a tokenizer, whitespace-separated words are counted
(vectorized in polars) so statistics still work offline, labelled as words.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

WHITESPACE = "whitespace"
CHUNK_CHARS = 4_000_000  # characters per batched call: bounded memory, a moving progress bar
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json")

Progress = Callable[[int, int], None]  # (characters done, characters total)


def tokenizer_key(name: str) -> str:
    """Cache identity of a tokenizer: a hash of its files, or its hub name."""
    if name == WHITESPACE:
        return WHITESPACE
    p = Path(name).expanduser()
    files = [p] if p.is_file() else sorted(f for f in (p / n for n in _TOKENIZER_FILES) if f.is_file()) if p.is_dir() else []
    if not files:
        return "hub-" + hashlib.sha256(name.encode()).hexdigest()[:16]
    from mixer.tokenizers import CONVERSION_VERSION

    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
        if f.suffix == ".model":  # counted through a conversion: a new one must not reuse old stats
            h.update(f"conversion-v{CONVERSION_VERSION}".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class TokenCounter:
    """Counts tokens with ``name`` (hub name, folder, tokenizer.json, .model) or words."""

    name: str = WHITESPACE

    @property
    def unit(self) -> str:
        return "words" if self.name == WHITESPACE else "tokens"

    @property
    def key(self) -> str:
        return tokenizer_key(self.name)

    def count(self, texts: pl.Series, progress: Progress | None = None) -> np.ndarray:
        """Tokens per text, no special tokens added; null counts as empty."""
        texts = texts.cast(pl.Utf8).fill_null("")
        if self.name == WHITESPACE:
            out = texts.str.count_matches(r"\S+").to_numpy().astype(np.int64)
            if progress:
                progress(1, 1)
            return out
        return _count_with_tokenizer(texts, self.name, progress)


def _count_with_tokenizer(texts: pl.Series, name: str, progress: Progress | None) -> np.ndarray:
    from mixer.tokenizers import load_tokenizer

    tok = load_tokenizer(name)
    backend = getattr(tok, "backend_tokenizer", None)
    sizes = texts.str.len_bytes().to_numpy()
    total = int(sizes.sum())
    bounds = _chunks(sizes, CHUNK_CHARS)
    out = np.zeros(len(texts), dtype=np.int64)
    done = 0
    for start, stop in bounds:
        batch = texts.slice(start, stop - start).to_list()
        if backend is not None:
            encs = backend.encode_batch_fast(batch, add_special_tokens=False)
            out[start:stop] = np.fromiter((len(e) for e in encs), dtype=np.int64, count=len(encs))
        else:  # a slow (Python) tokenizer: still one call per chunk
            ids = tok(batch, add_special_tokens=False, return_attention_mask=False)["input_ids"]
            out[start:stop] = [len(x) for x in ids]
        done += int(sizes[start:stop].sum())
        if progress:
            progress(done, total)
    if progress and not bounds:
        progress(0, 0)
    return out


def _chunks(sizes: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges of about ``budget`` bytes each."""
    if len(sizes) == 0:
        return []
    cum = np.cumsum(sizes)
    cuts = np.searchsorted(cum, np.arange(budget, int(cum[-1]), budget), side="right")
    edges = np.unique(np.concatenate([[0], cuts, [len(sizes)]]))
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
