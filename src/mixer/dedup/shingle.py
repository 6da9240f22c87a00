"""Text normalization and shingle hashing, vectorized over whole chunks of records.

Normalization (each step but the last optional, all on by default):
  1. Unicode NFKC (full-width letters, ligatures and the like fold to plain forms);
  2. lower-casing;
  3. every character that is not a letter or a number (``str.isalnum``) is a separator
     (``strip_punctuation``; when off, only whitespace separates);
  4. runs of separators become one space, and the ends are stripped.

Steps 1-2 run in polars on the non-ASCII texts only (ASCII is lower-cased bytewise); steps
3-4 run in numpy on the UTF-8 bytes, with a codepoint class table, because a Unicode regex
replace costs ~45 ns per byte. :func:`normalize_text` is the same in plain Python.

Shingles are word n-grams (tokens split on the single spaces left by step 4) or character
n-grams of the normalized text. A record shorter than ``n`` units gives one shingle, its
whole text; an empty record gives none.

A shingle's hash is a 64-bit polynomial hash of its UTF-8 bytes (computed for all shingles
of a chunk at once from prefix sums over the byte buffer, so there is no Python loop per
shingle), finalized with MurmurHash3's fmix64, of which the high 32 bits are kept. It
depends only on the shingle's text: stable across runs, machines and library versions
(unlike polars' ``hash``), which matters because signatures are recomputed to check new
data against an old build. :func:`shingle_hash` is the same function in plain Python.
"""

from __future__ import annotations

import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import polars as pl
import pyarrow as pa

from mixer.dedup.jaccard import sorted_unique

_M64 = (1 << 64) - 1
_BASE = 0x9E3779B97F4A7C15  # odd: invertible modulo 2**64
_BASE_INV = pow(_BASE, -1, 1 << 64)
_CP_MUL = 0xBF58476D1CE4E5B9  # spreads byte values over 64 bits before the polynomial
_CP_ADD = 0x94D049BB133111EB
_LEN_MUL = 0xD6E8FEB86659FD93  # folds the shingle length in (different lengths never alias)


@dataclass(frozen=True)
class Shingling:
    """How records become sets of shingles."""

    kind: Literal["word", "char"] = "word"
    n: int = 5
    nfkc: bool = True
    lowercase: bool = True
    strip_punctuation: bool = True


def normalize_text(text: str, cfg: Shingling) -> str:
    """The normalization of one text, in plain Python (reference for the vectorized path)."""
    if cfg.nfkc:
        text = unicodedata.normalize("NFKC", text)
    if cfg.lowercase:
        text = text.lower()
    keep = str.isalnum if cfg.strip_punctuation else (lambda c: not c.isspace())
    return " ".join(w for w in "".join(c if keep(c) else " " for c in text).split(" ") if w)


_FLAG_NEEDS_UNICODE = 1  # NFKC or lower-casing may change a text containing it
_FLAG_NOT_ALNUM = 2  # a separator under strip_punctuation
_FLAG_SPACE = 4  # a separator without strip_punctuation
_FLAG_SEP_STABLE = 8  # a separator whose NFKC form is all separators (strip_punctuation)
_FLAG_SPACE_STABLE = 16  # the same for whitespace (without strip_punctuation)
_FLAG_KNOWN = 128
_CP_FLAGS = np.zeros(0x110000, dtype=np.uint8)  # filled lazily, per codepoint seen
_CLASSIFY_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _composes_with_previous() -> frozenset[int]:
    """Codepoints that canonical composition can merge into the character before them (the
    second half of a canonical pair decomposition; NFKC_Quick_Check=Maybe)."""
    seconds = set()
    for cp in range(0x30000):  # no canonical decomposition lies above
        parts = unicodedata.decomposition(chr(cp)).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            seconds.add(int(parts[1], 16))
    return frozenset(seconds)


