"""Token ids equal SentencePiece's: Llama 2 on real messages of every kind, models trained
here with other SentencePiece settings, the conversion cache, and the ShareGPT splitter."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import polars as pl
import pytest
import sentencepiece as spm

from helpers import write_spec
from mixer import tokenizers
from mixer.formats.sharegpt import pack
from mixer.pipeline import build
from mixer.spec import load_spec
from mixer.spm_convert import build_backend, check_parity, load_proto
from mixer.token_count import count_tokens
from mixer.tokenizers import CONVERSION_VERSION, convert_sentencepiece, load_tokenizer

HH_TURN = re.compile(r"\n\n(?:Human|Assistant): ")


def _walk(x: object, out: list[str], keys: tuple[str, ...]) -> None:
    if isinstance(x, dict):
        for k, v in x.items():
            if isinstance(v, str) and k in keys:
                out.append(v)
            else:
                _walk(v, out, keys)
    elif isinstance(x, list):
        for v in x:
            if isinstance(v, str) and "" in keys:
                out.append(v)
            else:
                _walk(v, out, keys)


def real_messages(data: Path) -> dict[str, list[str]]:
    """Message contents per source, as the formats would see them."""
    t = data / "train"
    out: dict[str, list[str]] = {}

    def add(name: str, x: object, keys: tuple[str, ...]) -> None:
        _walk(x, out.setdefault(name, []), keys)

    alpaca = ("instruction", "input", "output", "response")
    add("alpaca", json.loads((t / "alpaca_1k/alpaca_data_1k.json").read_text()), alpaca)
    add("codealpaca", json.loads((t / "codealpaca/data/code_alpaca_2k.json").read_text()), alpaca)
    add("codealpaca", json.loads((t / "codealpaca/data/new_codealpaca.json").read_text()), alpaca)
    add("gpteacher_code", json.loads((t / "gpteacher/Codegen/codegen-instruct.json").read_text()), alpaca)
    add("lima", [r["instruction"] for r in json.loads((t / "llama_factory/data/lima.json").read_text())], ("",))
    add("lima", [r["output"] for r in json.loads((t / "llama_factory/data/lima.json").read_text())], ("",))
    add("lima", [h for r in json.loads((t / "llama_factory/data/lima.json").read_text()) for h in r.get("history") or []], ("",))
    oasst = [json.loads(line) for line in (t / "oasst/model/model_eval/manual/data/en_100_tree.jsonl").open()]
    add("oasst", oasst, ("text",))
    add("sharegpt_dummy", json.loads((t / "sharegpt_dummy/dummy_conversation.json").read_text()), ("value",))
    with gzip.open(t / "hh_rlhf/harmless-base/test.jsonl.gz", "rt") as f:
        for line in f:
            r = json.loads(line)
            out.setdefault("hh_rlhf", []).extend(m for m in HH_TURN.split(r["chosen"]) if m)
    add("alpaca_eval_outputs", json.loads((t / "alpaca_eval_outputs/results/vicuna-13b/model_outputs.json").read_text()), ("output",))
    return out


@pytest.fixture(scope="module")
def llama_model(shared_tokenizers: Path) -> Path:
    return shared_tokenizers / "llama2" / "tokenizer.model"


@pytest.fixture(scope="module")
def messages(shared_data: Path) -> dict[str, list[str]]:
    return real_messages(shared_data)


def test_the_three_reported_strings(llama_model: Path) -> None:
    tok = convert_sentencepiece(llama_model)
    pieces = {s: tok.convert_ids_to_tokens(tok(s, add_special_tokens=False)["input_ids"]) for s in ("a  b", "    # x", " leading")}
    assert pieces == {"a  b": ["▁a", "▁", "▁b"], "    # x": ["▁▁▁▁", "▁#", "▁x"], " leading": ["▁", "▁leading"]}
    assert tok("a  b")["input_ids"][0] == tok.bos_token_id == 1


def test_llama2_ids_equal_sentencepiece_on_real_messages(llama_model: Path, messages: dict[str, list[str]]) -> None:
    sp = spm.SentencePieceProcessor(model_file=str(llama_model))
    tok = load_tokenizer(str(llama_model))
    texts = [m for ms in messages.values() for m in ms]
    assert len(texts) >= 10_000
    assert {"codealpaca", "hh_rlhf", "lima", "oasst", "alpaca"} <= set(messages)
    # the cases that used to differ are all there, many times over
    assert sum("  " in m for m in messages["hh_rlhf"]) > 100
    assert sum(bool(re.search(r"\n {4,}\S", m)) for m in messages["codealpaca"] + messages["gpteacher_code"]) > 100
    assert sum(m.startswith(" ") for m in texts) >= 5
    want = sp.encode(texts)
    got = [e.ids for e in tok.backend_tokenizer.encode_batch_fast(texts, add_special_tokens=False)]
    bad = [texts[i][:80] for i in range(len(texts)) if want[i] != got[i]]
    assert bad == [], f"{len(bad)} of {len(texts)} messages differ, e.g. {bad[:3]}"
    # the counting paths agree too (count_tokens; with BOS as the splitter counts)
    lengths = count_tokens(texts[:3000], str(llama_model), add_special_tokens=True)
    assert lengths.tolist() == [len(w) + 1 for w in want[:3000]]


def _train_model(messages: dict[str, list[str]], folder: Path, model_type: str) -> Path:
    """A user's own ``.model``: trained here with SentencePiece defaults (NFKC map, extra
    whitespace removed) plus byte fallback and a user-defined piece."""
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(messages["alpaca"] + messages["codealpaca"][:2000]), model_prefix=str(folder / model_type),
        vocab_size=800, model_type=model_type, byte_fallback=True, character_coverage=0.9995, user_defined_symbols=["<sep>"],
        minloglevel=2,
    )
    return folder / f"{model_type}.model"


def _unseen(messages: dict[str, list[str]]) -> list[str]:
    return messages["hh_rlhf"][:3000] + messages["oasst"] + messages["gpteacher_code"][:500] + ["x<sep>y  z", "  <sep> "]


def test_other_bpe_model_is_exact(messages: dict[str, list[str]], tmp_path: Path) -> None:
    model = _train_model(messages, tmp_path, "bpe")
    check_parity(model, build_backend(load_proto(model)), _unseen(messages))  # raises on the first difference
    sp = spm.SentencePieceProcessor(model_file=str(model))
    assert load_tokenizer(str(model))("x<sep>y  z")["input_ids"] == [sp.bos_id(), *sp.encode("x<sep>y  z")]


def test_unigram_model_counts_equal(messages: dict[str, list[str]], tmp_path: Path) -> None:
    """Unigram: the same Viterbi search; where two segmentations score exactly the same, the
    order of equal-scoring pieces may differ (``0`` ``00`` vs ``00`` ``0``), never the count."""
    model = _train_model(messages, tmp_path, "unigram")
    texts = _unseen(messages)
    want = spm.SentencePieceProcessor(model_file=str(model)).encode(texts)
    got = [e.ids for e in build_backend(load_proto(model)).encode_batch_fast(texts, add_special_tokens=False)]
    assert [len(g) for g in got] == [len(w) for w in want]
    assert sum(g != w for g, w in zip(got, want, strict=True)) <= len(texts) // 1000
    assert all(sorted(g) == sorted(w) for g, w in zip(got, want, strict=True))


def test_unsupported_model_fails_loudly(tmp_path: Path) -> None:
    bad = tmp_path / "tokenizer.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        load_tokenizer(str(bad))


def test_conversion_cache_is_keyed_by_version(llama_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXER_CACHE", str(tmp_path))
    stale = tmp_path / "tokenizers" / "tokenizer-0000"
    stale.mkdir(parents=True)
    load_tokenizer.cache_clear()
    try:
        tok = load_tokenizer(str(llama_model))
        entries = sorted(p.name for p in (tmp_path / "tokenizers").iterdir())
        assert len(entries) == 2 and entries[1].endswith(f"-v{CONVERSION_VERSION}")
        load_tokenizer.cache_clear()
        again = load_tokenizer(str(llama_model))  # served from the versioned cache entry
        assert again("a  b")["input_ids"] == tok("a  b")["input_ids"] == [1, 263, 29871, 289]
        monkeypatch.setattr(tokenizers, "CONVERSION_VERSION", CONVERSION_VERSION + 1)
        load_tokenizer.cache_clear()
        load_tokenizer(str(llama_model))  # a new version converts afresh, next to the old entry
        assert len(list((tmp_path / "tokenizers").iterdir())) == 3
    finally:
        load_tokenizer.cache_clear()


def test_sharegpt_split_points_equal_sentencepiece(shared_data: Path, llama_model: Path, tmp_path: Path) -> None:
    """Split points from SentencePiece's own counts (BOS included, + 6 per message) equal
    the splitter's at a limit small enough to split most conversations."""
    limit = 60
    raw = json.loads((shared_data / "train/sharegpt_dummy/dummy_conversation.json").read_text())
    sp = spm.SentencePieceProcessor(model_file=str(llama_model))
    want = set()
    for row, conv in enumerate(raw):
        costs = [len(x) + 1 + 6 for x in sp.encode([t["value"] for t in conv["conversations"]])]
        want |= {(f"sg:{row}.{a}", a, b) for kind, a, b, _ in pack(costs, limit) if kind == "chunk"}
    fmt = {"name": "sharegpt", "split": {"max_tokens": limit}}
    spec = write_spec(tmp_path, {"name": "s", "tokenizer": str(llama_model), "sources": {"sg": {"load": {"path": str(shared_data / "train/sharegpt_dummy/dummy_conversation.json")}, "format": fmt}}})
    res = build(load_spec(spec), tmp_path / "out")
    meta = res.mixture.select("id", pl.col("meta").str.json_path_match("$.span").alias("span"))
    got = {(i, *json.loads(s)) for i, s in meta.iter_rows()}
    assert len(got) > len(raw)  # most conversations were split
    assert got == want


def test_sentencepiece_only_folder_and_hub_repo(llama_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder (or hub repo) holding only tokenizer.model + tokenizer_config.json, like
    oobabooga/llama-tokenizer, gets the exact conversion, not transformers' own."""
    import shutil

    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    folder = tmp_path / "llama-tokenizer"
    folder.mkdir()
    shutil.copy(llama_model, folder / "tokenizer.model")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>"}))
    sp = spm.SentencePieceProcessor(model_file=str(llama_model))
    texts = ["a  b", "    # x", " leading", "def f():\n        return  1"]
    load_tokenizer.cache_clear()
    try:
        assert load_tokenizer(str(folder))(texts)["input_ids"] == [[1, *x] for x in sp.encode(texts)]

        def fake_download(repo: str, filename: str, **kw) -> str:
            if filename == "tokenizer.json":
                raise EntryNotFoundError("no tokenizer.json")
            return str(folder / filename)

        monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
        assert load_tokenizer("someone/llama-tokenizer")(texts)["input_ids"] == [[1, *x] for x in sp.encode(texts)]
    finally:
        load_tokenizer.cache_clear()
