"""Generator of bad specs for ``test_bad_specs.py``: each case is one mistake made to a good
spec (or a whole bad file), with the line and key path its error must name.

``BASE`` builds; a case edits one of its lines (``edit``), adds lines (``add``) or replaces
the file (``whole``). Families: YAML syntax and bombs, top-level keys, source names, load,
format, steps, sample, and outputs that are not build folders.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

BASE = [
    "name: t",                      # 1
    "seed: 1",                      # 2
    "sources:",                     # 3
    "  a:",                         # 4
    "    load: {path: a.jsonl}",    # 5
    "    format: alpaca",           # 6
    "    steps:",                   # 7
    "      - exact_dedup: {}",      # 8
    "    sample: {n: 5}",           # 9
    "mix:",                         # 10
    "  - exact_dedup: {}",          # 11
]


@dataclass(frozen=True)
class Case:
    id: str
    text: str | bytes
    line: int | None  # the line the first error names (None: no line, e.g. an output refusal)
    key: str  # the key path (or the words) the first error names
    output: str | None = None  # -o for the build (relative to the spec's folder)


def edit(line: int, new: str) -> str:
    lines = list(BASE)
    lines[line - 1] = new
    return "\n".join(lines) + "\n"


def add(after: int, *new: str) -> str:
    lines = list(BASE)
    lines[after:after] = list(new)
    return "\n".join(lines) + "\n"


def _yaml() -> list[Case]:
    laughs = ["name: t", "sources: {}", 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    laughs += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return [
        Case("yaml-bad-indent", "name: t\n  seed: 1\n", 2, "invalid YAML"),
        Case("yaml-tab", "name: t\nsources:\n\ta: 1\n", 3, "invalid YAML"),
        Case("yaml-unclosed-flow", edit(5, "    load: {path: a.jsonl"), 6, "invalid YAML"),
        Case("yaml-unclosed-quote", edit(1, 'name: "t'), 12, "invalid YAML"),
        Case("yaml-undefined-alias", edit(2, "seed: *nothing"), 2, "invalid YAML"),
        Case("yaml-top-list", "- name: t\n", 1, "(top level)"),
        Case("yaml-top-scalar", "just words\n", 1, "(top level)"),
        Case("yaml-empty-file", "", 1, "(top level)"),
        Case("yaml-comment-only", "# nothing\n", 1, "(top level)"),
        Case("yaml-not-utf8", b"name: t\xff\xfe\nsources: {}\n", None, "not UTF-8"),
        Case("yaml-billion-laughs", "\n".join(laughs) + "\n", 8, "YAML expands to more than"),
        Case("yaml-5000-deep", "name: t\nsources: " + "[" * 5000 + "]" * 5000 + "\n", 2, "YAML nested more than"),
        Case("yaml-deep-block", "name: t\nsources:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(200)), 66, "YAML nested more than"),
        Case("yaml-self-alias", "name: t\nsources: &s\n  a: *s\n", 3, "YAML alias *s"),
        Case("dup-source", add(9, "  a:", "    load: {path: a.jsonl}", "    format: alpaca"), 10, "sources.a: duplicate key 'a'"),
        Case("dup-sources-block", add(11, "sources:", "  b: {load: {path: a.jsonl}, format: alpaca}"), 12, "sources: duplicate key 'sources'"),
        Case("dup-name", add(1, "name: u"), 2, "name: duplicate key 'name'"),
        Case("dup-step-param", edit(11, "  - minhash: {threshold: 0.5, threshold: 0.9}"), 11, "mix[0].minhash.threshold: duplicate key"),
        Case("dup-load-path", edit(5, "    load: {path: a.jsonl, path: b.jsonl}"), 5, "sources.a.load.path: duplicate key"),
    ]


def _top() -> list[Case]:
    return [
        Case("missing-name", "\n".join(BASE[1:]) + "\n", 1, "(top level): missing required key 'name'"),
        Case("missing-sources", "name: t\nseed: 1\n", 1, "(top level): missing required key 'sources'"),
        Case("empty-sources", "name: t\nsources: {}\n", 2, "sources: a spec needs at least one source"),
        Case("sources-list", "name: t\nsources: [a, b]\n", 2, "sources: expected a mapping"),
        Case("unknown-top-key", add(2, "outptu: x"), 3, "outptu: unknown key"),
        Case("name-int", edit(1, "name: 5"), 1, "name: expected a string"),
        Case("name-null", edit(1, "name:"), 1, "name: expected a string"),
        Case("name-traversal", edit(1, "name: ../../../victims/byname"), 1, "name: name '../../../victims/byname' must be a plain folder name"),
        Case("name-empty", edit(1, "name: ''"), 1, "name: name '' must be a plain folder name"),
        Case("name-dot", edit(1, "name: ."), 1, "name: name '.' must be"),
        Case("name-dotdot", edit(1, "name: '..'"), 1, "name: name '..' must be"),
        Case("name-slash", edit(1, "name: a/b"), 1, "name: name 'a/b' must be"),
        Case("name-backslash", edit(1, "name: 'a\\b'"), 1, "name: name 'a\\\\b' must be"),
        # an absolute name that exists nowhere: a regression must never point a build at a real system folder
        Case("name-absolute", edit(1, "name: /nonexistent-mixer-bad-spec"), 1, "name: name '/nonexistent-mixer-bad-spec' must be"),
        Case("seed-bool", edit(2, "seed: true"), 2, "seed: expected an integer, got True"),
        Case("seed-float", edit(2, "seed: 1.5"), 2, "seed: expected an integer, got 1.5"),
        Case("seed-string", edit(2, "seed: '7'"), 2, "seed: expected an integer, got '7'"),
        Case("seed-list", edit(2, "seed: [1]"), 2, "seed: expected an integer"),
        Case("jsonl-int", add(2, "jsonl: 1"), 3, "jsonl: expected true or false, got 1"),
        Case("jsonl-string", add(2, "jsonl: 'yes'"), 3, "jsonl: expected true or false, got 'yes'"),
        Case("output-int", add(2, "output: 5"), 3, "output: expected a string"),
        Case("tokenizer-list", add(2, "tokenizer: [a]"), 3, "tokenizer: expected a string"),
        Case("mix-mapping", edit(11, "  exact_dedup: {}"), 10, "mix: expected a list"),
        Case("kinds-mixed", add(9, "  p:", "    load: {path: a.jsonl}", "    format: hh_rlhf"), 3, "sources: sources mix SFT and preference formats"),
    ]


def _source_names() -> list[Case]:
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    cases = [Case(f"source-name-{label}", edit(4, f"  '{name}':"), 3, "sources: source name")
             for label, name in (("colon", "a:b"), ("slash", "a/b"), ("hash", "a#b"), ("tilde", "a~b"), ("space", "a b"), ("empty", ""))]
    cases.append(Case("source-name-nfd", add(9, f"  {nfd}:", "    load: {path: a.jsonl}", "    format: alpaca").replace("  a:", f"  {nfc}:"),
                      10, f"sources.{nfd}: source name '{nfd}' is '{nfc}' in another Unicode normalization"))
    return cases


def _load() -> list[Case]:
    return [
        Case("source-not-mapping", "name: t\nsources:\n  a: 5\n", 3, "sources.a: expected a mapping"),
        Case("missing-load", "\n".join(BASE[:4] + BASE[5:]) + "\n", 4, "sources.a: missing required key 'load'"),
        Case("missing-format", "\n".join(BASE[:5] + BASE[6:]) + "\n", 4, "sources.a: missing required key 'format'"),
        Case("unknown-source-key", add(6, "    filter: x"), 7, "sources.a.filter: unknown key 'filter'"),
        Case("on-error-bad", add(6, "    on_error: ignore"), 7, "sources.a.on_error: expected one of"),
        Case("load-empty", edit(5, "    load: {}"), 5, "sources.a.load: give exactly one of 'path'"),
        Case("load-path-and-hub", edit(5, "    load: {path: a.jsonl, hub: x/y}"), 5, "sources.a.load: give exactly one of 'path'"),
        Case("load-missing-file", edit(5, "    load: {path: nothing.jsonl}"), 5, "sources.a.load.path: missing file"),
        Case("load-missing-glob", edit(5, "    load: {path: 'none/*.jsonl'}"), 5, "sources.a.load.path: missing file"),
        Case("load-path-int", edit(5, "    load: {path: 5}"), 5, "sources.a.load.path"),
        Case("load-type-bad", edit(5, "    load: {path: a.jsonl, type: xml}"), 5, "sources.a.load.type: expected one of"),
        Case("load-hub-key-on-path", edit(5, "    load: {path: a.jsonl, revision: main}"), 5, "sources.a.load: 'name', 'revision' and 'data_files' apply to 'hub'"),
        Case("load-unknown-key", edit(5, "    load: {path: a.jsonl, paths: b}"), 5, "sources.a.load.paths: unknown key"),
        Case("load-split-bool", edit(5, "    load: {hub: x/y, split: true}"), 5, "sources.a.load.split: expected a string, got True"),
    ]


def _format() -> list[Case]:
    return [
        Case("format-unknown", edit(6, "    format: alpacca"), 6, "sources.a.format"),
        Case("format-mapping-no-name", edit(6, "    format: {output: response}"), 6, "sources.a.format: a format mapping needs 'name'"),
        Case("format-unknown-param", edit(6, "    format: {name: alpaca, outptu: response}"), 6, "sources.a.format.outptu: unknown key"),
        Case("format-int", edit(6, "    format: 5"), 6, "sources.a.format"),
        Case("format-param-bool", edit(6, "    format: {name: alpaca, output: true}"), 6, "sources.a.format.output: expected a string, got True"),
    ]


def _steps() -> list[Case]:
    return [
        Case("steps-mapping", edit(8, "      exact_dedup: {}"), 7, "sources.a.steps: expected a list"),
        Case("step-unknown", edit(8, "      - exact_dedupe: {}"), 8, "sources.a.steps[0].exact_dedupe"),
        Case("step-two-keys", edit(8, "      - {exact_dedup: {}, minhash: {}}"), 8, "sources.a.steps[0]: a step is a mapping with one key"),
        Case("step-params-list", edit(8, "      - exact_dedup: [1]"), 8, "sources.a.steps[0].exact_dedup: expected a mapping of step parameters"),
        Case("step-unknown-param", edit(11, "  - minhash: {treshold: 0.5}"), 11, "mix[0].minhash.treshold: unknown key"),
        Case("step-int-param-bool", edit(11, "  - minhash: {num_perm: true}"), 11, "mix[0].minhash.num_perm: expected an integer, got True"),
        Case("step-float-param-bool", edit(11, "  - minhash: {threshold: false}"), 11, "mix[0].minhash.threshold: expected a number, got False"),
        Case("step-float-param-string", edit(11, "  - minhash: {threshold: '0.8'}"), 11, "mix[0].minhash.threshold: expected a number, got '0.8'"),
        Case("step-int-param-float", edit(11, "  - minhash: {num_perm: 128.5}"), 11, "mix[0].minhash.num_perm: expected an integer, got 128.5"),
        Case("step-number-item", edit(11, "  - 5"), 11, "mix[0]: a step is a mapping with one key"),
        Case("step-keyword-preset", edit(8, "      - keyword_filter: {preset: nope}"), 8, "sources.a.steps[0].keyword_filter"),
    ]


def _sample() -> list[Case]:
    return [Case(f"sample-{label}", edit(9, f"    sample: {value}"), 9, key) for label, value, key in (
        ("n-float", "{n: 1.5}", "sources.a.sample.n: expected an integer"),
        ("n-negative", "{n: -1}", "sources.a.sample.n: 'n' must be >= 0"),
        ("n-bool", "{n: true}", "sources.a.sample.n: expected an integer"),
        ("n-string", "{n: '5'}", "sources.a.sample.n: expected an integer"),
        ("fraction-zero", "{fraction: 0}", "sources.a.sample.fraction: 'fraction' must be in (0, 1]"),
        ("fraction-big", "{fraction: 1.5}", "sources.a.sample.fraction: 'fraction' must be in (0, 1]"),
        ("fraction-bool", "{fraction: true}", "sources.a.sample.fraction"),
        ("fraction-nan", "{fraction: .nan}", "sources.a.sample.fraction: 'fraction' must be in (0, 1]"),
        ("repeat-zero", "{repeat: 0}", "sources.a.sample.repeat: 'repeat' must be >= 1"),
        ("repeat-billion", "{repeat: 1000000000}", "sources.a.sample.repeat: 'repeat' must be <= 1000"),
        ("repeat-bool", "{repeat: true}", "sources.a.sample.repeat"),
        ("two-of", "{n: 5, fraction: 0.5}", "sources.a.sample: give exactly one of"),
        ("none-of", "{by: source}", "sources.a.sample: give exactly one of"),
        ("n-map-no-by", "{n: {x: 5}}", "sources.a.sample.n: 'n' as a mapping of group -> count needs 'by'"),
        ("n-map-float", "{by: submix, n: {x: 1.5}}", "sources.a.sample.n: expected a mapping of group -> integer count"),
        ("by-with-repeat", "{by: submix, repeat: 2}", "sources.a.sample.by: 'by' applies to 'n' and 'fraction'"),
        ("unknown-key", "{n: 5, seed: 3}", "sources.a.sample.seed: unknown key"),
        ("list", "[5]", "sources.a.sample: expected a mapping"),
        ("allow-fewer-int", "{n: 5, allow_fewer: 1}", "sources.a.sample.allow_fewer: expected true or false"),
    )]


def _outputs() -> list[Case]:
    """Spec fine, output not a build folder: refused, naming the folder."""
    good = "\n".join(BASE) + "\n"
    return [
        Case("output-user-folder", good, None, "mydata: exists and is not a mixer build", output="mydata"),
        Case("output-spec-folder", good, None, ".: is the working folder", output="."),
        Case("output-traversal", good, None, "..: is the working folder or one above it", output=".."),
        Case("output-file", good, None, "a.jsonl: is a file", output="a.jsonl"),
        Case("output-in-spec-user-folder", add(2, "output: mydata"), None, "mydata: exists and is not a mixer build"),
        Case("output-in-spec-hidden", add(2, "output: .out.tmp-1-2"), None, ".out.tmp-1-2: a hidden work folder"),
    ]


def cases() -> list[Case]:
    out = _yaml() + _top() + _source_names() + _load() + _format() + _steps() + _sample() + _outputs()
    ids = [c.id for c in out]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return out
