"""A top-level JSON array cut into its items' bytes as the file streams by.

A JSON document of a few GB (one array of records) must not be parsed whole. No streaming
JSON parser is a dependency, and none is needed: the items of an array are the spans
between the commas at nesting depth 1, outside strings. ``ArrayItems`` finds them with
numpy over the positions of each chunk's special bytes (escaped quotes from the parity of
backslash runs, string state from the parity of real quotes, depth from the running sum of
brackets), carrying the state from chunk to chunk; each item is then parsed on its own by
``orjson``, exactly as the whole document would have been. Malformed JSON is not judged here: a bad item fails its
own parse, with the line it starts on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_WS = b" \t\r\n"
_QUOTE, _BACKSLASH, _COMMA, _NEWLINE = 34, 92, 44, 10
_OPEN, _CLOSE = (91, 123), (93, 125)  # [ { and ] }
_SPECIAL = np.zeros(256, bool)
_SPECIAL[[_QUOTE, _BACKSLASH, _COMMA, *_OPEN, *_CLOSE]] = True


class ArrayError(ValueError):
    """The bytes are not one JSON array (``line`` says where)."""

    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.line = line


@dataclass
class Item:
    data: bytes
    line: int  # the line the item starts on (1-based)


@dataclass
class ArrayItems:
    """Feed chunks of the document in order; each ``feed`` returns the items completed in it.
    After ``close`` (end of file), ``after`` holds any non-blank bytes that followed the
    array (the caller decides whether that is an error: JSON lines can open with an array)."""

    in_string: bool = False
    escape_run_odd: bool = False  # the chunk ended inside a run of backslashes of odd length
    depth: int = 0
    started: bool = False
    closed: bool = False
    line: int = 1  # newlines before the current chunk, plus one
    after: bytes = b""
    _pending: list[bytes] = field(default_factory=list)  # bytes of the item in progress
    _pending_line: int = 1
    _items: int = 0

    def feed(self, chunk: bytes) -> list[Item]:
        if not chunk:
            return []
        if self.closed:
            self._trailing(chunk)
            return []
        arr = np.frombuffer(chunk, np.uint8)
        n = len(arr)
        lines = np.flatnonzero(arr == _NEWLINE)

        def line_at(p: int) -> int:
            return self.line + int(np.searchsorted(lines, p))

        # only the special bytes matter: work on their positions (a few % of the text)
        pos = np.flatnonzero(_SPECIAL[arr])
        ch = arr[pos]
        if self.escape_run_odd:  # the previous chunk ended in an odd run of backslashes
            pos, ch = np.concatenate([[-1], pos]), np.concatenate([[_BACKSLASH], ch]).astype(np.uint8)
        m = len(pos)
        idx = np.arange(m)
        bs = ch == _BACKSLASH
        adjacent = np.diff(pos) == 1  # special k sits right after special k-1
        joined = np.zeros(m, bool)  # continues the backslash run of the special before it
        joined[1:] = bs[1:] & bs[:-1] & adjacent
        run_start = np.maximum.accumulate(np.where(bs & ~joined, idx, 0))
        run_len = np.where(bs, idx - run_start + 1, 0)  # backslashes in the run ending here
        escaped = np.zeros(m, bool)
        escaped[1:] = bs[:-1] & adjacent & (run_len[:-1] & 1).astype(bool)
        quote = (ch == _QUOTE) & ~escaped
        quotes = np.cumsum(quote, dtype=np.int64)
        inside = ((quotes - quote) & 1).astype(bool) ^ self.in_string
        structural = ~inside & ~quote & ~bs
        step = (structural & ((ch == _OPEN[0]) | (ch == _OPEN[1]))).astype(np.int64)
        step -= structural & ((ch == _CLOSE[0]) | (ch == _CLOSE[1]))
        depth = self.depth + np.cumsum(step)
        if (depth < 0).any():
            raise ArrayError("a closing bracket without its opening one", line_at(int(pos[np.argmax(depth < 0)])))
        start = 0
        first = 0  # index among the specials where this chunk's array part begins
        if not self.started:
            opened = np.flatnonzero(depth == 1)
            if not len(opened) and not chunk.strip(_WS):  # blank before the array
                self.line += len(lines)
                return []
            if not len(opened) or chunk[: pos[opened[0]]].strip(_WS) or ch[opened[0]] != _OPEN[0]:
                raise ArrayError("the document does not open with an array", line_at(0))
            self.started = True
            first = int(opened[0]) + 1
            start = int(pos[opened[0]]) + 1
            self._pending, self._pending_line = [], line_at(start)
        ends = first + np.flatnonzero(depth[first:] == 0)
        last = int(ends[0]) if len(ends) else m
        stop = int(pos[last]) if len(ends) else n  # the closing bracket, if in this chunk
        sel = np.arange(first, last)
        commas = pos[sel[structural[sel] & (ch[sel] == _COMMA) & (depth[sel] == 1)]]
        cuts = [*commas.tolist(), stop] if len(ends) else commas.tolist()
        items: list[Item] = []
        at = start
        for k, cut in enumerate(cuts):
            raw = b"".join([*self._pending, chunk[at:cut]])
            part = raw.strip(_WS)
            final = len(ends) and k == len(cuts) - 1
            if part or not (final and self._items == 0):
                if not part:
                    raise ArrayError("an empty item between commas", self._pending_line)
                lead = raw[: len(raw) - len(raw.lstrip(_WS))].count(b"\n")  # its line is where its text starts
                items.append(Item(part, self._pending_line + lead))
                self._items += 1
            at = cut + 1
            self._pending, self._pending_line = [], line_at(at)
        if len(ends):
            self.closed = True
            self._trailing(chunk[stop + 1 :])
        else:
            self._pending.append(chunk[at:])
        if m:
            self.in_string = bool(inside[-1] ^ quote[-1])
            self.depth = int(depth[-1])
        tail_bs = m and bs[-1] and pos[-1] == n - 1
        self.escape_run_odd = bool(tail_bs and run_len[-1] & 1)
        self.line += len(lines)
        return items

    def _trailing(self, data: bytes) -> None:
        if data.strip(_WS) and len(self.after) < 64:
            self.after += data.lstrip(_WS)[:64]

    def close(self) -> None:
        """End of the document: an array left open is an error."""
        if not self.closed:
            what = "the array is not closed: the file ends inside it" if self.started else "no array in the document"
            raise ArrayError(what, self.line)