def _classify(cp: int) -> int:
    c = chr(cp)
    flags = _FLAG_KNOWN
    composes = _composes_with_previous()

    def inert(s: str) -> bool:  # never merges with its neighbours under NFKC
        return all(not unicodedata.combining(x) and ord(x) not in composes and not 0x1100 <= ord(x) <= 0x11FF for x in s)

    nfkc = unicodedata.normalize("NFKC", c)
    if unicodedata.category(c) == "Cn" or nfkc != c or c.lower() != c or not inert(c):
        flags |= _FLAG_NEEDS_UNICODE  # (unassigned here: another Unicode version may map it)
    if not c.isalnum():
        flags |= _FLAG_NOT_ALNUM
    if c.isspace():
        flags |= _FLAG_SPACE
    # e.g. a full-width comma or a no-break space: NFKC changes it, but into separators, which
    # normalization collapses into one space anyway, so the text's outcome is the same
    stable = unicodedata.category(c) != "Cn" and c.lower() == c and inert(c) and inert(nfkc)
    if stable and not c.isalnum() and not any(x.isalnum() for x in nfkc):
        flags |= _FLAG_SEP_STABLE
    if stable and c.isspace() and all(x.isspace() for x in nfkc):
        flags |= _FLAG_SPACE_STABLE
    return flags


def _cp_flags(cps: np.ndarray) -> np.ndarray:
    """Flags of each codepoint; only distinct, never-seen codepoints are classified in Python."""
    flags = _CP_FLAGS[cps]
    unknown = cps[(flags & _FLAG_KNOWN) == 0]
    if len(unknown):
        with _CLASSIFY_LOCK:
            for cp in sorted_unique(unknown).tolist():
                _CP_FLAGS[cp] = _classify(cp)
        flags = _CP_FLAGS[cps]
    return flags


