"""What SFT and DPO runs share: distributed setup, tokenizer + template, model loading
(full, LoRA, QLoRA), and the TrainingArguments derived from a ``TrainConfig``."""

from __future__ import annotations

import logging
import os
import socket
import warnings
from typing import Any

import torch

from mixer_train.config import ConfigError, TrainConfig

log = logging.getLogger("mixer_train")

# Attention implementations known to keep packed sequences apart: flash attention through
# cu_seq_lens; sdpa/eager/flex through the block-diagonal mask transformers derives from
# position_ids when no attention mask is given (checked by tests/test_train_sft.py).
ISOLATING_ATTENTION = {"flash_attention_2", "flash_attention_3", "sdpa", "eager", "flex_attention"}


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed(cfg: TrainConfig) -> None:
    """Create the process group before anything else: DeepSpeed needs one even in a single
    process, on CPU it must be gloo, and DPO + ZeRO-3 builds its reference engine early."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if cfg.deepspeed is None:
        if world_size() > 1:
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    import deepspeed

    if not torch.cuda.is_available() and os.environ.get("MIXER_DS_SHM", "0") != "1":
        # DeepSpeed's CPU backend JIT-compiles a shared-memory op (minutes, needs a C++
        # toolchain) that only serves inference all-reduce; training never calls it.
        import importlib

        # (``import deepspeed.comm.torch as m`` would bind the torch package itself)
        importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")


def shutdown_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def load_tokenizer_with_template(path: str, template: str):
    import copy

    from mixer.tokenizers import load_tokenizer
    from mixer_train.template import apply_template

    # load_tokenizer caches; training mutates the tokenizer (template, pad token), so copy it.
    tok = copy.deepcopy(load_tokenizer(path))
    if getattr(tok, "legacy", None) is not None:
        # transformers 5 keeps `legacy` out of init_kwargs on reload, so every save (checkpoints,
        # final/) would silently change how the text after a special token is split
        tok.init_kwargs["legacy"] = tok.legacy
    added = apply_template(tok, template)
    return tok, added


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def check_model(name: str, what: str = "--model") -> None:
    """Fail in one line, before any run folder exists, when ``name`` is neither a model
    folder nor a model the hub (or its local cache) knows."""
    from pathlib import Path

    p = Path(name).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ConfigError(f"{what} {name}: is a file; give the model's folder")
        if not any((p / f).is_file() for f in ("config.json", "adapter_config.json")):
            raise ConfigError(f"{what} {name}: the folder has no config.json; not a saved model")
        return
    if _looks_like_path(name):
        raise ConfigError(f"{what} {name}: no such folder")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{what} {name}: no such folder, and not loadable from the Hugging Face hub ({reason})") from None


def check_quantization(cfg: TrainConfig) -> None:
    """QLoRA needs bitsandbytes kernels on a CUDA GPU; say so before loading anything."""
    if cfg.quantization is None:
        return
    if not torch.cuda.is_available():
        raise ConfigError("config key 'quantization': 4-bit QLoRA needs a CUDA GPU, and none is visible")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError("config key 'quantization': 4-bit QLoRA needs bitsandbytes (`pip install 'mixer[qlora]'`)") from None
    if cfg.deepspeed is not None:
        raise ConfigError("config key 'deepspeed': set it to null for 4-bit QLoRA (the reference QLoRA runs without ZeRO)")


def load_model(path: str, cfg: TrainConfig, tokenizer, added_tokens: list[str]):
    """Load the policy; with DeepSpeed in the training dtype (ZeRO keeps fp32 masters),
    otherwise in fp32 with autocast mixed precision."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if cfg.quantization == "4bit":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["dtype"] = torch.bfloat16
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    elif cfg.deepspeed is not None and cfg.dtype != "fp32":
        kwargs["dtype"] = torch.bfloat16 if cfg.dtype == "bf16" else torch.float16
    else:
        kwargs["dtype"] = torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if added_tokens or len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    if tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if cfg.quantization == "4bit":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    return model


def peft_config(cfg: TrainConfig, added_tokens: list[str]):
    if cfg.lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        task_type="CAUSAL_LM",
        modules_to_save=["embed_tokens", "lm_head"] if added_tokens else None,
    )


