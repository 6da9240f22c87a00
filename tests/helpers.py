"""Small helpers for writing specs and data files in tests."""

from __future__ import annotations

import json
from pathlib import Path

import yaml


def write_spec(folder: Path, spec: dict, name: str = "spec.yaml") -> Path:
    p = folder / name
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    return p


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def alpaca_rows(n: int, prefix: str = "q") -> list[dict]:
    return [{"instruction": f"{prefix} question number {i}?", "input": "", "output": f"answer {i}"} for i in range(n)]
