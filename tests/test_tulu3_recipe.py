"""``mixtures/tulu3_sft.yaml`` validates offline and declares the Tulu 3 SFT component counts."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from mixer.cli import app
from mixer.spec import load_spec

COUNTS = {
    "coconot": 10983, "flan_v2": 89982, "no_robots": 9500, "persona_math": 149960, "persona_gsm": 49980,
    "persona_python": 34999, "persona_algebra": 20000, "persona_if": 29980, "numinamath_tir": 64312,
    "wildguardmix": 50000, "wildjailbreak": 50000, "aya": 100000, "wildchat_gpt4": 100000, "table_gpt": 5000,
    "sciriff": 10000, "evol_codealpaca": 107276, "openmathinstruct2": 50000,
}


def test_tulu3_spec_counts_and_rules(repo: Path) -> None:
    spec = load_spec(repo / "mixtures" / "tulu3_sft.yaml")
    src = spec.sources
    assert {k: src[k].sample.n for k in COUNTS} == COUNTS
    assert src["hardcoded"].sample.repeat == 10 and src["oasst1"].sample is None
    # OASST's 7,132 top-1 paths and the 24 x 10 hardcoded records complete the 939,344
    assert sum(COUNTS.values()) + 7132 + 240 == 939_344
    assert all(s.load.hub for s in src.values())
    steps = {s.name: s.config for s in spec.mix}
    assert steps["keyword_filter"].preset == "tulu_v3"
    assert steps["decontaminate"].rule == "tulu3" and steps["decontaminate"].action == "remove"
    r = CliRunner().invoke(app, ["validate", str(repo / "mixtures" / "tulu3_sft.yaml")])
    assert r.exit_code == 0, r.output
