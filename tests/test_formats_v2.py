"""The V2 source formats on real raw files: FLAN (newline rule, submix from file names),
OASST trees (hand-checked walks), LIMA, Alpaca templates, WizardLM, Open-Orca, science,
hardcoded (xlsx)."""

from __future__ import annotations

import collections
import gzip
import json
import re
import shutil
import zipfile
from pathlib import Path

import polars as pl
import pytest

from helpers import write_jsonl, write_spec
from mixer.formats.alpaca import NO_INPUT, WITH_INPUT
from mixer.formats.flan import flan_prompt
from mixer.pipeline import build
from mixer.spec import SpecError, load_spec
from mixer.steps.sample import SampleShortfall
from mixer.xlsx import read_xlsx

T0 = Path("train/self_instruct/data/finetuning/t0_train_50k/data_per_template")
OASST = Path("train/oasst/model/model_eval/manual/data/en_100_tree.jsonl")
XLSX = Path(__file__).parent / "data" / "hard_coded_examples_sample.xlsx"


def _build(tmp_path: Path, sources: dict, out: str = "out", **top):
    spec = write_spec(tmp_path, {"name": "f", "seed": top.pop("seed", 5), "sources": sources, **top}, name=f"{out}.yaml")
    return build(load_spec(spec), tmp_path / out)


def _meta(frame: pl.DataFrame, key: str) -> pl.Series:
    return frame.select(pl.col("meta").str.json_path_match(f"$.{key}"))["meta"]


# ------------------------------------------------------------------------------------ FLAN


def test_flan_newline_rule_on_real_t0_prompts(shared_data: Path) -> None:
    rows = [json.loads(x) for x in (shared_data / T0 / "adversarial_qa_dbert_based_on.jsonl").read_text().splitlines()]
    rows += [json.loads(x) for x in (shared_data / T0 / "app_reviews_convert_to_rating.jsonl").read_text().splitlines()]
    prompts = [r["prompt"] for r in rows]
    assert all(p.endswith("\n") for p in prompts)  # the T0 exports already end in a newline: kept as is
    # Without their final newline, some end in ":" ("... Answer:"), others do not.
    bare = [p[:-1] for p in prompts] + [p[:-1] + ": " for p in prompts[:5]]
    out = pl.DataFrame({"p": prompts + bare}).select(flan_prompt(pl.col("p")))["p"].to_list()
    assert out[: len(prompts)] == prompts
    for b, o in zip(bare, out[len(prompts):], strict=True):
        want = b if b.rstrip().endswith(":") else b + "\n"
        assert o == want
    assert sum(b.rstrip().endswith(":") for b in bare) >= 5 and sum(not b.rstrip().endswith(":") for b in bare) > 100


