"""HTML pieces of the report: tables from frames, figures as embedded PNG, the page.

Everything is inline (CSS, base64 images), so the file opens from disk in any browser
with no server and no network; there is no JavaScript to fail.
"""

from __future__ import annotations

import base64
import html
from typing import Any

import polars as pl

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2733;background:#f6f7f9}
header{background:#1d2733;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header .meta{opacity:.85;font-size:13px}nav{padding:8px 28px;background:#e9edf2}nav a{margin-right:14px;color:#3b6ea5}
main{padding:8px 28px 40px;max-width:1400px}section{background:#fff;border-radius:6px;padding:6px 18px 14px;margin:16px 0;
box-shadow:0 1px 2px rgba(0,0,0,.08)}h2{font-size:17px;border-bottom:1px solid #e1e5ea;padding-bottom:4px}
table{border-collapse:collapse;margin:10px 0;font-size:13px}caption{text-align:left;font-weight:600;padding:4px 0}
th,td{padding:3px 9px;border-bottom:1px solid #e6e9ee;text-align:right;white-space:nowrap}
th:first-child,td:first-child,td.t{text-align:left}thead th{background:#f0f3f6}tr.total{font-weight:700;background:#f7f9fb}
figure{margin:12px 0}figure img{max-width:100%;height:auto;border:1px solid #eef0f3}figcaption{font-size:12px;color:#5c6773}
.note{color:#5c6773;font-size:12.5px}pre{background:#f3f5f8;padding:8px;overflow:auto;max-height:420px;font-size:12px}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{background:#f0f3f6;border-radius:6px;padding:8px 14px}
.card b{display:block;font-size:18px}.tw{overflow-x:auto;max-width:100%}
.example{border-left:3px solid #b03a2e;padding:2px 10px;margin:10px 0}.example pre{white-space:pre-wrap;max-height:200px;margin:4px 0}
.example .detail{color:#5c6773;font-size:12.5px}.example .vs{margin-left:14px;border-left:3px solid #3d8b5a;padding-left:8px}
"""


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 or v == 0 else f"{v:,.2f}"
    return str(v)


def frame_table(frame: pl.DataFrame, caption: str = "", table_id: str | None = None, total_last: bool = False) -> str:
    """A polars frame as an HTML table (numbers formatted, text escaped)."""
    tid = f' id="{html.escape(table_id)}"' if table_id else ""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    rows = []
    for i, row in enumerate(frame.iter_rows()):
        cls = ' class="total"' if total_last and i == frame.height - 1 else ""
        rows.append(f"<tr{cls}>" + "".join(
            f"<td>{html.escape(fmt(v))}</td>" if j == 0 or not isinstance(v, str) else f'<td class="t">{html.escape(v)}</td>'
            for j, v in enumerate(row)) + "</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<div class="tw"><table{tid}>{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def figure(png: bytes, alt: str, caption: str = "", fig_id: str | None = None) -> str:
    data = base64.b64encode(png).decode()
    fid = f' id="{html.escape(fig_id)}"' if fig_id else ""
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure{fid}><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'


def section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{html.escape(title)}</h2>{body}</section>'


def cards(items: list[tuple[str, str]]) -> str:
    return '<div class="cards">' + "".join(f'<div class="card"><b>{html.escape(v)}</b>{html.escape(k)}</div>' for k, v in items) + "</div>"


def page(title: str, meta: str, sections: list[tuple[str, str, str]]) -> str:
    """A whole document from (id, title, body html) sections."""
    nav = "".join(f'<a href="#{sid}">{html.escape(t)}</a>' for sid, t, _ in sections)
    body = "".join(section(sid, t, b) for sid, t, b in sections)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            f"<style>{CSS}</style></head><body><header><h1>{html.escape(title)}</h1><div class=\"meta\">{html.escape(meta)}</div>"
            f"</header><nav>{nav}</nav><main>{body}</main></body></html>")
