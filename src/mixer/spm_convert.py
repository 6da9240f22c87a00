"""A SentencePiece ``.model`` as a fast (Rust) tokenizer that encodes exactly like SentencePiece.

The conversions that ship with ``transformers`` 5 differ from ``SentencePieceProcessor``
on whitespace: they rank BPE merges by piece id instead of piece score, and the Metaspace
pre-tokenizer skips the dummy prefix when the text already starts with a space. For Llama
2 that changes the ids of about one chat message in six (``"a  b"``, indented code, a
leading space). This module rebuilds the pipeline from the model's own settings:

- normalizer, in SentencePiece's order: the precompiled character map, extra-whitespace
  removal, the dummy prefix (always added, as SentencePiece does), spaces escaped as ``▁``;
- BPE merges ranked by the score of the piece they make. SentencePiece breaks score ties
  by position (leftmost first), which a merge rank cannot express; the only ties in
  practice are the whitespace-only pieces (Llama 2 gives all sixteen ``▁``-runs the same
  score), and for those leftmost-first means runs are cut greedily from the left into
  the longest available run. Ranking only the merges ``(▁*k, ▁)``, longest first,
  reproduces exactly that;
- Unigram models keep their scores (the Viterbi search is the same algorithm; where two
  segmentations score exactly the same, the order of the tied pieces can differ from
  SentencePiece's, about one message in five thousand, never the number of tokens);
- user-defined pieces are matched whole in the normalized text, as SentencePiece does.

``check_parity`` compares the result with SentencePiece itself on probe strings, so that
a model this conversion does not cover fails loudly instead of counting differently.
"""

from __future__ import annotations

import re
from pathlib import Path

WS = "▁"
BPE, UNIGRAM = 2, 1  # TrainerSpec.ModelType
NORMAL, USER_DEFINED = 1, 4  # ModelProto.SentencePiece.Type

# Strings where conversions have gone wrong before: space runs of every length next to
# words, newlines and tabs, leading and trailing spaces, code indentation, non-Latin
# scripts, characters outside any vocabulary (byte fallback), the empty string.
PROBES = [
    "",
    " ",
    "a  b",
    "    # x",
    " leading",
    "trailing  ",
    "x\n\n  y\t\tz",
    "def f(x):\n        return x  # two  spaces\n",
    "Hello, world! It's 3.14 — “quoted” — naïve café.",
    "日本語のテキスト、中文文本，한국어 텍스트",
    "emoji 🤖🧪 and \u200b zero-width \x00 nul",
    *(" " * n + "w" + " " * n + "\n" + " " * n for n in range(1, 40)),
    *("a" + " " * n + "b" for n in range(1, 40)),
]


def load_proto(path: Path):
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as e:  # noqa: BLE001 - protobuf raises its own DecodeError
        raise ValueError(f"{path}: not a SentencePiece model ({e})") from None
    return proto


def _bpe_merges(proto) -> list[tuple[str, str]]:
    """Merges ranked as SentencePiece applies them (see the module docstring)."""
    normal = {p.piece: (p.score, i) for i, p in enumerate(proto.pieces) if p.type == NORMAL}
    ranked: list[tuple[float, int, str, str]] = []
    runs: dict[float, list[str]] = {}
    for piece, (score, i) in normal.items():
        if len(piece) > 1 and set(piece) == {WS}:
            runs.setdefault(score, []).append(piece)
            continue
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in normal and right in normal:
                ranked.append((-score, i, left, right))
    for score, pieces in runs.items():
        lengths = {len(p) for p in pieces}
        if len(pieces) > 1 and lengths == set(range(2, max(lengths) + 1)):
            # tied runs of every length: grow the leftmost run one space at a time
            ranked += [(-score, -len(p), p[:-1], WS) for p in pieces]
        else:
            for p in pieces:
                i = normal[p][1]
                ranked += [(-score, i, p[:k], p[k:]) for k in range(1, len(p)) if p[:k] in normal and p[k:] in normal]
    return [(left, right) for _, _, left, right in sorted(ranked)]


def build_backend(proto):
    """The ``tokenizers.Tokenizer`` for a SentencePiece proto (BPE or Unigram)."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
    )

    ts, ns = proto.trainer_spec, proto.normalizer_spec
    if ts.treat_whitespace_as_suffix:
        raise ValueError("SentencePiece models with treat_whitespace_as_suffix are not supported")
    user = [p.piece for p in proto.pieces if p.type == USER_DEFINED]
    if ts.model_type == BPE:
        vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
        unk = proto.pieces[ts.unk_id].piece if ts.unk_id >= 0 else None
        model = models.BPE(vocab=vocab, merges=_bpe_merges(proto), unk_token=unk, fuse_unk=True, byte_fallback=ts.byte_fallback, ignore_merges=bool(user))
    elif ts.model_type == UNIGRAM:
        model = models.Unigram([(p.piece, p.score) for p in proto.pieces], unk_id=ts.unk_id, byte_fallback=ts.byte_fallback)
    else:
        raise ValueError(f"SentencePiece model type {ts.model_type} (word/char) is not supported; BPE and Unigram are")
    tok = Tokenizer(model)
    steps = []
    if ns.precompiled_charsmap:
        steps.append(normalizers.Precompiled(ns.precompiled_charsmap))
    if ns.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex(r"\A +| +\z"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    if ns.add_dummy_prefix:
        steps.append(normalizers.Prepend(" "))
    if ns.escape_whitespaces:
        steps.append(normalizers.Replace(" ", WS))
    tok.normalizer = normalizers.Sequence(steps)
    # user-defined pieces are matched whole in the normalized text and never merged: isolate
    # them (BPE's ignore_merges then emits a pre-token that is a whole piece as that piece)
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("|".join(re.escape(u) for u in sorted(user, key=len, reverse=True))), "isolated") if user else None
    dec = [decoders.Replace(WS, " ")]
    if ts.byte_fallback:
        dec.append(decoders.ByteFallback())
    dec.append(decoders.Fuse())
    if ns.add_dummy_prefix:
        dec.append(decoders.Strip(content=" ", left=1, right=0))
    tok.decoder = decoders.Sequence(dec)
    control = [p.piece for p in proto.pieces if p.type == 3]
    tok.add_special_tokens([AddedToken(c, normalized=False, special=True) for c in control])
    return tok


def wrap(proto, backend):
    """A ``PreTrainedTokenizerFast`` around ``backend``: BOS added when the model has one
    (the Llama convention), never EOS."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    ts = proto.trainer_spec

    def piece(i: int) -> str | None:
        return proto.pieces[i].piece if 0 <= i < len(proto.pieces) else None

    bos, eos, unk, pad = piece(ts.bos_id), piece(ts.eos_id), piece(ts.unk_id), piece(ts.pad_id)
    if bos is not None:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, ts.bos_id)]
        )
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=eos, unk_token=unk, pad_token=pad)


def check_parity(path: Path, backend, texts: list[str] | None = None) -> None:
    """Raise when ``backend`` and SentencePiece give different ids for any of ``texts``."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(path))
    texts = PROBES if texts is None else texts
    want = sp.encode(texts)
    got = [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
    for text, w, g in zip(texts, want, got, strict=True):
        if w != g:
            raise ValueError(
                f"{path}: the fast conversion of this SentencePiece model encodes {text[:40]!r} as {g[:12]} "
                f"but SentencePiece gives {w[:12]}; this model's settings are not covered"
            )


def convert(path: Path):
    """``.model`` -> verified ``PreTrainedTokenizerFast``."""
    proto = load_proto(path)
    backend = build_backend(proto)
    check_parity(path, backend)
    return wrap(proto, backend)

