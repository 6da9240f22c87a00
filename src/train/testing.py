"""Small real-data fixtures for tests and benchmarks: a tiny random Llama with a real
tokenizer, and build folders written to the ``mixer build`` contract.

Kept in the package (not in tests/) because the benchmark uses them too; nothing here is
used by a training run.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import polars as pl

from mixer.records import PREF_SCHEMA, SFT_SCHEMA

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def tiny_llama(folder: str | Path, tokenizer_path: str, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Save a randomly initialised Llama (and its tokenizer) that ``--model`` can load."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from mixer.tokenizers import load_tokenizer

    folder = Path(folder)
    tok = load_tokenizer(tokenizer_path)
    if getattr(tok, "legacy", None) is not None:
        tok.init_kwargs["legacy"] = tok.legacy  # keep Llama's legacy spacing in the saved copy
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_build(frame: pl.DataFrame, folder: str | Path, name: str = "fixture", seed: int = 0) -> Path:
    """Write ``frame`` as a build folder with the manifest contract of ``mixer build``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kind = "sft" if "messages" in frame.columns else "preference"
    frame.write_parquet(folder / "mixture.parquet")
    pl.DataFrame(schema={"id": pl.Utf8, "source": pl.Utf8, "step": pl.Utf8, "reason": pl.Utf8, "detail": pl.Utf8}).write_parquet(
        folder / "removed.parquet"
    )
    files = {
        f: {"sha256": _sha256(folder / f), "bytes": (folder / f).stat().st_size, "rows": pl.read_parquet(folder / f).height}
        for f in ("mixture.parquet", "removed.parquet")
    }
    spec = hashlib.sha256(f"{name}:{kind}:{files['mixture.parquet']['sha256']}".encode()).hexdigest()
    manifest = {
        "complete": True,
        "kind": kind,
        "name": name,
        "spec_hash": f"sha256:{spec}",
        "seed": seed,
        "files": files,
        "sources": {},
        "steps": [],
        "versions": {},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


def _sharegpt_turns(conv: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"role": SHAREGPT_ROLES[m["from"]], "content": m["value"]} for m in conv]


def alpaca_messages(path: Path) -> list[list[dict[str, str]]]:
    rows = json.loads(Path(path).read_text())
    out = []
    for r in rows:
        prompt = r["instruction"] + ("\n\n" + r["input"] if r.get("input") else "")
        out.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": r["output"]}])
    return out


def lima_messages(path: Path) -> list[list[dict[str, str]]]:
    """LLaMA-Factory's LIMA: ``history`` pairs, then instruction/output."""
    out = []
    for r in json.loads(Path(path).read_text()):
        msgs = []
        for q, a in r.get("history") or []:
            msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        msgs += [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]
        out.append(msgs)
    return out


def sharegpt_messages(path: Path) -> list[list[dict[str, str]]]:
    return [_sharegpt_turns(r["conversations"]) for r in json.loads(Path(path).read_text())]


def sft_frame_from(conversations: list[list[dict[str, str]]], source: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [f"{source}-{i}" for i in range(len(conversations))],
            "source": [source] * len(conversations),
            "messages": conversations,
            "meta": [None] * len(conversations),
        },
        schema=SFT_SCHEMA,
    )


def dpo_demo_frame(path: Path) -> pl.DataFrame:
    """LLaMA-Factory ``dpo_en_demo.json`` (ShareGPT turns + chosen/rejected) as preference records."""
    ids, chosen, rejected = [], [], []
    for i, r in enumerate(json.loads(Path(path).read_text())):
        prompt = _sharegpt_turns(r["conversations"])
        chosen.append(prompt + _sharegpt_turns([r["chosen"]]))
        rejected.append(prompt + _sharegpt_turns([r["rejected"]]))
        ids.append(f"dpo_en_demo-{i}")
    return pl.DataFrame(
        {"id": ids, "source": ["dpo_en_demo"] * len(ids), "chosen": chosen, "rejected": rejected, "meta": [None] * len(ids)},
        schema=PREF_SCHEMA,
    )


def _hh_turns(text: str) -> list[dict[str, str]]:
    turns: list[dict[str, str]] = []
    for chunk in text.split("\n\nHuman: ")[1:]:
        parts = chunk.split("\n\nAssistant: ")
        turns.append({"role": "user", "content": parts[0]})
        turns += [{"role": "assistant", "content": p} for p in parts[1:]]
    return turns


def hh_rlhf_frame(path: Path, limit: int | None = None, max_chars: int | None = None) -> pl.DataFrame:
    """Anthropic HH transcripts split at the first differing turn (Tulu 2.5 recipe);
    ``max_chars`` keeps pairs whose two sides together are shorter (short test batches)."""
    ids, chosen, rejected = [], [], []
    with gzip.open(path, "rt") as f:
        for i, line in enumerate(f):
            r = json.loads(line)
            c, rj = _hh_turns(r["chosen"]), _hh_turns(r["rejected"])
            k = next((j for j, (a, b) in enumerate(zip(c, rj, strict=False)) if a != b), None)
            if k is None or c[k]["role"] != "assistant" or not c[k]["content"].strip() or not rj[k]["content"].strip():
                continue
            if max_chars and sum(len(m["content"]) for m in c[: k + 1] + rj[: k + 1]) >= max_chars:
                continue
            chosen.append(c[: k + 1])
            rejected.append(rj[: k + 1])
            ids.append(f"hh_rlhf-{i}")
            if limit and len(ids) >= limit:
                break
    return pl.DataFrame(
        {"id": ids, "source": ["hh_rlhf"] * len(ids), "chosen": chosen, "rejected": rejected, "meta": [None] * len(ids)},
        schema=PREF_SCHEMA,
    )
