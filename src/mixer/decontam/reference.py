"""A brute-force implementation of the same rules, pair by pair, in plain Python.

Slow (every record against every instance) and obviously correct: tests and the
benchmark compare the index with it on samples, pair for pair.
"""

from __future__ import annotations

import polars as pl

from mixer.decontam.core import MatchParams, segments
from mixer.decontam.tokenize import words


def _contains(seq: tuple, segs: list[tuple]) -> bool:
    L = len(seq)
    return any(seg[i : i + L] == seq for seg in segs for i in range(len(seg) - L + 1))


def brute_force(frame: pl.DataFrame, evals: pl.DataFrame, params: MatchParams) -> pl.DataFrame:
    """``rec, inst, coverage, n_ngrams, short`` for every pair meeting the rule."""
    n = params.size
    texts, seg_rec = segments(frame, params.roles)
    rec_segs: list[list[tuple]] = [[] for _ in range(frame.height)]
    for r, toks in zip(seg_rec.tolist(), words(texts, params.unicode), strict=True):
        rec_segs[r].append(tuple(toks))
    prompts = [tuple(t) for t in words(evals["prompt"], params.unicode)]
    answers = [tuple(t) for t in words(evals["answer"].fill_null(""), params.unicode)]
    fields = {"prompt": [[p] for p in prompts], "answer": [[a] for a in answers], "both": [[p, a] for p, a in zip(prompts, answers, strict=True)]}[params.eval_text]
    rows = []
    for r, segs in enumerate(rec_segs):
        grams = {seg[i : i + n] for seg in segs for i in range(len(seg) - n + 1)}
        for i, parts in enumerate(fields):
            length = sum(len(p) for p in parts)
            prompt = prompts[i] if params.eval_text != "answer" else ()
            if params.rule == "exact" or length < n:
                if params.rule != "exact" and length >= n:
                    continue
                if params.short == "skip" or not params.short_min_tokens <= len(prompt) or not prompt:
                    continue
                if params.rule == "exact" and len(prompt) >= n:
                    if _contains(prompt, segs):
                        rows.append((r, i, 1.0, 1, False))
                    continue
                if len(prompt) < n and _contains(prompt, segs):
                    rows.append((r, i, 1.0, 1, True))
                continue
            covered: set[int] = set()
            hits = 0
            offset = 0
            for p in parts:
                for q in range(len(p) - n + 1):
                    if p[q : q + n] in grams:
                        hits += 1
                        covered.update(range(offset + q, offset + q + n))
                offset += len(p)
            if not hits:
                continue
            cov = len(covered) / length
            if params.rule == "tulu3" and not cov > params.threshold:
                continue
            if params.rule == "ngram" and hits < params.min_ngrams:
                continue
            rows.append((r, i, cov, hits, False))
    return pl.DataFrame(
        rows,
        schema={"rec": pl.Int64, "inst": pl.Int32, "coverage": pl.Float64, "n_ngrams": pl.Int32, "short": pl.Boolean},
        orient="row",
    )
