"""Reading a finished build folder: its frames, its manifest, and "why is X (not) here?".

A build is complete only when ``manifest.json`` says so and the file hashes match; the
hidden work folders of builds (``.NAME.tmp-*``, ``.NAME.old-*``) never qualify, whatever
they hold. Opening a build first undoes what a killed build left (``mixer.publish.recover``).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import polars as pl

from mixer.io import sha256_file
from mixer.publish import is_hidden_work_dir, recover


class IncompleteBuild(ValueError):
    """The folder is not a finished, intact build."""


class BuildDir:
    def __init__(self, path: str | Path, verify: bool = False):
        self.path = Path(path)
        if is_hidden_work_dir(self.path):
            raise IncompleteBuild(f"{self.path}: a hidden work folder of a build (temp or replaced), never a build; open the folder without the dot")
        try:
            recover(self.path)
        except OSError:
            pass  # a read-only place: nothing to undo from here, and the checks below still hold
        if not self.path.is_dir():
            raise FileNotFoundError(f"no build folder at {self.path}")
        mf = self.path / "manifest.json"
        if not mf.exists():
            raise IncompleteBuild(f"{self.path} has no manifest.json: not a finished build (interrupted, or not a build folder)")
        self.manifest: dict[str, Any] = json.loads(mf.read_text())
        if not self.manifest.get("complete"):
            raise IncompleteBuild(f"{self.path}: manifest.json does not mark the build complete")
        if verify:
            self.verify()

    def verify(self) -> None:
        """Check every output file against the hashes in the manifest."""
        for name, info in self.manifest.get("files", {}).items():
            p = self.path / name
            if not p.exists():
                raise IncompleteBuild(f"{self.path}: {name} is missing")
            if sha256_file(p) != info["sha256"]:
                raise IncompleteBuild(f"{self.path}: {name} does not match the hash in manifest.json (modified or truncated)")

    @functools.cached_property
    def frame(self) -> pl.DataFrame:
        from mixer.output import read_mixture

        return read_mixture(self.path, self.manifest)

    @functools.cached_property
    def removed(self) -> pl.DataFrame:
        return pl.read_parquet(self.path / "removed.parquet")

    @property
    def sources(self) -> list[str]:
        return list(self.manifest.get("sources", {}))

    @property
    def kind(self) -> str:
        return self.manifest.get("kind", "sft")

    def why(self, record_id: str) -> list[dict[str, Any]]:
        """Facts about ``record_id``: where it is kept, or which step removed it and why,
        with its text; for a duplicate the kept record's text and the similarity, for a
        contamination match the benchmark instance's text and the coverage.
        A raw-row prefix (``source:12``) also finds the records split from that row."""
        out: list[dict[str, Any]] = []
        prefix = pl.col("id").str.starts_with(record_id + ".") | pl.col("id").str.starts_with(record_id + "~")
        kept = self.frame.with_row_index("_pos").filter((pl.col("id") == record_id) | prefix)
        for row in kept.iter_rows(named=True):
            out.append({"id": row["id"], "status": "kept", "source": row["source"], "position": row["_pos"], "text": record_text(row)})
        gone = self.removed.filter((pl.col("id") == record_id) | prefix)
        for row in gone.iter_rows(named=True):
            fact = {"id": row["id"], "status": "removed", **{k: row[k] for k in ("source", "step", "reason", "detail")}, "text": record_text(row)}
            out.append({**fact, **self.counterpart(row)})
        # Records removed as a duplicate *of* this one.
        if kept.height:
            ids = kept["id"].to_list()
            pat = "|".join(re.escape(i) for i in ids)
            dups = self.removed.filter(pl.col("detail").str.contains(rf"(?:^|\s)(?:{pat})(?:\s|$|\))"))
            for row in dups.head(20).iter_rows(named=True):
                out.append({"id": row["id"], "status": "duplicate_of_this", **{k: row[k] for k in ("source", "step", "reason", "detail")}})
        return out

    def counterpart(self, row: dict[str, Any]) -> dict[str, Any]:
        """What a removed record was measured against: the kept record of a duplicate, or
        the benchmark instance of a contamination match."""
        detail = row.get("detail") or ""
        m = _KEPT.search(detail)
        if m and "duplicate" in (row.get("reason") or ""):
            other = self.record(m.group(1))
            sim = _SIM.search(detail)
            return {"counterpart_id": m.group(1), "counterpart_text": record_text(other) if other else None,
                    "similarity": sim.group(0) if sim else ("identical after normalization" if row["reason"] == "exact_duplicate" else None)}
        if row.get("reason") == "contaminated" and detail.startswith("{"):
            d = json.loads(detail)
            fact = {"benchmark": d.get("benchmark"), "instance_id": d.get("instance_id"), "coverage": d.get("coverage"), "short": d.get("short")}
            matches = self.path / "contamination_matches.parquet"
            if matches.exists():
                hit = pl.read_parquet(matches).filter((pl.col("id") == row["id"]) & (pl.col("instance_id") == d.get("instance_id")))
                if hit.height and "instance_text" in hit.columns:
                    fact["instance_text"] = hit["instance_text"][0]
            return fact
        return {}

    def record(self, record_id: str) -> dict[str, Any] | None:
        """One record by id, kept (from the mixture) or removed (from the ledger)."""
        for frame in (self.frame, self.removed):
            hit = frame.filter(pl.col("id") == record_id)
            if hit.height:
                return hit.row(0, named=True)
        return None

    def why_lines(self, record_id: str, max_chars: int = 600) -> list[str]:
        facts = self.why(record_id)
        if not facts:
            srcs = ", ".join(self.sources)
            return [f"{record_id}: not in this build at all (never read?). Ids look like 'SOURCE:ROW'; sources here: {srcs}"]
        lines = []
        for f in facts:
            if f["status"] == "kept":
                lines.append(f"{f['id']}: kept in the mix (source {f['source']}, position {f['position']})")
                lines += _indent(f["text"], max_chars)
            elif f["status"] == "removed":
                lines.append(f"{f['id']}: removed by step '{f['step']}' ({f['source']}), reason {f['reason']}" + (f": {f['detail']}" if f["detail"] else ""))
                lines += _indent(f["text"], max_chars) if f["text"] else ["    (no text: removed before it was parsed into messages)"]
                if f.get("counterpart_id"):
                    lines.append(f"  kept record {f['counterpart_id']}" + (f" ({f['similarity']})" if f.get("similarity") else "") + ":")
                    lines += _indent(f.get("counterpart_text") or "(not found in this build)", max_chars)
                if f.get("benchmark"):
                    short = ", a short instance (matched whole)" if f.get("short") else ""
                    lines.append(f"  matched {f['benchmark']} instance {f['instance_id']}, coverage {f['coverage']}{short}:")
                    lines += _indent(f.get("instance_text") or "(instance text not recorded in this build)", max_chars)
            else:
                lines.append(f"  {f['id']} ({f['source']}) was removed as its duplicate by '{f['step']}': {f['detail']}")
        return lines


_KEPT = re.compile(r"duplicate of (\S+) \(")
_SIM = re.compile(r"(?:estimated|exact) Jaccard [0-9.]+|cosine [0-9.]+")


def record_text(rec: dict[str, Any] | None) -> str:
    """A record's turns as ``role: content`` lines (preference pairs: both answers)."""
    if not rec:
        return ""
    parts = []
    for col in ("messages", "chosen", "rejected"):
        msgs = rec.get(col)
        if msgs is None:
            continue
        if col != "messages":
            parts.append(f"[{col}]")
        parts += [f"{m['role']}: {m['content']}" for m in msgs]
    return "\n".join(parts)


def _indent(text: str, max_chars: int) -> list[str]:
    cut = text if len(text) <= max_chars else text[:max_chars] + f" … [{len(text) - max_chars:,} more characters]"
    return ["    " + line for line in cut.splitlines()]