def test_flan_submix_from_file_names_and_exact_per_submix_counts(shared_data: Path, tmp_path: Path) -> None:
    files = sorted((shared_data / T0).glob("adversarial_qa_dbert_*.jsonl"))
    sizes = {f.stem: len(f.read_text().splitlines()) for f in files}
    counts = {"adversarial_qa_dbert_based_on": 40, "adversarial_qa_dbert_answer_the_following_q": 25, "adversarial_qa_dbert_generate_question": 0}
    src = {
        "load": {"path": str(shared_data / T0 / "adversarial_qa_dbert_*.jsonl")},
        "format": {"name": "flan", "inputs": "prompt", "targets": "completion", "submix_from": "filename"},
        "sample": {"by": "submix", "n": counts},
    }
    res = _build(tmp_path, {"t0": src})
    got = collections.Counter(_meta(res.mixture, "submix").to_list())
    assert {k: v for k, v in got.items()} == {k: v for k, v in counts.items() if v}
    removed = res.removed.filter(pl.col("step") == "sample")
    assert removed.height == sum(sizes.values()) - 65
    unnamed = [s for s in sizes if s not in counts]
    assert unnamed, "the glob should also catch templates the spec does not name"
    for s in unnamed:
        assert (removed["detail"] == f"submix={s}: not named in sample.n, 0 taken").sum() == sizes[s]
    info = res.manifest["sources"]["t0"]["sample"]
    assert info["groups"]["adversarial_qa_dbert_based_on"] == {"requested": 40, "available": sizes["adversarial_qa_dbert_based_on"], "kept": 40}
    # The records are the raw prompt/completion pairs of their file.
    raw = {(r["prompt"], r["completion"]) for f in files for r in map(json.loads, f.read_text().splitlines())}
    assert all((m[0]["content"], m[1]["content"]) in raw for m in res.mixture["messages"].to_list())

    # Per-submix streams: changing one submix's count leaves the other's draw untouched.
    src2 = {**src, "sample": {"by": "submix", "n": {**counts, "adversarial_qa_dbert_answer_the_following_q": 10}}}
    res2 = _build(tmp_path, {"t0": src2}, out="out2")
    def ids(r, s):
        return set(r.mixture.filter(_meta(r.mixture, "submix") == s)["id"])
    assert ids(res, "adversarial_qa_dbert_based_on") == ids(res2, "adversarial_qa_dbert_based_on")
    assert ids(res2, "adversarial_qa_dbert_answer_the_following_q") < ids(res, "adversarial_qa_dbert_answer_the_following_q")

    # Asking for more than a submix holds is an error naming the submix, unless allow_fewer.
    big = {**src, "sample": {"by": "submix", "n": {"adversarial_qa_dbert_based_on": 10**6}}}
    with pytest.raises(SampleShortfall, match="adversarial_qa_dbert_based_on: asks 1000000"):
        _build(tmp_path, {"t0": big}, out="out3")


def test_flan_submix_through_the_hub_code_path(shared_data: Path, tmp_path: Path) -> None:
    """``hub: json`` with several data files: rows still know their file, so the submix
    from the file name works the same as for local paths."""
    files = [str(shared_data / T0 / f) for f in ("app_reviews_convert_to_rating.jsonl", "app_reviews_generate_review.jsonl")]
    res = _build(tmp_path, {"t0": {
        "load": {"hub": "json", "data_files": files},
        "format": {"name": "flan", "inputs": "prompt", "targets": "completion", "submix_from": "filename"},
        "sample": {"by": "submix", "n": {"app_reviews_convert_to_rating": 7, "app_reviews_generate_review": 3}},
    }})
    assert collections.Counter(_meta(res.mixture, "submix").to_list()) == {"app_reviews_convert_to_rating": 7, "app_reviews_generate_review": 3}
    inputs = res.manifest["sources"]["t0"]["inputs"]
    assert [i["data_files"] for i in inputs] == files


def test_flan_submix_pattern_must_have_a_group(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "x.jsonl", [{"inputs": "a", "targets": "b"}])
    spec = write_spec(tmp_path, {"name": "f", "sources": {"x": {"load": {"path": "x.jsonl"}, "format": {"name": "flan", "submix_from": "filename", "submix_pattern": "no_group"}}}})
    with pytest.raises(SpecError, match=r"spec.yaml:\d+: sources.x.format.submix_pattern: submix_pattern needs a capture group"):
        load_spec(spec)


# ------------------------------------------------------------------------------------ OASST


