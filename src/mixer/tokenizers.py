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

# Bump when convert_sentencepiece changes: it is part of the on-disk cache key.
CONVERSION_VERSION = 2


@functools.lru_cache(maxsize=8)
def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """A fast Hugging Face tokenizer where one can be had.

    - a folder: ``AutoTokenizer.from_pretrained`` when it has a ``tokenizer.json``; a folder
      with only a SentencePiece ``tokenizer.model`` (``oobabooga/llama-tokenizer``, the one
      the Tulu 2 recipe counts with) goes through this module's conversion instead, since
      ``transformers``' own conversion does not encode like SentencePiece;
    - a ``.json`` file: ``PreTrainedTokenizerFast(tokenizer_file=...)``;
    - a ``.model`` file: SentencePiece, converted to a fast tokenizer with the same ids;
    - anything else: a hub name; a repo whose tokenizer is only a ``tokenizer.model`` is
      converted like a folder, others load through ``AutoTokenizer`` (offline: a one-line error).
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    p = Path(name_or_path).expanduser()
    if p.is_dir():
        if (p / "tokenizer.json").exists():
            if (p / "tokenizer_config.json").exists() or (p / "config.json").exists():
                return AutoTokenizer.from_pretrained(str(p))
            return load_tokenizer(str(p / "tokenizer.json"))
        if (p / "tokenizer.model").exists():
            return load_tokenizer(str(p / "tokenizer.model"))
        if (p / "tokenizer_config.json").exists() or (p / "config.json").exists():
            return AutoTokenizer.from_pretrained(str(p))
        raise FileNotFoundError(f"tokenizer folder {p} has no tokenizer.json, tokenizer.model or tokenizer_config.json")
    if p.suffix == ".json" and p.exists():
        return PreTrainedTokenizerFast(tokenizer_file=str(p))
    if p.suffix == ".model" and p.exists():
        return _sentencepiece(p)
    if p.suffix in (".json", ".model") or name_or_path.startswith((".", "/", "~")):
        raise FileNotFoundError(f"tokenizer file not found: {name_or_path}")
    model = _hub_sentencepiece_only(name_or_path)
    if model is not None:
        return _sentencepiece(model)
    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except OSError as e:
        raise OSError(
            f"cannot load tokenizer {name_or_path!r} from the Hugging Face hub ({e.__class__.__name__}); "
            f"download it first (`huggingface-cli download {name_or_path}`) and pass the local folder"
        ) from None


def _hub_sentencepiece_only(repo: str) -> Path | None:
    """The hub repo's ``tokenizer.model`` when it has no ``tokenizer.json`` (else None, and
    None whenever the hub cannot say: ``AutoTokenizer`` then reports the problem)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        hf_hub_download(repo, "tokenizer.json")
        return None
    except EntryNotFoundError:
        pass
    except Exception:  # noqa: BLE001 - offline, gated, unknown repo: AutoTokenizer says which
        return None
    try:
        return Path(hf_hub_download(repo, "tokenizer.model"))
    except Exception:  # noqa: BLE001
        return None


def cache_root() -> Path:
    """Where converted tokenizers are kept (``MIXER_CACHE``, default ``~/.cache/mixer``)."""
    return Path(os.environ.get("MIXER_CACHE", "~/.cache/mixer")).expanduser() / "tokenizers"


def convert_sentencepiece(p: Path) -> PreTrainedTokenizerBase:
    """SentencePiece proto -> fast tokenizer with SentencePiece's exact ids (BOS added, no EOS;
    the text after a special token starts a new piece with its own dummy prefix)."""
    from mixer.spm_convert import convert

    return convert(p)


def _sentencepiece(p: Path) -> PreTrainedTokenizerBase:
    """Convert once, then reuse the saved conversion, keyed by the model file's hash and
    ``CONVERSION_VERSION`` (a changed conversion must never be served from an old cache)."""
    from transformers import PreTrainedTokenizerFast

    digest = hashlib.sha256(p.read_bytes()).hexdigest()[:20]
    cached = cache_root() / f"{p.stem}-{digest}-v{CONVERSION_VERSION}"
    if (cached / "tokenizer.json").exists():
        try:
            return PreTrainedTokenizerFast.from_pretrained(str(cached))
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
