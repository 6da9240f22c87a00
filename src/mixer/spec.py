"""The mixture spec: YAML in, typed and validated models out.

Errors name the file, the line and the key path, e.g.
``mixtures/v2.yaml:14: sources.flan_v2.sample.n: expected an integer``; all errors of a
spec are reported at once. Relative data paths resolve against the spec file's folder
(or ``--source-dir``); the output folder resolves against the working directory.
"""

from __future__ import annotations

import hashlib
import json
import re
import types
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from mixer.formats.base import FormatConfig, get_format
from mixer.steps.base import StepConfig, get_step

Loc = tuple[Any, ...]
MAX_REPEAT = 1000  # sample: {repeat: k}; more is a typo, and would exhaust memory
MAX_DEPTH = 64  # nesting of YAML mappings/lists; a spec needs about 8
MAX_NODES = 200_000  # YAML nodes after expanding aliases (billion laughs); a spec has ~1,000


class SpecError(Exception):
    """One or more problems in a spec, each as ``file:line: key.path: message``."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoadConfig(_Model):
    """Where a source's raw data comes from: local files (``path``) or the hub (``hub``)."""

    path: str | list[str] | None = None
    type: Literal["jsonl", "json", "parquet", "csv", "tsv"] | None = None
    field: str | None = None  # key holding the record array inside a JSON document
    hub: str | None = None
    name: str | None = None
    split: str = "train"
    revision: str | None = None
    data_files: str | list[str] | dict[str, str | list[str]] | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> LoadConfig:
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of 'path' (local files) or 'hub' (a hub dataset)")
        if self.path is not None and (self.name or self.revision or self.data_files):
            raise ValueError("'name', 'revision' and 'data_files' apply to 'hub' sources only")
        return self

    @property
    def paths(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path or [])


