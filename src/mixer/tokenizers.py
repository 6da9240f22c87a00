"""Load a tokenizer by hub name, local folder, ``tokenizer.json`` or SentencePiece ``.model``.

Counting, splitting and statistics all go through here so that "the Llama 2 tokenizer"
means the same thing everywhere. Results are cached per process, and SentencePiece
conversions are cached on disk.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # transformers is imported only when a tokenizer is loaded
    from transformers import PreTrainedTokenizerBase


@functools.lru_cache(maxsize=8)
def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """A fast Hugging Face tokenizer where one can be had.

    - a folder: ``AutoTokenizer.from_pretrained`` (falls back to a lone ``tokenizer.json``
      or ``tokenizer.model`` inside it);
    - a ``.json`` file: ``PreTrainedTokenizerFast(tokenizer_file=...)``;
    - a ``.model`` file: SentencePiece, converted to a fast Llama tokenizer;
    - anything else: a hub name, loaded through ``AutoTokenizer`` (offline: a one-line error).
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    p = Path(name_or_path).expanduser()
    if p.is_dir():
        if (p / "tokenizer_config.json").exists() or (p / "config.json").exists():
            return AutoTokenizer.from_pretrained(str(p))
        if (p / "tokenizer.json").exists():
            return load_tokenizer(str(p / "tokenizer.json"))
        if (p / "tokenizer.model").exists():
            return load_tokenizer(str(p / "tokenizer.model"))
        raise FileNotFoundError(f"tokenizer folder {p} has no tokenizer.json, tokenizer.model or tokenizer_config.json")
    if p.suffix == ".json" and p.exists():
        return PreTrainedTokenizerFast(tokenizer_file=str(p))
    if p.suffix == ".model" and p.exists():
        return _sentencepiece(p)
    if p.suffix in (".json", ".model") or name_or_path.startswith((".", "/", "~")):
        raise FileNotFoundError(f"tokenizer file not found: {name_or_path}")
    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except OSError as e:
        raise OSError(
            f"cannot load tokenizer {name_or_path!r} from the Hugging Face hub ({e.__class__.__name__}); "
            f"download it first (`huggingface-cli download {name_or_path}`) and pass the local folder"
        ) from None


def cache_root() -> Path:
    """Where converted tokenizers are kept (``MIXER_CACHE``, default ``~/.cache/mixer``)."""
    return Path(os.environ.get("MIXER_CACHE", "~/.cache/mixer")).expanduser() / "tokenizers"


def convert_sentencepiece(p: Path) -> PreTrainedTokenizerBase:
    """SentencePiece proto -> fast Llama tokenizer (legacy spacing, BOS added, no EOS)."""
    from transformers import LlamaTokenizerFast

    # transformers 5 ignores ``vocab_file=`` in the constructor (a silent 3-token vocabulary);
    # from_pretrained converts the SentencePiece proto (needs the sentencepiece package).
    tok = LlamaTokenizerFast.from_pretrained(str(p.parent), vocab_file=str(p), legacy=True, add_bos_token=True, add_eos_token=False)
    tok.init_kwargs["legacy"] = True  # else save_pretrained drops it and a reload tokenizes differently
    return tok


def _sentencepiece(p: Path) -> PreTrainedTokenizerBase:
    """Convert once, then reuse the saved conversion (keyed by the model file's hash):
    converting the Llama 2 model takes several seconds per process."""
    from transformers import AutoTokenizer

    digest = hashlib.sha256(p.read_bytes()).hexdigest()[:20]
    cached = cache_root() / f"{p.stem}-{digest}"
    if (cached / "tokenizer.json").exists():
        try:
            tok = AutoTokenizer.from_pretrained(str(cached))
            tok.init_kwargs["legacy"] = True  # a reload keeps it as an attribute only; saves would drop it
            return tok
        except (OSError, ValueError):
            shutil.rmtree(cached, ignore_errors=True)
    tok = convert_sentencepiece(p)
    try:
        tmp = cached.with_name(f"{cached.name}.tmp-{os.getpid()}")
        tok.save_pretrained(str(tmp))
        tmp.rename(cached)
    except OSError:
        pass  # read-only cache, or another process got there first: the converted one serves
    return tok
