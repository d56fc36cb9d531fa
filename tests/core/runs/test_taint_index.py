"""The fast paths of flow rules answer exactly as their references (DESIGN.md 2.7).

- `RunState.tainted` with the sparse window index (runs/state.py) against a plain
  search of each kept observation's text, for random texts, labels, growth in steps
  (the index is extended, or rebuilt after old text is dropped by the bound) and
  values that occur, span two observations, or differ only by whitespace/case;
- the `run.labels contains ...` leaf (a set test) against the general `contains` leaf.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veto_core import Principal, RunEvent, ToolCall, Veto
from veto_core.policy import conditions
from veto_core.runs import RunState
from veto_core.runs import state as state_module
from veto_core.runs.text import compact

from .flow_strategies import AT

LABELS = ("a", "b", "c")
# Letters enough for windows to differ (values are mostly slices of the texts);
# whitespace, and characters NFKC/casefold change (ß, ﬁ, Å), so both sides'
# normalization is exercised; NUL (the haystack's separator) in some texts and values.
alphabet = st.sampled_from("abcdefghijklmnopqrstAB12 \n\tßﬁÅ-")
texts = st.one_of(
    st.text(alphabet, min_size=16, max_size=120),
    st.text(alphabet, max_size=16),
    st.text(st.sampled_from("ab\x00 "), max_size=30),
)


def _reference(state: RunState, value: str, wanted: frozenset[str], min_length: int) -> bool:
    needle = compact(value)
    if not needle or len(needle) < min_length:
        return False
    return any(
        needle in obs.norm.replace(" ", "")
        for obs in state._obs
        if obs.norm is not None and not wanted.isdisjoint(obs.event.labels)
    )


@pytest.fixture
def always_indexed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Index every haystack, and keep little text, so drops and rebuilds happen (the
    same for every example: constants, so sharing the fixture is safe)."""
    monkeypatch.setattr(state_module, "_MIN_INDEXED_HAY", 0)
    monkeypatch.setattr(state_module, "_INDEX_COST_IN_SEARCHED_CHARS", 0)
    monkeypatch.setattr(state_module, "MAX_TEXT_BYTES", 400)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.lists(st.tuples(st.frozensets(st.sampled_from(LABELS), max_size=2), texts), max_size=4),
        min_size=1,
        max_size=5,
    ),
    picks=st.lists(
        st.tuples(st.integers(0, 100), st.integers(0, 200), st.integers(0, 30), st.booleans()),
        max_size=8,
    ),
    others=st.lists(texts, max_size=3),
    wanted=st.frozensets(st.sampled_from(LABELS), min_size=1),
    min_length=st.integers(1, 20),
)
def test_the_indexed_lookup_answers_as_a_plain_search(
    always_indexed: None,
    steps: list[list[tuple[frozenset[str], str]]],
    picks: list[tuple[int, int, int, bool]],
    others: list[str],
    wanted: frozenset[str],
    min_length: int,
) -> None:
    state = RunState()
    seq = 0
    seen: list[str] = []
    for step in steps:
        events = []
        for labels, text in step:
            seq += 1
            events.append(RunEvent(seq=seq, tool="t", labels=labels, text=text, at=AT))
            seen.append(text)
        state.extend(events)
        # values that occur (slices of one text, or of two consecutive ones: across
        # observations), re-spaced or re-cased, and random ones
        values = list(others)
        for which, start, length, respace in picks:
            if seen:
                i = which % len(seen)
                pool = seen[i] + (" " + seen[i + 1] if i + 1 < len(seen) and which % 3 == 0 else "")
                piece = pool[start : start + length]
                values.append(" ".join(piece) if respace else piece.upper())
        for value in values:
            expected = _reference(state, value, wanted, min_length)
            assert state.tainted(value, wanted, min_length) is expected, (value, wanted)
            assert state.tainted(value, wanted, min_length) is expected  # the memo


