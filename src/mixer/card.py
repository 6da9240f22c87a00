"""The dataset card (``README.md``) of a build, generated from ``manifest.json`` alone.

The card makes a build folder a Hugging Face dataset: its YAML header names the mixture
files as the ``default`` config and the ledger as the ``removed`` config, so
``datasets.load_dataset(BUILD)`` and ``load_dataset(BUILD, "removed")`` work, locally or
after ``mixer push``. Its body is the provenance a reader needs (spec and hash, inputs with
revisions or file hashes, counts per source and reason, lengths, contamination, duplicates,
library versions). Because it reads nothing but the manifest, it cannot drift from it:
``mixer card BUILD`` rewrites it at any time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

CARD_FILE = "README.md"
DEDUP_STEPS = ("exact_dedup", "minhash", "semantic")


def data_files(manifest: dict[str, Any], prefix: str) -> list[str]:
    """The parquet files of one config (``mixture`` or ``removed``), from the manifest's
    file list, so sharded outputs (``mixture-00000-of-00004.parquet``) stay right."""
    names = [f for f in manifest.get("files", {}) if Path(f).name.startswith(prefix) and f.endswith(".parquet")]
    return sorted(names)


def card(manifest: dict[str, Any]) -> str:
    """The card's full text (YAML header + markdown) for a build's manifest."""
    return _header(manifest) + "\n" + "\n".join(_body(manifest)) + "\n"


def write_card(build: str | Path) -> Path:
    """(Re)write ``BUILD/README.md`` from ``BUILD/manifest.json``."""
    folder = Path(build)
    manifest = json.loads((folder / "manifest.json").read_text())
    out = folder / CARD_FILE
    out.write_text(card(manifest))
    return out


# ------------------------------------------------------------------------------ header


def _header(m: dict[str, Any]) -> str:
    configs = [
        {"config_name": "default", "default": True, "data_files": [{"split": "train", "path": data_files(m, "mixture")}]},
        {"config_name": "removed", "data_files": [{"split": "train", "path": data_files(m, "removed")}]},
    ]
    meta = {"configs": configs, "tags": ["mixer", "instruction-tuning", "preference" if m.get("kind") == "preference" else "sft"]}
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


# ------------------------------------------------------------------------------ body


def _body(m: dict[str, Any]) -> list[str]:
    name = m.get("name", "build")
    kind = m.get("kind", "sft")
    cols = "`id, source, chosen, rejected, meta`" if kind == "preference" else "`id, source, messages, meta`"
    out = [
        f"# {name}",
        "",
        f"An instruction-tuning mixture built with mixer {m.get('versions', {}).get('mixer', '')}: "
        f"**{m.get('records', 0):,} records** ({kind}), **{m.get('removed', 0):,} removed** with a reason.",
        "",
        "```python",
        "from datasets import load_dataset",
        f'mix = load_dataset("BUILD_DIR_OR_REPO_ID")             # the mixture: {cols}',
        'removed = load_dataset("BUILD_DIR_OR_REPO_ID", "removed")  # the ledger: id, source, step, reason, detail and the removed text',
        "```",
        "",
        "`meta` is a JSON object per record (or null); `json.loads` it, or in polars `mixer.open(BUILD).with_meta()` / `mixer.meta.decode(frame)`.",
        "",
    ]
    out += _sources(m)
    out += _lengths(m)
    out += _steps(m)
    out += _dedup(m)
    out += _contamination(m)
    out += _spec(m)
    out += _versions(m)
    return out


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(x: Any) -> str:
        s = f"{x:,}" if isinstance(x, int) and not isinstance(x, bool) else str(x)
        return s.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    return lines + [""]


def _inputs(info: dict[str, Any]) -> str:
    parts = []
    for i in info.get("inputs", []):
        if i.get("hub") or i.get("repo"):
            rev = i.get("revision") or "unpinned"
            parts.append(f"hub `{i.get('hub') or i.get('repo')}`@`{rev}`" + (f" `{i['file']}`" if i.get("file") else "")
                         + (f" sha256 `{str(i['sha256'])[:16]}`" if i.get("sha256") else ""))
        else:
            sha = str(i.get("sha256", ""))[:16]
            parts.append(f"`{Path(str(i.get('path', '?'))).name}` sha256 `{sha}`")
    return "<br>".join(parts) or "-"


def _sources(m: dict[str, Any]) -> list[str]:
    rows, read, kept = [], 0, 0
    for src, info in m.get("sources", {}).items():
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(info.get("removed", {}).items(), key=lambda x: (-x[1], x[0]))) or "-"
        added = sum(info.get("sample", {}).get("added", {}).values()) if isinstance(info.get("sample", {}).get("added"), dict) else 0
        rows.append([src, info.get("format", ""), _inputs(info), info.get("read", 0), sum(info.get("removed", {}).values()), reasons,
                     f"+{added:,}" if added else "-", info.get("kept", 0)])
        read += info.get("read", 0)
        kept += info.get("kept", 0)
    rows.append(["**total**", "", "", read, m.get("removed", 0), "", "", kept])
    return ["## Sources", "", "Records read, removed (by reason) and kept per source; `repeat` copies are counted as added.", "",
            *_table(["source", "format", "inputs", "read", "removed", "removed by reason", "added", "kept"], rows)]


def _lengths(m: dict[str, Any]) -> list[str]:
    rows = [(s, i["lengths"]) for s, i in m.get("sources", {}).items() if isinstance(i.get("lengths"), dict)]
    if not rows:
        return ["## Lengths", "", "No tokenizer was named in the spec, so no token statistics were computed "
                "(`mixer stats BUILD --tokenizer T` computes them).", ""]
    unit = m.get("tokenizer") or "tokens"
    pref = any("chosen_tokens_mean" in r for _, r in rows)
    head = ["source", "instances", "rounds", "tokens mean", "p50", "p95", "max", "> 2048 %", "> 4096 %", "> 8192 %"]
    if pref:
        head += ["chosen mean", "rejected mean", "chosen longer %"]
    body = []
    for s, r in rows:
        line = [s, r.get("instances", 0), _f(r.get("rounds_mean")), _f(r.get("tokens_mean")), _f(r.get("tokens_p50")),
                _f(r.get("tokens_p95")), r.get("tokens_max"), _f(r.get("over_2048_pct")), _f(r.get("over_4096_pct")), _f(r.get("over_8192_pct"))]
        if pref:
            line += [_f(r.get("chosen_tokens_mean")), _f(r.get("rejected_tokens_mean")), _f(r.get("chosen_longer_pct"))]
        body.append(line)
    note = " \"chosen longer %\" is the share of pairs whose chosen answer has more tokens than the rejected one." if pref else ""
    return ["## Lengths", "", f"Tokens of message content (no template), tokenizer `{unit}`.{note}", "", *_table(head, body)]


def _f(x: Any) -> str:
    return "-" if x is None else f"{x:,.1f}" if isinstance(x, float) else str(x)


def _steps(m: dict[str, Any]) -> list[str]:
    rows = []
    for e in m.get("steps", []):
        removed = sum(sum(v.values()) for v in e.get("removed", {}).values())
        rows.append([e.get("scope", ""), e.get("step", ""), sum(e.get("in", {}).values()), removed, sum(e.get("kept", {}).values()),
                     e.get("spec") or "-"])
    return ["## Steps", "", *_table(["scope", "step", "in", "removed", "kept", "spec line"], rows)]


def _dedup(m: dict[str, Any]) -> list[str]:
    rows = []
    for e in m.get("steps", []):
        if e.get("step") not in DEDUP_STEPS:
            continue
        info = e.get("info", {})
        removed = sum(sum(v.values()) for v in e.get("removed", {}).values())
        params = info.get("params") if isinstance(info.get("params"), dict) else {}
        facts = [f"{k} {params[k]}" for k in ("threshold", "shingle", "verify", "keep") if k in params]
        facts += [f"{k.replace('_', ' ')} {v:,}" if isinstance(v, int) else f"{k.replace('_', ' ')} {v}" for k, v in info.items()
                  if isinstance(v, int | float) and not isinstance(v, bool)]
        cross = info.get("cross_source") or {}
        if cross:
            facts.append("across sources: " + ", ".join(f"{k} {v:,}" for k, v in cross.items()))
        rows.append([e.get("scope", ""), e.get("step", ""), removed, "; ".join(facts) or "-"])
    if not rows:
        return []
    return ["## Duplicates", "", "Each removed duplicate names the record it duplicates in the `removed` config's `detail`.", "",
            *_table(["scope", "step", "removed", "summary"], rows)]


def _contamination(m: dict[str, Any]) -> list[str]:
    out = []
    for e in m.get("steps", []):
        if e.get("step") != "decontaminate":
            continue
        info = e.get("info", {})
        benches = info.get("benchmarks") or [{"benchmark": b} for b in info.get("pct_instances", {})]
        mat = info.get("matrix", [])
        sources = sorted({r["source"] for r in mat if r["source"] != "(all)"})
        cell = {(r["source"], r["benchmark"]): r for r in mat}
        rows = []
        for b in benches:
            name = b["benchmark"]
            line = [name, b.get("instances", "-")]
            for s in [*sources, "(all)"]:
                r = cell.get((s, name))
                if r is None:
                    line.append("0%")
                else:
                    mark = f" ({r['short_instances_hit']} short)" if r.get("short_instances_hit") else ""
                    mark += f" [{r['template_records']} template]" if r.get("template_records") else ""
                    line.append(f"{r['pct_instances']:.2f}% ({r['records']} rec){mark}")
            rows.append(line)
        out += ["## Contamination", "",
                f"Share of each benchmark's instances overlapped by records ({e.get('spec') or 'decontaminate'}); "
                "every benchmark checked is listed, 0% included. \"short\" counts matched instances too short for the "
                "n-gram rule (matched whole, so a short generic question can match); \"template\" counts records "
                "hitting many instances of one benchmark.",
                f"{info.get('matched_records', 0):,} records matched, {info.get('removed', 0):,} removed.", "",
                *_table(["benchmark", "instances", *sources, "all sources"], rows)]
        if info.get("dropped_sources"):
            out += ["Dropped whole sources: " + ", ".join(f"{d['source']} ({d['benchmark']} {d['pct']:.2f}% > {d['limit']}%)" for d in info["dropped_sources"]), ""]
    return out


def _spec(m: dict[str, Any]) -> list[str]:
    spec = yaml.safe_dump(m.get("spec", {}), sort_keys=False, allow_unicode=True).rstrip()
    return ["## Spec", "", f"Spec hash `{m.get('spec_hash', '')}`, seed {m.get('seed')}"
            + (f", from `{m['spec_path']}`" if m.get("spec_path") else "") + ".", "", "```yaml", spec, "```", ""]


def _versions(m: dict[str, Any]) -> list[str]:
    files = [[f, i.get("rows") if i.get("rows") is not None else "-", i.get("bytes", 0), f"`{str(i.get('sha256', ''))[:16]}`"]
             for f, i in m.get("files", {}).items()]
    return ["## Files and versions", "", *_table(["file", "rows", "bytes", "sha256"], files),
            "Library versions: " + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()) + ".", ""]
