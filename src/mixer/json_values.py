"""Typing of parsed JSON values before they become columns, so no value is garbled.

polars turns a field that is a string in one record and a number, object or list in
another into strings (``5`` -> ``"5"``, ``{"text": "hi"}`` -> ``'{"text": "hi"}'``) or into
nulls, and the formats could not tell such a value from real text. Before a frame is built,
``unify`` walks the records once, position by position (``output``, ``messages[].content``):

- Content parts (a list of objects that each have a string ``type``, as in OpenAI's
  ``[{"type": "text", "text": ...}]``) holding only text parts become one string: the
  parts' texts joined with ``PART_SEP`` (a newline). A list with any other part (an image,
  audio, a tool call) becomes a *not-text marker* naming the field and the part type.
- At a position holding more than one JSON type (a string in one record, a number, object
  or list in another), the non-strings become not-text markers naming the field and type.

A not-text marker is a string ``NOT_TEXT_OPEN + why + NOT_TEXT_CLOSE``; a field used as text
keeps it, and validation removes the record with reason ``wrong_type`` and the ``why``
as detail (see ``mixer.validate``), so it never reaches a mixture. Fields no format reads
keep the marker harmlessly. Whole columns of one non-string type are typed by polars and
handled by ``mixer.formats.text_values`` in the same way.
"""

from __future__ import annotations

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
    """Make every position of ``records`` (dicts, changed in place) hold one JSON type,
    joining content parts and marking non-strings that share a position with strings."""
    keys: dict[str, None] = {}
    for r in records:
        keys.update(dict.fromkeys(r))
    for key in keys:
        name = f"{where}{key}"
        holders = [r for r in records if r.get(key) is not None]
        for r in holders:
            if is_parts(r[key]):
                r[key] = join_parts(r[key], name)
        kinds = {_kind(r[key]) for r in holders}
        if len(kinds) > 1:
            for r in holders:
                if not isinstance(r[key], str):
                    r[key] = not_text(f"field {name!r} is {json_type(r[key])}")
            continue
        if kinds == {"object"}:
            unify([r[key] for r in holders], f"{name}.")
        elif kinds == {"array"}:
            _unify_lists([r[key] for r in holders], f"{name}[]")


def _unify_lists(lists: list[list], name: str) -> None:
    items = [v for lst in lists for v in lst if v is not None]
    kinds = {_kind(v) for v in items}
    if kinds == {"object"}:
        unify(items, f"{name}.")
    elif len(kinds) > 1:
        for lst in lists:
            for i, v in enumerate(lst):
                if v is not None and not isinstance(v, str):
                    lst[i] = join_parts(v, name) if is_parts(v) else not_text(f"field {name!r} holds {json_type(v)}")
    elif kinds == {"array"}:
        _unify_lists(items, f"{name}[]")


def _kind(v: Any) -> str:
    """JSON type, with integers and floats together (polars widens them)."""
    return "number" if isinstance(v, (int, float)) and not isinstance(v, bool) else json_type(v)
