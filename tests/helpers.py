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


def dedup_decontam_spec(folder: Path, data: Path) -> Path:
    """Real sources with keyword hits, exact and near duplicates across and within sources,
    contaminated records, every kind of sample; mix-level exact, minhash, decontamination."""
    train, evals = data / "train", data / "eval"
    t0 = train / "self_instruct/data/finetuning/t0_train_50k/data_per_template"
    spec = {
        "name": "dedup_decontam", "seed": 7,
        "sources": {
            # new_codealpaca holds the same triples as gpteacher's Codegen file: cross-source duplicates
            "codealpaca": {"load": {"path": str(train / "codealpaca/data/new_codealpaca.json")}, "format": "alpaca",
                           "steps": [{"keyword_filter": {"preset": "tulu_v2"}}, {"exact_dedup": {}}]},
            "gpteacher": {"load": {"path": str(train / "gpteacher/Codegen/codegen-instruct.json")},
                          "format": {"name": "alpaca", "output": "response"}},
            "alpaca": {"load": {"path": str(train / "alpaca_1k/alpaca_data_1k.json")}, "format": "alpaca", "sample": {"n": 800}},
            # answers to the AlpacaEval prompts: contaminated by construction; upsampled copies
            "evalout": {"load": {"path": str(train / "alpaca_eval_outputs/results/text_davinci_003/model_outputs.json")},
                        "format": {"name": "alpaca", "output": "output"}, "sample": {"repeat": 2}},
            # many templates of one task: near-duplicates
            "t0": {"load": {"path": str(t0 / "adversarial_qa_*.jsonl")},
                   "format": {"name": "alpaca", "instruction": "prompt", "input": None, "output": "completion"},
                   "steps": [{"minhash": {"threshold": 0.9, "verify": "signature"}}],
                   "sample": {"fraction": 0.5}},
        },
        "mix": [
            {"exact_dedup": {}},
            {"minhash": {"threshold": 0.7, "verify": "exact"}},
            {"decontaminate": {"evals": ["alpaca_eval", "gsm8k"], "eval_dir": str(evals), "rule": "tulu3"}},
        ],
    }
    return write_spec(folder, spec)


def same_build(a: Path, b: Path, side_files: tuple[str, ...] = ()) -> None:
    """Identical outputs and ledger; only timings and the engine note may differ."""
    for f in ("mixture.parquet", "removed.parquet", *side_files):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    assert untimed(ma["steps"]) == untimed(mb["steps"])
    assert untimed(ma["sources"]) == untimed(mb["sources"])
    assert ma["files"]["mixture.parquet"]["sha256"] == mb["files"]["mixture.parquet"]["sha256"]


def untimed(obj):
    if isinstance(obj, dict):
        return {k: untimed(v) for k, v in obj.items() if k not in ("seconds", "timings")}
    if isinstance(obj, list):
        return [untimed(v) for v in obj]
    return obj
