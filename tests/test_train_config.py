"""Training presets, overrides and the errors a user sees for a bad config."""

from __future__ import annotations

import pytest

from mixer_train.common import resolve_packing, training_kwargs, warn_packing
from mixer_train.config import ConfigError, load_config, parse_overrides, presets


def test_presets_carry_the_paper_hyperparameters():
    assert {"tulu2-sft", "tulu2-dpo", "tulu2-qlora"} <= set(presets())
    sft = load_config("tulu2-sft")
    assert (sft.kind, sft.learning_rate, sft.lr_scheduler, sft.warmup_ratio, sft.epochs) == ("sft", 2e-5, "linear", 0.03, 2)
    assert (sft.effective_batch_size, sft.max_length, sft.deepspeed, sft.weight_decay) == (128, 8192, "zero3", 0.0)
    assert sft.template == "tulu" and sft.packing == "auto"
    dpo = load_config("tulu2-dpo")
    assert (dpo.kind, dpo.beta, dpo.learning_rate, dpo.warmup_ratio, dpo.epochs) == ("dpo", 0.1, 5e-7, 0.1, 3)
    assert (dpo.effective_batch_size, dpo.max_length) == (32, 2048)
    q = load_config("tulu2-qlora")
    assert (q.lora.r, q.lora.alpha, q.lora.dropout, q.learning_rate, q.quantization) == (64, 16, 0.1, 1e-4, "4bit")
    assert q.max_length == 8192  # inherited from tulu2-sft through `extends`


def test_default_preset_follows_the_command():
    assert load_config(None, kind="sft").kind == "sft"
    assert load_config(None, kind="dpo").beta == 0.1
    with pytest.raises(ConfigError, match="is a dpo config"):
        load_config("tulu2-dpo", kind="sft")


