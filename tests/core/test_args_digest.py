"""Arguments are JSON values or tagged (DESIGN.md 7): two different values never share an
``args_digest`` — the HMAC an approval is bound to — or the call is refused."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veto_core import Principal, ToolCall, Veto
from veto_core.adapters import ArgumentsError, json_args
from veto_core.approvals import ApprovalState, Approver
from veto_core.audit.record import args_digest

KEY = b"k" * 32

POLICY = """
version: 1
name: digest
rules:
  - id: gate
    effect: require_approval
    tools: [upload]
    approval: {approvers: [ops]}
"""


def digest(args: dict[str, Any]) -> str:
    return args_digest(KEY, args)


# The reproduced collision, and its relatives: a tagged value and a plain JSON value that
# spells the same text, or two Python values that JSON would print alike.
PAIRS: list[tuple[Any, Any]] = [
    ("base64:" + base64.b64encode(b"rm -rf /").decode(), b"rm -rf /"),
    ({"$bytes": base64.b64encode(b"x").decode()}, b"x"),
    ([1, 2], (1, 2)),
    ({"$tuple": [1, 2]}, (1, 2)),
    ([1, 2], {1, 2}),
    ({"1": "a"}, {1: "a"}),
    ({"$map": [[1, "a"]]}, {1: "a"}),
    ("2026-01-01T00:00:00", dt.datetime(2026, 1, 1)),
    ("1.50", decimal.Decimal("1.50")),
    (str(uuid.UUID(int=7)), uuid.UUID(int=7)),
    ({"$x": 1}, {"$$x": 1}),
    ({"$$x": 1}, {"$$$x": 1}),
    (1, 1.0),
    (1, True),
    (b"x", bytearray(b"x")),  # equal bytes: the same value, the same digest is fine
]


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_values_that_print_alike_have_different_digests(a: Any, b: Any) -> None:
    if a == b and type(a) in (bytes, bytearray):
        assert digest({"v": a}) == digest({"v": b})
        return
    assert digest({"v": a}) != digest({"v": b})


@pytest.mark.parametrize(
    "bad", [float("nan"), float("inf"), -float("inf"), object(), Path("/etc"), {1j: 1}, [object()]]
)
def test_values_without_a_json_form_are_refused(bad: Any) -> None:
    with pytest.raises(ArgumentsError, match=r"args\.v"):
        digest({"v": bad})
    with pytest.raises(ArgumentsError):
        json_args({"v": bad})


def test_tags_are_readable_json() -> None:
    assert json_args({"p": b"hi", "t": (1,), "s": {2, 1}, "$k": 1}) == {
        "p": {"$bytes": "aGk="},
        "t": {"$tuple": [1]},
        "s": {"$set": [1, 2]},
        "$$k": 1,
    }


def test_an_approval_for_the_base64_text_never_releases_the_bytes(tmp_path: Path) -> None:
    veto = Veto.from_yaml(POLICY, tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")
    text = "base64:" + base64.b64encode(b"payload").decode()

    def call(value: Any) -> ToolCall:
        return ToolCall(
            tool="upload", args={"payload": value}, principal=Principal(user="u"),
            run_id="r", tool_call_id="c1",
        )  # fmt: skip

    auth = veto.authorize(call(text))
    assert auth.approval is not None
    veto.approvals.decide(auth.approval.id, approver=Approver(id="ops"), approve=True)
    assert veto.approvals.get(auth.approval.id).state is ApprovalState.APPROVED
    assert veto.check_approval(call(b"payload")) is False
    assert veto.find_approval(call(b"payload")) is None
    assert veto.check_approval(call(text)) is True
    veto.close()


def test_a_call_with_an_object_argument_is_denied_with_its_reason(tmp_path: Path) -> None:
    veto = Veto.from_yaml(
        "version: 1\nname: p\nrules:\n  - {id: ok, effect: allow, tools: [t]}\n",
        db=f"sqlite:///{tmp_path / 'v.db'}",
    )
    auth = veto.authorize(ToolCall(tool="t", args={"f": Path("/etc/passwd")}))
    assert not auth.run_tool
    assert "args.f is a PosixPath, not a JSON value" in auth.reason
    assert auth.record_id is not None  # the refusal is on record
    assert veto.authorize(ToolCall(tool="t", args={"f": "/etc/passwd"})).run_tool
    veto.close()


# --- property: distinct values, distinct digests (or refused) -------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.binary(max_size=6),
    st.decimals(allow_nan=False, allow_infinity=False, places=2),
    st.dates(),
)
keys = st.one_of(st.text(alphabet="$ab1", max_size=4), st.integers(-3, 3), st.booleans())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.frozensets(st.one_of(st.integers(-3, 3), st.text(max_size=3)), max_size=3),
        st.dictionaries(keys, inner, max_size=3),
    ),
    max_leaves=8,
)


def _same(a: Any, b: Any) -> bool:
    """Python equality that also tells apart what equality conflates (1 == 1.0 == True,
    [1] vs (1,), float -0.0 vs 0.0, NaN != NaN)."""
    if type(a) is not type(b):
        if isinstance(a, bytes | bytearray) and isinstance(b, bytes | bytearray):
            return bytes(a) == bytes(b)
        return False
    if isinstance(a, float):
        return (a == b and math.copysign(1, a) == math.copysign(1, b)) or (a != a and b != b)
    if isinstance(a, dict):
        return set(a) == set(b) and all(
            type(k) is type(next(j for j in b if j == k)) and _same(a[k], b[k]) for k in a
        )
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, frozenset):
        return a == b and sorted(map(repr, a)) == sorted(map(repr, b))
    return bool(a == b)


@settings(max_examples=600, deadline=None)
@given(a=values, b=values)
def test_distinct_values_never_share_a_digest(a: Any, b: Any) -> None:
    try:
        da, db = digest({"v": a}), digest({"v": b})
    except ArgumentsError:
        return  # refused: the call never runs, so it can never be released
    if da == db:
        assert _same(a, b), (a, b)
