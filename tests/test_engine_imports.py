"""``pipeline`` uses the engines; the engines never import ``pipeline`` back (no cycle)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_engines_do_not_import_the_pipeline(repo: Path) -> None:
    engines = sorted((repo / "src" / "mixer" / "engines").glob("*.py"))
    assert len(engines) > 3
    imports = re.compile(r"^\s*(from\s+mixer\.pipeline\s+import|import\s+mixer\.pipeline|from\s+mixer\s+import\s+[^\n]*\bpipeline\b)", re.M)
    for path in engines:
        assert not imports.search(path.read_text()), path.name
    # and at run time: loading every engine module loads no pipeline
    mods = ", ".join(f"mixer.engines.{p.stem}" for p in engines if p.stem != "__init__")
    code = f"import sys, {mods}; bad = [m for m in sys.modules if m == 'mixer.pipeline']; print(bad); sys.exit(bool(bad))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo)
    assert r.returncode == 0, r.stdout + r.stderr
