"""Tokenized (and packed) training data cached on disk, so a second run on the same build, a
DPO run after SFT, or a restart skips the tokenizing pass.

The key is everything that changes the tokens: the build's output hashes, the tokenizer's
files, the chat template, the data arguments of the TRL config (max length, packing mode,
masking options, truncation) and the library versions that produce them. The entry is what
TRL's own ``_prepare_dataset`` returns, saved with ``datasets.save_to_disk`` into a temporary
folder and renamed into place, so a killed run never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# TRL config fields that decide what the prepared dataset holds
DATA_ARGS = (
    "max_length", "packing", "packing_strategy", "padding_free", "assistant_only_loss", "completion_only_loss",
    "truncation_mode", "dataset_text_field", "eos_token", "pad_token", "max_prompt_length",
    "max_completion_length", "chat_template_path", "dataset_kwargs",
)
# tokenizer files inside a model folder (weights and model config do not change the tokens)
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "vocab.txt", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "chat_template.jinja",
    "chat_template.json",
)


def cache_root() -> Path:
    """``$MIXER_CACHE/tokenized``, else ``$XDG_CACHE_HOME/mixer/tokenized`` (``~/.cache``)."""
    if os.environ.get("MIXER_CACHE"):
        return Path(os.environ["MIXER_CACHE"]).expanduser() / "tokenized"
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "mixer" / "tokenized"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tokenizer_hash(source: str, tokenizer) -> str:
    """SHA-256 over the tokenizer's files when ``source`` is a local folder or file; for a hub
    name, over the files of a saved copy (the same bytes the hub served)."""
    p = Path(source).expanduser()
    if p.is_file():
        return _sha(p.read_bytes())
    folder = p
    if not p.is_dir():
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="mixer-tok-"))
        tokenizer.save_pretrained(str(folder))
    try:
        h = hashlib.sha256()
        for name in TOKENIZER_FILES:
            f = folder / name
            if f.is_file():
                h.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
        return h.hexdigest()
    finally:
        if folder is not p:
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class TokenCache:
    """One cache entry: ``parts`` (what the key hashes) and the outcome of using it."""

    root: Path
    parts: dict[str, Any]
    hit: bool | None = None
    seconds: float = 0.0
    rows: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return _sha(json.dumps(self.parts, sort_keys=True, default=str).encode())[:32]

    @property
    def path(self) -> Path:
        return self.root / self.key

    def load(self):
        """The cached dataset, or None."""
        if not (self.path / "key.json").is_file():
            return None
        from datasets import load_from_disk

        t0 = time.perf_counter()
        ds = load_from_disk(str(self.path / "data"))
        self.hit, self.seconds, self.rows = True, time.perf_counter() - t0, len(ds)
        return ds

    def save(self, dataset, seconds: float) -> None:
        """Write the entry atomically (another process may be writing the same key)."""
        self.hit, self.seconds, self.rows = False, seconds, len(dataset)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{self.key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        dataset.save_to_disk(str(tmp / "data"))
        (tmp / "key.json").write_text(json.dumps({"parts": self.parts, "rows": len(dataset), "created": time.time()}, indent=2, default=str))
        try:
            tmp.rename(self.path)
        except OSError:  # another process finished the same entry first
            shutil.rmtree(tmp, ignore_errors=True)

    def summary(self) -> dict[str, Any]:
        return {"key": self.key, "path": str(self.path), "hit": self.hit, "seconds": round(self.seconds, 3), "rows": self.rows}


def make_cache(build, tokenizer_source: str, tokenizer, args, kind: str) -> TokenCache:
    """The cache entry for ``build`` tokenized by ``tokenizer`` under TRL config ``args``."""
    import datasets
    import tokenizers
    import transformers
    import trl

    files = build.manifest.get("files", {})
    shards = {p.name for p in build.mixture}
    parts = {
        "kind": kind,
        "build": {name: info.get("sha256") for name, info in sorted(files.items()) if name in shards},
        "tokenizer": tokenizer_hash(tokenizer_source, tokenizer),
        "chat_template": _sha((tokenizer.chat_template or "").encode()),
        "added_tokens": sorted(tokenizer.get_added_vocab().items()),
        "args": {a: getattr(args, a) for a in DATA_ARGS if hasattr(args, a)},
        "versions": {m.__name__: m.__version__ for m in (trl, transformers, tokenizers, datasets)},
    }
    return TokenCache(cache_root(), parts)


class CachedPrepareMixin:
    """Put before a TRL trainer class: its ``_prepare_dataset`` for the train split goes
    through the ``token_cache`` passed to ``__init__``."""

    def __init__(self, *args, token_cache: TokenCache | None = None, **kwargs):
        self.token_cache = token_cache  # before TRL's __init__, which prepares the data
        super().__init__(*args, **kwargs)

    def _prepare_dataset(self, dataset, processing_class, args, *rest):
        name = rest[-1] if rest else "train"
        cache = self.token_cache
        if cache is None or name != "train":
            return super()._prepare_dataset(dataset, processing_class, args, *rest)
        cached = cache.load()
        if cached is not None:
            return cached
        t0 = time.perf_counter()
        out = super()._prepare_dataset(dataset, processing_class, args, *rest)
        if int(os.environ.get("RANK", "0")) == 0:
            cache.save(out, time.perf_counter() - t0)
        else:
            cache.hit, cache.seconds = False, time.perf_counter() - t0
        return out
