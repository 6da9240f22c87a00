"""``oasst_tree``: OpenAssistant message trees (the ``*.trees.jsonl`` export) to conversations.

The Tulu V2 walk: deleted messages are skipped with their subtrees; at every node only the
``top_k`` replies with the highest human label (``quality``, missing = 0; ties keep file
order) are followed; a path is emitted only when it ends on an assistant message with no
live replies. ``prompter`` becomes ``user``. With ``top_k: 1`` each tree yields at most one
record (id ``{source}:{row}``); otherwise paths get ids ``{source}:{row}.{k}``. A tree that
yields nothing gets a ledger row saying where its walk ended.

Difference from the reference script, on purpose: it treats an assistant whose replies are
all deleted as an inner node and emits nothing; here such a message ends the path. The
``ready`` export holds no deleted messages, so V2 counts are unaffected.

A per-tree walk is inherently recursive, so this is a tight Python loop over trees; trees
arrive as nested structs (local files) or, at any depth, JSON strings (``datasets``).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import polars as pl

from mixer.formats.base import FormatConfig, FormatContext, register_format, require_columns
from mixer.formats.common import format_step
from mixer.json_values import NOT_TEXT_PATTERN, json_type, not_text
from mixer.records import SFT_SCHEMA, removed_frame
from mixer.steps.base import StepResult

ROLE = {"prompter": "user", "assistant": "assistant"}


class OasstTreeConfig(FormatConfig):
    column: str = "prompt"  # the tree's root message
    tree_id: str = "message_tree_id"
    top_k: int | None = 1  # replies followed per node, best first; null: every path (Tulu 1)
    label: str = "quality"


def _score(node: dict[str, Any], label: str) -> float:
    value = ((node.get("labels") or {}).get(label) or {}).get("value")
    return float(value) if value is not None else 0.0


def _node(x: Any) -> dict[str, Any]:
    """``datasets`` may hand any subtree over as a JSON string."""
    return orjson.loads(x) if isinstance(x, (str, bytes)) else (x or {})


def _children(node: dict[str, Any], top_k: int | None, label: str) -> list[dict[str, Any]]:
    live = [c for c in map(_node, node.get("replies") or []) if not c.get("deleted")]
    if top_k is None:
        return live
    return sorted(live, key=lambda c: _score(c, label), reverse=True)[:top_k]  # stable: ties keep order


def walk(root: dict[str, Any], top_k: int | None = 1, label: str = "quality") -> tuple[list[list[dict[str, Any]]], str]:
    """Paths (lists of nodes) from the root to assistant leaves, and where a fruitless walk ended."""
    if root.get("deleted"):
        return [], "root message deleted"
    paths: list[list[dict[str, Any]]] = []
    last = root
    stack: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [(root, [root])]
    while stack:
        node, path = stack.pop()
        kids = _children(node, top_k, label)
        if not kids:
            last = node
            if node.get("role") == "assistant":
                paths.append(path)
            continue
        stack.extend((c, path + [c]) for c in reversed(kids))  # depth first, best child first
    if paths:
        return paths, ""
    return [], f"walk ended on a {last.get('role')} message without live replies ({last.get('message_id')})"


def _text(v: Any, field: str = "text") -> str | None:
    """A node's text; any other type becomes a not-text marker (removed as ``wrong_type``)."""
    return v if v is None or isinstance(v, str) else not_text(f"field {field!r} is {json_type(v)}")


def _role(v: Any) -> str | None:
    return ROLE.get(v, v) if isinstance(v, str) else _text(v, "role")


def _trees(raw: pl.DataFrame, column: str) -> list[dict[str, Any]]:
    col = raw[column]
    if isinstance(col.dtype, pl.Struct):
        return col.to_list()
    return [_node(x) for x in col.cast(pl.Utf8).to_list()]


@register_format("oasst_tree", OasstTreeConfig)
def oasst_tree(raw: pl.DataFrame, cfg: OasstTreeConfig, ctx: FormatContext) -> StepResult:
    require_columns(raw, [cfg.column], "oasst_tree")
    tree_ids = raw[cfg.tree_id].cast(pl.Utf8).to_list() if cfg.tree_id in raw.columns else [None] * raw.height
    ids, messages, metas, gone, reasons, why = [], [], [], [], [], []
    for row, tree, tid in zip(raw["_row"].to_list(), _trees(raw, cfg.column), tree_ids, strict=True):
        paths, ended = walk(tree, cfg.top_k, cfg.label)
        if not paths:
            gone.append(f"{ctx.source}:{row}")
            wrong = re.search(NOT_TEXT_PATTERN, ended)  # the walk stopped at a role that is not text
            reasons.append("wrong_type" if wrong else "no_assistant_leaf")
            why.append(wrong.group(1) if wrong else ended)
            continue
        for k, path in enumerate(paths):
            ids.append(f"{ctx.source}:{row}" if cfg.top_k == 1 else f"{ctx.source}:{row}.{k}")
            messages.append([{"role": _role(n.get("role")), "content": _text(n.get("text"))} for n in path])
            metas.append(orjson.dumps({"tree_id": tid, "leaf_id": path[-1].get("message_id")}).decode())
    kept = pl.DataFrame({"id": ids, "source": [ctx.source] * len(ids), "messages": messages, "meta": metas}, schema=SFT_SCHEMA)
    ctx.info["trees_without_path"] = len(gone)
    return StepResult(kept, removed_frame(gone, ctx.source, format_step("oasst_tree"), reasons, why))
