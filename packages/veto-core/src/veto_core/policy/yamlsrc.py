"""Safe YAML reading that remembers where every key and value came from.

Uses PyYAML's SafeLoader with YAML 1.2 core-schema scalars: `no`, `on`,
`17:00` and `2024-01-01` stay strings (YAML 1.1 would turn them into a
boolean, the integer 1020 and a date, which surprises policy authors).
Duplicate keys are errors, not "last one wins". A size and node limit keep a
hostile file (alias bombs) from exhausting memory or time.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import PolicyError, Problem, format_path

__all__ = ["MAX_DEPTH", "MAX_POLICY_BYTES", "SourceDoc", "read_yaml_file", "read_yaml_text"]

MAX_POLICY_BYTES = 2 * 1024 * 1024
MAX_NODES = 200_000
#: Nesting allowed in a policy document (DESIGN.md 2.1); every recursive step after
#: the YAML parser (composer, pydantic, condition compiler) stays far from Python's limit.
MAX_DEPTH = 64

Loc = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    pass


# YAML 1.2 core schema resolvers (replacing the YAML 1.1 ones).
_Loader.yaml_implicit_resolvers = {}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:null",
    re.compile(r"^(?:~|null|Null|NULL|)$"),
    ["~", "n", "N", ""],
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    text = str(loader.construct_scalar(node)).lower()
    if text.endswith(".inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    if text == ".nan":
        return float("nan")
    return float(text)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)

# libyaml's parser, when present, is ~10x faster on big policies; it takes the same
# resolvers and constructors. Its error texts are vaguer, so a file it rejects is
# parsed again with the pure-Python loader to report the precise message.
_FastLoader: type[Any] | None = None
if getattr(yaml, "__with_libyaml__", False):

    class _CLoader(yaml.CSafeLoader):
        pass

    _CLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
    _CLoader.yaml_constructors = {**yaml.CSafeLoader.yaml_constructors, **_Loader.yaml_constructors}
    _FastLoader = _CLoader


@dataclass
class SourceDoc:
    """A parsed YAML document plus the line/column of every key and value.

    The positions are only needed for messages, so a document read in one pass from
    the parser's events (`_read_direct`) keeps its text instead and finds them on
    first use, by reading that text again the way documents with positions are read.
    """

    file: str
    data: Any
    path: Path | None = None
    #: SHA-256 of the text (hex): what the policy cache knows a file by.
    sha256: str = ""
    #: (value marks, key marks), or None while they are still to be found in ``_text``.
    _marks: tuple[dict[Loc, tuple[int, int]], dict[Loc, tuple[int, int]]] | None = field(
        default=None, repr=False, compare=False
    )
    _text: str | None = field(default=None, repr=False, compare=False)

    @property
    def value_marks(self) -> dict[Loc, tuple[int, int]]:
        return self._positions()[0]

    @property
    def key_marks(self) -> dict[Loc, tuple[int, int]]:
        return self._positions()[1]

    def _positions(
        self,
    ) -> tuple[dict[Loc, tuple[int, int]], dict[Loc, tuple[int, int]]]:
        marks = self._marks
        if marks is None:
            marks = _marks_of(self._text or "", self.file, self.path)
            self._marks = marks
            self._text = None
        return marks

    def locate(self, loc: Loc, *, key: bool = False) -> tuple[int | None, int | None]:
        """Line and column of ``loc`` (its key when ``key``), else of its nearest parent."""
        value_marks, key_marks = self._positions()
        if key and loc in key_marks:
            return key_marks[loc]
        probe = tuple(loc)
        while probe:
            if probe in value_marks:
                return value_marks[probe]
            probe = probe[:-1]
        return value_marks.get((), (None, None))

    def problem(self, loc: Loc, message: str, *, key: bool = False) -> Problem:
        line, col = self.locate(loc, key=key)
        return Problem(
            file=self.file, line=line, column=col, path=format_path(loc), message=message
        )


def _mark(node: yaml.Node | yaml.Event) -> tuple[int, int]:
    mark = node.start_mark
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _too_deep(file: str, mark: tuple[int, int]) -> PolicyError:
    return PolicyError(
        [
            Problem(
                file=file,
                line=mark[0],
                column=mark[1],
                path="",
                message=f"the document is nested deeper than {MAX_DEPTH} levels",
            )
        ]
    )


def _check_depth(text: str, file: str, loader_cls: type[Any]) -> None:
    """Refuse deep nesting from the parser's events, before the (recursive) composer
    sees it: PyYAML's composer recurses per level, and the C one does so in C."""
    depth = 0
    for event in yaml.parse(text, Loader=loader_cls):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _too_deep(file, _mark(event))
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


