"""``notebooks/explore_mixture.ipynb`` runs top to bottom (from notebooks/, as Jupyter
would), so it never rots; its key outputs are checked."""

from __future__ import annotations

import os

import nbformat
from nbclient import NotebookClient


def test_explore_notebook_runs(repo, tmp_path) -> None:
    path = repo / "notebooks" / "explore_mixture.ipynb"
    nb = nbformat.read(path, as_version=4)
    env_cache = os.environ.get("MIXER_CACHE")
    os.environ["MIXER_CACHE"] = str(tmp_path / "cache")
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(repo / "notebooks")}}).execute()
    finally:
        if env_cache is None:
            os.environ.pop("MIXER_CACHE", None)
        else:
            os.environ["MIXER_CACHE"] = env_cache
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "mixer-progress" in html  # the notebook progress table
    assert "mixer build <code>sample</code>" in html  # Mixture._repr_html_
    assert "Lengths in" in html and "tokens, message content only" in html  # Stats table
    assert "statistics, A -&gt; B" in html or "statistics, A -> B" in html  # the diff
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert pngs, "plot_lengths drew no figure"
    text = "".join(o.get("text", "") for o in outputs)
    assert "report.html" in text
