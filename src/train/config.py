"""Training configuration: presets in ``configs/``, user YAML files, ``--set key=value``.

One typed model with unknown keys refused by name, so a typo never silently falls back to
a default. Presets may ``extends:`` another preset. The effective batch is a recipe fact;
gradient accumulation is derived from it for whatever number of processes runs it.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

CONFIG_DIR = Path(str(resources.files("mixer_train") / "configs"))
DEEPSPEED_PRESETS = ("zero2", "zero3", "zero3_offload")


class ConfigError(ValueError):
    """A bad configuration; the message names the key."""


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = 64
    alpha: int = 16
    dropout: float = 0.1
    target_modules: str | list[str] = "all-linear"


class TrainConfig(BaseModel):
    """Every knob a run reads; defaults are the Tulu 2 SFT recipe."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    kind: Literal["sft", "dpo"] = "sft"
    learning_rate: float = 2e-5
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    epochs: float = 2
    max_steps: int = -1
    effective_batch_size: int = 128
    per_device_batch_size: int = 1
    max_length: int = 8192
    max_grad_norm: float = 1.0
    template: str = "tulu"
    packing: bool = False
    packing_strategy: Literal["bfd", "bfd_split", "wrapped"] = "bfd"
    attn_implementation: str | None = None
    deepspeed: str | None = "zero3"
    dtype: Literal["bf16", "fp16", "fp32"] = "bf16"
    gradient_checkpointing: bool = True
    lora: LoraSettings | None = None
    quantization: Literal["4bit"] | None = None
    # DPO
    beta: float = 0.1
    dpo_loss: str = "sigmoid"
    # bookkeeping
    seed: int = 42
    logging_steps: int = 1
    save_steps: int = 500
    save_total_limit: int | None = 2
    report_to: Literal["auto", "none", "tensorboard"] = "auto"
    dataset_num_proc: int | None = None

    @field_validator("template")
    @classmethod
    def _template(cls, v: str) -> str:
        from mixer_train.template import NAMES

        if v not in NAMES:
            raise ValueError(f"unknown template {v!r}; choose one of {', '.join(NAMES)}")
        return v

    @field_validator("deepspeed")
    @classmethod
    def _deepspeed(cls, v: str | None) -> str | None:
        if v in (None, "none", "null", ""):
            return None
        if v not in DEEPSPEED_PRESETS and not Path(v).is_file():
            raise ValueError(f"deepspeed must be one of {', '.join(DEEPSPEED_PRESETS)}, null, or a JSON file; got {v!r}")
        return v

    def deepspeed_config(self) -> dict[str, Any] | None:
        """The DeepSpeed JSON (``auto`` values are filled by the HF integration)."""
        if self.deepspeed is None:
            return None
        path = CONFIG_DIR / f"{self.deepspeed}.json" if self.deepspeed in DEEPSPEED_PRESETS else Path(self.deepspeed)
        return json.loads(path.read_text())

    def grad_accum(self, world_size: int) -> int:
        """Accumulation steps that keep ``effective_batch_size`` on ``world_size`` processes."""
        per_step = self.per_device_batch_size * world_size
        if self.effective_batch_size % per_step:
            raise ConfigError(
                f"effective_batch_size={self.effective_batch_size} is not divisible by per_device_batch_size="
                f"{self.per_device_batch_size} x {world_size} processes; change one of them"
            )
        return self.effective_batch_size // per_step


def presets() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _read_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a training config must be a mapping of keys to values")
    return data


def _resolve(name_or_path: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """Raw dict of a preset name or YAML file, with ``extends`` chains merged in."""
    path = Path(name_or_path)
    if not path.is_file():
        preset = CONFIG_DIR / f"{name_or_path}.yaml"
        if not preset.is_file():
            raise ConfigError(f"config {name_or_path!r} is neither a file nor a preset ({', '.join(presets())})")
        path = preset
    if str(path) in seen:
        raise ConfigError(f"config {path}: 'extends' loops back on itself")
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    sibling = path.parent / parent
    base = _resolve(str(sibling) if sibling.is_file() else parent, (*seen, str(path)))
    return _merge(base, data)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["a=1", "lora.r=16"]`` -> nested dict; values parsed as YAML (``null``, lists, bools)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
        node[parts[-1]] = value
    return out


def _check_keys(data: dict[str, Any], model: type[BaseModel], prefix: str = "") -> None:
    for key, value in data.items():
        if key not in model.model_fields:
            known = ", ".join(sorted(model.model_fields))
            raise ConfigError(f"unknown config key {prefix + key!r}; known keys: {known}")
        if key == "lora" and isinstance(value, dict):
            _check_keys(value, LoraSettings, "lora.")


def load_config(config: str | None, overrides: dict[str, Any] | None = None, kind: str | None = None) -> TrainConfig:
    """Resolve preset/YAML + overrides into a validated config; ``kind`` picks the default
    preset and refuses a config of the other kind."""
    base = config or ("tulu2-dpo" if kind == "dpo" else "tulu2-sft")
    data = _merge(_resolve(base), overrides or {})
    _check_keys(data, TrainConfig)
    if data.get("lora") is True:
        data["lora"] = {}
    try:
        cfg = TrainConfig(**data)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"config key {key!r}: {err['msg']} (got {err.get('input')!r})") from None
    if kind is not None and cfg.kind != kind:
        raise ConfigError(f"config {base!r} is a {cfg.kind} config, but this is `mixer train {kind}`")
    if cfg.quantization and cfg.lora is None:
        raise ConfigError("config key 'quantization': 4-bit training needs a 'lora' section (QLoRA)")
    return cfg
