"""exact_dedup's normalized key: whitespace runs collapse as Python's ``re`` does it."""

from __future__ import annotations

import re

import polars as pl

from mixer.steps.exact import normalized_key

TEXTS = [
    "plain words here", "two  spaces", "tab\there", "lines\n\nand\r\nmore", "  leading and trailing \t",
    "no\u00a0break", "em\u2003space", "ideographic\u3000\u3000space", "next\u0085line", "mixed \t\u00a0 run",
    "", " ", "\t", "Case  MATTERS not", "x\u2028y\u2029z", "unchanged single spaces only",
]


def python_key(role: str, text: str) -> str:
    """The rule written independently: Python's Unicode ``\\s`` runs to one space, strip, lowercase."""
    return role + "\x1f" + re.sub(r"\s+", " ", text).strip().lower()


def test_key_collapses_whitespace_like_python() -> None:
    frame = pl.DataFrame({"messages": [[{"role": "user", "content": t}, {"role": "assistant", "content": t[::-1]}] for t in TEXTS]})
    got = frame.select(normalized_key(frame).alias("k"))["k"].to_list()
    want = [python_key("user", t) + "\x1e" + python_key("assistant", t[::-1]) for t in TEXTS]
    assert got == want


def test_texts_differing_only_in_whitespace_share_a_key() -> None:
    frame = pl.DataFrame({"messages": [[{"role": "user", "content": t}] for t in ("a b\tc", " A\u00a0B \n C ", "a bc")]})
    keys = frame.select(normalized_key(frame).alias("k"))["k"].to_list()
    assert keys[0] == keys[1] != keys[2]
