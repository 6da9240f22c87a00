"""DPO on a preference build with TRL's DPOTrainer. The prompt is rendered with the
template's generation prompt, so the trained completion is the assistant turn plus EOS,
as in SFT. The reference model is the starting policy (or the base under LoRA)."""

from __future__ import annotations

from collections.abc import Callable

from trl import DPOConfig, DPOTrainer

from mixer_train.common import load_model, peft_config, training_kwargs
from mixer_train.config import TrainConfig
from mixer_train.token_cache import CachedPrepareMixin, TokenCache


class MixerDPOTrainer(CachedPrepareMixin, DPOTrainer):
    """DPOTrainer whose tokenized train pairs go through the tokenized cache."""


def build_trainer(
    cfg: TrainConfig,
    model_path: str,
    tokenizer,
    added_tokens,
    dataset,
    output_dir: str,
    callbacks,
    packing: bool = False,
    cache_for: Callable[[DPOConfig], TokenCache | None] | None = None,
):
    if packing:
        raise ValueError("config key 'packing': DPO does not pack sequences; set packing: false")
    args = DPOConfig(**training_kwargs(cfg, output_dir, beta=cfg.beta, loss_type=[cfg.dpo_loss]))
    model = load_model(model_path, cfg, tokenizer, added_tokens)
    # TRL rebuilds the reference from the model path, which lacks tokens a template added.
    ref = load_model(model_path, cfg, tokenizer, added_tokens) if added_tokens and cfg.lora is None else None
    return MixerDPOTrainer(
        model=model,
        ref_model=ref,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config(cfg, added_tokens),
        callbacks=callbacks,
        token_cache=cache_for(args) if cache_for else None,
    )