def test_oasst_top1_walk_matches_hand_checked_trees(shared_data: Path, tmp_path: Path) -> None:
    res = _build(tmp_path, {"oasst": {"load": {"path": str(shared_data / OASST)}, "format": "oasst_tree"}})
    trees = [json.loads(x) for x in (shared_data / OASST).read_text().splitlines()]
    rec = {r["id"]: r for r in res.mixture.iter_rows(named=True)}
    # Checked by hand (no quality labels in this file, so the first reply wins):
    # tree 29: prompt d26fa28e -> assistant 40bdd64a (two assistant leaves; the first is taken)
    # tree 77: prompt 61198590 -> assistant a82dbb28
    # tree 0:  prompt 054e1df3 -> assistant fa783ef0
    # tree 7:  prompt 0fc02c29 -> assistant 0e87b933 -> prompter d033977d (a prompter leaf: nothing)
    for row, leaf in ((29, "40bdd64a"), (77, "a82dbb28"), (0, "fa783ef0")):
        r = rec[f"oasst:{row}"]
        root = trees[row]["prompt"]
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
        assert r["messages"][0]["content"] == root["text"]
        assert r["messages"][1]["content"] == root["replies"][0]["text"]
        assert json.loads(r["meta"])["leaf_id"].startswith(leaf)
    gone = res.removed.filter(pl.col("id") == "oasst:7").row(0, named=True)
    assert gone["reason"] == "no_assistant_leaf" and "prompter" in gone["detail"] and "d033977d" in gone["detail"]
    # Every tree is accounted for: one path, or one ledger row.
    assert len(rec) + res.removed.height == 100
    assert set(res.removed["reason"]) == {"no_assistant_leaf"}


def test_oasst_quality_labels_deleted_nodes_and_hub_json_strings(shared_data: Path, tmp_path: Path) -> None:
    tree = json.loads((shared_data / OASST).read_text().splitlines()[0])
    a, b, c = tree["prompt"]["replies"]
    b["labels"] = {"quality": {"value": 0.8, "count": 3}}
    a["labels"] = {"quality": {"value": 0.5, "count": 3}}
    deleted = json.loads(json.dumps(tree))
    deleted["prompt"]["replies"][1]["deleted"] = True
    write_jsonl(tmp_path / "t.jsonl", [tree, deleted])
    for load in ({"path": "t.jsonl"}, {"hub": "json", "data_files": "t.jsonl"}):
        res = _build(tmp_path, {"o": {"load": load, "format": "oasst_tree"}}, out="h" if "hub" in load else "l")
        answers = [m[1]["content"] for m in res.mixture.sort("id")["messages"].to_list()]
        assert answers == [b["text"], a["text"]]  # best label; then, b deleted, the next best (a: 0.5 > c: missing = 0)
    # top_k: null follows every reply (the Tulu 1 setting): three paths from tree 0.
    res = _build(tmp_path, {"o": {"load": {"path": str(shared_data / OASST)}, "format": {"name": "oasst_tree", "top_k": None}}}, out="all")
    assert sorted(res.mixture.filter(pl.col("id").str.starts_with("o:0."))["id"]) == ["o:0.0", "o:0.1", "o:0.2"]


# ------------------------------------------------------------------------------------ LIMA


