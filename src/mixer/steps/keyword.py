"""``keyword_filter``: drop records that mention other models or their makers.

Presets: ``tulu_v2`` (the reference recipe: case-insensitive plain substring in any message
of any role) and ``tulu_v3`` (assistant messages only, whole words, and Tulu 3's shorter list:
BARD, Palm, Anthropic and Claude left out as too ambiguous). The ledger names the
keyword, the role and the turn where it was found. Known flaw of the reference list, kept
for fidelity: "Palm" also matches "palm tree" and "napalm" under substring matching.
"""

from __future__ import annotations

import re
from typing import Literal

import polars as pl

from mixer.infos import SUM
from mixer.records import message_lists, removed_from
from mixer.steps.base import Mapped, Step, StepConfig, StepContext, register

TULU_KEYWORDS = [
    "OpenAI", "Open AI", "ChatGPT", "Chat GPT", "GPT-3", "GPT3", "GPT 3", "GPT-4", "GPT4", "GPT 4",
    "GPT-3.5", "GPT3.5", "GPT 3.5", "BingChat", "Bing Chat", "BARD", "Palm", "Anthropic", "Claude",
    "LAION", "Open Assistant", "OpenAssistant",
]
TULU3_KEYWORDS = [k for k in TULU_KEYWORDS if k not in ("BARD", "Palm", "Anthropic", "Claude")]
PRESETS = {
    "tulu_v2": {"keywords": TULU_KEYWORDS, "roles": ["system", "user", "assistant"], "match": "substring", "exempt_sources": ["hardcoded"]},
    "tulu_v3": {"keywords": TULU3_KEYWORDS, "roles": ["assistant"], "match": "word", "exempt_sources": ["hardcoded"]},
}


class KeywordConfig(StepConfig):
    preset: Literal["tulu_v2", "tulu_v3"] | None = None
    keywords: list[str] | None = None  # replaces the preset's list
    extra_keywords: list[str] = []  # added to the preset's list
    roles: list[Literal["system", "user", "assistant"]] | None = None
    match: Literal["substring", "word"] | None = None
    case_sensitive: bool = False
    exempt_sources: list[str] | None = None


@register
class KeywordFilter(Step):
    name = "keyword_filter"
    keeps_rows = True
    Config = KeywordConfig
    info_rules = {"exempt_hits": SUM}

    def resolved(self) -> dict:
        c = self.config
        base = dict(PRESETS[c.preset]) if c.preset else {"keywords": [], "roles": ["system", "user", "assistant"], "match": "substring", "exempt_sources": []}
        if c.keywords is not None:
            base["keywords"] = list(c.keywords)
        base["keywords"] = list(base["keywords"]) + list(c.extra_keywords)
        for k in ("roles", "match", "exempt_sources"):
            if getattr(c, k) is not None:
                base[k] = getattr(c, k)
        if not base["keywords"]:
            raise ValueError("keyword_filter needs a preset or a keyword list")
        return base

    def map(self, frame: pl.DataFrame, ctx: StepContext) -> Mapped:
        opts = self.resolved()
        flags = "" if self.config.case_sensitive else "(?i)"
        alternation = "|".join(re.escape(k) for k in sorted(opts["keywords"], key=len, reverse=True))
        pattern = flags + (rf"\b(?:{alternation})\b" if opts["match"] == "word" else f"(?:{alternation})")
        exempt = pl.col("source").is_in(opts["exempt_sources"])
        hits = []
        for col in message_lists(frame):
            turns = (
                frame.select(pl.int_range(pl.len()).alias("_i"), pl.col(col))
                .explode(col)
                .with_columns(pl.int_range(pl.len()).over("_i").alias("_turn"))
                .unnest(col)
                .filter(pl.col("role").is_in(opts["roles"]))
                .with_columns(pl.col("content").str.extract(pattern, 0).alias("_kw"))
                .filter(pl.col("_kw").is_not_null())
            )
            hits.append(turns.select("_i", pl.format("keyword={} role={} turn={}{}", "_kw", "role", "_turn", pl.lit(f" ({col})" if col != "messages" else "")).alias("_detail"), "_turn"))
        first = pl.concat(hits).sort("_i", "_turn").group_by("_i", maintain_order=True).first()
        tagged = frame.with_columns(pl.int_range(pl.len()).alias("_i")).join(first.select("_i", "_detail"), on="_i", how="left")
        drop = pl.col("_detail").is_not_null() & ~exempt
        removed = removed_from(tagged.filter(drop), self.name, "keyword", pl.col("_detail"))
        kept = tagged.filter(~drop).drop("_i", "_detail")
        exempted = tagged.filter(pl.col("_detail").is_not_null() & exempt).height
        return Mapped(kept, removed, info={"match": opts["match"], "roles": opts["roles"], "keywords": len(opts["keywords"]), "exempt_hits": exempted})