def attention_implementation(cfg: TrainConfig, model_path: str) -> str:
    """The attention implementation the model will load with (before loading it: ZeRO-3
    needs the training arguments, and so the packing decision, first)."""
    if cfg.attn_implementation:
        return cfg.attn_implementation
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        config = AutoConfig.from_pretrained(model_path)
    except (OSError, ValueError):  # e.g. a LoRA adapter folder: no model config to read
        return "unknown"
    if getattr(config, "_attn_implementation", None):
        return config._attn_implementation
    try:
        model_cls = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    except KeyError:
        return "eager"
    return "sdpa" if getattr(model_cls, "_supports_sdpa", False) else "eager"


def resolve_packing(cfg: TrainConfig, attn: str) -> tuple[bool, str]:
    """``packing: auto`` -> padding-free packing where ``attn`` keeps packed sequences apart,
    padding otherwise; returns the decision and the reason the run prints."""
    if cfg.kind == "dpo":
        if cfg.packing is True:
            raise ConfigError("config key 'packing': DPO does not pack sequences; set packing: false")
        return False, "padding: DPO trains prompt/chosen/rejected pairs unpacked"
    if cfg.packing is False:
        return False, "padding: packing turned off in the config"
    isolates = attn in ISOLATING_ATTENTION and cfg.packing_strategy != "wrapped"
    if cfg.packing is True:
        how = "sequences kept apart" if isolates else "sequences may attend to each other"
        return True, f"packing ({cfg.packing_strategy}, padding-free): asked for; attention {attn!r}, {how}"
    if isolates:
        return True, f"packing ({cfg.packing_strategy}, padding-free): attention {attn!r} keeps packed sequences apart via position ids"
    return False, f"padding: attention {attn!r} does not keep packed sequences apart"


def warn_packing(cfg: TrainConfig, model, packing: bool) -> str | None:
    """A warning when packed sequences may attend to each other (checked on the loaded model)."""
    if not packing:
        return None
    impl = getattr(model.config, "_attn_implementation", None)
    msg = None
    if cfg.packing_strategy == "wrapped":
        msg = "packing_strategy 'wrapped' cuts sequences mid-way and attends across them"
    elif impl not in ISOLATING_ATTENTION:
        msg = f"attention implementation {impl!r} may not isolate packed sequences: samples can attend to each other"
    if msg:
        warnings.warn(msg, stacklevel=2)
        log.warning(msg)
    return msg


def training_kwargs(cfg: TrainConfig, output_dir: str, **specific: Any) -> dict[str, Any]:
    """Arguments for SFTConfig / DPOConfig: the shared ones, then ``specific`` to the
    trainer, then the config's ``trl`` keys, which win."""
    import importlib.util

    cpu = not torch.cuda.is_available()
    report = cfg.report_to
    if report == "auto":
        report = "tensorboard" if importlib.util.find_spec("tensorboard") else "none"
    reports = [r for r in ([report] if isinstance(report, str) else report) if r != "none"]
    kw: dict[str, Any] = dict(
        output_dir=output_dir,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.grad_accum(world_size()),
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float < 1 is a ratio
        weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        bf16=cfg.dtype == "bf16",
        fp16=cfg.dtype == "fp16",
        use_cpu=cpu,
        deepspeed=cfg.deepspeed_config(),
        report_to=reports,
        disable_tqdm=True,
        max_length=cfg.max_length,
        dataset_num_proc=cfg.dataset_num_proc,
    )
    # transformers 5 renamed gradient_checkpointing (the old name warns on every run)
    ckpt = "activation_checkpointing" if "activation_checkpointing" in _training_fields() else "gradient_checkpointing"
    kw[ckpt] = cfg.gradient_checkpointing
    if cpu and world_size() > 1:
        kw["ddp_backend"] = "gloo"
    return {**kw, **specific, **cfg.trl}


def _training_fields() -> set[str]:
    import dataclasses

    from transformers import TrainingArguments

    return {f.name for f in dataclasses.fields(TrainingArguments)}
