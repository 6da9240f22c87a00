"""Masking parity: the labels TRL trains on (Tulu template, assistant-only loss) against an
independent implementation of the reference encoding on real conversations."""

from __future__ import annotations

import copy
import json

import pytest

from mixer.tokenizers import load_tokenizer
from mixer_train.template import TemplateError, apply_template, encode
from mixer_train.testing import (
    alpaca_messages,
    lima_messages,
    sft_frame_from,
    sharegpt_messages,
    tiny_llama,
)

pytestmark = pytest.mark.shared_data


# ----------------------------------------------------------- the reference, written from scratch


def _concat(messages: list[dict], eos: str) -> str:
    """open-instruct's ``_concat_messages`` (Tulu 2): string building, one turn at a time."""
    text = ""
    for m in messages:
        if m["role"] == "system":
            text += "<|system|>\n" + m["content"].strip() + "\n"
        elif m["role"] == "user":
            text += "<|user|>\n" + m["content"].strip() + "\n"
        elif m["role"] == "assistant":
            text += "<|assistant|>\n" + m["content"].strip() + eos + "\n"
        else:
            raise ValueError(m["role"])
    return text


def reference_encoding(tok, messages: list[dict]) -> tuple[list[int], list[int]]:
    """The Tulu 2 rule (``mixer_train.template``'s docstring) by prefix re-tokenization: each assistant turn's
    content + EOS is trained, everything else is -100."""
    eos = tok.eos_token
    ids = tok(_concat(messages, eos).strip()).input_ids
    labels = [-100] * len(ids)
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        head = _concat(messages[:i], eos) + "<|assistant|>\n"
        start = len(tok(head).input_ids)
        end = len(tok(head + m["content"].strip() + eos).input_ids)
        labels[start:end] = ids[start:end]
    return ids, labels


def open_instruct_encoding(tok, messages: list[dict]) -> list[int]:
    """open-instruct's ``encode_with_messages_format`` masking loop, verbatim in logic."""
    eos = tok.eos_token
    ids = tok(_concat(messages, eos).strip()).input_ids
    labels = list(ids)
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            continue
        start = 0 if i == 0 else len(tok(_concat(messages[:i], eos)).input_ids)
        if i < len(messages) - 1 and messages[i + 1]["role"] == "assistant":
            so_far = _concat(messages[: i + 1], eos) + "<|assistant|>\n"
        else:
            so_far = _concat(messages[: i + 1], eos)
        end = len(tok(so_far).input_ids)
        labels[start:end] = [-100] * (end - start)
    return labels


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def conversations(shared_data) -> list[list[dict]]:
    """>= 200 real conversations: single-turn, multi-turn, with system turns."""
    train = shared_data / "train"
    alpaca = alpaca_messages(train / "alpaca_1k" / "alpaca_data_1k.json")[:70]
    multi = [c for c in sharegpt_messages(train / "sharegpt_dummy" / "dummy_conversation.json") if len(c) >= 4][:70]
    lima = lima_messages(train / "llama_factory" / "data" / "lima.json")
    lima = [c for c in lima if len(c) > 2] + [c for c in lima if len(c) == 2][:30]
    demo = json.loads((train / "llama_factory" / "data" / "dpo_en_demo.json").read_text())
    roles = {"human": "user", "gpt": "assistant", "system": "system"}
    with_system = [
        [{"role": roles[t["from"]], "content": t["value"]} for t in r["conversations"] + [r["chosen"]]]
        for r in demo
        if r["conversations"][0]["from"] == "system"
    ][:40]
    convs = alpaca + multi + lima + with_system
    assert len(convs) >= 200 and sum(len(c) > 2 for c in convs) >= 100
    assert any(c[0]["role"] == "system" for c in convs)
    return convs


@pytest.fixture(scope="module")
def llama_tok(shared_tokenizers):
    tok = copy.deepcopy(load_tokenizer(str(shared_tokenizers / "llama2" / "tokenizer.model")))
    apply_template(tok, "tulu")
    return tok


