"""The handoff from ``mixer build`` to training: check a build folder, then load its records.

Training reads nothing but the build folder. A build is trusted only when its manifest says
``complete: true`` and every file it lists still has the recorded size and SHA-256, so a
killed build (a ``.<name>.tmp-*`` folder) or a file edited after the build never trains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

MANIFEST = "manifest.json"


class BuildError(RuntimeError):
    """The folder is not a complete, intact build."""


@dataclass(frozen=True)
class Build:
    path: Path
    manifest: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def spec_hash(self) -> str:
        return self.manifest.get("spec_hash", "")

    @property
    def mixture(self) -> list[Path]:
        """The mixture's parquet shards, in order (one file for small builds)."""
        from mixer.output import mixture_files

        return mixture_files(self.path, self.manifest)

    @property
    def rows(self) -> int:
        files = self.manifest["files"]
        return sum(int(files[p.name].get("rows", 0)) for p in self.mixture)


def open_build(path: str | Path, kind: str | None = None, verify_hashes: bool = True) -> Build:
    """Validate ``path`` as a finished build (of ``kind`` when given) and return it.

    The manifest contract (complete, hashes) is ``mixer.build_dir``'s; this adds what
    training needs on top: the kind, the columns, records that can be trained on."""
    from mixer.build_dir import BuildDir, IncompleteBuild

    p = Path(path).expanduser().resolve()
    if p.name.startswith(".") and ".tmp-" in p.name:
        raise BuildError(f"{p} is the temporary folder of a build that never finished; rerun `mixer build`")
    if not p.is_dir():
        raise BuildError(f"build folder not found: {p}")
    _check_manifest_shape(p / MANIFEST)
    try:
        manifest = BuildDir(p, verify=verify_hashes).manifest
    except IncompleteBuild as e:
        partial = sorted(p.parent.glob(f".{p.name}.tmp-*"))
        hint = f" (a half-written build sits beside it: {partial[0].name})" if partial else ""
        raise BuildError(f"{e}; refusing to train on it{hint}") from None
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as e:
        raise BuildError(f"{p / MANIFEST}: unreadable manifest ({type(e).__name__}: {e})") from None
    files = manifest.get("files") or {}
    build = Build(p, manifest)
    if not build.mixture or not all(f.name in files for f in build.mixture):
        raise BuildError(f"{p}/{MANIFEST}: lists no mixture parquet file")
    for name, info in files.items():
        if not isinstance(info, dict):
            raise BuildError(f"{p / MANIFEST}: files.{name} is a {type(info).__name__}, not an object")
        f = p / name
        if "bytes" in info and f.stat().st_size != int(info["bytes"]):
            raise BuildError(f"{p}: {name} has {f.stat().st_size} bytes, the manifest says {info['bytes']}")
    if build.kind not in ("sft", "preference"):
        raise BuildError(f"{p}/{MANIFEST}: unknown kind {build.kind!r}")
    if kind is not None and build.kind != kind:
        cmd = "sft" if build.kind == "sft" else "dpo"
        want = "an SFT" if kind == "sft" else "a preference"
        raise BuildError(
            f"{p}: build {build.manifest.get('name')!r} is a {build.kind} build, not {want} build; "
            f"train it with `mixer train {cmd}`"
        )
    _check_records(build)
    return build


def _check_manifest_shape(mf: Path) -> None:
    """A manifest that is a folder, not JSON, or not a JSON object is an error naming it."""
    if mf.exists() and not mf.is_file():
        raise BuildError(f"{mf}: expected the build's manifest file, found a {'folder' if mf.is_dir() else 'special file'}")
    if not mf.is_file():
        return  # BuildDir names the missing manifest
    try:
        data = json.loads(mf.read_bytes())
    except (ValueError, OSError) as e:
        raise BuildError(f"{mf}: not a readable JSON manifest ({e})") from None
    if not isinstance(data, dict):
        raise BuildError(f"{mf}: a manifest is a JSON object, this one is a JSON {type(data).__name__}")
    if not isinstance(data.get("files", {}), dict):
        raise BuildError(f"{mf}: 'files' must be an object of file name -> size and hash")


def _check_records(build: Build) -> None:
    """Catch records training cannot use, naming them, before any process starts."""
    files = build.mixture
    lf = pl.scan_parquet(files)
    where = files[0] if len(files) == 1 else build.path
    cols = ["messages"] if build.kind == "sft" else ["chosen", "rejected"]
    missing = [c for c in cols if c not in lf.collect_schema().names()]
    if missing:
        raise BuildError(f"{where}: missing column(s) {missing} for a {build.kind} build")
    for c in cols:
        roles = pl.col(c).list.eval(pl.element().struct.field("role"))
        bad = pl.col(c).list.len() == 0
        if c == "messages":
            bad = bad | ~roles.list.contains("assistant")
        else:
            bad = bad | (roles.list.last() != "assistant")
        ids = lf.filter(bad).select("id").head(3).collect()["id"].to_list()
        if ids:
            what = "no assistant turn" if c == "messages" else "does not end on an assistant turn"
            raise BuildError(f"{where}: {c} {what} in record(s) {ids}")


def _split_preference(example: dict[str, Any]) -> dict[str, Any]:
    """Explicit prompt / chosen / rejected from full conversations sharing the prompt turns."""
    chosen, rejected = example["chosen"], example["rejected"]
    if chosen[:-1] != rejected[:-1]:
        raise BuildError(f"preference record {example.get('id')!r}: chosen and rejected do not share the prompt turns")
    return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}


def load_records(build: Build, num_proc: int | None = None):
    """A file-backed ``datasets.Dataset`` TRL can consume: ``messages`` for SFT; ``prompt``,
    ``chosen``, ``rejected`` (conversational) for preference builds."""
    from datasets import load_dataset

    ds = load_dataset("parquet", data_files=[str(f) for f in build.mixture], split="train")
    if build.kind == "sft":
        return ds.select_columns(["messages"])
    ds = ds.select_columns(["id", "chosen", "rejected"])
    return ds.map(_split_preference, remove_columns=["id"], num_proc=num_proc, desc="Splitting prompts")