def test_long_values_are_found_in_a_large_run_at_any_offset() -> None:
    """The real thresholds: a 64 KB haystack, values of the indexed length and longer
    copied from every offset modulo the stride, and near misses."""
    import random

    rng = random.Random(7)
    chunks = ["".join(rng.choices("abcdefgh0123456789 ", k=4000)) for _ in range(16)]
    state = RunState(
        RunEvent(seq=i + 1, tool="t", labels=frozenset({"u"}), text=text, at=AT)
        for i, text in enumerate(chunks)
    )
    wanted = frozenset({"u"})
    assert len(state._haystacks()["u"]) >= state_module._MIN_INDEXED_HAY
    for length in (state_module._INDEXED_LENGTH, state_module._INDEXED_LENGTH + 5, 40):
        for offset in range(2 * state_module._S):
            text = chunks[offset % len(chunks)]
            value = text[100 + offset : 100 + offset + length + text.count(" ", 100 + offset)]
            assert state.tainted(value, wanted, 4) is _reference(state, value, wanted, 4)
            assert state.tainted(value, wanted, 4)  # copied: found
            miss = value + "zz"
            assert state.tainted(miss, wanted, 4) is _reference(state, miss, wanted, 4)


POLICY = """\
version: 1
name: labels
default: allow
sources:
  - {{id: s1, tools: [read_a], labels: [Secret]}}
  - {{id: s2, tools: [read_b], labels: [secret]}}
  - {{id: s3, tools: [read_c], labels: ["5"]}}
rules:
  - id: r
    effect: deny
    tools: [send]
    if: {{field: run.labels, contains: {operand}{ignore_case}}}
"""


@settings(max_examples=60, deadline=None)
@given(
    operand=st.one_of(
        st.sampled_from(["secret", "Secret", "SECRET", "5", "x"]),
        st.lists(st.sampled_from(["secret", "Secret", "5", "x"]), min_size=1, max_size=3),
        st.sampled_from([5, 5.0, True]),
    ),
    ignore_case=st.booleans(),
    reads=st.lists(st.sampled_from(["read_a", "read_b", "read_c", "other"]), max_size=3),
)
def test_the_run_labels_leaf_answers_as_the_general_contains(
    operand: Any, ignore_case: bool, reads: list[str]
) -> None:
    import json

    text = POLICY.format(
        operand=json.dumps(operand), ignore_case=", ignore_case: true" if ignore_case else ""
    )
    fast = Veto.from_yaml(text)
    original = conditions._labels_leaf
    conditions._labels_leaf = lambda general, operand, *, ignore_case: general  # type: ignore[assignment]
    try:
        general = Veto.from_yaml(text)
    finally:
        conditions._labels_leaf = original  # type: ignore[assignment]
    principal = Principal(agent="a")
    for veto in (fast, general):
        for tool in reads:
            veto.observe(ToolCall(tool=tool, args={}, principal=principal, run_id="r"), "out")
    for run_id in ("r", None):
        call = ToolCall(tool="send", args={}, principal=principal, run_id=run_id)
        a, b = fast.decide(call), general.decide(call)
        assert (a.effect, a.reasons, a.errors) == (b.effect, b.reasons, b.errors)


def test_the_index_waits_until_searches_paid_for_it_and_follows_new_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run that observes between every few calls keeps searching (no index built per
    observation); a history searched enough gets the index, and an observation makes it
    stale until the searches since pay for the new text. Answers are the search's
    throughout, and the haystack grows with each observation."""
    import random

    monkeypatch.setattr(state_module, "_INDEX_COST_IN_SEARCHED_CHARS", 4)
    rng = random.Random(3)
    wanted = frozenset({"u"})
    text = "".join(rng.choices("abcdefgh0123456789", k=20000))
    state = RunState([RunEvent(seq=1, tool="t", labels=wanted, text=text, at=AT)])
    for i in range(3):
        assert not state.tainted(f"absent-value-number-{i:04d}", wanted, 4)
    assert "u" not in state._index
    assert not state.tainted("absent-value-number-last", wanted, 4)  # 4 searches: indexed
    assert state._index["u"].upto == 1
    later = "".join(rng.choices("ijklmnop", k=20000))
    state.extend([RunEvent(seq=2, tool="t", labels=wanted, text=later, at=AT)])
    assert state._haystacks()["u"] == text + "\x00" + later
    assert state.tainted(later[500:540], wanted, 4)  # the stale index is not used: found
    assert state._index["u"].upto == 1
    # the new text is half the haystack: two searches of the whole pay for it
    assert state.tainted(later[1000:1040], wanted, 4)
    assert state._index["u"].upto == 2
    assert not state.tainted("absent-value-number-after", wanted, 4)
