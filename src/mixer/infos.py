"""How the per-batch ``info`` of a stage run batch by batch adds up to the stage's info.

A row-local stage (a format, a step's ``map``) gives, batch by batch, exactly its whole-
frame rows; its ``info`` (the manifest summary) is merged by rules: counts add up, settings
echoed back must agree, "first 20 ids" lists are concatenated and cut. A step declares its
rules in ``Step.info_rules``; formats are listed here. A leaf without a rule must be equal
in every batch, else ``MergeError`` (a step whose info does not merge is a bug, never
guessed around).
"""

from __future__ import annotations

from typing import Any

SUM = "sum"

# format name -> merge rules; formats that draw random numbers over the whole source (alpaca
# with random templates) or look across rows (oasst trees) are absent and run on the whole
# source.
ROW_LOCAL_FORMATS: dict[str, dict[str, str]] = {
    "messages": {},
    "sharegpt": {"split.chunks": SUM, "split.dropped_trailing_messages": SUM},
    "lima": {"dropped_trailing_messages": SUM},
    "wizardlm": {},
    "openorca": {"with_system_prompt": SUM},
    "science": {"subsources.*": SUM},
    "flan": {"submixes.*": SUM},  # the per-submix draw is the sample step's (by rank)
}


class MergeError(ValueError):
    """Per-block infos that cannot be combined by the declared rules."""


def format_rules(name: str, config: Any) -> dict[str, str] | None:
    """Merge rules if the format is row-local with this config, else None."""
    if name == "alpaca":
        return {} if getattr(config, "template", "plain") == "plain" else None
    return ROW_LOCAL_FORMATS.get(name)


def merge_infos(infos: list[dict[str, Any]], rules: dict[str, str]) -> dict[str, Any]:
    """One info dict from per-block ones, in block order."""
    if not infos:
        return {}
    return _merge(infos, rules, "")


def _rule(rules: dict[str, str], path: str) -> str | None:
    if path in rules:
        return rules[path]
    parent, _, _ = path.rpartition(".")
    return rules.get(f"{parent}.*" if parent else "*")


def _merge(values: list[Any], rules: dict[str, str], path: str) -> Any:
    rule = _rule(rules, path) if path else None
    if rule == SUM:
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise MergeError(f"{path}: cannot add {values[:3]!r}")
        return sum(values)
    if rule and rule.startswith("head:"):
        out: list[Any] = []
        for v in values:
            if not isinstance(v, list):
                raise MergeError(f"{path}: expected lists, got {type(v).__name__}")
            out.extend(v)
        return out[: int(rule.split(":", 1)[1])]
    if all(isinstance(v, dict) for v in values):
        keys: list[str] = []
        for v in values:
            keys.extend(k for k in v if k not in keys)
        if all(list(v) == sorted(v) for v in values):
            keys = sorted(keys)
        out_d: dict[str, Any] = {}
        for k in keys:
            sub = [v[k] for v in values if k in v]
            p = f"{path}.{k}" if path else k
            if len(sub) != len(values) and _rule(rules, p) != SUM:
                raise MergeError(f"{p}: present in some blocks only")
            out_d[k] = _merge(sub, rules, p)
        return out_d
    first = values[0]
    if any(v != first for v in values[1:]):
        raise MergeError(f"{path}: blocks disagree ({first!r} vs others) and no merge rule is declared")
    return first
