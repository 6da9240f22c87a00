"""A build is a Hugging Face dataset: the card's configs load the mixture and the ledger,
its types concatenate with ordinary datasets, its card is the manifest's numbers, it is
pushed through huggingface_hub up to the network call, and every removal keeps its text."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from mixer.build_dir import BuildDir
from mixer.card import card, data_files
from mixer.pipeline import build
from mixer.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "mixtures" / "sample.yaml"


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hf") / "sample"
    build(load_spec(SAMPLE), out)
    return out


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "mixer.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def test_load_dataset_default_and_removed(sample: Path) -> None:
    datasets = pytest.importorskip("datasets")
    mix = datasets.load_dataset(str(sample), split="train")
    removed = datasets.load_dataset(str(sample), "removed", split="train")
    m = json.loads((sample / "manifest.json").read_text())
    assert mix.num_rows == m["records"] and removed.num_rows == m["removed"]
    assert mix.column_names == ["id", "source", "messages", "meta"]
    assert {"id", "reason", "detail", "messages"} <= set(removed.column_names)
    assert mix[0]["messages"][0]["role"] in ("system", "user")


def test_concat_with_an_ordinary_messages_dataset(sample: Path) -> None:
    datasets = pytest.importorskip("datasets")
    mix = datasets.load_dataset(str(sample), split="train").select_columns(["messages"])
    other = datasets.Dataset.from_list([{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}])
    both = datasets.concatenate_datasets([mix, other])
    assert both.num_rows == mix.num_rows + 1 and both[-1]["messages"][1]["content"] == "hello"
    mixed = datasets.interleave_datasets([mix, other], stopping_strategy="all_exhausted")
    assert mixed.num_rows >= 2


def test_card_lists_every_source_with_the_manifest_counts(sample: Path) -> None:
    m = json.loads((sample / "manifest.json").read_text())
    text = (sample / "README.md").read_text()
    assert text == card(m)  # generated from the manifest alone
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines()
            if line.startswith("| ") and line.count("|") == 9}
    for name, info in m["sources"].items():
        row = rows[name]
        assert row[3] == f"{info['read']:,}" and row[7] == f"{info['kept']:,}", row
        assert row[4] == f"{sum(info['removed'].values()):,}"
        for reason, n in info["removed"].items():
            assert f"{reason} {n:,}" in row[5]
        assert info["inputs"][0]["sha256"][:16] in row[2]
    assert m["spec_hash"] in text and "polars" in text
    assert data_files(m, "mixture") == ["mixture.parquet"]


def test_card_follows_sharded_files() -> None:
    m = {"name": "x", "files": {"mixture-00001-of-00002.parquet": {}, "mixture-00000-of-00002.parquet": {}, "removed.parquet": {}}}
    head = card(m).split("---")[1]
    assert "mixture-00000-of-00002.parquet" in head and "mixture-00001-of-00002.parquet" in head
    assert data_files(m, "mixture") == ["mixture-00000-of-00002.parquet", "mixture-00001-of-00002.parquet"]


def test_removed_keeps_text_and_why_shows_counterpart(sample: Path) -> None:
    r = pl.read_parquet(sample / "removed.parquet")
    parsed = r.filter(~pl.col("step").is_in(["load", "format:messages", "format:alpaca", "format:sharegpt"]))
    # a record a sample did not draw keeps no text: its id names it in the source, and a
    # small draw from a huge source would otherwise copy the source into the ledger
    undrawn = parsed["reason"] == "not_sampled"
    assert undrawn.sum() > 0 and parsed.filter(undrawn)["messages"].null_count() == undrawn.sum()
    assert parsed.filter(~undrawn)["messages"].null_count() == 0
    dup = r.filter(pl.col("reason") == "exact_duplicate")["id"][0]
    out = _cli("why", str(sample), dup)
    assert out.returncode == 0, out.stderr
    kept_id = r.filter(pl.col("id") == dup)["detail"][0].split()[2]
    assert f"kept record {kept_id}" in out.stdout and "identical after normalization" in out.stdout
    text = r.filter(pl.col("id") == dup)["messages"][0][0]["content"]
    assert out.stdout.count(text[:30]) == 2  # the removed text and the kept record's text
    assert _cli("why", str(sample), "nosuch:1").returncode == 1
    assert _cli("show", str(sample), "--id", "nosuch:1").returncode == 1
    shown = _cli("show", str(sample), "--removed", "--reason", "keyword", "-n", "1")
    assert "removed by keyword_filter" in shown.stdout and "user:" in shown.stdout


def test_why_contamination_prints_the_instance(tmp_path: Path) -> None:
    evals = tmp_path / "evals"
    bench = [{"question": "What is the capital city of the small European country of Liechtenstein and how many people live there"}]
    (evals).mkdir()
    (evals / "mine.jsonl").write_text("\n".join(json.dumps(b) for b in bench) + "\n")
    data = tmp_path / "d.jsonl"
    rows = [{"messages": [{"role": "user", "content": bench[0]["question"]}, {"role": "assistant", "content": "Vaduz; about 40,000."}]},
            {"messages": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]}]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    spec = tmp_path / "s.yaml"
    spec.write_text(f"""name: c
