"""Chat templates for training, as Jinja with ``{% generation %}`` markers.

TRL's assistant-only loss masks every token outside the ``{% generation %}`` spans, so the
template alone decides what is trained. ``tulu`` reproduces the Tulu 2 encoding exactly
(open-instruct's ``encode_with_messages_format``): content stripped, ``<|role|>\\n`` headers, assistant content plus
EOS trained, everything else (headers, user and system turns, the newline after EOS) masked,
the whole string stripped. BOS comes from the template (chat templates are encoded without
special tokens), for tokenizers that add one when encoding plain text.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

# One line per message; the "\n" that ends a message is only written when another message
# or the generation prompt follows (the reference strips the whole string).
TULU = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set content = message['content'] | trim %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\\n' + content }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + content }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\\n' }}"
    "{% generation %}{{ content + eos_token }}{% endgeneration %}"
    "{% else %}{{ raise_exception('tulu template: unknown role ' + message['role']) }}"
    "{% endif %}"
    "{% if not loop.last or add_generation_prompt %}{{ '\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

# The sequence the Tulu 2 runs trained on (transformers 4.34, slow Llama tokenizer, with
# finetune.py re-registering ``</s>``, which strips the whitespace after it): the newline
# after every non-final ``</s>`` is gone from the input ids, and the next header starts a
# new piece (``</s>`` ``▁<`` ``|`` ``user`` ...). Same masking as ``tulu``.
TULU_TF434 = TULU.replace(
    "{% if not loop.last or add_generation_prompt %}{{ '\\n' }}{% endif %}",
    "{% if (not loop.last or add_generation_prompt) and message['role'] != 'assistant' %}{{ '\\n' }}{% endif %}",
)

# Zephyr: every turn closed by EOS; the assistant's EOS is trained.
ZEPHYR = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] | trim + eos_token }}{% endgeneration %}"
    "{% else %}{{ message['content'] | trim + eos_token }}{% endif %}"
    "{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

# ChatML: the assistant's <|im_end|> is trained (it is the stop token).
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] | trim + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] | trim + '<|im_end|>' }}{% endif %}"
    "{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

TEMPLATES = {"tulu": TULU, "tulu_tf434": TULU_TF434, "zephyr": ZEPHYR, "chatml": CHATML}
# Tokens a template needs as single (special) tokens; added to the tokenizer when missing.
TEMPLATE_TOKENS = {"chatml": ["<|im_start|>", "<|im_end|>"]}
NAMES = (*TEMPLATES, "tokenizer")


class TemplateError(ValueError):
    """A template cannot be used for assistant-only training."""


def has_generation_markers(template: str | None) -> bool:
    return bool(template) and "{% generation %}" in template.replace("{%- generation", "{% generation")


def adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether plain encoding starts with BOS (Llama: yes; GPT-2, OLMo 2: no). The template
    writes BOS itself, and only for tokenizers that would have added it."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a").input_ids[:1] == [bos]


def apply_template(tokenizer: PreTrainedTokenizerBase, name: str) -> list[str]:
    """Attach template ``name`` to ``tokenizer`` (in place) and return the tokens it added.

    ``tokenizer`` keeps the tokenizer's own template; it must carry generation markers, or be
    one TRL knows how to patch, since otherwise assistant-only loss would silently train on
    everything. A pad token is set when missing (unk, else EOS: the labels keep EOS either way).
    """
    added: list[str] = []
    if name == "tokenizer":
        own = tokenizer.chat_template
        if not own:
            raise TemplateError("template 'tokenizer': this tokenizer has no chat template; use one of " + ", ".join(TEMPLATES))
        if not has_generation_markers(own):
            from trl.chat_template_utils import get_training_chat_template

            try:
                patched = get_training_chat_template(tokenizer)
            except ValueError:
                patched = None
            if not patched:
                raise TemplateError(
                    "template 'tokenizer': the tokenizer's chat template has no {% generation %} markers and TRL "
                    "has no training version of it; pick one of " + ", ".join(TEMPLATES)
                )
            tokenizer.chat_template = patched
    elif name in TEMPLATES:
        if tokenizer.eos_token is None and name != "chatml":
            raise TemplateError(f"template {name!r} ends assistant turns with EOS, but this tokenizer has no eos_token")
        missing = [t for t in TEMPLATE_TOKENS.get(name, []) if t not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_special_tokens({"additional_special_tokens": missing})
            added = missing
        template = TEMPLATES[name]
        if not adds_bos(tokenizer):
            template = template.removeprefix("{{ bos_token }}")
        tokenizer.chat_template = template
        if name == "chatml":
            tokenizer.eos_token = "<|im_end|>"
    else:
        raise TemplateError(f"unknown template {name!r}; choose one of {', '.join(NAMES)}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
    return added


def encode(tokenizer: PreTrainedTokenizerBase, messages: list[dict], max_length: int | None = None) -> dict[str, list[int]]:
    """``input_ids`` and ``labels`` (-100 outside assistant spans) exactly as training sees them."""
    out = tokenizer.apply_chat_template(
        [{"role": m["role"], "content": m["content"]} for m in messages],
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    ids = list(out["input_ids"])
    labels = [t if m else -100 for t, m in zip(ids, out["assistant_masks"], strict=True)]
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "labels": labels}
