"""The run's model card (README.md in the run folder and in ``final/``): the base model, the
build it was trained on (name, spec hash, manifest hash, per-source counts, where the
dataset card lives), the training config, the chat template and the final metrics, so a
checkpoint found anywhere names its data."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from mixer.output import mixture_files


def _rows(pairs: list[tuple[str, Any]]) -> str:
    return "\n".join(f"| {k} | {v} |" for k, v in pairs)


def model_card(info: dict[str, Any], manifest: dict[str, Any], manifest_bytes: bytes, chat_template: str | None) -> str:
    """Markdown for the run recorded in ``info`` (run.json) on the build of ``manifest``."""
    build = Path(info["build"])
    kind = info["kind"]
    shards = {n: f for n, f in (manifest.get("files") or {}).items() if n in {p.name for p in mixture_files(Path(info["build"]), manifest)}}
    dataset_card = build / "README.md"
    sources = manifest.get("sources") or {}
    source_rows = "\n".join(
        f"| {name} | {s.get('format', '')} | {s.get('read', '')} | {s.get('kept', '')} |" for name, s in sources.items()
    )
    summary = info.get("summary") or {}
    metrics = {**(info.get("train_metrics") or {}), **summary}
    versions = ", ".join(f"{k} {v}" for k, v in (info.get("versions") or {}).items())
    front = {
        "base_model": info["model"],
        "library_name": "transformers" if not info["config"].get("lora") else "peft",
        "tags": ["mixer", "trl", kind],
    }
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# {Path(info.get('folder') or build.name).name}",
        "",
        f"{'Supervised fine-tuning' if kind == 'sft' else 'DPO'} of `{info['model']}` on the mixer build "
        f"`{manifest.get('name')}`, trained with `mixer train {kind}`.",
        "",
        "## Data",
        "",
        "| | |",
        "|---|---|",
        _rows([
            ("build", f"`{manifest.get('name')}` ({manifest.get('kind')}) at `{build}`"),
            ("spec hash", f"`{manifest.get('spec_hash')}`"),
            ("manifest hash", f"`sha256:{hashlib.sha256(manifest_bytes).hexdigest()}`"),
            *[(name, f"`sha256:{f.get('sha256')}`, {f.get('rows')} records") for name, f in sorted(shards.items())],
            ("dataset card", f"`{dataset_card}`" + ("" if dataset_card.is_file() else " (not present in the build folder)")),
        ]),
        "",
    ]
    if source_rows:
        lines += ["| source | format | read | kept |", "|---|---|---:|---:|", source_rows, ""]
    packing = info.get("packing") or {}
    cache = info.get("tokenized_cache") or {}
    lines += [
        "## Training",
        "",
        f"Processes: {info.get('nproc', 1)}. {packing.get('reason', '')}".strip(),
        "",
        f"Tokenized cache: {'hit' if cache.get('hit') else 'miss'} (key `{cache.get('key')}`)." if cache else "",
        "",
        "```yaml",
        yaml.safe_dump(info["config"], sort_keys=True).strip(),
        "```",
        "",
        "## Chat template",
        "",
        "```jinja",
        (chat_template or "(none)").strip(),
        "```",
        "",
        "## Final metrics",
        "",
        "| metric | value |",
        "|---|---:|",
        _rows([(k, v) for k, v in metrics.items() if v is not None]),
        "",
        f"Versions: {versions}.",
        "",
    ]
    return "\n".join(lines)


def write_card(folder: Path, info: dict[str, Any], chat_template: str | None) -> str:
    """Write README.md into the run folder and its ``final/`` (replacing TRL's generic card)."""
    manifest_bytes = (folder / "build_manifest.json").read_bytes()
    import json

    text = model_card({**info, "folder": str(folder)}, json.loads(manifest_bytes), manifest_bytes, chat_template)
    for target in (folder, folder / "final"):
        if target.is_dir():
            (target / "README.md").write_text(text)
    return text
