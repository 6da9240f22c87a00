"""The word tokenizer decontamination counts n-grams in, and its normalization.

A token is a maximal run of Unicode word characters (letters, marks, digits, ``_``) after
NFKC normalization and lowercasing. So case, punctuation and whitespace changes do not
break a match ("Hello,  World!" == "hello world"), full-width and ligature forms fold to
their plain letters, and numbers stay numbers: "16 eggs" and "12 eggs" differ (collapsing
digit runs to one symbol would make any list of numbers match any other). Scripts written
without spaces (Chinese, Japanese, Thai) come out as one token per run of characters.

Everything runs as polars string expressions (vectorized, multi-threaded); token strings
become integer ids through an ``Enum`` over the eval-set vocabulary: exact, and a training
token missing from every eval set maps to one out-of-vocabulary id, since it can never be
part of a shared n-gram.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

WORD_PATTERN = r"\w+"


def normalize(text: pl.Expr, unicode: bool = True) -> pl.Expr:
    """NFKC (when ``unicode``), then lowercase."""
    if unicode:
        text = text.str.normalize("NFKC")
    return text.str.to_lowercase()


def normalize_series(texts: pl.Series, unicode: bool = True) -> pl.Series:
    """Like ``normalize`` but NFKC only on strings with a non-ASCII character: NFKC is the
    identity on ASCII and costs as much as the rest of tokenization."""
    s = texts.fill_null("")
    if unicode:
        mask = s.str.len_bytes() != s.str.len_chars()  # has a non-ASCII char (faster than a regex)
        if mask.any():
            idx = mask.arg_true()
            s = s.scatter(idx, s.gather(idx).str.normalize("NFKC"))
    return s.str.to_lowercase()


def words_expr(text: pl.Expr, unicode: bool = True) -> pl.Expr:
    """``list[str]`` of normalized word tokens of each string (null -> empty list)."""
    return normalize(text.fill_null(""), unicode).str.extract_all(WORD_PATTERN)


def words(texts: list[str] | pl.Series, unicode: bool = True) -> list[list[str]]:
    """Token lists for a few strings (tests, reports, the brute-force reference)."""
    s = texts if isinstance(texts, pl.Series) else pl.Series("t", list(texts), dtype=pl.Utf8)
    return s.to_frame("t").select(words_expr(pl.col("t"), unicode).fill_null([])).to_series().to_list()


@dataclass
class Tokens:
    """Flat token ids of many segments: ``ids[offsets[i]:offsets[i+1]]`` is segment i."""

    ids: np.ndarray  # uint32; vocab size = out-of-vocabulary id
    offsets: np.ndarray  # int64, len = segments + 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


class Vocabulary:
    """Exact token -> id map over the eval sets (sorted, so ids are deterministic)."""

    def __init__(self, tokens: pl.Series):
        vocab = tokens.drop_nulls().unique().sort()
        self.enum = pl.Enum(vocab.cast(pl.Utf8))
        self.size = len(vocab)  # the out-of-vocabulary id
        self.tokens = vocab

    @classmethod
    def build(cls, texts: pl.Series, unicode: bool = True) -> tuple[Vocabulary, Tokens]:
        """The vocabulary of ``texts`` and their encoding, tokenizing once."""
        lists = _token_lists(texts, unicode)
        vocab = cls(lists.explode())
        return vocab, vocab._encode_lists(lists)

    def encode(self, texts: pl.Series, unicode: bool = True) -> Tokens:
        """Tokenize and map to ids in one vectorized pass."""
        return self._encode_lists(_token_lists(texts, unicode))

    def _encode_lists(self, lists: pl.Series) -> Tokens:
        phys = lists.cast(pl.List(self.enum), strict=False).list.eval(pl.element().to_physical())
        arr = phys.to_arrow()
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks() if arr.num_chunks else pa.array([], type=arr.type)
        offsets = arr.offsets.to_numpy().astype(np.int64, copy=False)
        values = arr.values
        if values.null_count:
            values = values.fill_null(self.size)
        ids = values.to_numpy(zero_copy_only=False).astype(np.uint32, copy=False)
        # a list's values may start past 0 when the array is a slice
        ids = ids[offsets[0] : offsets[-1]] if len(offsets) else ids[:0]
        offsets = offsets - offsets[0] if len(offsets) else np.zeros(1, np.int64)
        return Tokens(ids=ids, offsets=offsets)

    def decode(self, ids: np.ndarray) -> list[str]:
        toks = self.tokens.to_list()
        return [toks[i] if i < self.size else "<oov>" for i in ids]


def _token_lists(texts: pl.Series, unicode: bool) -> pl.Series:
    return normalize_series(texts, unicode).str.extract_all(WORD_PATTERN)
