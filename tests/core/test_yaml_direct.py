"""The one-pass policy reader (`yamlsrc._read_direct`) against the node path it stands in for.

A document read straight from libyaml's events must give the same value and, when a
message asks for them, the same positions as the node path; anything it does not
handle must go the node path, so every error reads as before.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from veto_core import Veto
from veto_core.policy import records
from veto_core.policy.errors import PolicyError
from veto_core.policy.yamlsrc import (
    MAX_DEPTH,
    _FastLoader,
    _Loader,
    _read,
    _read_direct,
    _read_with_positions,
    read_yaml_text,
)

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted(
    p
    for folder in ("policies", "examples", "tests/core/malformed", "docs")
    for p in (ROOT / folder).rglob("*.y*ml")
)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _assert_equivalent(text: str) -> bool:
    """True when read directly; then value and positions equal the node path's."""
    direct = _read_direct(text, "p.yaml", None)
    if direct is None:
        return False
    nodes = _read_with_positions(text, "p.yaml", None)
    assert _same(direct.data, nodes.data)
    assert direct.value_marks == nodes.value_marks
    assert direct.key_marks == nodes.key_marks
    return True


def test_corpus_reads_the_same_directly() -> None:
    assert len(CORPUS) > 20
    texts = [p.read_bytes().decode("utf-8", errors="replace") for p in CORPUS]
    direct = [t for t in texts if _assert_equivalent(t)]
    assert len(direct) > len(CORPUS) // 2  # the common file takes the one-pass path


SCALARS = """\
a: no
b: on
c: 17:00
d: 2024-01-01
e: 0x1F
f: 0o17
g: -12
h: 1.5e3
i: .inf
j: -.Inf
k: .nan
l: ~
m:
n: null
o: "123"
p: '~'
q: True
r: FALSE
s: yes
t: [1, "1", 1.0, '', "", x]
u: {"v": 1, 'w': two}
ünï: "ça va"
x: |
  two
  lines
"""


def test_plain_scalars_resolve_as_the_node_path_does() -> None:
    assert _assert_equivalent(SCALARS)
    data = read_yaml_text(SCALARS, file="p.yaml").data
    assert data["a"] == "no" and data["c"] == "17:00" and data["d"] == "2024-01-01"
    assert data["e"] == 31 and data["f"] == 15 and data["h"] == 1500.0
    assert data["i"] == math.inf and math.isnan(data["k"])
    assert data["l"] is None and data["m"] is None and data["o"] == "123"
    assert data["q"] is True and data["r"] is False and data["s"] == "yes"
    assert data["t"] == [1, "1", 1.0, "", "", "x"]


@pytest.mark.parametrize(
    "text",
    [
        "a: &x [1]\nb: *x\n",  # anchors and aliases
        "a: !!str 1\n",  # explicit tags
        "a: 1\na: 2\n",  # duplicate key
        "1: a\n",  # a key that is not a string
        "? [a]\n: b\n",  # a collection as a key
        'a: "\\ud83d\\ude00"\n',  # an escaped surrogate pair
        "a: 1\n---\nb: 2\n",  # two documents
        "",  # no document
        "a: [1\n",  # libyaml refuses it
        "a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n",  # too deep
    ],
)
def test_anything_unusual_goes_the_node_path(text: str) -> None:
    assert _read_direct(text, "p.yaml", None) is None


def test_errors_read_as_before() -> None:
    with pytest.raises(PolicyError) as dup:
        read_yaml_text("a: 1\nb: 2\na: 3\n", file="p.yaml")
    assert "p.yaml:3:1" in str(dup.value) and "duplicate key 'a'" in str(dup.value)
    deep = "a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n"
    with pytest.raises(PolicyError, match=f"nested deeper than {MAX_DEPTH}"):
        read_yaml_text(deep, file="p.yaml")
    assert read_yaml_text('a: "\\ud83d\\ude00"\n', file="p.yaml").data == {"a": "\U0001f600"}


def test_positions_are_found_when_a_message_needs_them() -> None:
    text = (
        "version: 1\nname: t\nrules:\n"
        "  - id: ok\n    effect: allow\n    tools: [a]\n"
        "  - id: über\n    effect: allow\n    tools: [b]\n"
        "  - id: bad\n    effect: allow\n    tools: [c]\n    when: {role: [nobody]}\n"
    )
    with pytest.raises(PolicyError) as exc:
        Veto.from_yaml(text, file="p.yaml")
    assert "p.yaml:7:" in str(exc.value)  # the rule id refused by the schema
    fixed = text.replace("über", "uber")
    with pytest.raises(PolicyError) as exc:
        Veto.from_yaml(fixed, file="p.yaml")
    assert "p.yaml:13:19" in str(exc.value) and "unknown role 'nobody'" in str(exc.value)
    doc = read_yaml_text("a:\n  - {b: ünï, c: 1}\n", file="p.yaml")
    assert doc.locate(("a", 0, "c")) == (2, 17)  # columns in characters, not bytes
    assert doc.locate(("a", 0, "c"), key=True) == (2, 14)


def test_libyaml_positions_are_the_pure_python_parsers() -> None:
    """libyaml counts columns in characters, as PyYAML does (they were once 'converted'
    from bytes, which put every position after a non-ASCII character too far left)."""
    text = 'é: x\nb: [ü, ö, "ä", 1]\nc:\n  d: 日本語\n  e: {f: 語, g: 2}\n'
    fast = _read(text, "p.yaml", None, _FastLoader)
    pure = _read(text, "p.yaml", None, _Loader)
    assert fast.value_marks == pure.value_marks and fast.key_marks == pure.key_marks
    assert pure.locate(("c", "e", "g")) == (5, 16)


def test_compiled_rules_know_their_line() -> None:
    text = (
        "version: 1\nname: t\nrules:\n"
        "  - id: one\n    effect: allow\n    tools: [a]\n\n"
        "  - id: two\n    effect: deny\n    tools: [b]\n"
    )
    veto = Veto.from_yaml(text, file="p.yaml")
    lines = {r.id: r.line for r in veto._policy.rules}
    assert lines == {"one": 4, "two": 8}


def test_records_read_fields_as_attributes() -> None:
    rec = records.Record("RuleModel", {"id": "r1", "tools": ["a"]})
    assert rec.id == "r1" and rec.tools == ["a"]
    with pytest.raises(AttributeError, match="RuleModel has no field 'nope'"):
        _ = rec.nope
    with pytest.raises(AttributeError, match="immutable"):
        rec.id = "r2"  # type: ignore[misc]
    assert records.replace(rec, id="r2").id == "r2" and rec.id == "r1"
    assert records.decode(records.encode(rec)) == rec