_SURROGATE = re.compile("[\ud800-\udfff]")


def _join_surrogates(
    doc: SourceDoc, node: yaml.ScalarNode, loc: Loc, problems: list[Problem]
) -> str:
    """JSON writes an emoji as "\\ud83d\\ude00"; YAML reads each escape on its own.
    Join such pairs into the character; a lone surrogate is no character at all."""
    value: str = node.value
    try:
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    except UnicodeDecodeError:
        line, col = _mark(node)
        problems.append(
            Problem(
                file=doc.file,
                line=line,
                column=col,
                path=format_path(loc),
                message="a \\uD800-\\uDFFF escape that is not half of a pair is not a character",
            )
        )
        return value


def _walk(
    doc: SourceDoc, node: yaml.Node, loc: Loc, problems: list[Problem], budget: list[int]
) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise PolicyError.of_file(
            doc.file, f"document has more than {MAX_NODES} nodes (alias bomb?)"
        )
    if len(loc) >= MAX_DEPTH and isinstance(node, yaml.CollectionNode):
        # Aliases nest documents without nesting their text: count the real depth too.
        raise _too_deep(doc.file, _mark(node))
    doc.value_marks.setdefault(loc, _mark(node))
    if isinstance(node, yaml.ScalarNode) and _SURROGATE.search(node.value):
        node.value = _join_surrogates(doc, node, loc, problems)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, tuple[int, int]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                line, col = _mark(key_node)
                problems.append(
                    Problem(
                        file=doc.file,
                        line=line,
                        column=col,
                        path=format_path(loc),
                        message="mapping keys must be plain strings",
                    )
                )
                continue
            key = key_node.value
            if key in seen:
                line, col = _mark(key_node)
                problems.append(
                    Problem(
                        file=doc.file,
                        line=line,
                        column=col,
                        path=format_path((*loc, key)),
                        message=f"duplicate key '{key}' (first defined at line {seen[key][0]})",
                    )
                )
                continue
            seen[key] = _mark(key_node)
            doc.key_marks[(*loc, key)] = _mark(key_node)
            _walk(doc, value_node, (*loc, key), problems, budget)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(doc, item, (*loc, i), problems, budget)


_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


class _Unusual(Exception):
    """A node the plain construction below leaves to PyYAML (explicit collection tags)."""


def _construct(loader: Any, node: yaml.Node, memo: dict[int, Any]) -> Any:
    """The document's value, as ``construct_document`` would build it, in one pass:
    strings taken as they are, other scalars through the loader's constructors.
    PyYAML's generic constructor (two-step generators per collection) was a third of
    a load. Runs after `_walk`, so depth, size and duplicate keys are already checked;
    an alias yields the same object, as with PyYAML."""
    found = memo.get(id(node))
    if found is not None:
        return found
    cls = type(node)
    if cls is yaml.ScalarNode:
        return node.value if node.tag == _STR else loader.construct_object(node, deep=True)
    if cls is yaml.MappingNode and node.tag == _MAP:
        mapping: dict[Any, Any] = {}
        memo[id(node)] = mapping
        for key_node, value_node in node.value:
            if type(key_node) is not yaml.ScalarNode:
                raise _Unusual
            key = (
                key_node.value
                if key_node.tag == _STR
                else loader.construct_object(key_node, deep=True)
            )
            mapping[key] = _construct(loader, value_node, memo)
        return mapping
    if cls is yaml.SequenceNode and node.tag == _SEQ:
        items: list[Any] = []
        memo[id(node)] = items
        items.extend(_construct(loader, item, memo) for item in node.value)
        return items
    raise _Unusual


