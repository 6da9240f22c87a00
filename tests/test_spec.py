"""Spec parsing: typed models, and errors that name file, line and key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixer.spec import SpecError, load_spec, parse_spec

GOOD = """\
name: demo
seed: 7
sources:
  a:
    load: {path: data.jsonl}
    format: alpaca
    steps:
      - keyword_filter: {preset: tulu_v2}
    sample: {n: 2}
mix:
  - exact_dedup: {}
"""


def problems(text: str, tmp_path: Path) -> list[str]:
    (tmp_path / "data.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    f = tmp_path / "v2.yaml"
    f.write_text(text)
    with pytest.raises(SpecError) as e:
        load_spec(f)
    return e.value.problems


def test_good_spec_parses(tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_text("{}\n")
    f = tmp_path / "s.yaml"
    f.write_text(GOOD)
    s = load_spec(f)
    assert s.name == "demo" and s.seed == 7 and list(s.sources) == ["a"]
    assert s.sources["a"].sample.n == 2
    assert [st.name for st in s.sources["a"].steps] == ["keyword_filter"]
    assert s.mix[0].name == "exact_dedup"
    assert s.output == Path("build/demo")
    assert s.hash.startswith("sha256:") and s.hash == load_spec(f).hash


def test_float_count_names_line_and_key(tmp_path: Path) -> None:
    out = problems(GOOD.replace("{n: 2}", "{n: 2.0}"), tmp_path)
    assert out == [f"{tmp_path / 'v2.yaml'}:9: sources.a.sample.n: expected an integer, got 2.0"]


def test_unknown_keys_everywhere(tmp_path: Path) -> None:
    text = GOOD.replace("seed: 7", "seed: 7\nsed: 8").replace("{preset: tulu_v2}", "{preset: tulu_v2, casesensitive: true}")
    text = text.replace("format: alpaca", "format: {name: alpaca, outptu: response}")
    out = problems(text, tmp_path)
    joined = "\n".join(out)
    assert ":3: sed: unknown key 'sed'" in joined
    assert ":7: sources.a.format.outptu: unknown key 'outptu'" in joined
    assert ":9: sources.a.steps[0].keyword_filter.casesensitive: unknown key 'casesensitive'" in joined
    assert len(out) == 3  # all problems at once


def test_unknown_step_and_format(tmp_path: Path) -> None:
    out = problems(GOOD.replace("exact_dedup: {}", "exakt_dedup: {}").replace("format: alpaca", "format: alpacca"), tmp_path)
    assert any(":6: sources.a.format: unknown format 'alpacca'" in p for p in out)
    assert any(":11: mix[0].exakt_dedup: unknown step 'exakt_dedup'" in p for p in out)


def test_missing_file_and_wrong_types(tmp_path: Path) -> None:
    out = problems(GOOD.replace("data.jsonl", "nope/*.jsonl").replace("seed: 7", "seed: seven"), tmp_path)
    assert any(p.endswith("seed: expected an integer, got 'seven'") and ":2:" in p for p in out)
    assert any(":5: sources.a.load.path: missing file: no file matches 'nope/*.jsonl'" in p for p in out)


def test_sample_needs_exactly_one_meaning(tmp_path: Path) -> None:
    out = problems(GOOD.replace("{n: 2}", "{n: 2, fraction: 0.5}"), tmp_path)
    assert any("sources.a.sample: give exactly one of 'n', 'fraction' or 'repeat'" in p for p in out)
    out = problems(GOOD.replace("{n: 2}", "{fraction: 1.5}"), tmp_path)
    assert any("'fraction' must be in (0, 1]" in p for p in out)


def test_load_needs_one_origin_and_yaml_errors(tmp_path: Path) -> None:
    out = problems(GOOD.replace("{path: data.jsonl}", "{path: data.jsonl, hub: org/ds}"), tmp_path)
    assert any("sources.a.load: give exactly one of 'path'" in p for p in out)
    with pytest.raises(SpecError, match=r"<spec>:2: invalid YAML: mapping values are not allowed"):
        parse_spec("name: x\n  bad: indent\n")


def test_step_scope_is_checked(tmp_path: Path) -> None:
    text = GOOD + "  - nothing: {}\n"
    out = problems(text, tmp_path)
    assert any("mix[1].nothing: unknown step" in p for p in out)


def test_repo_specs_validate(repo: Path) -> None:
    for f in sorted((repo / "mixtures").glob("*.yaml")):
        load_spec(f, check_files=f.name == "sample.yaml")
