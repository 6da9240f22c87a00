"""Supervised fine-tuning on an SFT build with TRL's SFTTrainer: the template's
``{% generation %}`` spans decide the loss (assistant content + EOS); bfd packing,
padding-free, where the attention keeps packed sequences apart."""

from __future__ import annotations

from collections.abc import Callable

from trl import SFTConfig, SFTTrainer

from mixer_train.common import load_model, peft_config, training_kwargs, warn_packing
from mixer_train.config import TrainConfig
from mixer_train.token_cache import CachedPrepareMixin, TokenCache


class MixerSFTTrainer(CachedPrepareMixin, SFTTrainer):
    """SFTTrainer whose tokenized + packed train data goes through the tokenized cache."""


def build_trainer(
    cfg: TrainConfig,
    model_path: str,
    tokenizer,
    added_tokens,
    dataset,
    output_dir: str,
    callbacks,
    packing: bool,
    cache_for: Callable[[SFTConfig], TokenCache | None] | None = None,
):
    args = SFTConfig(
        **training_kwargs(cfg, output_dir, assistant_only_loss=True, packing=packing, packing_strategy=cfg.packing_strategy)
    )
    model = load_model(model_path, cfg, tokenizer, added_tokens)  # after args: ZeRO-3 init needs them
    warn_packing(cfg, model, args.packing)
    return MixerSFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config(cfg, added_tokens),
        callbacks=callbacks,
        token_cache=cache_for(args) if cache_for else None,
    )
