"""Generator of bad inputs for ``test_bad_inputs.py``: each ``Case`` is a set of data files,
one source (load + format) and, per ``on_error`` mode, what must happen: a one-line error
whose message holds given pieces (the file name, and ``:line`` / ``#index`` where one
exists), or a build that keeps a given number of records and removes the rest with given
reasons. ``python tests/bad_inputs.py`` lists the cases.

Families: cut/corrupt compressed files, unreadable tables, malformed JSON lines, broken
JSON documents, wrong-typed values in every text field of the main formats (alpaca,
messages, sharegpt, chosen/rejected pairs; mixed into good records, and as whole columns),
content parts, encodings and BOMs, empty files, huge lines, wrong file types, mixed
schemas, and globs over same-named files.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import zstandard

MODES = ("raise", "skip")


@dataclass(frozen=True)
class Expect:
    kind: str  # "error" or "built"
    needles: tuple[str, ...] = ()  # error: pieces the message holds
    kept: int | None = None  # built: records in the mixture
    reasons: frozenset[str] = frozenset()  # built: exactly these reasons in removed.parquet


@dataclass(frozen=True)
class Case:
    id: str
    files: dict[str, bytes]
    source: dict[str, Any]
    expect: dict[str, Expect] = field(default_factory=dict)


def error(*needles: str) -> Expect:
    return Expect("error", needles)


def built(kept: int, *reasons: str) -> Expect:
    return Expect("built", kept=kept, reasons=frozenset(reasons))


def both(e: Expect) -> dict[str, Expect]:
    return {m: e for m in MODES}


def line_error(name: str, at: str, kept: int, reason: str = "malformed_json") -> dict[str, Expect]:
    """raise: error at ``name{at}``; skip: the bad items removed, the rest kept."""
    return {"raise": error(f"{name}{at}"), "skip": built(kept, reason)}


# ------------------------------------------------------------------------------ data


def alpaca(i: int, **over: Any) -> dict[str, Any]:
    return {"instruction": f"question {i}?", "input": "", "output": f"answer {i}.", **over}


def chat(i: int, user: Any = None, assistant: Any = None, role: Any = "user") -> dict[str, Any]:
    return {"messages": [{"role": role, "content": f"hello {i}" if user is None else user}, {"role": "assistant", "content": f"reply {i}" if assistant is None else assistant}]}


def share(i: int, value: Any = None, speaker: Any = "human") -> dict[str, Any]:
    return {"conversations": [{"from": speaker, "value": f"hi {i}" if value is None else value}, {"from": "gpt", "value": f"hello {i}"}]}


def tree(i: int, text: Any = None, role: Any = "assistant") -> dict[str, Any]:
    reply = {"message_id": f"m{i}b", "role": role, "text": f"tree answer {i}" if text is None else text, "replies": []}
    return {"message_tree_id": f"t{i}", "prompt": {"message_id": f"m{i}a", "role": "prompter", "text": f"tree question {i}", "replies": [reply]}}


def hh(i: int, **over: Any) -> dict[str, Any]:
    return {"chosen": f"\n\nHuman: hh question {i}\n\nAssistant: good {i}", "rejected": f"\n\nHuman: hh question {i}\n\nAssistant: bad {i}", **over}


def pair(i: int, **over: Any) -> dict[str, Any]:
    return {"prompt": f"prompt {i}", "chosen": f"good {i}", "rejected": f"bad {i}", **over}


def jsonl(rows: list[Any]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


GOOD = jsonl([alpaca(i) for i in range(40)])


def zst(data: bytes, frames: int = 1) -> bytes:
    c, step = zstandard.ZstdCompressor(), max(1, -(-len(data) // frames))
    return b"".join(c.compress(data[i : i + step]) for i in range(0, len(data), step))


def parquet(rows: list[dict]) -> bytes:
    buf = io.BytesIO()
    pl.DataFrame(rows).write_parquet(buf)
    return buf.getvalue()


def flip(data: bytes, start: int, n: int = 16) -> bytes:
    return data[:start] + bytes(b ^ 0x5A for b in data[start : start + n]) + data[start + n :]


def src(path: str, fmt: Any = "alpaca", **load: Any) -> dict[str, Any]:
    return {"load": {"path": path, **load}, "format": fmt}


# ------------------------------------------------------------------------------ families


def compressed() -> Iterator[Case]:
    """A cut or corrupt compressed file is an error naming it in both modes."""
    z1, z3, g = zst(GOOD), zst(GOOD, 3), gzip.compress(GOOD)
    variants: dict[str, bytes] = {
        "zst_half.jsonl.zst": z1[: len(z1) // 2],
        "zst_30pct.jsonl.zst": z1[: len(z1) * 3 // 10],
        "zst_one_byte_short.jsonl.zst": z1[:-1],
        "zst_magic_only.jsonl.zst": z1[:4],
        "zst_last_frame_cut.jsonl.zst": z3[:-9],
        "zst_middle_frame_cut.jsonl.zst": z3[: len(z3) // 2],
        "zst_garbage_tail.jsonl.zst": z1 + b"trailing garbage",
        "zst_not_zstd.jsonl.zst": GOOD,
        "zst_corrupt_middle.jsonl.zst": flip(z1, len(z1) // 2),
        "zst_empty.jsonl.zst": b"",
        "zst_is_gzip.jsonl.zst": g,
        "gz_half.jsonl.gz": g[: len(g) // 2],
        "gz_no_trailer.jsonl.gz": g[:-4],
        "gz_bad_crc.jsonl.gz": flip(g, len(g) - 8, 4),
        "gz_header_only.jsonl.gz": g[:10],
        "gz_not_gzip.jsonl.gz": GOOD,
        "gz_corrupt_middle.jsonl.gz": flip(g, len(g) // 2),
        "gz_empty.jsonl.gz": b"",
        "gz_second_member_cut.jsonl.gz": g + g[: len(g) // 2],
        "gz_is_zstd.jsonl.gz": z1,
        "json_gz_cut.json.gz": (lambda d: d[: len(d) // 2])(gzip.compress(json.dumps([alpaca(i) for i in range(40)]).encode())),
        "csv_zst_cut.csv.zst": (lambda d: d[: len(d) // 2])(zst(b"instruction,output\n" + b"".join(b"q%d,a%d\n" % (i, i) for i in range(300)))),
        "parquet_zst_cut.parquet.zst": (lambda d: d[: len(d) // 2])(zst(parquet([alpaca(i) for i in range(50)]))),
    }
    for name, data in variants.items():
        yield Case(f"compressed/{name}", {name: data}, src(name), both(error(name)))


def tables() -> Iterator[Case]:
    full = parquet([alpaca(i) for i in range(30)])
    errors = {
        "garbage.parquet": b"PAR1 definitely not parquet PAR1",
        "empty.parquet": b"",
        "text.parquet": GOOD,
        "truncated.parquet": full[: len(full) // 2],
        "no_footer.parquet": full[:-8],
        "empty.csv": b"",
        "blank.csv": b"\n\n  \n",
        "empty.tsv": b"",
        "ragged.csv": b"instruction,output\nq1,a1\nq2,a2,extra,more\n",
        "latin1.csv": "instruction,output\nq1,caf\u00e9\n".encode("latin-1"),
        "missing_columns.csv": b"prompt,answer\nq1,a1\n",
        "missing_columns.parquet": parquet([{"prompt": "q", "answer": "a"}]),
    }
    for name, data in errors.items():
        yield Case(f"table/{name}", {name: data}, src(name), both(error(name)))
    ok = {
        "header_only.csv": (b"instruction,input,output\n", 0, ()),
        "bom.csv": (b"\xef\xbb\xbfinstruction,output\nq1,a1\nq2,a2\n", 2, ()),
        "quoted_newline.csv": (b'instruction,output\n"multi\nline",a1\n', 1, ()),
        "empty_cells.csv": (b"instruction,output\nq1,\n,a2\nq3,a3\n", 1, ("empty_message",)),
        "int_column.parquet": (parquet([{"instruction": f"q{i}", "output": i} for i in range(3)]), 0, ("wrong_type",)),
        "struct_column.parquet": (parquet([{"instruction": f"q{i}", "output": {"t": "x"}} for i in range(3)]), 0, ("wrong_type",)),
    }
    for name, (data, kept, reasons) in ok.items():
        yield Case(f"table/{name}", {name: data}, src(name), both(built(kept, *reasons)))


def json_lines() -> Iterator[Case]:
    """Malformed lines: an error at file:line under raise, a ledger row under skip."""
    good = [json.dumps(alpaca(i)) for i in range(5)]

    def with_line(at: int, line: str | bytes) -> bytes:
        rows: list[bytes] = [g.encode() for g in good]
        rows.insert(at, line if isinstance(line, bytes) else line.encode())
        return b"\n".join(rows) + b"\n"

    bad: dict[str, tuple[int, str | bytes, str]] = {
        "broken_first": (0, '{"instruction": "q", "output": ', "malformed_json"),
        "broken_middle": (2, '{"instruction": q}', "malformed_json"),
        "broken_last": (5, '{"instruction": "q", "output": "a"', "malformed_json"),
        "trailing_comma": (1, '{"instruction": "q", "output": "a",}', "malformed_json"),
        "single_quotes": (1, "{'instruction': 'q', 'output': 'a'}", "malformed_json"),
        "nan_literal": (1, '{"instruction": "q", "output": NaN}', "malformed_json"),
        "two_objects_one_line": (1, '{"instruction": "q", "output": "a"}{"instruction": "r", "output": "b"}', "malformed_json"),
        "invalid_utf8": (1, b'{"instruction": "caf\xe9", "output": "a"}', "malformed_json"),
        "lone_high_surrogate": (1, '{"instruction": "x\\ud800y", "output": "a"}', "malformed_json"),
        "lone_low_surrogate": (1, '{"instruction": "x\\udc00", "output": "a"}', "malformed_json"),
        "raw_control_char": (1, b'{"instruction": "a\x01b", "output": "a"}', "malformed_json"),
        "raw_nul_byte": (1, b'{"instruction": "a\x00b", "output": "a"}', "malformed_json"),
        "bom_mid_file": (1, b'\xef\xbb\xbf{"instruction": "q", "output": "a"}', "malformed_json"),
        "closing_brace_only": (1, "}", "malformed_json"),
        "huge_malformed_line": (1, '{"instruction": "' + "x" * 2_000_000, "malformed_json"),
        "number_line": (1, "42", "not_an_object"),
        "string_line": (1, '"just a string"', "not_an_object"),
        "array_line": (1, '[1, 2, 3]', "not_an_object"),
        "null_line": (1, "null", "not_an_object"),
        "true_line": (1, "true", "not_an_object"),
    }
    for name, (at, line, reason) in bad.items():
        f = f"{name}.jsonl"
        yield Case(f"jsonl/{name}", {f: with_line(at, line)}, src(f), line_error(f, f":{at + 1}", 5, reason=reason))
    ok: dict[str, tuple[bytes, int, tuple[str, ...]]] = {
        "blank_lines_only": (b"\n\n   \n", 0, ()),
        "empty_file": (b"", 0, ()),
        "utf8_bom": (b"\xef\xbb\xbf" + GOOD, 40, ()),
        "crlf": (GOOD.replace(b"\n", b"\r\n"), 40, ()),
        "no_final_newline": (GOOD.rstrip(b"\n"), 40, ()),
        "huge_valid_line": (jsonl([alpaca(0, output="y" * 3_000_000), alpaca(1)]), 2, ()),
        "duplicate_keys": (b'{"instruction": "a", "instruction": "b", "output": "c"}\n', 1, ()),
        "pretty_array_in_jsonl": (json.dumps([alpaca(i) for i in range(3)], indent=2).encode(), 3, ()),
        "escaped_unicode": (jsonl([alpaca(0, output="caf\u00e9 \U0001f600")]), 1, ()),
        "nul_escape_in_text": (jsonl([alpaca(0, output="a\u0000b")]), 1, ()),
    }
    for name, (data, kept, reasons) in ok.items():
        f = f"{name}.jsonl"
        yield Case(f"jsonl/{name}", {f: data}, src(f), both(built(kept, *reasons)))
    f = "pretty_object.jsonl"  # an object spread over lines is not JSON lines
    yield Case("jsonl/pretty_object", {f: json.dumps(alpaca(0), indent=2).encode()}, src(f), {"raise": error(f"{f}:1"), "skip": built(0, "malformed_json")})
    f = "utf16.jsonl"
    yield Case("encoding/utf16_jsonl", {f: GOOD.decode().encode("utf-16")}, src(f), {"raise": error(f"{f}:1"), "skip": built(0, "malformed_json")})
    f = "binary.jsonl"
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    yield Case("filetype/png_as_jsonl", {f: png}, src(f), {"raise": error(f"{f}:1"), "skip": built(0, "malformed_json")})


def json_documents() -> Iterator[Case]:
    rows = [alpaca(i) for i in range(4)]
    text = json.dumps(rows, indent=1).encode()
    errors = {
        "truncated_array.json": (text[: len(text) // 2], src("truncated_array.json")),
        "empty.json": (b"", src("empty.json")),
        "scalar.json": (b"42", src("scalar.json")),
        "string_document.json": (b'"text"', src("string_document.json")),
        "missing_field.json": (json.dumps({"data": rows}).encode(), src("missing_field.json", field="rows")),
        "field_not_a_list.json": (json.dumps({"data": 5}).encode(), src("field_not_a_list.json", field="data")),
        "surrogate_in_document.json": (b'[{"instruction": "\\ud800", "output": "a"}]', src("surrogate_in_document.json")),
        "unknown_type.txt": (GOOD, src("unknown_type.txt")),
        "garbage.xlsx": (b"not a workbook", src("garbage.xlsx")),
    }
    for name, (data, source) in errors.items():
        yield Case(f"json/{name}", {name: data}, source, both(error(name)))
    for name, value, kind in (("int", 5, "integer"), ("string", "x", "string"), ("null", None, "null"), ("list", [1], "array")):
        f = f"element_{name}.json"
        data = json.dumps([rows[0], value, rows[1]]).encode()
        yield Case(f"json/element_{name}", {f: data}, src(f), {"raise": error(f"{f}#1", kind), "skip": built(2, "not_an_object")})
    ok = {
        "empty_array.json": (b"[]", 0),
        "single_object.json": (json.dumps(rows[0]).encode(), 1),
        "json_lines_named_json.json": (GOOD, 40),
        "bom_array.json": (b"\xef\xbb\xbf" + text, 4),
        "nested_field.json": (json.dumps({"a": {"b": rows}}).encode(), 4),
    }
    for name, (data, kept) in ok.items():
        source = src(name, field="a.b") if name == "nested_field.json" else src(name)
        yield Case(f"json/{name}", {name: data}, source, both(built(kept)))


WRONG: dict[str, Any] = {
    "int": 5,
    "float": 1.5,
    "bool": True,
    "object": {"text": "hi"},
    "list_of_strings": ["a", "b"],
    "empty_list": [],
    "image_part": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}],
    "text_and_image_parts": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "u"}}],
}
SCALAR_WRONG = {k: WRONG[k] for k in ("int", "float", "bool", "object", "list_of_strings")}
PARTS = [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]


def _typed(family: str, make: Callable[..., dict], fmt: Any, fields: dict[str, dict[str, Any]]) -> Iterator[Case]:
    """One bad record among good ones, per field and wrong value: removed as wrong_type."""
    for fname, values in fields.items():
        for vname, value in values.items():
            f = f"{family}_{fname.replace('.', '_')}_{vname}.jsonl"
            rows = [make(0), make(1, **{fname: value}), make(2)]
            yield Case(f"types/{family}/{fname}/{vname}", {f: jsonl(rows)}, src(f, fmt), both(built(2, "wrong_type")))


def wrong_types() -> Iterator[Case]:
    yield from _typed("alpaca", alpaca, "alpaca", {"instruction": WRONG, "input": SCALAR_WRONG, "output": WRONG})
    yield from _typed("messages", lambda i, **o: chat(i, **o), "messages", {"user": WRONG, "assistant": SCALAR_WRONG, "role": {k: WRONG[k] for k in ("int", "bool", "object")}})
    yield from _typed("sharegpt", lambda i, **o: share(i, **o), "sharegpt", {"value": WRONG, "speaker": {k: WRONG[k] for k in ("int", "object")}})
    yield from _typed("oasst", lambda i, **o: tree(i, **o), "oasst_tree", {"text": SCALAR_WRONG, "role": {k: WRONG[k] for k in ("int", "object")}})
    yield from _typed("hh", hh, "hh_rlhf", {"chosen": SCALAR_WRONG, "rejected": {k: WRONG[k] for k in ("int", "object")}})
    yield from _typed("pairs", pair, {"name": "chosen_rejected", "prompt": "prompt"}, {"prompt": SCALAR_WRONG, "chosen": SCALAR_WRONG, "rejected": SCALAR_WRONG})
    # Whole columns of one wrong type: polars types the column; still removed, never "5".
    for vname in ("int", "float", "bool", "object", "list_of_strings", "image_part"):
        f = f"column_output_{vname}.jsonl"
        yield Case(f"types/column/alpaca_output/{vname}", {f: jsonl([alpaca(i, output=WRONG[vname]) for i in range(3)])}, src(f), both(built(0, "wrong_type")))
    for vname in ("int", "object", "image_part"):
        f = f"column_content_{vname}.jsonl"
        yield Case(f"types/column/messages_content/{vname}", {f: jsonl([chat(i, user=WRONG[vname]) for i in range(3)])}, src(f, "messages"), both(built(0, "wrong_type")))
    # Structure of the wrong type: a stray string / object where a list of turns belongs.
    for vname, value in (("string", "just text"), ("object", {"role": "user", "content": "x"}), ("int", 3)):
        f = f"messages_not_a_list_{vname}.jsonl"
        yield Case(f"types/messages_field/{vname}", {f: jsonl([chat(0), {"messages": value}, chat(2)])}, src(f, "messages"), both(built(2, "wrong_type")))
    f = "messages_all_strings.jsonl"
    yield Case("types/messages_field/all_strings", {f: jsonl([{"messages": f"text {i}"} for i in range(3)])}, src(f, "messages"), both(error(f, "messages")))
    # Content parts that are all text are joined, in good company or as a whole column.
    for name, rows, fmt in (
        ("messages_parts_mixed", [chat(0), chat(1, user=PARTS)], "messages"),
        ("messages_parts_column", [chat(i, user=PARTS) for i in range(2)], "messages"),
        ("sharegpt_parts", [share(0), share(1, value=PARTS)], "sharegpt"),
        ("alpaca_parts", [alpaca(0), alpaca(1, output=PARTS)], "alpaca"),
    ):
        yield Case(f"parts/{name}", {f"{name}.jsonl": jsonl(rows)}, src(f"{name}.jsonl", fmt), both(built(2)))
    f = "null_content.jsonl"
    yield Case("types/messages/null_content", {f: jsonl([chat(0), {"messages": [{"role": "user", "content": None}, {"role": "assistant", "content": "a"}]}])}, src(f, "messages"), both(built(1, "empty_message")))


def schemas() -> Iterator[Case]:
    cases: dict[str, tuple[list[dict], int, tuple[str, ...]]] = {
        "unused_fields_mixed_types": ([alpaca(0, extra=1), alpaca(1, extra="one"), alpaca(2, extra={"k": [1]}), alpaca(3, extra=[{"a": 1}, "b"])], 4, ()),
        "unused_nested_mixed": ([alpaca(0, meta={"score": 1}), alpaca(1, meta={"score": "high"}), alpaca(2, meta={"score": [1, 2]})], 3, ()),
        "missing_output_in_one": ([alpaca(0), {"instruction": "q1", "input": ""}, alpaca(2)], 2, ("empty_message",)),
        "null_output_everywhere": ([alpaca(i, output=None) for i in range(3)], 0, ("empty_message",)),
        "half_other_format": ([alpaca(0), share(1), alpaca(2)], 2, ("empty_message",)),
        "int_and_float_output": ([alpaca(0, output=1), alpaca(1, output=2.5)], 0, ("wrong_type",)),
    }
    for name, (rows, kept, reasons) in cases.items():
        f = f"{name}.jsonl"
        yield Case(f"schema/{name}", {f: jsonl(rows)}, src(f), both(built(kept, *reasons)))
    f = "no_required_column.jsonl"
    yield Case("schema/no_required_column", {f: jsonl([{"prompt": "q", "answer": "a"}])}, src(f), both(error(f, "instruction")))


def globs() -> Iterator[Case]:
    bad = jsonl([alpaca(0)]) + b"{broken\n" + jsonl([alpaca(1)])
    yield Case("glob/same_name_bad_line", {"a/x.jsonl": bad, "b/x.jsonl": bad}, src("*/x.jsonl"), {"raise": error("a/x.jsonl:2"), "skip": built(4, "malformed_json")})
    cut = gzip.compress(GOOD)
    yield Case("glob/one_file_cut", {"a/x.jsonl.gz": gzip.compress(GOOD), "b/x.jsonl.gz": cut[: len(cut) // 2]}, src("*/x.jsonl.gz"), both(error("b/x.jsonl.gz")))


def all_cases() -> list[Case]:
    cases = [c for fam in (compressed, tables, json_lines, json_documents, wrong_types, schemas, globs) for c in fam()]
    ids = [c.id for c in cases]
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes, dupes
    return cases


if __name__ == "__main__":
    for c in all_cases():
        print(c.id, {m: (e.kind, e.needles or sorted(e.reasons)) for m, e in c.expect.items()})
    print(len(all_cases()), "cases")
