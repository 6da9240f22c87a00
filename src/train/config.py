"""Training configuration: presets in ``configs/``, user YAML files, ``--set key=value``.

One typed model with unknown keys refused by name (and the closest known name suggested),
so a typo never silently falls back to a default. Presets may ``extends:`` another preset.
The effective batch is a recipe fact; gradient accumulation is derived from it for whatever
number of processes runs it.

TRL / transformers names work too: those mixer also has under its own name (``bf16``,
``num_train_epochs``, ``per_device_train_batch_size``...) set that key; any other field of
``SFTConfig`` / ``DPOConfig`` is kept in ``trl`` and handed to TRL as is, validated by TRL's
own config class.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import warnings
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

CONFIG_DIR = Path(str(resources.files("mixer_train") / "configs"))
DEEPSPEED_PRESETS = ("zero2", "zero3", "zero3_offload")
DTYPE_NAMES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32"}
# TRL / transformers name -> mixer key (same meaning, the name users of those libraries know)
ALIASES = {
    "num_train_epochs": "epochs",
    "per_device_train_batch_size": "per_device_batch_size",
    "lr_scheduler_type": "lr_scheduler",
    "loss_type": "dpo_loss",
    "torch_dtype": "dtype",
}
# set by mixer from its own keys or the run folder; not user keys
RESERVED = {"output_dir", "deepspeed", "use_cpu", "disable_tqdm", "bf16", "fp16"}


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
    gradient_accumulation_steps: int | None = None  # set: fixed, and the effective batch follows
    per_device_batch_size: int = 1
    max_length: int = 8192
    max_grad_norm: float = 1.0
    template: str = "tulu"
    packing: bool | Literal["auto"] = "auto"  # auto: padding-free where attention isolates sequences
    packing_strategy: Literal["bfd", "bfd_split", "wrapped"] = "bfd"
    attn_implementation: str | None = None
    deepspeed: str | None = "zero3"
    dtype: Literal["bf16", "fp16", "fp32"] = "bf16"  # also: bfloat16, float16, float32
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
    report_to: str | list[str] = "auto"  # auto: tensorboard when installed; none; or transformers' names
    dataset_num_proc: int | None = None
    tokenized_cache: bool = True  # reuse tokenized + packed data across runs (MIXER_CACHE sets where)
    # any other SFTConfig / DPOConfig field, passed to TRL unchanged
    trl: dict[str, Any] = {}

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype(cls, v: Any) -> Any:
        return DTYPE_NAMES.get(v, v) if isinstance(v, str) else v

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
        """Accumulation steps that keep ``effective_batch_size`` on ``world_size`` processes
        (or ``gradient_accumulation_steps`` when it is set)."""
        if self.gradient_accumulation_steps is not None:
            return self.gradient_accumulation_steps
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


_WORDS = {"yes", "no", "on", "off"}


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["a=1", "lora.r=16"]`` -> nested dict; values parsed as YAML (``null``, lists, bools)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        # YAML 1.1 reads yes/no/on/off as booleans; TRL has string options named "no" (eval_strategy)
        value = raw.strip() if raw.strip().lower() in _WORDS else yaml.safe_load(raw) if raw.strip() else None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
        node[parts[-1]] = value
    return out


def trl_fields(kind: str) -> set[str]:
    """Field names of TRL's config class for ``kind`` (TrainingArguments included)."""
    from trl import DPOConfig, SFTConfig

    return {f.name for f in dataclasses.fields(SFTConfig if kind == "sft" else DPOConfig)}


def _unknown(key: str, names: set[str], prefix: str = "") -> ConfigError:
    close = difflib.get_close_matches(key, sorted(names), n=1, cutoff=0.6)
    hint = f"; did you mean {prefix + close[0]!r}?" if close else f"; known keys: {', '.join(sorted(names))}"
    return ConfigError(f"unknown config key {prefix + key!r}{hint}")


def _translate(data: dict[str, Any], kind: str) -> dict[str, Any]:
    """Map TRL/transformers names onto mixer keys; keep other TRL fields under ``trl``;
    refuse anything else, suggesting the closest name."""
    out: dict[str, Any] = {}
    trl = dict(data.get("trl") or {})
    fields = None
    for key, value in data.items():
        if key == "trl":
            continue
        if key == "lora" and isinstance(value, dict):
            for sub in value:
                if sub not in LoraSettings.model_fields:
                    raise _unknown(sub, set(LoraSettings.model_fields), "lora.")
        if key in TrainConfig.model_fields:
            out[key] = value
        elif key in ALIASES:
            out[ALIASES[key]] = value
        elif key in ("bf16", "fp16"):
            if not isinstance(value, bool):
                raise ConfigError(f"config key {key!r}: expected true or false (got {value!r})")
            if value:
                out["dtype"] = key
            else:  # resolved once every layer is merged: only turns off the dtype it names
                out["_off"] = [*out.get("_off", []), key]
        else:
            fields = fields if fields is not None else trl_fields(kind)
            if key in fields and key not in RESERVED:
                trl[key] = value
            elif key == "output_dir":
                raise ConfigError("config key 'output_dir': the run folder is `mixer train --output`")
            else:
                raise _unknown(key, set(TrainConfig.model_fields) | set(ALIASES) | {"bf16", "fp16"} | (fields or set()) - RESERVED)
    if trl:
        out["trl"] = trl
    return out


def _validate_trl(trl: dict[str, Any], kind: str) -> None:
    """Let TRL's own config class judge the passed-through keys."""
    import tempfile

    from trl import DPOConfig, SFTConfig

    bad = [k for k in trl if k in RESERVED or k not in trl_fields(kind)]
    if bad:
        raise _unknown(bad[0], trl_fields(kind) - RESERVED, "trl.")
    cls = SFTConfig if kind == "sft" else DPOConfig
    try:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # transformers' own renamed defaults
            cls(output_dir=tmp, use_cpu=True, report_to=[], **trl)
    except (TypeError, ValueError) as e:
        keys = ", ".join(repr(k) for k in trl)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"config key(s) {keys}: {cls.__name__} refuses them: {first}") from None


def load_config(config: str | None, overrides: dict[str, Any] | None = None, kind: str | None = None) -> TrainConfig:
    """Resolve preset/YAML + overrides into a validated config; ``kind`` picks the default
    preset and refuses a config of the other kind."""
    base = config or ("tulu2-dpo" if kind == "dpo" else "tulu2-sft")
    raw = _resolve(base)
    data = _merge(_translate(raw, raw.get("kind") or kind or "sft"), _translate(overrides or {}, raw.get("kind") or kind or "sft"))
    if data.get("lora") is True:
        data["lora"] = {}
    for off in data.pop("_off", []):
        dtype = data.get("dtype", "bf16")
        if DTYPE_NAMES.get(dtype, dtype) == off:
            data["dtype"] = "fp32"
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
    if cfg.trl:
        _validate_trl(cfg.trl, cfg.kind)
    return cfg