@pytest.fixture(scope="module")
def sft_trainer(tmp_path_factory, shared_tokenizers, conversations):
    """A real SFTTrainer (tiny Llama) whose prepared dataset holds the labels TRL trains on;
    pad == eos on purpose."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    tmp = tmp_path_factory.mktemp("template")
    model_dir = tiny_llama(tmp / "model", str(shared_tokenizers / "llama2" / "tokenizer.model"))
    tok = copy.deepcopy(load_tokenizer(str(model_dir)))
    apply_template(tok, "tulu")
    tok.pad_token = tok.eos_token
    frame = sft_frame_from(conversations, "parity")
    ds = Dataset.from_polars(frame.select("messages"))
    args = SFTConfig(
        output_dir=str(tmp / "out"),
        assistant_only_loss=True,
        max_length=None,
        use_cpu=True,
        report_to=[],
        bf16=False,
        activation_checkpointing=False,
    )
    return SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args, train_dataset=ds, processing_class=tok)


# -------------------------------------------------------------------------------- tests


def test_trl_labels_equal_reference_masking(sft_trainer, conversations):
    tok = sft_trainer.processing_class
    ds = sft_trainer.train_dataset
    assert len(ds) == len(conversations)
    for i, conv in enumerate(conversations):
        ids, labels = reference_encoding(tok, conv)
        assert ds[i]["input_ids"] == ids, f"conversation {i}: token ids differ"
        assert ds[i]["labels"] == labels, f"conversation {i}: labels differ"


def test_every_assistant_turn_ends_on_a_trained_eos(sft_trainer, conversations):
    tok = sft_trainer.processing_class
    for i, conv in enumerate(conversations):
        labels = sft_trainer.train_dataset[i]["labels"]
        n_assistant = sum(m["role"] == "assistant" for m in conv)
        assert labels.count(tok.eos_token_id) == n_assistant
        assert labels[-1] == tok.eos_token_id  # last turn is the assistant's: its EOS is trained
        assert labels[0] == -100  # BOS and the first header are masked


def test_eos_label_survives_padding_when_pad_is_eos(sft_trainer):
    tok = sft_trainer.processing_class
    assert tok.pad_token_id == tok.eos_token_id
    examples = [sft_trainer.train_dataset[i] for i in (0, 1, 75)]
    batch = sft_trainer.data_collator(examples)
    for row, ex in enumerate(examples):
        n = len(ex["input_ids"])
        assert batch["labels"][row, n - 1].item() == tok.eos_token_id
        assert (batch["labels"][row, n:] == -100).all()
        assert (batch["attention_mask"][row, n:] == 0).all()


def test_difference_from_open_instruct_is_only_the_newline_after_eos(llama_tok, conversations):
    """open-instruct's loop also trains the separator after a non-final EOS (it sits in the
    next turn's prefix); the documented rule masks it. Nothing else differs."""
    newline_pieces = {"▁", "<0x0A>"}
    extra = 0
    for conv in conversations:
        ids, ours = reference_encoding(llama_tok, conv)
        theirs = open_instruct_encoding(llama_tok, conv)
        for j, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            if a != b:
                assert a == -100 and b == ids[j]
                assert llama_tok.convert_ids_to_tokens(ids[j]) in newline_pieces
                assert llama_tok.convert_ids_to_tokens(ids[: j + 1]).count("</s>") >= 1
                extra += 1
    assert extra > 0  # the multi-turn conversations do hit it


@pytest.mark.parametrize("name", ["gpt2", "olmo2"])
def test_parity_holds_for_other_tokenizers(shared_tokenizers, conversations, name):
    tok = copy.deepcopy(load_tokenizer(str(shared_tokenizers / name / "tokenizer.json")))
    tok.eos_token = "<|endoftext|>"
    apply_template(tok, "tulu")
    for conv in conversations[::4]:
        enc = encode(tok, conv)
        ids, labels = reference_encoding(tok, conv)
        assert enc["input_ids"] == ids
        assert enc["labels"] == labels


def test_generation_prompt_matches_reference(llama_tok):
    msgs = [{"role": "user", "content": " What is 2+2? "}]
    assert llama_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == (
        "<s><|user|>\nWhat is 2+2?\n<|assistant|>\n"
    )


@pytest.mark.parametrize(
    ("name", "end"),
    [("zephyr", "</s>"), ("chatml", "<|im_end|>")],
)
def test_other_templates_train_content_and_stop_token_only(llama_tok, name, end):
    tok = copy.deepcopy(llama_tok)
    added = apply_template(tok, name)
    assert added == ([] if name == "zephyr" else ["<|im_start|>", "<|im_end|>"])
    conv = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there"},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye"},
    ]
    enc = encode(tok, conv)
    trained = [t for t, lab in zip(enc["input_ids"], enc["labels"], strict=True) if lab != -100]
    assert tok.decode(trained) == f"Hello there{end}Goodbye{end}"


def test_unknown_template_and_missing_generation_markers(llama_tok):
    tok = copy.deepcopy(llama_tok)
    with pytest.raises(TemplateError, match="unknown template"):
        apply_template(tok, "vicuna")
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(TemplateError, match="generation"):
        apply_template(tok, "tokenizer")
