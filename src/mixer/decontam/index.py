"""The eval-side index, built once, and the bulk query of training token streams.

Index: every n-gram window of every eval instance, grouped by exact content ("grams"),
with postings (instance, position). A hash table over the grams nominates candidate
training windows; each candidate is verified token by token, so the result is exact:
every shared n-gram is found (equal windows hash equal) and no collision is reported.

Short instances (fewer tokens than n) get their own table of whole-sequence hashes, and
the ``exact`` rule uses only each instance's first n-gram as an anchor, then verifies the
whole instance in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from mixer.decontam import hashing as H
from mixer.decontam.tokenize import Tokens, Vocabulary
from mixer.dedup.jaccard import sorted_unique

MAX_PAIRS = 16_000_000  # postings expanded per batch; bounds memory on template-heavy data


def ragged_equal(a: np.ndarray, a_start: np.ndarray, b: np.ndarray, b_start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """For each k: ``a[a_start[k]:+length[k]] == b[b_start[k]:+length[k]]`` (vectorized)."""
    if len(length) == 0:
        return np.zeros(0, dtype=bool)
    total = int(length.sum())
    owner = np.repeat(np.arange(len(length)), length)
    within = np.arange(total) - np.repeat(np.cumsum(length) - length, length)
    eq = a[np.repeat(a_start, length) + within] == b[np.repeat(b_start, length) + within]
    bad = np.bincount(owner[~eq], minlength=len(length))
    return bad == 0


@dataclass
class Settings:
    n: int
    short: str  # "contain" | "skip"
    short_min: int
    exact: bool  # exact rule: whole-instance containment


class EvalIndex:
    """Exact n-gram index over eval instances (row order of the eval frame = instance id)."""

    def __init__(self, evals: pl.DataFrame, settings: Settings, eval_text: str = "prompt", unicode: bool = True):
        self.settings = settings
        self.evals = evals
        self.unicode = unicode
        seg = _eval_segments(evals, eval_text)
        self.vocab, tok = Vocabulary.build(seg["text"], unicode)
        seg_inst = seg["inst"].to_numpy().astype(np.int64)
        seg_kind = seg["kind"].to_numpy()
        seg_len = tok.lengths
        n_inst = evals.height
        self.ids = tok.ids
        self.inst_len = np.bincount(seg_inst, weights=seg_len, minlength=n_inst).astype(np.int64)
        # instance start in the flat array (segments of one instance are contiguous)
        first = np.ones(len(seg_inst), dtype=bool)
        first[1:] = seg_inst[1:] != seg_inst[:-1]
        self.inst_start = np.zeros(n_inst, dtype=np.int64)
        self.inst_start[seg_inst[first]] = tok.offsets[:-1][first]
        # the prompt segment (kind 0) of each instance, for short / exact containment
        self.prompt_start = np.zeros(n_inst, dtype=np.int64)
        self.prompt_len = np.zeros(n_inst, dtype=np.int64)
        pm = seg_kind == 0
        self.prompt_start[seg_inst[pm]] = tok.offsets[:-1][pm]
        self.prompt_len[seg_inst[pm]] = seg_len[pm]
        self.mix = H.mix64(np.arange(self.vocab.size + 1, dtype=np.uint64))
        v = self.mix[self.ids]
        self._build_grams(v, tok, seg_inst)
        self._build_short(v)

    def _build_grams(self, v: np.ndarray, tok: Tokens, seg_inst: np.ndarray) -> None:
        """n-gram windows -> grams (exact content groups) with postings (instance, position)."""
        s, n = self.settings, self.settings.n
        run, bad = H.runs(self.ids, tok.offsets, self.vocab.size)
        if s.exact:
            pos = self.prompt_start[self.prompt_len >= n]
        else:
            pos = np.flatnonzero(H.valid_windows(run, bad, n))
        h_all = H.windows(v, n) if len(self.ids) >= n else np.zeros(0, np.uint64)
        h = h_all[pos]
        seg_of = np.searchsorted(tok.offsets, pos, side="right") - 1
        inst = seg_inst[seg_of]
        order = np.argsort(h, kind="stable")  # pos ascending within equal hashes
        h, pos, inst = h[order], pos[order], inst[order]
        newgroup = np.ones(len(h), dtype=bool)
        if len(h) > 1:
            same = np.flatnonzero(h[1:] == h[:-1])  # compare content only where hashes tie
            differ = (self.ids[pos[same, None] + np.arange(n)] != self.ids[pos[same + 1, None] + np.arange(n)]).any(axis=1)
            newgroup[1:] = h[1:] != h[:-1]
            newgroup[same[differ] + 1] = True
        gid = np.cumsum(newgroup) - 1
        self.n_grams = int(gid[-1] + 1) if len(gid) else 0
        self.gram_ids = self.ids[pos[newgroup, None] + np.arange(n)] if len(pos) else np.zeros((0, n), np.uint32)
        self.gram_hash = h[newgroup]
        self.post_off = np.concatenate([np.flatnonzero(newgroup), [len(h)]]).astype(np.int64)
        self.post_inst = inst.astype(np.int32)
        self.post_q = (pos - self.inst_start[inst]).astype(np.int32)
        self.grams = H.HashSet(self.gram_hash, presorted=True)
        # each unique hash -> range of grams carrying it (usually one)
        hstart = np.ones(len(self.gram_hash), dtype=bool)
        hstart[1:] = self.gram_hash[1:] != self.gram_hash[:-1]
        self.hash_glo = np.flatnonzero(hstart)
        self.hash_ghi = np.concatenate([self.hash_glo[1:], [len(self.gram_hash)]])

    def _build_short(self, v: np.ndarray) -> None:
        """Instances with no n-gram window at all: whole-prompt hashes, matched by containment."""
        s, n = self.settings, self.settings.n
        if s.short == "contain":
            short = np.flatnonzero((self.prompt_len >= s.short_min) & (self.prompt_len < n) & (self.inst_len < n))
        else:
            short = np.zeros(0, np.int64)
        self.short_inst = short
        self.short_lengths = sorted(set(self.prompt_len[short].tolist()))
        sh = np.zeros(len(short), np.uint64)
        for L in self.short_lengths:
            sel = self.prompt_len[short] == L
            starts = self.prompt_start[short[sel]]
            acc = v[starts].copy()
            for t in range(1, L):
                acc = acc * H.BASE + v[starts + t]
            sh[sel] = acc
        order = np.lexsort((short, sh))
        self.short_hash, self.short_inst = sh[order], short[order]
        self.n_short = int(len(short))
        # only positions whose token starts a short instance of length L can match it
        self.short_first = {L: np.zeros(self.vocab.size + 1, dtype=bool) for L in self.short_lengths}
        for L in self.short_lengths:
            self.short_first[L][self.ids[self.prompt_start[short[self.prompt_len[short] == L]]]] = True
        self.short_first_any = np.zeros(self.vocab.size + 1, dtype=bool)
        for mask in self.short_first.values():
            self.short_first_any |= mask

    # ------------------------------------------------------------------ querying

    def query(self, tok: Tokens, seg_rec: np.ndarray, rec_offset: int = 0) -> pl.DataFrame:
        """All (record, instance) pairs of a chunk that meet the rule's evidence:
        ``rec, inst, covered, n_ngrams, short`` (coverage = covered / instance length)."""
        n = self.settings.n
        ids = tok.ids
        out: list[pl.DataFrame] = []
        if len(ids) == 0:
            return _empty_pairs()
        v = self.mix[ids]
        run, bad = H.runs(ids, tok.offsets, self.vocab.size)

        def rec_of(pos: np.ndarray) -> np.ndarray:
            seg = np.searchsorted(tok.offsets, pos, side="right") - 1
            return seg_rec[seg].astype(np.int64) + rec_offset

        need = set(self.short_lengths)
        starts0 = np.flatnonzero(self.short_first_any[ids]) if need else None
        h = v
        for L in range(1, n + 1):
            if L > 1:
                h = H.extend(h, v, L)
            if len(h) == 0:
                break
            if L in need:
                out.append(self._short_hits(h, run, starts0, L, ids, rec_of))
            if L == n and len(self.grams):
                s, g = self._gram_hits(h, run, bad, ids)
                if self.settings.exact:
                    out.append(self._exact_hits(s, g, run, ids, rec_of))
                else:
                    out.append(self._coverage(rec_of(s), g))
        out = [o for o in out if o.height]
        return pl.concat(out) if out else _empty_pairs()

    def _short_hits(self, h, run, starts0, L, ids, rec_of) -> pl.DataFrame:
        """Whole short instances of length L inside one segment (verified on the ids)."""
        s = starts0[starts0 < len(h)]
        s = s[self.short_first[L][ids[s]]]
        s = s[run[s] == run[s + L - 1]]
        hv = h[s]
        lo = np.searchsorted(self.short_hash, hv, side="left")
        hi = np.searchsorted(self.short_hash, hv, side="right")
        cnt = hi - lo
        if not cnt.any():
            return _empty_pairs()
        s = np.repeat(s, cnt)
        k = np.repeat(lo, cnt) + (np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt))
        inst = self.short_inst[k]
        keep = (self.prompt_len[inst] == L) & ragged_equal(ids, s, self.ids, self.prompt_start[inst], np.full(len(s), L))
        s, inst = s[keep], inst[keep]
        return _pairs(rec_of(s), inst, np.full(len(s), L), np.ones(len(s), np.int64), short=True).unique(["rec", "inst"])

    def _gram_hits(self, h, run, bad, ids) -> tuple[np.ndarray, np.ndarray]:
        """Verified (window start, gram) pairs."""
        n = self.settings.n
        cand = self.grams.candidates(h, H.valid_windows(run, bad, n))
        if len(cand) == 0:
            return cand, cand
        u = self.grams.index_of(h[cand])
        lo, hi = self.hash_glo[u], self.hash_ghi[u]
        cnt = hi - lo
        s = np.repeat(cand, cnt)
        g = np.repeat(lo, cnt) + (np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt))
        ok = (ids[s[:, None] + np.arange(n)] == self.gram_ids[g]).all(axis=1)
        return s[ok], g[ok]

    def _expand(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """gram -> its postings: (row into g, instance, position)."""
        cnt = self.post_off[g + 1] - self.post_off[g]
        row = np.repeat(np.arange(len(g)), cnt)
        k = np.repeat(self.post_off[g], cnt) + (np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt))
        return row, self.post_inst[k], self.post_q[k]

    def _coverage(self, rec: np.ndarray, g: np.ndarray) -> pl.DataFrame:
        """Tulu 3 coverage per (record, instance): tokens of the instance inside an n-gram
        the record shares, from the sorted matched window positions."""
        n = self.settings.n
        if len(rec) == 0:
            return _empty_pairs()
        key = sorted_unique(rec.astype(np.int64) * np.int64(self.n_grams) + g)  # np.unique: ~15x slower
        rec_u, g_u = key // self.n_grams, key % self.n_grams
        sizes = self.post_off[g_u + 1] - self.post_off[g_u]
        # batch at record boundaries so one batch never holds more than MAX_PAIRS postings
        csum = np.cumsum(sizes)
        bounds = [0]
        while bounds[-1] < len(key):
            base = csum[bounds[-1] - 1] if bounds[-1] else 0
            j = int(np.searchsorted(csum, base + MAX_PAIRS, side="right"))
            j = max(j, bounds[-1] + 1)
            while j < len(key) and rec_u[j] == rec_u[j - 1]:
                j += 1
            bounds.append(min(j, len(key)))
        frames = []
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            row, inst, q = self._expand(g_u[a:b])
            r = rec_u[a:b][row]
            order = np.lexsort((q, inst, r))
            r, inst, q = r[order], inst[order], q[order]
            start = np.ones(len(r), dtype=bool)
            start[1:] = (r[1:] != r[:-1]) | (inst[1:] != inst[:-1])
            # covered tokens = sum over sorted positions of min(n, gap to next), n for the last
            gap = np.full(len(q), n, dtype=np.int64)
            nxt_same = ~start[1:]
            gap[:-1][nxt_same] = np.minimum(n, (q[1:] - q[:-1])[nxt_same])
            idx = np.flatnonzero(start)
            covered = np.add.reduceat(gap, idx)
            count = np.diff(np.append(idx, len(q)))
            frames.append(_pairs(r[idx], inst[idx], covered, count, short=False))
        return pl.concat(frames)

    def _exact_hits(self, s, g, run, ids, rec_of) -> pl.DataFrame:
        """Instances whose first n-gram matched at s: verify the whole prompt in place."""
        if len(s) == 0:
            return _empty_pairs()
        row, inst, q = self._expand(g)
        s = s[row]
        L = self.prompt_len[inst]
        end = s + L - 1
        inside = end < len(ids)
        s, inst, L = s[inside], inst[inside], L[inside]
        same = run[s] == run[s + L - 1]
        s, inst, L = s[same], inst[same], L[same]
        ok = ragged_equal(ids, s, self.ids, self.prompt_start[inst], L)
        s, inst, L = s[ok], inst[ok], L[ok]
        return _pairs(rec_of(s), inst, L, np.ones(len(s), np.int64), short=False).unique(["rec", "inst"])

    def describe(self) -> dict:
        return {
            "instances": int(self.evals.height),
            "tokens": int(len(self.ids)),
            "vocabulary": int(self.vocab.size),
            "ngrams": int(self.n_grams),
            "short_instances": self.n_short,
        }


def _pairs(rec, inst, covered, count, short: bool) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "rec": np.asarray(rec, dtype=np.int64),
            "inst": np.asarray(inst, dtype=np.int32),
            "covered": np.asarray(covered, dtype=np.int32),
            "n_ngrams": np.asarray(count, dtype=np.int32),
            "short": np.full(len(rec), short, dtype=bool),
        }
    )


def _empty_pairs() -> pl.DataFrame:
    return _pairs(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), False)


def _eval_segments(evals: pl.DataFrame, eval_text: str) -> pl.DataFrame:
    """One row per (instance, text field): kind 0 = prompt, 1 = answer."""
    base = evals.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("inst"), "prompt", "answer")
    parts = []
    if eval_text in ("prompt", "both"):
        parts.append(base.select("inst", pl.lit(0, pl.Int8).alias("kind"), pl.col("prompt").alias("text")))
    if eval_text in ("answer", "both"):
        parts.append(base.select("inst", pl.lit(1, pl.Int8).alias("kind"), pl.col("answer").fill_null("").alias("text")))
    if not parts:
        raise ValueError(f"eval_text must be prompt, answer or both, not {eval_text!r}")
    return pl.concat(parts).sort(["inst", "kind"])
