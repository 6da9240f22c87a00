"""The V2 recipe: ``mixtures/v2.yaml`` and ``mixtures/ultrafeedback.yaml`` validate offline;
``--source-dir`` lists missing raw files; a miniature V2 builds from a local mirror of every
raw file (filled with real data from ../shared/data, counts scaled down) with the right
per-source counts, keyword-filter decisions, hardcoded exemption and unique ids; the
keyword presets on real model outputs."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
import sentencepiece as spm
import yaml
from typer.testing import CliRunner

from helpers import write_jsonl, write_spec
from mixer.cli import app
from mixer.pipeline import build
from mixer.spec import SpecError, load_spec
from mixer.steps.keyword import TULU3_KEYWORDS, TULU_KEYWORDS

T0 = Path("train/self_instruct/data/finetuning/t0_train_50k/data_per_template")
XLSX = Path(__file__).parent / "data" / "hard_coded_examples_sample.xlsx"
V2_SUBMIX = {"flan_fsopt": 10000, "flan_fsnoopt": 10000, "t0_fsopt": 8000, "t0_fsnoopt": 8000, "niv2_fsopt": 11500, "cot_fsopt": 2500}
FULL_FLAN = re.compile(r"  # --- full-collection FLAN draw.*?\n(.*?)  # --- end of the full-collection FLAN draw", re.S)


def full_collection_flan(repo: Path) -> dict:
    """v2.yaml's commented-out alternative FLAN block, uncommented."""
    block = FULL_FLAN.search((repo / "mixtures" / "v2.yaml").read_text())
    assert block, "v2.yaml lost its full-collection FLAN block"
    return yaml.safe_load("\n".join(line.removeprefix("  # ") for line in block.group(1).splitlines()))["flan_v2"]


def test_v2_spec_holds_the_reference_counts(repo: Path) -> None:
    spec = load_spec(repo / "mixtures" / "v2.yaml")
    src = spec.sources
    assert list(src) == ["flan_v2", "flan_cot", "oasst1", "sharegpt", "gpt4_alpaca", "code_alpaca", "lima", "wizardlm", "open_orca", "science", "hardcoded"]
    # FLAN: the reference's pre-drawn 50,000 by default, read whole
    assert src["flan_v2"].load.data_files == "flan_v2_resampled_50k.jsonl" and src["flan_v2"].sample is None
    assert src["flan_v2"].load.hub == "hamishivi/tulu_mix_store" and src["flan_v2"].load.revision
    assert src["flan_cot"].sample.n == {"cot_zsopt": 25000, "cot_fsopt": 25000}
    assert (src["gpt4_alpaca"].sample.n, src["wizardlm"].sample.n, src["open_orca"].sample.n) == (20000, 30000, 30000)
    assert src["hardcoded"].sample.repeat == 10
    assert src["sharegpt"].format.config.split.max_tokens == 4096 and src["sharegpt"].format.config.drop_speakers == ["system", "bing"]
    # Counts the raw files give in full: 7,708 + 114,046 + 20,022 + 1,030 + 7,544; with the draws above: 330,490.
    assert 50000 + 50000 + 7708 + 114046 + 20000 + 20022 + 1030 + 30000 + 30000 + 7544 + 14 * 10 == 330490
    assert [s.name for s in spec.mix] == ["keyword_filter"] and spec.mix[0].config.preset == "tulu_v2"
    assert all(s.load.hub for s in src.values())


def test_recipes_validate_offline_with_the_cli(repo: Path) -> None:
    runner = CliRunner()
    for name in ("v2.yaml", "ultrafeedback.yaml"):
        r = runner.invoke(app, ["validate", str(repo / "mixtures" / name)])
        assert r.exit_code == 0, r.output
    pref = load_spec(repo / "mixtures" / "ultrafeedback.yaml")
    assert pref.kind == "preference" and pref.sources["ultrafeedback"].load.hub == "HuggingFaceH4/ultrafeedback_binarized"