def read_yaml_text(text: str, *, file: str, path: Path | None = None) -> SourceDoc:
    try:
        encoded: bytes | None = text.encode("utf-8")
    except UnicodeEncodeError:
        encoded = None
    if len(encoded or text.encode("utf-8", "surrogatepass")) > MAX_POLICY_BYTES:
        raise PolicyError.of_file(file, f"file is larger than {MAX_POLICY_BYTES} bytes")
    if encoded is None:  # a lone surrogate: only a str given by code has one
        exc = _lone_surrogate(text)
        before = text[: exc.start]
        raise PolicyError(
            [
                Problem(
                    file=file,
                    line=before.count("\n") + 1,
                    column=exc.start - (before.rfind("\n") + 1) + 1,
                    path="",
                    message="text is not valid Unicode (a lone surrogate)",
                )
            ]
        ) from None
    doc = _read_direct(text, file, path)
    if doc is None:  # anything unusual, or a problem to report: the node path
        doc = _read_with_positions(text, file, path)
    doc.sha256 = hashlib.sha256(encoded).hexdigest()
    return doc


def _lone_surrogate(text: str) -> UnicodeEncodeError:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc
    raise AssertionError("text encodes")  # pragma: no cover - only called when it does not


def _read_with_positions(text: str, file: str, path: Path | None) -> SourceDoc:
    """The node path: libyaml's parse when it takes ``text``, else the pure-Python one
    (libyaml's error texts are vaguer, so a text it refuses is read again for the message)."""
    doc = _read_fast(text, file, path, _FastLoader) if _FastLoader is not None else None
    return doc if doc is not None else _read(text, file, path, _Loader)


def _marks_of(
    text: str, file: str, path: Path | None
) -> tuple[dict[Loc, tuple[int, int]], dict[Loc, tuple[int, int]]]:
    """The positions of a text `_read_direct` read: the node path records them (it takes
    every text `_read_direct` takes, so it never fails on one; if it did, messages
    would only lack a position)."""
    try:
        marks = _read_with_positions(text, file, path)._marks
    except PolicyError:  # pragma: no cover - see above
        marks = None
    return marks if marks is not None else ({}, {})


#: Double-quoted escapes that may be half of a surrogate pair (`_join_surrogates`).
_SURROGATE_ESCAPE = re.compile(r"\\(?:u|U0000)[dD][89a-fA-F]")
#: First characters of a plain scalar that may be something else than a string
#: (the implicit resolvers above; "" is the empty scalar, null).
_MAYBE_NOT_STR = frozenset(k for k in _Loader.yaml_implicit_resolvers if k)
_NO_KEY = object()


def _read_direct(text: str, file: str, path: Path | None) -> SourceDoc | None:
    """The common document in one pass over libyaml's events, with no node tree and no
    positions (`SourceDoc` finds them when a message needs one): its value, with
    depth, size and duplicate keys checked as it is built. None for anything else,
    which the node path reads (and reports) exactly as before: a text libyaml
    refuses, anchors and aliases, explicit tags, a key that is not a string, a
    duplicate key, too deep or too many nodes, escaped surrogates, not exactly one
    document. Half of a 10,000-rule load was composing nodes, walking them for
    positions, and a second parse to check the depth before the composer recursed."""
    if _FastLoader is None or _SURROGATE_ESCAPE.search(text):
        return None
    try:
        parser = _FastLoader(text)
    except yaml.YAMLError:
        return None
    try:
        data = _build(parser)
    except (_Unusual, yaml.YAMLError):
        return None
    finally:
        parser.dispose()
    return SourceDoc(file=file, data=data, path=path, _text=text)


