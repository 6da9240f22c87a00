"""Token counts of many texts at once, through the shared tokenizer loader.

The ShareGPT splitter and the ``max_tokens`` step count the same way: one batched call of
a fast tokenizer per chunk of texts, lengths only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mixer.tokenizers import load_tokenizer

BATCH = 20_000


def resolve_tokenizer(name: str | None, root: Path | None, what: str) -> str:
    """A tokenizer name or path; relative paths resolve against the spec folder first."""
    if not name:
        raise ValueError(f"{what} needs a tokenizer: name one in the step/format or as the spec's 'tokenizer'")
    if root is not None and not Path(name).expanduser().is_absolute() and (root / name).exists():
        return str(root / name)
    return name


def count_tokens(texts: Sequence[str | None], tokenizer: str, add_special_tokens: bool = False) -> np.ndarray:
    """Number of tokens of each text (None counts as empty)."""
    tok = load_tokenizer(tokenizer)
    backend = getattr(tok, "backend_tokenizer", None)
    fast = getattr(backend, "encode_batch_fast", None)  # the Rust tokenizer without offsets
    out = np.zeros(len(texts), dtype=np.int64)
    for start in range(0, len(texts), BATCH):
        batch = [t or "" for t in texts[start : start + BATCH]]
        if fast is not None:
            out[start : start + len(batch)] = [len(e.ids) for e in fast(batch, add_special_tokens=add_special_tokens)]
        else:
            ids = tok(batch, add_special_tokens=add_special_tokens, return_attention_mask=False)["input_ids"]
            out[start : start + len(batch)] = [len(x) for x in ids]
    return out