class SampleConfig(_Model):
    """Exactly one of: ``n`` (exact count), ``fraction`` (of the source after its filters),
    ``repeat`` (every record k times). No "1 vs 1.0" guessing: each key has one meaning.

    ``by`` samples within groups: a column (``source``) or a ``meta`` key (``submix``,
    ``subsource``). Then ``n`` may map each group to its own count (groups not named get 0),
    e.g. ``{by: submix, n: {flan_fsopt: 10000, t0_fsopt: 8000}}``; an int ``n`` or a
    ``fraction`` applies to every group. Each group draws from its own seeded stream."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    n: int | dict[str, int] | None = None
    fraction: float | None = None
    repeat: int | None = None
    by: str | None = None
    allow_fewer: bool = False

    @field_validator("n", mode="before")
    @classmethod
    def _n_type(cls, v: Any) -> Any:
        """One plain message instead of pydantic's per-union-member errors."""
        if v is None or (isinstance(v, int) and not isinstance(v, bool)):
            return v
        if isinstance(v, dict) and all(isinstance(c, int) and not isinstance(c, bool) for c in v.values()):
            return {str(k): c for k, c in v.items()}
        if isinstance(v, dict):
            raise ValueError(f"expected a mapping of group -> integer count, got {v!r}")
        raise ValueError(f"expected an integer, got {v!r}")

    @model_validator(mode="after")
    def _exactly_one(self) -> SampleConfig:
        given = [k for k in ("n", "fraction", "repeat") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'n', 'fraction' or 'repeat'")
        counts = self.n.values() if isinstance(self.n, dict) else [self.n] if self.n is not None else []
        if any(c < 0 for c in counts):
            raise ValueError("'n' must be >= 0")
        if isinstance(self.n, dict) and self.by is None:
            raise ValueError("'n' as a mapping of group -> count needs 'by' (e.g. by: submix)")
        if self.by is not None and self.repeat is not None:
            raise ValueError("'by' applies to 'n' and 'fraction', not to 'repeat'")
        if self.fraction is not None and not 0.0 < self.fraction <= 1.0:
            raise ValueError("'fraction' must be in (0, 1]; use 'repeat' to upsample")
        if self.repeat is not None and self.repeat < 1:
            raise ValueError("'repeat' must be >= 1")
        if self.repeat is not None and self.repeat > MAX_REPEAT:
            raise ValueError(f"'repeat' must be <= {MAX_REPEAT} (every record {MAX_REPEAT} times), got {self.repeat}")
        return self


class _SourceRaw(_Model):
    load: LoadConfig
    format: str | dict[str, Any]
    steps: list[dict[str, Any]] = []
    sample: SampleConfig | None = None
    on_error: Literal["raise", "skip"] = "raise"


class _SpecRaw(_Model):
    name: str
    seed: int = 0
    output: str | None = None
    tokenizer: str | None = None
    jsonl: bool = False
    description: str | None = None
    sources: dict[str, Any]
    mix: list[Any] = []

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        """The default output is ``build/<name>``: a path in the name would leave ``build/``."""
        if not v.strip() or v in (".", "..") or any(c in v for c in "/\\\0") or v != v.strip():
            raise ValueError(f"name {v!r} must be a plain folder name: not empty, not '.' or '..', no '/', '\\' or surrounding spaces")
        return v

    @field_validator("sources")
    @classmethod
    def _non_empty(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not v:
            raise ValueError("a spec needs at least one source")
        for name in v:
            if not name or any(c in name for c in ":/#~ "):
                raise ValueError(f"source name {name!r} must not be empty or contain ':', '/', '#', '~' or spaces")
        return v


@dataclass(frozen=True)
class StepSpec:
    name: str
    config: StepConfig
    where: str  # "file:line" of the step in the spec


@dataclass(frozen=True)
class FormatChoice:
    name: str
    config: FormatConfig
    kind: str


@dataclass(frozen=True)
class SourceSpec:
    name: str
    load: LoadConfig
    format: FormatChoice
    steps: list[StepSpec]
    sample: SampleConfig | None
    on_error: str


@dataclass(frozen=True)
class Spec:
    name: str
    seed: int
    output: Path
    tokenizer: str | None
    jsonl: bool
    sources: dict[str, SourceSpec]
    mix: list[StepSpec]
    path: Path | None
    root: Path  # where relative data paths resolve
    hash: str  # sha256 of the normalized spec
    raw: dict[str, Any] = field(default_factory=dict)
    source_dir: Path | None = None  # --source-dir: local mirror of hub files (mixer.sources)

    @property
    def kind(self) -> str:
        kinds = {s.format.kind for s in self.sources.values()}
        return kinds.pop() if len(kinds) == 1 else "mixed"


# ------------------------------------------------------------------------ YAML with lines


def _check_events(text: str, file: str) -> None:
    """Refuse, before building anything, YAML nested deeper than MAX_DEPTH or expanding
    (through aliases) to more than MAX_NODES nodes: both would exhaust the stack or memory.
    Works on the event stream, which needs neither recursion nor expansion."""
    sizes: dict[str, int] = {}  # anchor -> expanded node count
    stack: list[list[Any]] = [[None, 0]]  # open collections: [anchor, nodes so far]
    for ev in yaml.parse(text, Loader=yaml.SafeLoader):
        line = ev.start_mark.line + 1
        if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            stack.append([ev.anchor, 1])
            if len(stack) - 1 > MAX_DEPTH:
                raise SpecError([f"{file}:{line}: YAML nested more than {MAX_DEPTH} levels deep"])
            continue
        if isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            anchor, n = stack.pop()
        elif isinstance(ev, yaml.ScalarEvent):
            anchor, n = ev.anchor, 1
        elif isinstance(ev, yaml.AliasEvent):
            if any(open_[0] == ev.anchor for open_ in stack):
                raise SpecError([f"{file}:{line}: YAML alias *{ev.anchor} refers to a value that contains it"])
            anchor, n = None, sizes.get(ev.anchor, 1)
        else:
            continue
        if anchor is not None:
            sizes[anchor] = n
        stack[-1][1] += n
        if stack[-1][1] > MAX_NODES:
            raise SpecError([f"{file}:{line}: YAML expands to more than {MAX_NODES:,} values (aliases of aliases?)"])


def _check_keys(node: yaml.Node, file: str, loc: Loc = ()) -> None:
    """Duplicate keys: YAML would keep the last one silently (and drop, say, a source)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            if key is not None and key in seen and k.tag != "tag:yaml.org,2002:merge":
                raise SpecError([f"{file}:{k.start_mark.line + 1}: {_dotted(loc + (key,))}: duplicate key '{key}' (first at line {seen[key]})"])
            if key is not None:
                seen[key] = k.start_mark.line + 1
            _check_keys(v, file, loc + (key,))
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _check_keys(v, file, loc + (i,))


def load_yaml(text: str, file: str = "<spec>") -> tuple[yaml.Node | None, Any]:
    """(node tree for line numbers, data): bounded in depth and alias expansion, no
    duplicate keys; every problem a SpecError naming ``file:line``."""
    try:
        _check_events(text, file)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _check_keys(node, file)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = mark.line + 1 if mark else 1
        raise SpecError([f"{file}:{line}: invalid YAML: {getattr(e, 'problem', None) or e}"]) from None
    return node, data


def _line_map(node: yaml.Node, loc: Loc = (), out: dict[Loc, int] | None = None) -> dict[Loc, int]:
    """Map each key path to the 1-based line where it appears."""
    out = {} if out is None else out
    out.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k.value)
            out[loc + (key,)] = k.start_mark.line + 1
            _line_map(v, loc + (key,), out)
            out[loc + (key,)] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_map(v, loc + (i,), out)
    return out


def _dotted(loc: Loc) -> str:
    s = ""
    for part in loc:
        s += f"[{part}]" if isinstance(part, int) else (f".{part}" if s else str(part))
    return s or "(top level)"


_TYPE_WORDS = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "dict_type": "expected a mapping",
    "list_type": "expected a list",
    "model_type": "expected a mapping",
}


class _Problems:
    def __init__(self, file: str, lines: dict[Loc, int]):
        self.file, self.lines, self.items = file, lines, []
        self.flagged: set[Loc] = set()  # keys whose value _check_scalars refused

    def line(self, loc: Loc) -> int:
        while loc and loc not in self.lines:
            loc = loc[:-1]
        return self.lines.get(loc, 1)

    def add(self, loc: Loc, msg: str) -> None:
        self.items.append(f"{self.file}:{self.line(loc)}: {_dotted(loc)}: {msg}")

    def add_pydantic(self, err: ValidationError, base: Loc = ()) -> None:
        for e in err.errors():
            loc = base + tuple(p for p in e["loc"] if not (isinstance(p, str) and ("[" in p or p in ("function-after",))))
            kind = e["type"]
            if loc in self.flagged:
                continue  # pydantic's complaint about a value it coerced from a refused one
            if kind == "extra_forbidden":
                self.add(loc, f"unknown key '{loc[-1]}'")
            elif kind == "missing":
                self.add(loc[:-1], f"missing required key '{loc[-1]}'")
            elif kind in _TYPE_WORDS:
                self.add(loc, f"{_TYPE_WORDS[kind]}, got {e.get('input')!r}")
            elif kind == "literal_error":
                self.add(loc, f"expected one of {e['ctx']['expected']}, got {e.get('input')!r}")
            else:
                msg = e["msg"].removeprefix("Value error, ")
                key = re.match(r"^'(\w+)'", msg) if kind == "value_error" else None
                given = e.get("input") if isinstance(e.get("input"), dict) else {}
                self.add(loc + (key[1],) if key and key[1] in given else loc, msg)


def _scalar_kinds(annotation: Any) -> set[type] | None:
    """The scalar types a field admits, or None when it admits lists, mappings or models
    (pydantic checks those itself)."""
    parts = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    kinds: set[type] = set()
    for part in parts:
        if part is type(None):
            continue
        if part in (bool, int, float, str):
            kinds.add(part)
        elif get_origin(part) is Literal:
            kinds |= {type(a) for a in get_args(part)}
        else:
            return None
    return kinds


def _check_scalars(model: type[BaseModel], params: Any, loc: Loc, probs: _Problems) -> None:
    """What pydantic's lax mode would coerce, refused: ``seed: true`` is not 1, ``1`` is not
    true, ``2.5`` and ``"5"`` are not integers. (Strict mode would also refuse YAML lists for
    tuples.) Same wording as pydantic's own type errors, so duplicates collapse."""
    if not isinstance(params, dict):
        return
    for key, value in params.items():
        info = model.model_fields.get(key) if isinstance(key, str) else None
        kinds = _scalar_kinds(info.annotation) if info is not None else None
        if not kinds or value is None:
            continue
        ok = bool in kinds if isinstance(value, bool) else (
            bool(kinds & {int, float}) if isinstance(value, int) else
            float in kinds if isinstance(value, float) else
            str in kinds if isinstance(value, str) else True)
        if not ok:
            want = ("expected true or false" if kinds == {bool} else "expected an integer" if int in kinds and float not in kinds
                    else "expected a number" if float in kinds else "expected a string")
            probs.add(loc + (key,), f"{want}, got {value!r}")
            probs.flagged.add(loc + (key,))


def _parse_steps(items: list[Any], base: Loc, scope: str, probs: _Problems) -> list[StepSpec]:
    steps = []
    for i, item in enumerate(items):
        loc = base + (i,)
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, dict) or len(item) != 1:
            probs.add(loc, "a step is a mapping with one key, the step name: `- keyword_filter: {preset: tulu_v2}`")
            continue
        (name, params), = item.items()
        params = {} if params is None else params
        try:
            cls = get_step(name)
        except KeyError as e:
            probs.add(loc + (name,), str(e.args[0]))
            continue
        if scope not in cls.scopes:
            probs.add(loc + (name,), f"step '{name}' cannot be used at {scope} level (only: {', '.join(cls.scopes)})")
            continue
        if not isinstance(params, dict):
            probs.add(loc + (name,), "expected a mapping of step parameters")
            continue
        _check_scalars(cls.Config, params, loc + (name,), probs)
        try:
            cfg = cls.Config.model_validate(params)
        except ValidationError as err:
            probs.add_pydantic(err, loc + (name,))
            continue
        steps.append(StepSpec(name, cfg, f"{probs.file}:{probs.line(loc + (name,))}"))
    return steps


def _parse_format(value: str | dict[str, Any], loc: Loc, probs: _Problems) -> FormatChoice | None:
    if isinstance(value, str):
        name, params = value, {}
    else:
        params = dict(value)
        name = params.pop("name", None)
        if not isinstance(name, str):
            probs.add(loc, "a format mapping needs 'name' (e.g. {name: alpaca, output: response})")
            return None
    try:
        fmt = get_format(name)
    except KeyError as e:
        probs.add(loc + (("name",) if isinstance(value, dict) else ()), str(e.args[0]))
        return None
    _check_scalars(fmt.config, params, loc, probs)
    try:
        cfg = fmt.config.model_validate(params)
    except ValidationError as err:
        probs.add_pydantic(err, loc)
        return None
    return FormatChoice(name, cfg, fmt.kind)


def _check_paths(load: LoadConfig, root: Path, loc: Loc, probs: _Problems) -> None:
    from mixer.io import InputError, expand_paths

    for i, pat in enumerate(load.paths):
        if "://" in pat:
            continue  # remote storage (fsspec URL): checked when the source is read
        try:
            expand_paths([pat], root)
        except InputError as e:
            probs.add(loc + (("path", i) if isinstance(load.path, list) else ("path",)), f"missing file: {e}")


def _check_mirror(load: LoadConfig, source_dir: Path, loc: Loc, probs: _Problems) -> None:
    """With --source-dir, every hub file must be in the local mirror (see mixer.sources)."""
    from mixer.sources import missing_mirror_files

    for line in missing_mirror_files(load, source_dir):
        probs.add(loc + (("data_files",) if load.data_files is not None else ("hub",)), line)


def normalized_hash(data: dict[str, Any]) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def parse_spec(text: str, file: str = "<spec>", root: Path | None = None, check_files: bool = True, source_dir: Path | None = None) -> Spec:
    """Parse and validate a spec; raises SpecError listing every problem with its line."""
    node, data = load_yaml(text, file)
    if not isinstance(data, dict):
        raise SpecError([f"{file}:1: (top level): expected a mapping with name, sources, ..."])
    probs = _Problems(file, _line_map(node) if node is not None else {})
    _check_scalars(_SpecRaw, data, (), probs)
    try:
        raw = _SpecRaw.model_validate(data)
    except ValidationError as err:
        probs.add_pydantic(err)
        # Go on with what can be read, so that one run reports every problem.
        raw = _SpecRaw.model_construct(
            name=str(data.get("name", "")), seed=0, output=None, tokenizer=None, jsonl=False,
            sources=data.get("sources") if isinstance(data.get("sources"), dict) else {},
            mix=data.get("mix") if isinstance(data.get("mix"), list) else [],
        )
    root = root or (Path(file).parent if file != "<spec>" else Path.cwd())
    sources: dict[str, SourceSpec] = {}
    normalized: dict[str, str] = {}
    for name, value in raw.sources.items():
        loc: Loc = ("sources", name)
        nfc = unicodedata.normalize("NFC", str(name))
        if nfc in normalized:
            probs.add(loc, f"source name {name!r} is {normalized[nfc]!r} in another Unicode normalization (NFC/NFD): their ids would look the same; rename one")
        normalized.setdefault(nfc, name)
        _check_scalars(_SourceRaw, value, loc, probs)
        if isinstance(value, dict):
            _check_scalars(LoadConfig, value.get("load"), loc + ("load",), probs)
        try:
            src = _SourceRaw.model_validate(value)
        except ValidationError as err:
            probs.add_pydantic(err, loc)
            if not isinstance(value, dict):
                continue
            for key, what in (("format", "format"), ("steps", "steps")):
                if key in value:
                    if what == "format" and isinstance(value[key], (str, dict)):
                        _parse_format(value[key], loc + ("format",), probs)
                    elif what == "steps" and isinstance(value[key], list):
                        _parse_steps(value[key], loc + ("steps",), "source", probs)
            continue
        fmt = _parse_format(src.format, loc + ("format",), probs)
        steps = _parse_steps(src.steps, loc + ("steps",), "source", probs)
        if check_files and src.load.path is not None:
            _check_paths(src.load, root, loc + ("load",), probs)
        if check_files and source_dir is not None and src.load.hub is not None:
            _check_mirror(src.load, source_dir, loc + ("load",), probs)
        if fmt is not None:
            sources[name] = SourceSpec(name, src.load, fmt, steps, src.sample, src.on_error)
    mix = _parse_steps(raw.mix, ("mix",), "mix", probs)
    kinds = {s.format.kind for s in sources.values()}
    if len(kinds) > 1:
        probs.add(("sources",), "sources mix SFT and preference formats; build them as separate specs")
    if probs.items:
        raise SpecError(list(dict.fromkeys(probs.items)))
    output = Path(raw.output) if raw.output else Path("build") / raw.name
    return Spec(
        name=raw.name, seed=raw.seed, output=output, tokenizer=raw.tokenizer, jsonl=raw.jsonl,
        sources=sources, mix=mix, path=Path(file) if file != "<spec>" else None, root=root,
        hash=normalized_hash(data), raw=data, source_dir=source_dir,
    )


def load_spec(path: str | Path, source_dir: str | Path | None = None, check_files: bool = True) -> Spec:
    """Read a spec file. ``source_dir`` replaces the spec's folder as the root of relative data paths."""
    p = Path(path)
    if not p.exists():
        raise SpecError([f"{p}: spec file not found"])
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SpecError([f"{p}: not UTF-8 text (byte {e.start}); a spec is a YAML file"]) from None
    except OSError as e:
        raise SpecError([f"{p}: cannot read the spec: {e.strerror or e}"]) from None
    root = Path(source_dir) if source_dir is not None else p.parent
    return parse_spec(text, str(p), root, check_files, Path(source_dir).resolve() if source_dir is not None else None)
