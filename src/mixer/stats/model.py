"""``Stats``: the statistics of one mixture under one tokenizer, as ``stats.json`` holds them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from mixer.stats.summary import THRESHOLDS, TOTAL

VERSION = 1


@dataclass
class Stats:
    """Per-source rows (``rows[source]``, plus ``rows["total"]``) and turn distributions."""

    kind: str
    tokenizer: str
    tokenizer_key: str
    unit: str
    thresholds: list[int] = field(default_factory=lambda: list(THRESHOLDS))
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    turns: dict[str, dict[str, int]] = field(default_factory=dict)
    version: int = VERSION

    @classmethod
    def from_frame(cls, summary: pl.DataFrame, turns: dict[str, dict[str, int]], **meta: Any) -> Stats:
        rows = {r.pop("source"): r for r in summary.to_dicts()}
        return cls(rows=rows, turns=turns, **meta)

    @property
    def sources(self) -> list[str]:
        return [s for s in self.rows if s != TOTAL]

    @property
    def total(self) -> dict[str, Any]:
        return self.rows[TOTAL]

    def frame(self) -> pl.DataFrame:
        """One row per source and ``total``: the table a notebook shows."""
        return pl.DataFrame([{"source": s, **r} for s, r in self.rows.items()], infer_schema_length=None)

    def tokens_per_source(self) -> dict[str, dict[str, int]]:
        """What the manifest records per source: ``total`` (sum of tokens per record), per
        role, and for preference data the prompt, chosen and rejected sums."""
        keys = ["user", "assistant", "system"] + (["prompt", "chosen", "rejected"] if self.kind == "preference" else [])
        return {s: {"total": int(r["tokens_sum"] or 0), **{k: int(r.get(f"{k}_tokens_sum") or 0) for k in keys}}
                for s, r in self.rows.items() if s != TOTAL}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(json.dumps(self.to_dict(), indent=2))
        return p

    @classmethod
    def load(cls, path: str | Path) -> Stats:
        data = json.loads(Path(path).read_text())
        data["thresholds"] = list(data.get("thresholds", THRESHOLDS))
        return cls(**data)

    def _repr_html_(self) -> str:
        from mixer.stats.table import stats_html

        return stats_html(self)

    def __rich__(self) -> Any:
        from mixer.stats.table import stats_table

        return stats_table(self)
