"""Reading a finished build folder: its frames, its manifest, and "why is X (not) here?".

A build is complete only when ``manifest.json`` says so and the file hashes match; temp
folders of interrupted builds (``.NAME.tmp-*``) never qualify.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import polars as pl

from mixer.io import sha256_file


class IncompleteBuild(ValueError):
    """The folder is not a finished, intact build."""


class BuildDir:
    def __init__(self, path: str | Path, verify: bool = False):
        self.path = Path(path)
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
        """Facts about ``record_id``: where it is kept, or which step removed it and why.
        A raw-row prefix (``source:12``) also finds the records split from that row."""
        out: list[dict[str, Any]] = []
        ids = [record_id]
        prefix = pl.col("id").str.starts_with(record_id + ".") | pl.col("id").str.starts_with(record_id + "~")
        kept = self.frame.with_row_index("_pos").filter((pl.col("id") == record_id) | prefix)
        for row in kept.iter_rows(named=True):
            out.append({"id": row["id"], "status": "kept", "source": row["source"], "position": row["_pos"]})
        gone = self.removed.filter((pl.col("id") == record_id) | prefix)
        for row in gone.iter_rows(named=True):
            out.append({"id": row["id"], "status": "removed", **{k: row[k] for k in ("source", "step", "reason", "detail")}})
        # Records removed as a duplicate *of* this one.
        if kept.height:
            ids = kept["id"].to_list()
            pat = "|".join(re.escape(i) for i in ids)
            dups = self.removed.filter(pl.col("detail").str.contains(rf"(?:^|\s)(?:{pat})(?:\s|$|\))"))
            for row in dups.head(20).iter_rows(named=True):
                out.append({"id": row["id"], "status": "duplicate_of_this", **{k: row[k] for k in ("source", "step", "reason", "detail")}})
        return out

    def why_lines(self, record_id: str) -> list[str]:
        facts = self.why(record_id)
        if not facts:
            srcs = ", ".join(self.sources)
            return [f"{record_id}: not in this build at all (never read?). Ids look like 'SOURCE:ROW'; sources here: {srcs}"]
        lines = []
        for f in facts:
            if f["status"] == "kept":
                lines.append(f"{f['id']}: kept in the mix (source {f['source']}, position {f['position']})")
            elif f["status"] == "removed":
                lines.append(f"{f['id']}: removed by step '{f['step']}' ({f['source']}), reason {f['reason']}" + (f": {f['detail']}" if f["detail"] else ""))
            else:
                lines.append(f"  {f['id']} ({f['source']}) was removed as its duplicate by '{f['step']}': {f['detail']}")
        return lines