def test_overrides_parse_and_coerce():
    o = parse_overrides(["learning_rate=1e-4", "lora.r=16", "deepspeed=null", "packing=true"])
    assert o == {"learning_rate": "1e-4", "lora": {"r": 16}, "deepspeed": None, "packing": True}
    cfg = load_config("tulu2-qlora", o)
    assert cfg.learning_rate == 1e-4 and cfg.lora.r == 16 and cfg.lora.alpha == 16 and cfg.deepspeed is None


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["lerning_rate=1e-4"], "unknown config key 'lerning_rate'; did you mean 'learning_rate'"),
        (["num_epochs=3"], "unknown config key 'num_epochs'; did you mean 'num_train_epochs'"),
        (["per_device_batch=4"], "did you mean 'per_device_batch_size'"),
        (["lora.rank=8"], "unknown config key 'lora.rank'; known keys: alpha, dropout, r, target_modules"),
        (["lora.alpah=8"], "did you mean 'lora.alpha'"),
        (["optim=adamw_bogus"], "SFTConfig refuses them: adamw_bogus is not a valid OptimizerNames"),
        (["output_dir=x"], "--output"),
        (["bf16=maybe"], "config key 'bf16': expected true or false"),
        (["epochs=many"], "config key 'epochs'"),
        (["template=vicuna"], "unknown template 'vicuna'"),
        (["deepspeed=zero9"], "deepspeed must be one of"),
        (["quantization=4bit"], "needs a 'lora' section"),
    ],
)
def test_bad_keys_are_named(pairs, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tulu2-sft", parse_overrides(pairs))


def test_user_yaml_extends_a_preset(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("extends: tulu2-dpo\nbeta: 0.05\n")
    cfg = load_config(str(f), kind="dpo")
    assert cfg.beta == 0.05 and cfg.learning_rate == 5e-7
    f.write_text("extends: tulu2-dpo\nbta: 0.05\n")
    with pytest.raises(ConfigError, match="'bta'"):
        load_config(str(f))


def test_effective_batch_is_kept_across_process_counts(monkeypatch):
    cfg = load_config("tulu2-sft")  # 128, 1 per device
    assert [cfg.grad_accum(n) for n in (1, 2, 8)] == [128, 64, 16]
    monkeypatch.setenv("WORLD_SIZE", "8")
    kw = training_kwargs(cfg, "/tmp/x")
    assert kw["gradient_accumulation_steps"] * kw["per_device_train_batch_size"] * 8 == 128
    assert kw["warmup_steps"] == 0.03 and kw["deepspeed"]["zero_optimization"]["stage"] == 3
    odd = load_config("tulu2-dpo", {"per_device_batch_size": 3})
    with pytest.raises(ConfigError, match="not divisible"):
        odd.grad_accum(2)


def test_qlora_without_gpu_is_a_clear_error():
    import torch

    from mixer_train.common import check_quantization

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        check_quantization(load_config("tulu2-qlora"))


def test_packing_warning_names_the_leak():
    from types import SimpleNamespace

    cfg = load_config("tulu2-sft", {"packing": True})
    sdpa = SimpleNamespace(config=SimpleNamespace(_attn_implementation="sdpa"))
    assert warn_packing(cfg, sdpa, True) is None
    other = SimpleNamespace(config=SimpleNamespace(_attn_implementation="paged|sdpa"))
    with pytest.warns(UserWarning, match="may not isolate packed sequences"):
        assert warn_packing(cfg, other, True)
    wrapped = load_config("tulu2-sft", {"packing": True, "packing_strategy": "wrapped"})
    with pytest.warns(UserWarning, match="wrapped"):
        warn_packing(wrapped, sdpa, True)


def test_packing_by_default_only_where_attention_isolates_sequences():
    auto = load_config("tulu2-sft")
    for attn in ("sdpa", "flash_attention_2", "eager"):
        on, reason = resolve_packing(auto, attn)
        assert on and "padding-free" in reason and repr(attn) in reason
    on, reason = resolve_packing(auto, "paged|sdpa")
    assert not on and reason == "padding: attention 'paged|sdpa' does not keep packed sequences apart"
    assert resolve_packing(load_config("tulu2-sft", {"packing": False}), "sdpa") == (False, "padding: packing turned off in the config")
    assert not resolve_packing(load_config("tulu2-sft", {"packing_strategy": "wrapped"}), "sdpa")[0]
    assert not resolve_packing(load_config("tulu2-dpo"), "sdpa")[0]
    with pytest.raises(ConfigError, match="DPO does not pack"):
        resolve_packing(load_config("tulu2-dpo", {"packing": True}), "sdpa")


def test_trl_names_are_accepted_and_forwarded():
    """TRL / transformers names: mixer's own keys under their TRL name, any other field of
    SFTConfig / DPOConfig passed through to it (and validated by it)."""
    from trl import DPOConfig, SFTConfig

    sets = ["bf16=false", "num_train_epochs=1", "per_device_train_batch_size=4", "lr_scheduler_type=cosine",
            "gradient_accumulation_steps=3", "optim=adamw_torch", "warmup_steps=5", "neftune_noise_alpha=5",
            "eval_strategy=no", "dataloader_drop_last=true"]
    cfg = load_config(None, parse_overrides(sets), kind="sft")
    assert (cfg.dtype, cfg.epochs, cfg.per_device_batch_size, cfg.lr_scheduler, cfg.grad_accum(8)) == ("fp32", 1, 4, "cosine", 3)
    assert cfg.trl == {"optim": "adamw_torch", "warmup_steps": 5, "neftune_noise_alpha": 5, "eval_strategy": "no",
                       "dataloader_drop_last": True}
    args = SFTConfig(**training_kwargs(cfg, "/tmp/x", packing=False))
    assert (args.bf16, args.fp16, args.num_train_epochs, args.per_device_train_batch_size) == (False, False, 1, 4)
    assert (args.lr_scheduler_type, args.gradient_accumulation_steps, args.optim, args.warmup_steps) == ("cosine", 3, "adamw_torch", 5)
    assert args.neftune_noise_alpha == 5 and args.dataloader_drop_last is True
    assert load_config(None, {"bf16": True}, kind="sft").dtype == "bf16"
    assert load_config(None, {"fp16": True}, kind="sft").dtype == "fp16"
    assert load_config(None, {"dtype": "float32"}, kind="sft").dtype == "fp32"
    assert load_config(None, {"dtype": "bfloat16", "fp16": False}, kind="sft").dtype == "bf16"  # turns off only fp16
    dpo = load_config(None, parse_overrides(["beta=0.05", "loss_type=ipo", "label_smoothing=0.1"]), kind="dpo")
    assert (dpo.beta, dpo.dpo_loss, dpo.trl) == (0.05, "ipo", {"label_smoothing": 0.1})
    args = DPOConfig(**training_kwargs(dpo, "/tmp/x", beta=dpo.beta, loss_type=[dpo.dpo_loss]))
    assert (args.beta, args.loss_type, args.label_smoothing) == (0.05, ["ipo"], 0.1)
    with pytest.raises(ConfigError, match="did you mean 'label_smoothing'"):
        load_config(None, {"label_smothing": 0.1}, kind="dpo")
    with pytest.raises(ConfigError, match="unknown config key 'label_smoothing'"):  # a DPO field, not an SFT one
        load_config(None, {"label_smoothing": 0.1}, kind="sft")
