"""Typing of parsed JSON values before they become columns, so no value is garbled.

polars turns a field that is a string in one record and a number, object or list in
another into strings (``5`` -> ``"5"``, ``{"text": "hi"}`` -> ``'{"text": "hi"}'``) or into
nulls, and the formats could not tell such a value from real text. Before a frame is built,
``unify`` walks the records once, position by position (``output``, ``messages[].content``):

- Content parts (a list of objects that each have a string ``type``, as in OpenAI's
  ``[{"type": "text", "text": ...}]``) holding only text parts become one string: the
  parts' texts joined with ``PART_SEP`` (a newline). A list with any other part (an image,
  audio, a tool call) becomes a *not-text marker* naming the field and the part type.
- At a position holding more than one JSON type, the values of the minority type become
  not-text markers naming the field and type: a stray number in a text field, a stray
  string in a list of turns (as a turn whose role and content are the marker). Where
  strings share a position with numbers or booleans, the strings are kept.

A not-text marker is a string ``NOT_TEXT_OPEN + why + NOT_TEXT_CLOSE``; a field used as text
keeps it, and validation removes the record with reason ``wrong_type`` and the ``why``
as detail (see ``mixer.validate``), so it never reaches a mixture. Fields no format reads
keep the marker harmlessly. Whole columns of one non-string type are typed by polars and
handled by ``mixer.formats.text_values`` in the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

PART_SEP = "\n"
NOT_TEXT_OPEN = "\x00mixer:not_text:"
NOT_TEXT_CLOSE = "\x00"
NOT_TEXT_PATTERN = "\x00mixer:not_text:([^\x00]*)\x00"
JSON_TYPES: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array", type(None): "null"}


def not_text(why: str) -> str:
    """The marker a value that is not text becomes (``why`` names the field and type)."""
    return f"{NOT_TEXT_OPEN}{why.replace(NOT_TEXT_CLOSE, '')}{NOT_TEXT_CLOSE}"


def json_type(v: Any) -> str:
    return JSON_TYPES.get(type(v), type(v).__name__)


def is_parts(v: Any) -> bool:
    """A content-parts list: non-empty, every element an object with a string ``type`` and
    none of the keys of a chat turn."""
    return (
        isinstance(v, list)
        and bool(v)
        and all(isinstance(p, dict) and isinstance(p.get("type"), str) and not (_TURN_KEYS & p.keys()) for p in v)
    )


_TURN_KEYS = {"role", "from", "content", "value"}


def join_parts(parts: list[dict], where: str) -> str:
    """Text parts joined with ``PART_SEP``; a marker when any part is not text."""
    texts = []
    for p in parts:
        if p["type"] != "text" or not isinstance(p.get("text"), str):
            return not_text(f"field {where!r} has a {p['type']!r} content part")
        texts.append(p["text"])
    return PART_SEP.join(texts)


def unify(records: list[dict], where: str = "") -> None:
    """Make every position of ``records`` (dicts, changed in place) hold one JSON type."""
    for key in dict.fromkeys(k for r in records for k in r):
        types = set(map(type, [r.get(key) for r in records]))
        types.discard(type(None))
        if types in _PLAIN:
            continue  # one scalar type: nothing to join or mark (the common case, kept fast)
        _settle([(r, key) for r in records if r.get(key) is not None], f"{where}{key}")


_PLAIN = [set(), {str}, {int}, {float}, {int, float}, {bool}]


_ORDER = ("array", "object", "string", "number", "boolean")


def _winner(kinds: Counter[str]) -> str:
    """The type a position keeps: text when strings share it with other scalars (a text field
    with a stray number), else the most common type (a list of turns with a stray string)."""
    top = max(kinds, key=lambda k: (kinds[k], -_ORDER.index(k) if k in _ORDER else -len(_ORDER)))
    return "string" if "string" in kinds and top in ("string", "number", "boolean") else top


def _settle(slots: list[tuple[Any, Any]], name: str) -> None:
    """One position (``container[key]`` for each slot): join content parts, then replace
    values of another type than the winner by a marker of the winner's shape."""
    for c, k in slots:
        if is_parts(c[k]):
            c[k] = join_parts(c[k], name)
    kinds = Counter(_kind(c[k]) for c, k in slots)
    if not kinds:
        return
    win = _winner(kinds)
    if len(kinds) > 1:
        shape = _shape(win, [c[k] for c, k in slots if _kind(c[k]) == win])
        for c, k in slots:
            v = c[k]
            if _kind(v) != win:
                c[k] = shape(v if isinstance(v, str) and v.startswith(NOT_TEXT_OPEN) else not_text(f"field {name!r} is {json_type(v)}"))
    if win == "object":
        unify([c[k] for c, k in slots], f"{name}.")
    elif win == "array":
        _settle([(c[k], i) for c, k in slots for i in range(len(c[k])) if c[k][i] is not None], f"{name}[]")


def _shape(win: str, good: list[Any]) -> Callable[[str], Any]:
    """How a marker looks at a position of type ``win``: a string, an object (or a list of
    one object) whose every field is the marker, so the record is removed wherever it is read;
    a null where numbers or booleans are kept (a field never read as text)."""
    if win == "string":
        return lambda m: m
    if win == "object":
        keys = list(dict.fromkeys(k for g in good for k in g))
        return lambda m: dict.fromkeys(keys, m)
    if win == "array":
        items = [x for g in good for x in g if x is not None]
        inner = _winner(Counter(_kind(x) for x in items)) if items else "string"
        if inner in ("string", "object"):
            make = _shape(inner, [x for x in items if _kind(x) == inner])
            return lambda m: [make(m)]
        return lambda m: []
    return lambda m: None


def _kind(v: Any) -> str:
    """JSON type, with integers and floats together (polars widens them)."""
    return "number" if isinstance(v, (int, float)) and not isinstance(v, bool) else json_type(v)