def test_lima_history_layout_on_llama_factory(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "train" / "llama_factory" / "data" / "lima.json"
    raw = json.loads(path.read_text())
    res = _build(tmp_path, {"lima": {"load": {"path": str(path)}, "format": "lima"}})
    assert res.mixture.height + res.removed.height == len(raw) == 1029
    rec = {r["id"]: r["messages"] for r in res.mixture.iter_rows(named=True)}
    multi = [i for i, r in enumerate(raw) if r["history"]]
    assert multi, "lima.json has multi-turn records"
    for i in multi[:5] + [0]:
        r = raw[i]
        want = [c for q, a in r["history"] for c in ({"role": "user", "content": q}, {"role": "assistant", "content": a})]
        want += [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]
        assert rec[f"lima:{i}"] == want


def test_lima_alternating_strings_drop_odd_tail(shared_data: Path, tmp_path: Path) -> None:
    """GAIR/lima's own layout, rebuilt from the same real conversations (plus an unanswered
    follow-up on some, as LIMA's test-style records have)."""
    raw = json.loads((shared_data / "train" / "llama_factory" / "data" / "lima.json").read_text())
    rows = []
    for i, r in enumerate(raw[:200]):
        conv = [x for pair in r["history"] for x in pair] + [r["instruction"], r["output"]]
        if i % 3 == 0:
            conv.append("And one more question?")
        rows.append({"conversations": conv, "source": "stackexchange" if i % 2 else "wikihow"})
    write_jsonl(tmp_path / "train.jsonl", rows)
    res = _build(tmp_path, {"lima": {"load": {"path": "train.jsonl"}, "format": "lima"}})
    assert res.mixture.height == 200
    for i, r in enumerate(res.mixture.iter_rows(named=True)):
        conv = rows[i]["conversations"]
        assert [m["content"] for m in r["messages"]] == conv[: len(conv) // 2 * 2]
        assert [m["role"] for m in r["messages"]][:2] == ["user", "assistant"]
        meta = json.loads(r["meta"])
        assert meta == {"dropped_trailing_message": i % 3 == 0, "subsource": rows[i]["source"]}
    fmt = next(e for e in res.manifest["steps"] if e["step"] == "format:lima")
    assert fmt["info"]["dropped_trailing_messages"] == 67


# ------------------------------------------------------------------------------------ Alpaca


def _template_of(prompt: str, instruction: str, inp: str) -> set[str]:
    """Which built-in templates could have rendered this prompt."""
    out = set()
    for prefix, temps in (("w", WITH_INPUT), ("n", NO_INPUT)):
        for k, t in enumerate(temps):
            if t.text.replace("{instruction}", instruction).replace("{input}", inp) == prompt:
                out.add(f"{prefix}{k}")
    return out


@pytest.mark.parametrize("rel", ["train/alpaca_1k/alpaca_data_1k.json", "train/codealpaca/data/code_alpaca_2k.json"])
def test_alpaca_random_templates(shared_data: Path, tmp_path: Path, rel: str) -> None:
    path = shared_data / rel
    raw = json.loads(path.read_text())
    src = {"load": {"path": str(path)}, "format": {"name": "alpaca", "template": "random"}}
    res = _build(tmp_path, {"a": src})
    recs = {r["id"]: r for r in res.mixture.iter_rows(named=True)}
    used = collections.Counter()
    for i, r in enumerate(raw):
        rec = recs.get(f"a:{i}")
        if rec is None:
            continue
        ins, inp, out = r["instruction"].strip(), r["input"].strip(), r["output"].strip()
        tpl = json.loads(rec["meta"])["template"]
        assert tpl in _template_of(rec["messages"][0]["content"], ins, inp)
        assert tpl.startswith("w" if inp else "n")
        assert rec["messages"][1]["content"] == out
        used[tpl] += 1
    # Every template of each set gets used, roughly by weight (the two dominant ones most).
    with_in = sum(v for k, v in used.items() if k[0] == "w")
    no_in = sum(v for k, v in used.items() if k[0] == "n")
    assert len([k for k in used if k[0] == "n"]) == len(NO_INPUT)
    assert used["n0"] / no_in == pytest.approx(NO_INPUT[0].weight / sum(t.weight for t in NO_INPUT), abs=0.07)
    if with_in > 300:
        assert used["w0"] / with_in == pytest.approx(WITH_INPUT[0].weight / sum(t.weight for t in WITH_INPUT), abs=0.08)
    # Seeded per source: same seed, same draws; another seed, other draws.
    again = _build(tmp_path, {"a": src}, out="again")
    assert again.mixture["messages"].to_list() == res.mixture["messages"].to_list()
    other = _build(tmp_path, {"a": src}, out="other", seed=6)
    assert other.mixture["meta"].to_list() != res.mixture["meta"].to_list()
    # Adding another source does not move this source's draws.
    plus = _build(tmp_path, {"z": {"load": {"path": str(path)}, "format": {"name": "alpaca", "template": "random"}}, "a": src}, out="plus")
    assert plus.mixture.filter(pl.col("source") == "a")["meta"].to_list() == res.mixture["meta"].to_list()


def test_alpaca_custom_templates_and_plain_default(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "train" / "alpaca_1k" / "alpaca_data_1k.json"
    raw = json.loads(path.read_text())
    fmt = {"name": "alpaca", "template": "random", "with_input": [{"text": "Q: {instruction} [{input}]"}], "no_input": [{"text": "Q: {instruction}"}]}
    res = _build(tmp_path, {"a": {"load": {"path": str(path)}, "format": fmt}})
    first = res.mixture.row(0, named=True)
    r = raw[int(first["id"].split(":")[1])]
    want = f"Q: {r['instruction'].strip()}" + (f" [{r['input'].strip()}]" if r["input"].strip() else "")
    assert first["messages"][0]["content"] == want
    bad = write_spec(tmp_path, {"name": "f", "sources": {"a": {"load": {"path": str(path)}, "format": {"name": "alpaca", "template": "random", "with_input": [{"text": "{instruction} only"}]}}}}, name="bad.yaml")
    with pytest.raises(SpecError, match="lacks \\{input\\}"):
        load_spec(bad)


# ------------------------------------------------------------------------------------ WizardLM, Open-Orca, science


def test_wizardlm_strict_alternation(shared_data: Path, tmp_path: Path) -> None:
    """Evol-Instruct's ``conversations`` layout on real human/gpt conversations, with the
    three kinds of violation planted in copies."""
    raw = json.loads((shared_data / "train" / "sharegpt_dummy" / "dummy_conversation.json").read_text())
    rows = [{"idx": f"w{i}", "conversations": r["conversations"]} for i, r in enumerate(raw[:60])]
    rows[1]["conversations"] = rows[1]["conversations"][:-1]  # odd
    rows[2]["conversations"] = [dict(t, **{"from": "user"}) if t["from"] == "human" else t for t in rows[2]["conversations"]]
    rows[3]["conversations"] = list(reversed(rows[3]["conversations"]))  # gpt first
    write_jsonl(tmp_path / "w.jsonl", rows)
    res = _build(tmp_path, {"w": {"load": {"path": "w.jsonl"}, "format": "wizardlm"}})
    reasons = dict(zip(res.removed["id"], res.removed["reason"], strict=True))
    assert reasons == {"w:1": "odd_turns", "w:2": "unexpected_speaker", "w:3": "role_order"}
    assert "speakers [gpt, human" in res.removed.filter(pl.col("id") == "w:3")["detail"][0]
    rec = res.mixture.filter(pl.col("id") == "w:0").row(0, named=True)
    assert [m["content"] for m in rec["messages"]] == [t["value"] for t in rows[0]["conversations"]]
    assert json.loads(rec["meta"]) == {"raw_id": "w0"}


def test_openorca_leaves_out_empty_system_prompts(shared_data: Path, tmp_path: Path) -> None:
    raw = json.loads((shared_data / "train" / "gpteacher" / "Codegen" / "codegen-instruct.json").read_text())[:90]
    systems = ["", "You are an AI assistant. Help as much as you can.", "   "]
    rows = [{"id": f"cot.{i}", "system_prompt": systems[i % 3], "question": r["instruction"], "response": r["response"]} for i, r in enumerate(raw)]
    pl.DataFrame(rows).write_parquet(tmp_path / "orca.parquet")
    res = _build(tmp_path, {"orca": {"load": {"path": "orca.parquet"}, "format": "openorca"}})
    for rec in res.mixture.iter_rows(named=True):
        i = int(rec["id"].split(":")[1])
        roles = [m["role"] for m in rec["messages"]]
        assert roles == (["system", "user", "assistant"] if i % 3 == 1 else ["user", "assistant"])
        assert rec["messages"][-1]["content"] == raw[i]["response"]
        assert json.loads(rec["meta"])["raw_id"] == f"cot.{i}"


def test_science_dataset_field_becomes_subsource(shared_data: Path, tmp_path: Path) -> None:
    raw = json.loads((shared_data / "train" / "gpteacher" / "Toolformer" / "toolformer-similarity-0.6-dataset.json").read_text())[:100]
    names = ["evidence_inference", "qasper", "scierc", "scifact", "scitldr"]
    rows = [{"input": r["instruction"] + "\n\n" + r["input"], "output": r["response"], "dataset": names[i % 5]} for i, r in enumerate(raw)]
    write_jsonl(tmp_path / "science_train.jsonl", rows)
    res = _build(tmp_path, {"science": {"load": {"path": "science_train.jsonl"}, "format": "science", "sample": {"by": "subsource", "n": 10}}})
    assert collections.Counter(_meta(res.mixture, "subsource").to_list()) == {n: 10 for n in names}
    fmt = next(e for e in res.manifest["steps"] if e["step"] == "format:science")
    assert fmt["info"]["subsources"] == {n: 20 for n in names}


# ------------------------------------------------------------------------------------ hardcoded


def test_hardcoded_from_xlsx_with_unique_repeat_ids(tmp_path: Path) -> None:
    df = read_xlsx(XLSX)
    assert df.columns == ["Prompt", "Output", "Note"] and df.height == 14
    res = _build(tmp_path, {"hardcoded": {"load": {"path": str(XLSX)}, "format": {"name": "hardcoded", "repeat": 10}}})
    ids = res.mixture["id"].to_list()
    assert len(ids) == len(set(ids)) == 140
    assert ids[:11] == ["hardcoded:0"] + [f"hardcoded:0~{k}" for k in range(1, 10)] + ["hardcoded:1"]
    assert res.mixture.row(0, named=True)["messages"] == [{"role": "user", "content": df["Prompt"][0]}, {"role": "assistant", "content": df["Output"][0]}]
    assert res.manifest["sources"]["hardcoded"]["inputs"][0]["sha256"]


def test_xlsx_reader_reads_shared_strings(tmp_path: Path) -> None:
    """Excel itself stores text in a shared-string table (openpyxl writes inline strings):
    rewrite the fixture that way and read it again."""
    src = zipfile.ZipFile(XLSX)
    sheet = src.read("xl/worksheets/sheet1.xml").decode()
    strings: list[str] = []

    def to_shared(m: re.Match) -> str:
        strings.append(m.group(2))
        return f'<c r="{m.group(1)}" t="s"><v>{len(strings) - 1}</v></c>'

    sheet = re.sub(r'<c r="([A-Z]+\d+)" t="inlineStr"><is><t>(.*?)</t></is></c>', to_shared, sheet)
    sst = '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">' + "".join(f"<si><r><t>{s[:3]}</t></r><r><t>{s[3:]}</t></r></si>" for s in strings) + "</sst>"
    out = tmp_path / "shared.xlsx"
    with zipfile.ZipFile(out, "w") as z:
        for name in src.namelist():
            z.writestr(name, sheet if name == "xl/worksheets/sheet1.xml" else src.read(name))
        z.writestr("xl/sharedStrings.xml", sst)
    assert read_xlsx(out).equals(read_xlsx(XLSX))
    shutil.copy(XLSX, tmp_path / "broken.xlsx")
    (tmp_path / "broken.xlsx").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable .xlsx"):
        read_xlsx(tmp_path / "broken.xlsx")


def test_oasst_gz_trees_load(shared_data: Path, tmp_path: Path) -> None:
    """The V2 file is ``*.trees.jsonl.gz``: same walk through the gzip reader."""
    with gzip.open(tmp_path / "trees.jsonl.gz", "wb") as f:
        f.write((shared_data / OASST).read_bytes())
    res = _build(tmp_path, {"oasst": {"load": {"path": "trees.jsonl.gz"}, "format": "oasst_tree"}})
    plain = _build(tmp_path, {"oasst": {"load": {"path": str(shared_data / OASST)}, "format": "oasst_tree"}}, out="plain")
    assert res.mixture["messages"].to_list() == plain.mixture["messages"].to_list()