def test_source_dir_lists_every_missing_raw_file(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError) as e:
        load_spec(repo / "mixtures" / "v2.yaml", source_dir=tmp_path)
    lines = e.value.problems
    assert len(lines) == 13  # every data file of every source (2 CoT, 2 ShareGPT, 9 more), one line each
    assert any(re.match(rf".*v2\.yaml:\d+: sources\.oasst1\.load\.data_files: missing raw file {tmp_path}/OpenAssistant/oasst1/2023-04-12_oasst_ready\.trees\.jsonl\.gz \(fetch: huggingface-cli download --repo-type dataset OpenAssistant/oasst1 ", x) for x in lines)
    assert any(f"{tmp_path}/raw.githubusercontent.com/sahil280114/codealpaca/" in x and "wget -x" in x for x in lines)
    r = CliRunner().invoke(app, ["validate", str(repo / "mixtures" / "v2.yaml"), "--source-dir", str(tmp_path)])
    assert r.exit_code == 2 and "hard_coded_examples.xlsx" in r.output


# ------------------------------------------------------------------------------------ the mirror


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _put(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def make_mirror(d: Path, root: Path) -> dict[str, int]:
    """Every raw file of v2.yaml, at its mirror path, filled with real data of the same shape.
    Returns the number of raw rows written per source."""
    t0 = sorted((d / T0).glob("*.jsonl"))
    big = [f for f in t0 if len(f.read_text().splitlines()) >= 150]
    rows = {}
    predrawn = []
    for sub, f in zip(V2_SUBMIX, big, strict=False):
        recs = [{"inputs": r["prompt"], "targets": r["completion"], "_task_name": f.stem} for r in _jsonl(f)]
        for k in range(2):  # two shards per submix: the full-collection draw reads them all
            pl.DataFrame(recs[k::2]).write_parquet(_put(root / "Open-Orca/FLAN" / f"{sub}_data/part.{k}.parquet"))
        rows[sub] = len(recs)
        predrawn += recs[:20]
    store = root / "hamishivi/tulu_mix_store"
    write_jsonl(_put(store / "flan_v2_resampled_50k.jsonl"), predrawn)
    rows["flan_v2"] = len(predrawn)
    for sub, f in zip(("cot_zsopt", "cot_fsopt"), big[6:8], strict=True):
        write_jsonl(_put(store / f"{sub}.jsonl"), [{"inputs": r["prompt"], "targets": r["completion"]} for r in _jsonl(f)])
    with gzip.open(_put(root / "OpenAssistant/oasst1/2023-04-12_oasst_ready.trees.jsonl.gz"), "wb") as g:
        g.write((d / "train/oasst/model/model_eval/manual/data/en_100_tree.jsonl").read_bytes())
    sg = json.loads((d / "train/sharegpt_dummy/dummy_conversation.json").read_text())
    sg[10]["conversations"][0]["from"] = "bing"
    sg_dir = root / "anon8231489123/ShareGPT_Vicuna_unfiltered/HTML_cleaned_raw_dataset"
    _put(sg_dir / "x").parent.joinpath("sg_90k_part1_html_cleaned.json").write_text(json.dumps(sg[:250]))
    (sg_dir / "sg_90k_part2_html_cleaned.json").write_text(json.dumps(sg[250:]))
    gh = root / "raw.githubusercontent.com"
    shutil.copy(d / "train/alpaca_1k/alpaca_data_1k.json", _put(gh / "Instruction-Tuning-with-GPT-4/GPT-4-LLM/main/data/alpaca_gpt4_data.json"))
    shutil.copy(d / "train/codealpaca/data/code_alpaca_2k.json", _put(gh / "sahil280114/codealpaca/2f78ddc5c682ed6738ad092bbbfa59ba915afcb0/data/code_alpaca_20k.json"))
    lima = json.loads((d / "train/llama_factory/data/lima.json").read_text())
    write_jsonl(_put(root / "GAIR/lima/train.jsonl"), [{"conversations": [x for p in r["history"] for x in p] + [r["instruction"], r["output"]], "source": "stackexchange"} for r in lima])
    claude = json.loads((d / "train/alpaca_eval_outputs/results/claude-2/model_outputs.json").read_text())
    wiz = [{"idx": f"alpaca_eval_{i}", "conversations": [{"from": "human", "value": r["instruction"]}, {"from": "gpt", "value": r["output"]}]} for i, r in enumerate(claude)]
    pl.DataFrame(wiz).write_parquet(_put(root / "ai2-adapt-dev/wizardlm-backup/data/train-00000-of-00001.parquet"))
    code = json.loads((d / "train/gpteacher/Codegen/codegen-instruct.json").read_text())[:400]
    orca = [{"id": f"niv.{i}", "system_prompt": "" if i % 2 else "You are a helpful coding assistant.", "question": r["instruction"] + "\n" + r["input"], "response": r["response"]} for i, r in enumerate(code)]
    pl.DataFrame(orca).write_parquet(_put(root / "Open-Orca/OpenOrca/1M-GPT4-Augmented.parquet"))
    tool = json.loads((d / "train/gpteacher/Toolformer/toolformer-similarity-0.6-dataset.json").read_text())[:150]
    names = ["evidence_inference", "qasper", "scierc", "scifact", "scitldr"]
    write_jsonl(store / "science_train.jsonl", [{"input": r["instruction"], "output": r["response"], "dataset": names[i % 5]} for i, r in enumerate(tool)])
    shutil.copy(XLSX, store / "hard_coded_examples.xlsx")
    return rows


MINI = {"flan_cot": {"cot_zsopt": 40, "cot_fsopt": 40}, "gpt4_alpaca": 300, "wizardlm": 120, "open_orca": 60}


def mini_spec(repo: Path, tmp: Path, tokenizer: str, with_mix: bool = True) -> Path:
    """v2.yaml as it is, with the sampled counts scaled down and a local tokenizer."""
    spec = yaml.safe_load((repo / "mixtures" / "v2.yaml").read_text())
    for name, n in MINI.items():
        spec["sources"][name]["sample"]["n"] = n
    spec["tokenizer"] = tokenizer
    if not with_mix:
        spec["mix"] = []
    return write_spec(tmp, spec, name="v2_mini.yaml" if with_mix else "v2_mini_nomix.yaml")


def test_mini_v2_from_a_local_mirror(repo: Path, shared_data: Path, shared_tokenizers: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "raw"
    written = make_mirror(shared_data, mirror)
    tok = str(shared_tokenizers / "llama2" / "tokenizer.model")
    res = build(load_spec(mini_spec(repo, tmp_path, tok), source_dir=mirror), tmp_path / "out")
    pre = build(load_spec(mini_spec(repo, tmp_path, tok, with_mix=False), source_dir=mirror), tmp_path / "pre").mixture
    man = res.manifest

    # Per-source counts before the keyword filter: exact draws, and what the raw files give in full.
    before = pre.group_by("source").len()
    before = dict(before.iter_rows())
    assert before["flan_v2"] == written["flan_v2"] == 120 and before["flan_cot"] == 80
    assert (before["gpt4_alpaca"], before["wizardlm"], before["open_orca"]) == (300, 120, 60)
    assert before["hardcoded"] == 140 and before["oasst1"] == 61 and before["science"] == 150
    assert before["lima"] == 1029 and before["sharegpt"] == 499  # one conversation has a bing turn
    assert before["code_alpaca"] == man["sources"]["code_alpaca"]["after_source_steps"] > 2000
    assert res.removed.filter(pl.col("id") == "sharegpt:10")["reason"].to_list() == ["dropped_speaker"]

    # Keyword filter: exactly the records an independent substring check flags, hardcoded exempt.
    kw = [k.lower() for k in TULU_KEYWORDS]
    def flagged(msgs: list[dict]) -> bool:
        return any(k in m["content"].lower() for m in msgs for k in kw)
    expect = {r["id"] for r in pre.iter_rows(named=True) if r["source"] != "hardcoded" and flagged(r["messages"])}
    got = res.removed.filter(pl.col("step") == "keyword_filter")
    assert set(got["id"]) == expect and len(expect) > 20
    assert set(got["source"]) >= {"wizardlm"}  # Claude-2's answers name Claude / Anthropic
    for row in got.iter_rows(named=True):
        m = re.fullmatch(r"keyword=(.+) role=(\w+) turn=(\d+)", row["detail"])
        assert m and m.group(1).lower() in kw  # the keyword as the text spells it
        msgs = pre.filter(pl.col("id") == row["id"])["messages"][0]
        assert msgs[int(m.group(3))]["role"] == m.group(2) and m.group(1).lower() in msgs[int(m.group(3))]["content"].lower()
    hard = res.mixture.filter(pl.col("source") == "hardcoded")
    assert hard.height == 140 and any(flagged(m) for m in hard["messages"].to_list())
    kf = next(e for e in man["steps"] if e["step"] == "keyword_filter")
    assert kf["info"]["exempt_hits"] == 10 * sum(flagged(m) for m in pre.filter(pl.col("id").str.contains(r"^hardcoded:\d+$"))["messages"].to_list())
    assert res.mixture.height == pre.height - len(expect)

    # Unique ids everywhere, hardcoded copies named ~k.
    assert res.mixture["id"].is_unique().all()
    assert sorted(hard["id"].to_list())[:3] == ["hardcoded:0", "hardcoded:0~1", "hardcoded:0~2"]
    # Reads came from the mirror, with their hashes and the revision the spec pins.
    inputs = man["sources"]["oasst1"]["inputs"]
    assert inputs[0]["path"].startswith(str(mirror)) and inputs[0]["revision_expected"] == "c267a21727a37680e70898f80a631941c4756a89"

    # Token counts per source (the stats hook): content tokens of the kept records.
    tokens = man["sources"]["hardcoded"].get("tokens")
    if tokens is not None:
        sp = spm.SentencePieceProcessor(model_file=tok)
        want = sum(len(sp.encode(m["content"])) for msgs in hard["messages"].to_list() for m in msgs)
        assert tokens["total"] == want == tokens["user"] + tokens["assistant"] + tokens["system"]
        assert all(man["sources"][s]["tokens"]["total"] > 0 for s in man["sources"])


def test_full_collection_flan_alternative(repo: Path, shared_data: Path, tmp_path: Path) -> None:
    """The commented-out FLAN block validates and, from a mirror with two shards per submix,
    draws exact per-submix counts from all shards."""
    mirror = tmp_path / "raw"
    written = make_mirror(shared_data, mirror)
    block = full_collection_flan(repo)
    assert block["sample"]["n"] == V2_SUBMIX and sum(V2_SUBMIX.values()) == 50000
    spec = yaml.safe_load((repo / "mixtures" / "v2.yaml").read_text())
    spec["sources"]["flan_v2"] = block
    r = CliRunner().invoke(app, ["validate", str(write_spec(tmp_path, spec, "v2_full.yaml"))])
    assert r.exit_code == 0, r.output
    small = dict.fromkeys(V2_SUBMIX, 30) | {"cot_fsopt": 10}
    block["sample"]["n"] = small
    only = {"name": "flan_full", "seed": 42, "sources": {"flan_v2": block}}
    res = build(load_spec(write_spec(tmp_path, only, "flan_full.yaml"), source_dir=mirror), tmp_path / "out")
    meta = res.mixture.select(pl.col("meta").str.json_path_match("$.submix").alias("submix"))
    assert dict(meta["submix"].value_counts().iter_rows()) == small
    files = res.manifest["sources"]["flan_v2"]["inputs"]
    assert len(files) == 12 and all(written[s] >= 60 for s in V2_SUBMIX)  # every shard was read


def test_keyword_presets_on_real_model_outputs(shared_data: Path, tmp_path: Path) -> None:
    outs = json.loads((shared_data / "train/alpaca_eval_outputs/results/tulu-2-dpo-70b/model_outputs.json").read_text())
    outs += json.loads((shared_data / "train/alpaca_eval_outputs/results/gpt4_1106_preview/model_outputs.json").read_text())
    rows = [{"messages": [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]} for r in outs]
    write_jsonl(tmp_path / "ae.jsonl", rows)
    def run(preset: str) -> pl.DataFrame:
        spec = {"name": "k", "sources": {"ae": {"load": {"path": "ae.jsonl"}, "format": "messages", "steps": [{"keyword_filter": {"preset": preset}}]}}}
        return build(load_spec(write_spec(tmp_path, spec, name=f"{preset}.yaml")), tmp_path / preset).removed.filter(pl.col("step") == "keyword_filter")
    v2, v3 = run("tulu_v2"), run("tulu_v3")
    lower = [k.lower() for k in TULU_KEYWORDS]
    want_v2 = {f"ae:{i}" for i, r in enumerate(rows) if any(k in m["content"].lower() for m in r["messages"] for k in lower)}
    word = re.compile(r"\b(?:" + "|".join(re.escape(k) for k in sorted(TULU3_KEYWORDS, key=len, reverse=True)) + r")\b", re.I)
    want_v3 = {f"ae:{i}" for i, r in enumerate(rows) if word.search(r["messages"][1]["content"])}
    assert set(v2["id"]) == want_v2 and set(v3["id"]) == want_v3
    # Mentions in the question only: tulu_v2 drops them, tulu_v3 (assistant turns) keeps them.
    user_only = {i for i in want_v2 - want_v3 if "role=user" in v2.filter(pl.col("id") == i)["detail"][0]}
    assert user_only
    # The "Palm" flaw: substring matching catches "palms"/"palm sugar"; word matching not "palms".
    palms = {f"ae:{i}" for i, r in enumerate(rows) if re.search(r"palms", r["messages"][1]["content"], re.I) and not word.search(r["messages"][1]["content"])}
    assert palms and palms <= want_v2 and not palms & want_v3
    assert v3["detail"].str.contains("role=assistant").all()


def test_hub_sources_offline_and_the_xlsx_download_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without the hub a repo source fails with a message that says how to go offline; the
    Excel file goes through ``hf_hub_download`` (here answered from the local fixture)."""
    import huggingface_hub

    import mixer.sources
    from mixer.io import HubUnavailable

    def no_hub(path: str, *args: object) -> None:  # what mixer.io.iter_hub raises without a network
        raise HubUnavailable(f"cannot load hub dataset {path!r}: Couldn't reach {path!r} on the Hub.")

    monkeypatch.setattr(mixer.sources, "iter_hub", no_hub)
    spec = {"name": "h", "sources": {"orca": {"load": {"hub": "Open-Orca/OpenOrca", "data_files": "1M-GPT4-Augmented.parquet"}, "format": "openorca"}}}
    with pytest.raises(HubUnavailable, match=r"mirror the file as DIR/Open-Orca/OpenOrca/1M-GPT4-Augmented\.parquet and build with --source-dir DIR"):
        build(load_spec(write_spec(tmp_path, spec)), tmp_path / "out")
    calls = []

    def fake_download(repo_id: str, filename: str, repo_type: str, revision: str | None) -> str:
        calls.append((repo_id, filename, repo_type, revision))
        return str(XLSX)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    load = {"hub": "hamishivi/tulu_mix_store", "revision": "7508c5e92f6ebee594f3d60854970a0d0a9587a3", "data_files": "hard_coded_examples.xlsx"}
    spec = {"name": "h", "sources": {"hardcoded": {"load": load, "format": "hardcoded", "sample": {"repeat": 10}}}}
    res = build(load_spec(write_spec(tmp_path, spec, name="x.yaml")), tmp_path / "out2")
    assert calls == [("hamishivi/tulu_mix_store", "hard_coded_examples.xlsx", "dataset", load["revision"])]
    assert res.mixture.height == 140 and res.mixture["id"].is_unique().all()
    assert res.removed.height == 0
    first = res.manifest["sources"]["hardcoded"]["inputs"][0]
    assert first["hub"] == "hamishivi/tulu_mix_store" and first["file"] == "hard_coded_examples.xlsx" and first["sha256"]
