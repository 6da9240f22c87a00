"""Static (model2vec) embeddings: a token table looked up and averaged, ~1000x a transformer on CPU.

A static model is a local model2vec folder, or ``static:MODEL``: the sentence-transformers
MODEL (all-MiniLM-L6-v2 by default, from the offline package when installed) distilled once
with model2vec (every vocabulary token through the transformer, PCA, SIF weights) and kept
under the mixer cache (``$MIXER_CACHE/models``, default ``~/.cache/mixer/models``) in a
folder keyed by the source model's files and the distillation parameters; later runs load it.

Encoding reproduces model2vec's own (mean of the tokens' vectors, unit length) at CPU speed
for WordPiece models (BERT normalizer and pre-tokenizer): texts are split into words and
punctuation with one regex in polars (Rust, no Python per word), each distinct word is
tokenized once by the model's tokenizer and remembered, and the texts' token bags are
summed with a sparse matrix product. The vectors match ``StaticModel.encode`` to float
rounding (cosine > 0.9999). Other tokenizers go through ``StaticModel.encode``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mixer.cpus import usable_cpus

STATIC_PREFIX = "static:"
# model2vec's distillation defaults, written down so the manifest names what built the model
DISTILL_PARAMS: dict[str, Any] = {"pca_dims": 256, "sif_coefficient": 1e-4, "quantize_to": "float16",
                                  "pooling": "mean", "token_remove_pattern": r"\[unused\d+\]"}
EXTRA = "mixer[semantic]"

# BERT's pre-tokenizer: split on whitespace, every punctuation character (Unicode P* and ASCII
# symbols) and every CJK ideograph is a word of its own
_CJK = (r"\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}\x{2B740}-\x{2B81F}"
        r"\x{2B920}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}")
_PUNCT = r"\p{P}!-/:-@\[-`{-~"
WORDS = rf"[^\s{_PUNCT}{_CJK}]+|[{_PUNCT}{_CJK}]"


def require_model2vec(what: str = "static embeddings") -> Any:
    try:
        import model2vec
    except ImportError:
        raise ImportError(f"{what} need the model2vec package: pip install '{EXTRA}'") from None
    return model2vec


def is_static_folder(path: Path) -> bool:
    cfg = path / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("model_type") == "model2vec"
    except (OSError, ValueError):
        return False


def distilled(source: str, base: Path | None = None, device: str = "auto",
              root: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """The static model distilled from sentence-transformers ``source``: (folder, facts).
    Distills on the first call (minutes on CPU) and reuses the cached folder afterwards."""
    from mixer.select.cache import cache_home
    from mixer.select.models import files_fingerprint, resolve_model, resolve_sentence_model

    model2vec = require_model2vec("distilling a static model")
    target, folder = resolve_model(resolve_sentence_model(source), base)
    if folder is None:
        raise FileNotFoundError(f"static:{source}: distilling needs the sentence-transformers model as a local "
                                f"folder (the hub is not used); pass static:/path/to/model")
    ident = {"source": Path(source).name, "source_files": files_fingerprint(folder), **DISTILL_PARAMS,
             "model2vec": model2vec.__version__}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    out = (root or cache_home() / "models") / f"static-{ident['source']}-{digest}"
    marker = out / "mixer_distill.json"
    if marker.is_file():
        return out, {**json.loads(marker.read_text()), "distilled_now": False}
    try:
        from model2vec.distill import distill
    except ImportError as e:
        raise ImportError(f"distilling a static model needs model2vec's distill dependencies ({e.name}): "
                          f"pip install '{EXTRA}'") from None
    from mixer.select.encoders import pick_device  # distillation runs the transformer: torch

    t = time.perf_counter()
    model = distill(target, device=pick_device(device), **DISTILL_PARAMS)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    model.save_pretrained(tmp)
    facts = {**ident, "seconds": round(time.perf_counter() - t, 1), "vocabulary": int(model.embedding.shape[0]),
             "dim": int(model.embedding.shape[1])}
    (tmp / "mixer_distill.json").write_text(json.dumps(facts, indent=2, sort_keys=True))
    try:
        tmp.rename(out)
    except OSError:  # another process finished the same distillation first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return out, {**facts, "distilled_now": True}


class StaticEncoder:
    """A model2vec model (local folder or ``static:SOURCE``); unit float32 vectors."""

    def __init__(self, model: str, max_length: int | None = None, batch_size: int = 4096,
                 device: str = "auto", base: Path | None = None, threads: int | None = None):
        from mixer.select.models import files_fingerprint, resolve_model

        require_model2vec()
        from model2vec import StaticModel

        self.distill: dict[str, Any] | None = None
        if model.startswith(STATIC_PREFIX):
            folder, self.distill = distilled(model[len(STATIC_PREFIX):], base, device)
        else:
            _, folder = resolve_model(model, base)
            if folder is None or not is_static_folder(folder):
                raise FileNotFoundError(f"{model!r} is not a model2vec folder (config.json with model_type "
                                        f"model2vec); for a distilled one write static:SENTENCE_MODEL")
        self.model = StaticModel.from_pretrained(folder)
        self.name = model
        self.eos = ""
        self.batch_size = batch_size
        self.max_length = max_length
        self.threads = threads or usable_cpus()
        self._files = files_fingerprint(folder)
        table = self.model.embedding.astype(np.float32)
        if self.model.token_mapping is not None:
            table = table[self.model.token_mapping]
        if self.model.weights is not None:
            table = table * self.model.weights[:, None].astype(np.float32)
        self._table = np.ascontiguousarray(table)
        self.dim = int(table.shape[1])
        tok = json.loads(self.model.tokenizer.to_str())
        self.fast = (tok.get("model", {}).get("type") == "WordPiece"
                     and (tok.get("pre_tokenizer") or {}).get("type") == "BertPreTokenizer"
                     and (tok.get("normalizer") or {}).get("type") in (None, "BertNormalizer"))
        self._tok = self.model.tokenizer
        self._tok.no_truncation()
        self._tok.no_padding()
        self._unk = getattr(self.model, "unk_token_id", None)
        self._words = pl.DataFrame(schema={"w": pl.String, "wid": pl.Int64})
        self._word_tokens = np.zeros(0, dtype=np.int32)  # CSR: tokens of word k are [off[k], off[k+1])
        self._word_off = np.zeros(1, dtype=np.int64)

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "static", "model": Path(self.name).name or self.name, "files": self._files,
                "max_length": self.max_length, "dim": self.dim}

    def encode(self, texts: list[str]) -> np.ndarray:
        if not self.fast:
            v = self.model.encode(texts, max_length=self.max_length, use_multiprocessing=False, normalize=False)
            return _unit(np.asarray(v, dtype=np.float32))
        return self._encode_words(pl.Series(texts, dtype=pl.String))

    def _learn(self, words: pl.Series) -> None:
        """Tokenize the words never seen before (once each) and remember their tokens."""
        new = words.to_frame("w").join(self._words, on="w", how="anti")["w"]
        if not len(new):
            return
        ids = [e.ids for e in self._tok.encode_batch_fast(new.to_list(), add_special_tokens=False)]
        if self._unk is not None:
            ids = [[i for i in x if i != self._unk] for x in ids]
        lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter((i for x in ids for i in x), dtype=np.int32, count=int(lens.sum()))
        self._word_tokens = np.concatenate([self._word_tokens, flat])
        self._word_off = np.concatenate([self._word_off, self._word_off[-1] + np.cumsum(lens)])
        start = self._words.height
        self._words = pl.concat([self._words, pl.DataFrame({"w": new, "wid": np.arange(start, start + len(new))})])

    def _encode_words(self, texts: pl.Series) -> np.ndarray:
        """Split (threads over slices), learn new words (serial), then look up and sum (threads):
        polars and scipy release the GIL, so slices run in parallel."""
        from concurrent.futures import ThreadPoolExecutor

        k = max(1, min(self.threads, len(texts) // 256))
        bounds = np.linspace(0, len(texts), k + 1).astype(int)
        parts = [texts.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        with ThreadPoolExecutor(k) as pool:
            words = list(pool.map(lambda s: s.fill_null("").str.extract_all(WORDS), parts))
            self._learn(pl.concat([w.explode().drop_nulls().unique() for w in words]).unique())
            out = list(pool.map(self._sum, words))
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)

    def _sum(self, words: pl.Series) -> np.ndarray:
        """Unit vectors of texts given as word lists: the sum of their (first max_length) tokens."""
        import scipy.sparse as sp

        n_words = words.list.len().fill_null(0).to_numpy().astype(np.int64)
        frame = words.explode().drop_nulls().to_frame("w")
        wid = frame.join(self._words, on="w", how="left", maintain_order="left")["wid"].to_numpy()
        start, count = self._word_off[wid], np.diff(self._word_off)[wid]
        n_tok = np.bincount(np.repeat(np.arange(len(words)), n_words), weights=count,
                            minlength=len(words)).astype(np.int64)
        total = int(count.sum())
        tokens = self._word_tokens[np.repeat(start - (np.cumsum(count) - count), count) + np.arange(total)]
        if self.max_length is not None:  # the first max_length tokens of each text
            first = np.cumsum(n_tok) - n_tok
            keep = np.arange(total) - np.repeat(first, n_tok) < self.max_length
            tokens, n_tok = tokens[keep], np.minimum(n_tok, self.max_length)
        bags = sp.csr_matrix((np.ones(len(tokens), dtype=np.float32), tokens, np.r_[0, np.cumsum(n_tok)]),
                             shape=(len(words), self._table.shape[0]))
        return _unit(np.asarray(bags @ self._table, dtype=np.float32))


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norm > 0, norm, 1.0)