def _codepoints(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Multi-byte characters of UTF-8 ``data``: (lead byte positions, widths, codepoints)."""
    lead = np.flatnonzero(data >= 0xC0)
    b0 = data[lead].astype(np.uint32)
    last = len(data) - 1

    def nxt(k: int) -> np.ndarray:
        return data[np.minimum(lead + k, last)].astype(np.uint32) & 0x3F

    width = np.where(b0 < 0xE0, 2, np.where(b0 < 0xF0, 3, 4))
    cp = np.where(width == 2, ((b0 & 0x1F) << 6) | nxt(1), np.where(
        width == 3, ((b0 & 0x0F) << 12) | (nxt(1) << 6) | nxt(2),
        ((b0 & 0x07) << 18) | (nxt(1) << 12) | (nxt(2) << 6) | nxt(3)))
    return lead, width, np.minimum(cp, 0x10FFFF)


@lru_cache(maxsize=4)
def _byte_map(lowercase: bool, strip_punctuation: bool) -> bytes:
    """``bytes.translate`` table: ASCII separators become a space, A-Z lower-case (when asked);
    bytes >= 0x80 are left alone."""
    sep = (lambda c: not c.isalnum()) if strip_punctuation else str.isspace
    table = bytearray(range(256))
    for b in range(128):
        c = chr(b)
        if sep(c):
            table[b] = 32
        elif lowercase:
            table[b] = ord(c.lower())
    return bytes(table)


def _unicode_pass(texts: pl.Series, offsets: np.ndarray, lead: np.ndarray, flags: np.ndarray,
                  cfg: Shingling) -> pl.Series | None:
    """NFKC and lower-casing (polars) applied only to texts holding a character they can change
    (``lead``/``flags``: the multi-byte characters of the texts' UTF-8): a text of ASCII and
    NFKC-stable, uncased characters is already normalized, and plain ASCII upper case is
    lowered bytewise later. None when no text needs it."""
    stable = _FLAG_SEP_STABLE if cfg.strip_punctuation else _FLAG_SPACE_STABLE
    hit = ((flags & _FLAG_NEEDS_UNICODE) != 0) & ((flags & stable) == 0)
    if not hit.any():
        return None
    rows = np.searchsorted(offsets, lead[hit], side="right") - 1
    idx = np.flatnonzero(np.bincount(rows, minlength=len(offsets) - 1))
    sub = texts.gather(idx)
    if cfg.nfkc:
        sub = sub.str.normalize("NFKC")
    if cfg.lowercase:
        sub = sub.str.to_lowercase()
    return texts.clone().scatter(idx, sub)


def normalize_bytes(texts: pl.Series, cfg: Shingling) -> tuple[np.ndarray, np.ndarray]:
    """Normalized texts as UTF-8 bytes back to back, and n+1 offsets (nulls are empty)."""
    texts = texts.fill_null("")
    data, offsets = _utf8(texts)
    lead, width, cps = _codepoints(data)
    flags = _cp_flags(cps)
    if (cfg.nfkc or cfg.lowercase) and len(lead):
        changed = _unicode_pass(texts, offsets, lead, flags, cfg)
        if changed is not None:
            data, offsets = _utf8(changed)
            lead, width, cps = _codepoints(data)
            flags = _cp_flags(cps)
    # ASCII: one table lookup per byte (C speed) maps separators to spaces and lower-cases
    out = np.frombuffer(data.tobytes().translate(_byte_map(cfg.lowercase, cfg.strip_punctuation)), dtype=np.uint8)
    if len(lead):
        flag = _FLAG_NOT_ALNUM if cfg.strip_punctuation else _FLAG_SPACE
        is_sep = (flags & flag) != 0
        if is_sep.any():
            out = out.copy()
            sep_lead, w = lead[is_sep], width[is_sep]
            for k in range(4):  # every byte of a separator character becomes a space
                out[sep_lead[w > k] + k] = 32
    sep = out == 32
    # keep every word byte, and the first separator byte after a word byte of the same text
    keep_mask = ~sep
    keep_mask[1:] |= sep[1:] & keep_mask[:-1]
    starts = offsets[:-1][offsets[:-1] < len(data)]
    keep_mask[starts] = ~sep[starts]
    keep = np.flatnonzero(keep_mask)
    new_offsets = np.searchsorted(keep, offsets)
    out = out[keep]
    # ... except a separator that ends its text (at most one per text is left)
    ends = new_offsets[1:]
    trailing = (ends > new_offsets[:-1]) & (out[np.maximum(ends - 1, 0)] == 32) if len(out) else np.zeros(len(ends), bool)
    if trailing.any():
        good = np.ones(len(out), dtype=bool)
        good[ends[trailing] - 1] = False
        out = out[good]
        new_offsets[1:] -= np.cumsum(trailing)
    return out, new_offsets


def normalize(texts: pl.Series, cfg: Shingling) -> pl.Series:
    """Normalized texts as a string Series."""
    data, offsets = normalize_bytes(texts, cfg)
    arr = pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(data))
    return pl.Series(texts.name, arr)


# ----------------------------------------------------------------------------- hashing


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


def _fmix64_int(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _M64
    return h ^ (h >> 33)


def shingle_hash(shingle: str, bits: int = 32) -> int:
    """Hash of one shingle (plain Python; the vectorized path must agree with it).

    Pass it as ``hashfunc`` to ``datasketch.MinHash`` to get the same signatures."""
    h = 0
    data = shingle.encode("utf-8")
    for byte in data:
        h = (h * _BASE + _BYTE_VALUE[byte]) & _M64
    h ^= (len(data) * _LEN_MUL) & _M64
    return _fmix64_int(h) >> (64 - bits)


def shingles_of(normalized: str, cfg: Shingling) -> list[str]:
    """Shingles of one normalized text, in order, duplicates kept (reference implementation)."""
    if not normalized:
        return []
    units = normalized.split(" ") if cfg.kind == "word" else list(normalized)
    sep = " " if cfg.kind == "word" else ""
    if len(units) < cfg.n:
        return [normalized]
    return [sep.join(units[i : i + cfg.n]) for i in range(len(units) - cfg.n + 1)]


_BYTE_VALUE = [(b * _CP_MUL + _CP_ADD) & _M64 for b in range(256)]
_POW_LOCK = threading.Lock()
_POWS: list[np.ndarray] = [np.ones(1, dtype=np.uint64), np.ones(1, dtype=np.uint64)]


def _powers(length: int) -> tuple[np.ndarray, np.ndarray]:
    """(BASE_INV**j, BASE**j) for j < length, cached and grown by doubling."""
    inv, fwd = _POWS
    if len(inv) < length:
        with _POW_LOCK:
            inv, fwd = _POWS
            if len(inv) < length:
                size = max(length, 2 * len(inv), 1 << 20)
                inv = np.empty(size, dtype=np.uint64)
                fwd = np.empty(size, dtype=np.uint64)
                inv[0] = fwd[0] = 1
                inv[1:] = np.cumprod(np.full(size - 1, _BASE_INV, dtype=np.uint64))
                fwd[1:] = np.cumprod(np.full(size - 1, _BASE, dtype=np.uint64))
                _POWS[:] = [inv, fwd]
    return inv[:length], fwd[:length]


def _utf8(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes of all texts back to back (zero-copy from Arrow) and n+1 offsets."""
    arr = texts.fill_null("").rechunk().to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, dtype=np.uint8)
    data = data[offsets[0] : offsets[-1]]
    return data, offsets - offsets[0]


def _count_in(starts: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(starts, offsets)
    return np.diff(pos).astype(np.int64)


def _units(data: np.ndarray, offsets: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Units (words, or characters) as [start, end) byte spans, and the count per text."""
    length = len(data)
    if kind == "char":
        starts = np.flatnonzero((data & 0xC0) != 0x80)  # not a UTF-8 continuation byte
        ends = np.empty_like(starts)
        ends[:-1] = starts[1:]
        if len(ends):
            ends[-1] = length
        return starts, ends, _count_in(starts, offsets)
    nonempty = np.diff(offsets) > 0
    space = data == 32
    start_mask = np.zeros(length, dtype=bool)
    start_mask[offsets[:-1][nonempty]] = True
    start_mask[1:] |= space[:-1]
    end_mask = np.zeros(length + 1, dtype=bool)
    end_mask[:-1] = space
    end_mask[offsets[1:][nonempty]] = True
    starts = np.flatnonzero(start_mask)
    return starts, np.flatnonzero(end_mask), _count_in(starts, offsets)


def hash_shingles(normalized: pl.Series | tuple[np.ndarray, np.ndarray], cfg: Shingling, bits: int = 32,
                  block_bytes: int = 1 << 17) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of every (normalized) text: (offsets with n+1 entries, hashes).

    ``normalized`` is a string Series or :func:`normalize_bytes` output. Text ``i`` owns
    ``hashes[offsets[i]:offsets[i+1]]`` (in text order, duplicates kept); hashes are
    uint32, or uint64 with ``bits=64``. Work proceeds in blocks of about ``block_bytes`` of
    text, so the per-byte uint64 arrays stay in cache (~3x faster)."""
    data, offsets = _utf8(normalized) if isinstance(normalized, pl.Series) else normalized
    n = len(offsets) - 1
    counts = np.zeros(n, dtype=np.int64)
    parts: list[np.ndarray] = []
    r0 = 0
    while r0 < n:
        r1 = int(np.searchsorted(offsets, offsets[r0] + block_bytes, side="right")) - 1
        r1 = min(max(r1, r0 + 1), n)
        b0, b1 = int(offsets[r0]), int(offsets[r1])
        c, h = _hash_block(data[b0:b1], offsets[r0 : r1 + 1] - b0, cfg, bits)
        counts[r0:r1] = c
        parts.append(h)
        r0 = r1
    sh_off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=sh_off[1:])
    empty = np.zeros(0, dtype=np.uint32 if bits == 32 else np.uint64)
    return sh_off, np.concatenate(parts) if parts else empty


def _hash_block(data: np.ndarray, offsets: np.ndarray, cfg: Shingling, bits: int) -> tuple[np.ndarray, np.ndarray]:
    ustart, uend, ucount = _units(data, offsets, cfg.kind)
    m = np.where(ucount >= cfg.n, ucount - cfg.n + 1, np.minimum(ucount, 1))
    total = int(m.sum())
    if total == 0:
        return m, np.zeros(0, dtype=np.uint32 if bits == 32 else np.uint64)
    sh_off = np.cumsum(m) - m
    u_off = np.zeros(len(ucount) + 1, dtype=np.int64)
    np.cumsum(ucount, out=u_off[1:])
    rec = np.repeat(np.arange(len(m)), m)
    first = u_off[rec] + (np.arange(total, dtype=np.int64) - sh_off[rec])
    last = np.minimum(first + cfg.n - 1, u_off[rec + 1] - 1)
    s, e = ustart[first], uend[last]
    # P[k] = sum_{j<k} v_j * INV^j, so the polynomial hash of [s, e) is (P[e] - P[s]) * BASE^(e-1)
    inv_pow, base_pow = _powers(len(data))
    prefix = np.zeros(len(data) + 1, dtype=np.uint64)
    values = data.astype(np.uint64)  # _BYTE_VALUE[data], as arithmetic (2.5x faster than a gather)
    values *= np.uint64(_CP_MUL)
    values += np.uint64(_CP_ADD)
    values *= inv_pow
    np.cumsum(values, out=prefix[1:])
    h = prefix[e] - prefix[s]
    h *= base_pow[e - 1]
    h ^= (e - s).astype(np.uint64) * np.uint64(_LEN_MUL)
    h = _fmix64(h)
    if bits == 64:
        return m, h
    return m, (h >> np.uint64(32)).astype(np.uint32)
