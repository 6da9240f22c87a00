"""Statistics as a rich table (terminal) and as an HTML table (notebooks, the report)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table

from mixer.stats.model import Stats
from mixer.stats.summary import TOTAL


def turns_text(dist: dict[str, int], top: int = 3) -> str:
    """Compact rounds distribution: ``1:92% 2:5% 3+:3%``."""
    total = sum(dist.values())
    if not total:
        return "-"
    counts = {int(k): v for k, v in dist.items()}
    parts = [f"{k}:{100 * counts[k] / total:.0f}%" for k in sorted(counts) if k < top]
    rest = sum(v for k, v in counts.items() if k >= top)
    if rest:
        parts.append(f"{top}+:{100 * rest / total:.0f}%")
    return " ".join(parts)


def columns(stats: Stats) -> list[tuple[str, str, Any]]:
    """(header, key, formatter) of every shown column; shared by both renderings."""
    num = lambda v: "-" if v is None else f"{v:,.0f}"  # noqa: E731
    one = lambda v: "-" if v is None else f"{v:,.1f}"  # noqa: E731
    pct = lambda v: "-" if v is None else (f"{v:.1f}%" if v else "0")  # noqa: E731
    cols: list[tuple[str, str, Any]] = [("instances", "instances", num), ("rounds", "rounds_mean", lambda v: "-" if v is None else f"{v:.2f}")]
    if stats.kind == "preference":
        cols += [("prompt", "prompt_tokens_mean", one), ("chosen", "chosen_tokens_mean", one), ("rejected", "rejected_tokens_mean", one),
                 ("chosen longer", "chosen_longer_pct", pct)]
    else:
        cols += [("user turn", "user_turn_tokens_mean", one), ("assistant turn", "assistant_turn_tokens_mean", one)]
    cols += [("mean", "tokens_mean", num), ("p25", "tokens_p25", num), ("p50", "tokens_p50", num), ("p75", "tokens_p75", num),
             ("p95", "tokens_p95", num), ("max", "tokens_max", num)]
    cols += [(f">{n}", f"over_{n}_pct", pct) for n in stats.thresholds]
    return cols


def tokenizer_label(name: str) -> str:
    """``llama2`` for ``../shared/tokenizers/llama2/tokenizer.model``; hub names unchanged."""
    p = Path(name)
    if not (name.startswith((".", "/", "~")) or p.exists()):
        return name
    return p.parent.name if p.name.startswith("tokenizer.") and p.parent.name else p.name


def title(stats: Stats) -> str:
    what = "whitespace words (no tokenizer given)" if stats.unit == "words" else f"{tokenizer_label(stats.tokenizer)} tokens"
    return f"Lengths in {what}, message content only"


def stats_table(stats: Stats) -> Group:
    """Two tables that fit a terminal: turns per source, then tokens per record."""
    cols = columns(stats)
    split = 2 + (3 if stats.kind == "preference" else 2)
    turns = Table(title=title(stats), title_justify="left")
    tokens = Table(title=f"{stats.unit.capitalize()} per record", title_justify="left")
    for t, part in ((turns, cols[:split]), (tokens, cols[split:])):
        t.add_column("source")
        for head, _, _ in part:
            t.add_column(head, justify="right")
    turns.add_column("rounds dist.")
    for src, row in stats.rows.items():
        style = "bold" if src == TOTAL else None
        if src == TOTAL:
            turns.add_section()
            tokens.add_section()
        cells = [f(row.get(k)) for _, k, f in cols]
        turns.add_row(src, *cells[:split], turns_text(stats.turns.get(src, {})), style=style)
        tokens.add_row(src, *cells[split:], style=style)
    return Group(turns, tokens)


def stats_html(stats: Stats, css_class: str = "mixer-stats") -> str:
    cols = columns(stats)
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _, _ in cols)
    body = []
    for src, row in stats.rows.items():
        cells = "".join(f"<td>{html.escape(f(row.get(k)))}</td>" for _, k, f in cols)
        tag = ' class="total"' if src == TOTAL else ""
        body.append(f"<tr{tag}><th>{html.escape(src)}</th>{cells}<td>{html.escape(turns_text(stats.turns.get(src, {})))}</td></tr>")
    return (f'<table class="{css_class}"><caption>{html.escape(title(stats))}</caption>'
            f"<thead><tr><th>source</th>{head}<th>rounds dist.</th></tr></thead><tbody>{''.join(body)}</tbody></table>")