def _build(parser: Any) -> Any:
    """The value of the single document of ``parser``'s events (see `_read_direct`)."""
    get = parser.get_event
    if type(get()) is not yaml.StreamStartEvent or type(get()) is not yaml.DocumentStartEvent:
        raise _Unusual
    scalar_cls, map_cls, seq_cls = yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent
    map_end, seq_end = yaml.MappingEndEvent, yaml.SequenceEndEvent
    maybe_not_str = _MAYBE_NOT_STR
    resolved: dict[str, Any] = {}
    root: list[Any] = []
    container: Any = root  # the collection being filled: a dict or a list
    is_map = False
    key: Any = _NO_KEY  # in a mapping, the key waiting for its value
    stack: list[tuple[Any, bool]] = []
    nodes = 0
    while True:
        event = get()
        cls = type(event)
        if cls is scalar_cls:
            if event.anchor is not None or event.tag is not None:
                raise _Unusual
            value = event.value
            if event.implicit[0] and (not value or value[0] in maybe_not_str):
                found = resolved.get(value, _NO_KEY)
                if found is _NO_KEY:
                    found = resolved[value] = _plain_scalar(parser, value)
                value = found
            nodes += 1
            if not is_map:
                container.append(value)
            elif key is _NO_KEY:
                if type(value) is not str or value in container:
                    raise _Unusual
                key = value
            else:
                container[key] = value
                key = _NO_KEY
        elif cls is map_cls or cls is seq_cls:
            if event.anchor is not None or event.tag is not None:
                raise _Unusual
            new: Any = {} if cls is map_cls else []
            nodes += 1
            if not is_map:
                container.append(new)
            elif key is _NO_KEY:
                raise _Unusual  # a collection as a key
            else:
                container[key] = new
            stack.append((container, is_map))
            if len(stack) > MAX_DEPTH:
                raise _Unusual
            container, is_map, key = new, cls is map_cls, _NO_KEY
        elif cls is map_end or cls is seq_end:
            container, is_map = stack.pop()
            key = _NO_KEY
        elif cls is yaml.DocumentEndEvent and not stack:
            break
        else:
            raise _Unusual  # an alias, ...
    if nodes > MAX_NODES or type(get()) is not yaml.StreamEndEvent:
        raise _Unusual
    return root[0]


def _plain_scalar(loader: Any, value: str) -> Any:
    """A plain scalar as the composer and constructor make it (YAML 1.2 core schema)."""
    tag = loader.resolve(yaml.ScalarNode, value, (True, False))
    if tag == _STR:
        return value
    return loader.construct_object(yaml.ScalarNode(tag, value), deep=True)


def _read_fast(text: str, file: str, path: Path | None, loader_cls: type[Any]) -> SourceDoc | None:
    """The libyaml parse, or None when it refuses ``text`` (its messages are vaguer)."""
    try:
        return _read(text, file, path, loader_cls)
    except PolicyError:
        return None


def _read(text: str, file: str, path: Path | None, loader_cls: type[Any]) -> SourceDoc:
    doc = SourceDoc(file=file, data=None, path=path, _marks=({}, {}))
    try:
        # The reader refuses non-printable characters as soon as it is made.
        loader = loader_cls(text)
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        at_line = before.count("\n") + 1
        at_col = exc.position - (before.rfind("\n") + 1) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        message = (
            f"invalid YAML: character U+{code:04X} is not allowed here; "
            "write it as an escape in a double-quoted string"
        )
        raise PolicyError(
            [Problem(file=file, line=at_line, column=at_col, path="", message=message)]
        ) from None
    except yaml.YAMLError as exc:
        raise PolicyError.of_file(file, f"invalid YAML: {exc}") from None
    try:
        _check_depth(text, file, loader_cls)
        node = loader.get_single_node()
        if node is None:
            raise PolicyError(
                [
                    Problem(
                        file=file,
                        line=1,
                        column=1,
                        path="",
                        message="file is empty; expected a policy mapping",
                    )
                ]
            )
        problems: list[Problem] = []
        _walk(doc, node, (), problems, [MAX_NODES])
        if problems:
            raise PolicyError(problems)
        try:
            doc.data = _construct(loader, node, {})
        except _Unusual:
            doc.data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        message = f"invalid YAML: {exc.problem or exc.context}"
        if "'\\t'" in message:
            message = "invalid YAML: tabs are not allowed in YAML indentation; indent with spaces"
        if "'['" in str(exc) or "'*'" in str(exc):
            message += (
                " (a path containing '[' must be quoted in flow style: \"args.items[*].sku\")"
            )
        raise PolicyError(
            [Problem(file=file, line=line, column=col, path="", message=message)]
        ) from None
    except yaml.YAMLError as exc:
        raise PolicyError.of_file(file, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return doc


def read_yaml_file(path: str | Path, *, label: str | None = None) -> SourceDoc:
    """Read a policy file; ``label`` is how messages name it (default: ``path`` as given)."""
    p = Path(path)
    label = str(path) if label is None else label
    try:
        size = p.stat().st_size
        if size > MAX_POLICY_BYTES:
            raise PolicyError.of_file(label, f"file is larger than {MAX_POLICY_BYTES} bytes")
        raw = p.read_bytes()
    except OSError as exc:
        raise PolicyError.of_file(label, f"cannot read file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError.of_file(
            label, f"file is not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    return read_yaml_text(text, file=label, path=p)
