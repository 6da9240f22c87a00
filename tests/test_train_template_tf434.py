"""The ``tulu_tf434`` template: the token sequence the Tulu 2 runs trained on (transformers
4.34's slow tokenizer drops the newline after each non-final ``</s>``), on real multi-turn
conversations, against a SentencePiece-only restatement of that tokenizer."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import sentencepiece as spm

from mixer.tokenizers import load_tokenizer
from mixer_train.template import apply_template, encode

ROLES = {"human": "user", "gpt": "assistant"}


def _conversations(data: Path) -> list[list[dict[str, str]]]:
    """Real multi-turn ShareGPT-style conversations and LIMA dialogues with history."""
    out = []
    for r in json.loads((data / "train/sharegpt_dummy/dummy_conversation.json").read_text()):
        turns = [{"role": ROLES[t["from"]], "content": t["value"]} for t in r["conversations"]]
        out.append(turns[: len(turns) // 2 * 2])
    for r in json.loads((data / "train/llama_factory/data/lima.json").read_text()):
        if r.get("history"):
            msgs = [{"role": role, "content": c} for q, a in r["history"] for role, c in (("user", q), ("assistant", a))]
            out.append([*msgs, {"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}])
    return [c for c in out if sum(m["role"] == "assistant" for m in c) >= 2]


def slow_434_ids(sp: spm.SentencePieceProcessor, messages: list[dict[str, str]], strip_after_eos: bool = True) -> list[int]:
    """transformers 4.34's slow Llama tokenizer on open-instruct's string: the text is cut at
    each ``</s>`` (the re-registered token strips the whitespace after it), every piece is
    encoded by SentencePiece with its own dummy prefix, and BOS goes first. Without the
    strip, the same cut gives the ids of the kept-newline encodings."""
    text = "".join(
        f"<|{m['role']}|>\n{m['content'].strip()}" + ("</s>" if m["role"] == "assistant" else "") + "\n" for m in messages
    ).strip()
    ids = [sp.bos_id()]
    for k, piece in enumerate(text.split("</s>")):
        if k:
            ids.append(sp.eos_id())
            piece = piece.lstrip() if strip_after_eos else piece
        if piece:
            ids += sp.encode(piece)
    return ids


@pytest.fixture(scope="module")
def tokenizers(shared_tokenizers: Path):
    model = shared_tokenizers / "llama2" / "tokenizer.model"
    ref = copy.deepcopy(load_tokenizer(str(model)))
    apply_template(ref, "tulu_tf434")
    kept = copy.deepcopy(load_tokenizer(str(model)))
    apply_template(kept, "tulu")
    return spm.SentencePieceProcessor(model_file=str(model)), ref, kept


def test_reference_sequence_around_each_eos(shared_data: Path, tokenizers) -> None:
    sp, ref, kept = tokenizers
    convs = _conversations(shared_data)
    assert len(convs) >= 100
    header = sp.encode("<|user|>")  # with the dummy prefix: '▁<' '|' 'user' '|' '>'
    assert sp.id_to_piece(header[0]) == "▁<"
    newline = [sp.piece_to_id("▁"), sp.piece_to_id("<0x0A>")]
    eos_seen = 0
    for msgs in convs:
        got = encode(ref, msgs)
        ids, labels = got["input_ids"], got["labels"]
        assert ids == slow_434_ids(sp, msgs)
        eos_at = [i for i, t in enumerate(ids) if t == sp.eos_id()]
        assert len(eos_at) == sum(m["role"] == "assistant" for m in msgs)
        for i in eos_at[:-1]:  # non-final: the next user header follows directly
            assert ids[i + 1 : i + 1 + len(header)] == header
            assert labels[i] == sp.eos_id() and labels[i + 1] == -100
        assert eos_at[-1] == len(ids) - 1 and labels[-1] == sp.eos_id()
        eos_seen += len(eos_at)
        # today's `tulu`: the newline after each non-final </s> is kept ('▁' '<0x0A>') and masked
        k = encode(kept, msgs)
        assert k["input_ids"] == slow_434_ids(sp, msgs, strip_after_eos=False)  # SentencePiece's ids, chunk by chunk
        k_eos = [i for i, t in enumerate(k["input_ids"]) if t == sp.eos_id()]
        for i in k_eos[:-1]:
            assert k["input_ids"][i + 1 : i + 3] == newline and k["labels"][i + 1 : i + 3] == [-100, -100]
        # the trained tokens are the same in both modes
        assert [t for t in labels if t != -100] == [t for t in k["labels"] if t != -100]
    assert eos_seen > 300