seed: 1
output: {tmp_path / 'out'}
sources:
  d: {{load: {{path: d.jsonl}}, format: messages}}
mix:
  - decontaminate: {{evals: [{{name: mine, path: evals/mine.jsonl, prompt_field: question}}], rule: tulu3}}
""")
    build(load_spec(spec), tmp_path / "out")
    out = _cli("why", str(tmp_path / "out"), "d:0")
    assert out.returncode == 0, out.stderr
    assert "matched mine instance" in out.stdout and "coverage" in out.stdout
    assert out.stdout.count("Liechtenstein") == 2, out.stdout
    text = (tmp_path / "out" / "README.md").read_text()
    assert "## Contamination" in text and "| mine |" in text


def test_push_to_the_network_boundary(sample: Path, tmp_path: Path, monkeypatch) -> None:
    from mixer import hub as push_mod

    copy = tmp_path / "b"
    shutil.copytree(sample, copy)
    calls = []

    class FakeApi:
        endpoint = "https://hub.example"

        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))

        def create_branch(self, repo_id, **kw):
            calls.append(("create_branch", repo_id, kw))

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw["repo_id"], kw))

    url = push_mod.push(copy, "me/sample", private=True, revision="v1", api=FakeApi())
    assert url.endswith("datasets/me/sample/tree/v1")
    assert calls[0] == ("create_repo", "me/sample", {"repo_type": "dataset", "private": True, "exist_ok": True})
    assert calls[1][2]["branch"] == "v1"
    up = calls[2][2]
    assert up["repo_type"] == "dataset" and up["revision"] == "v1" and Path(up["folder_path"]) == copy
    assert set(up["allow_patterns"]) == {"README.md", "manifest.json", "mixture.parquet", "removed.parquet"}
    # a modified build is refused before any network call
    (copy / "mixture.parquet").write_bytes(b"x")
    with pytest.raises(ValueError, match="does not match"):
        push_mod.push(copy, "me/sample", api=FakeApi())
    # offline: one line naming the repo and the network problem
    out = _cli("push", str(sample), "me/sample", env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0"})
    assert out.returncode == 1
    line = out.stderr.strip()
    assert "\n" not in line and "me/sample" in line and "127.0.0.1:9" in line and "refused" in line.lower(), line


def test_version_and_missing_extra_message() -> None:
    from mixer.extras import MissingExtra, require

    assert _cli("--version").stdout.startswith("mixer ")
    with pytest.raises(MissingExtra, match=r"pip install 'mixer\[select\]'"):
        require("select", "no_such_module_xyz")


def test_meta_set_twice_keeps_one_key() -> None:
    from mixer.meta import decode, with_meta
    from mixer.records import sft_frame

    f = sft_frame(["a", "b"], "s", [[{"role": "user", "content": "q"}]] * 2, meta=[None, '{"k": 1}'])
    once = with_meta(f, "truncated", pl.Series(['{"messages": 4}', '{"messages": 6}']))
    twice = with_meta(once, "truncated", pl.Series(['{"messages": 2}', '{"messages": 3}']))
    assert [json.loads(m) for m in twice["meta"]] == [{"truncated": {"messages": 2}}, {"k": 1, "truncated": {"messages": 3}}]
    assert all(m.count('"truncated"') == 1 for m in twice["meta"])
    assert decode(twice)["meta"].struct.field("truncated").struct.field("messages").to_list() == [2, 3]
    assert BuildDir  # the readers below use the same module


def _decontam_spec(tmp_path: Path, evals: str, eval_dir: str | None = None) -> Path:
    (tmp_path / "d.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}) + "\n")
    spec = tmp_path / "s.yaml"
    extra = f", eval_dir: {eval_dir}" if eval_dir else ""
    spec.write_text(f"name: v\nseed: 1\nsources:\n  d: {{load: {{path: d.jsonl}}, format: messages}}\nmix:\n  - decontaminate: {{evals: {evals}{extra}}}\n")
    return spec


def test_validate_rejects_unknown_eval_set_split_and_eval_dir(tmp_path: Path) -> None:
    import mixer

    out = _cli("validate", str(_decontam_spec(tmp_path, "[gsm8k, nosuchbench]")))
    assert out.returncode == 2 and "nosuchbench" in out.stderr and "s.yaml:6" in out.stderr, out.stderr
    out = _cli("validate", str(_decontam_spec(tmp_path, "['gsm8k:nosplit']")))
    assert out.returncode == 2 and "no split 'nosplit'" in out.stderr, out.stderr
    out = _cli("validate", str(_decontam_spec(tmp_path, "[gsm8k, mmlu]", "missing_evals")))
    assert out.returncode == 2 and "missing_evals is not a folder" in out.stderr, out.stderr
    (tmp_path / "ev" / "gsm8k").mkdir(parents=True)
    out = _cli("validate", str(_decontam_spec(tmp_path, "[gsm8k, mmlu]", "ev")))
    assert out.returncode == 2 and "no sub-folder mmlu/" in out.stderr and "gsm8k/" not in out.stderr, out.stderr
    (tmp_path / "ev" / "mmlu").mkdir()
    assert _cli("validate", str(_decontam_spec(tmp_path, "[gsm8k, mmlu]", "ev"))).returncode == 0
    with pytest.raises(ValueError, match="nosuchbench"):
        mixer.validate(_decontam_spec(tmp_path, "[nosuchbench]"))


def test_validate_checks_tokenizer_paths(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}) + "\n")
    spec = tmp_path / "s.yaml"
    spec.write_text("name: v\nseed: 1\ntokenizer: ./tok/tokenizer.model\nsources:\n  d: {load: {path: d.jsonl}, format: messages}\n")
    out = _cli("validate", str(spec))
    assert out.returncode == 2 and "tokenizer.model does not exist" in out.stderr, out.stderr


def test_api_builds_a_dict_spec(tmp_path: Path) -> None:
    import mixer

    spec = {"name": "d", "seed": 3, "sources": {"chat": {"load": {"path": str(ROOT / "data" / "sample" / "chat.jsonl")},
                                                       "format": "messages", "on_error": "skip"}}}
    m = mixer.build(spec, output=tmp_path / "d", progress=False)
    assert len(m) > 0 and (tmp_path / "d" / "README.md").exists()
    assert m.why("chat:11")["status"].to_list()  # readable through the API too


def test_preference_stats_show_chosen_longer_share() -> None:
    from mixer.stats import TokenCounter, record_lengths, stats_from_lengths
    from mixer.stats.table import columns

    def pair(c: str, r: str) -> dict:
        return {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": c}],
                "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": r}]}

    rows = [pair("a b c d", "a"), pair("a b c", "a b"), pair("a", "a b c"), pair("x y", "x y")]
    frame = pl.DataFrame([{"id": f"p:{i}", "source": "p", **r, "meta": None} for i, r in enumerate(rows)])
    counter = TokenCounter()
    stats = stats_from_lengths(record_lengths(frame, counter), counter, "preference", ["p"])
    assert stats.rows["p"]["chosen_longer_pct"] == 50.0  # 2 of 4 pairs: chosen strictly longer
    assert ("chosen longer", "chosen_longer_pct") in [(h, k) for h, k, _ in columns(stats)]
    m = {"name": "p", "kind": "preference", "tokenizer": "t", "sources": {"p": {"lengths": stats.rows["p"], "read": 4, "kept": 4, "removed": {}}}}
    text = card(m)
    assert "chosen longer %" in text and "| 50.0 |" in text


def test_validate_checks_select_targets_and_model_folders(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    (tmp_path / "d.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}) + "\n")
    spec = tmp_path / "s.yaml"
    spec.write_text("name: v\nseed: 1\nsources:\n  d: {load: {path: d.jsonl}, format: messages}\nmix:\n"
                    "  - select: {method: rds_plus, budget: 1, model: ./models/base, targets: {a: nosuch:train, b: {path: t.jsonl}}}\n")
    out = _cli("validate", str(spec))
    assert out.returncode == 2, out.stderr
    assert "select.model: ./models/base does not exist" in out.stderr
    assert "select.targets.a: unknown eval set 'nosuch'" in out.stderr
    assert "select.targets.b: file" in out.stderr and "t.jsonl does not exist" in out.stderr


def test_near_duplicate_why_and_quiet_build(tmp_path: Path) -> None:
    base = ("Explain how photosynthesis turns sunlight water and carbon dioxide into glucose and oxygen "
            "inside the chloroplasts of green plants during the day, and why the light reactions must come "
            "before the Calvin cycle can fix any carbon at all; answer for a curious twelve year old reader")
    rows = [{"messages": [{"role": "user", "content": base}, {"role": "assistant", "content": "Light reactions, then the Calvin cycle."}]},
            {"messages": [{"role": "user", "content": base + " please"}, {"role": "assistant", "content": "Light reactions, then the Calvin cycle."}]},
            {"messages": [{"role": "user", "content": "Name a prime number."}, {"role": "assistant", "content": "7"}]}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    spec = tmp_path / "s.yaml"
    spec.write_text(f"name: n\nseed: 1\noutput: {tmp_path / 'out'}\nsources:\n  d: {{load: {{path: d.jsonl}}, format: messages}}\n"
                    "mix:\n  - minhash: {threshold: 0.7}\n")
    out = _cli("-q", "build", str(spec))
    assert out.returncode == 0 and out.stderr == "", out.stderr  # -q: no bars, no progress log lines
    why = _cli("why", str(tmp_path / "out"), "d:1")
    assert "reason near_duplicate" in why.stdout and "kept record d:0" in why.stdout, why.stdout
    assert re.search(r"kept record d:0 \((estimated|exact) Jaccard 0\.\d+", why.stdout), why.stdout
    assert why.stdout.count("photosynthesis") == 2
