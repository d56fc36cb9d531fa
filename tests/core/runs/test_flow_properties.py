"""Properties of flow rules (DESIGN.md 2.7), checked on random policies and runs.

- the taint index answers exactly as a brute-force search of each labelled output;
- observing an output never makes a decision more permissive for deny/approval rules
  that read the run (`tainted_by`, `run.labels`, `for_any: run.calls`);
(The compiled deciders' equivalence with flow rules: tests/core/test_compiled_decisions.py.)
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from veto_core import Effect, PolicyError, RunEvent, ToolCall
from veto_core.runs import RunState, normalize

from .flow_helpers import flow_veto
from .flow_strategies import (
    AT,
    LABELS,
    arg_values,
    flow_policy,
    flow_rules,
    observations,
    observe_all,
    pay_calls,
    texts,
)

RANK = {Effect.ALLOW: 0, Effect.REQUIRE_APPROVAL: 1, Effect.DENY: 2}


def _brute(
    value: Any, outputs: list[tuple[frozenset[str], str]], wanted: frozenset[str], n: int
) -> bool:
    from veto_core.runs.text import value_texts

    for text in value_texts(value):
        v = normalize(text)
        if (
            len(v) >= n
            and v
            and any(labels & wanted and v in normalize(out) for labels, out in outputs)
        ):
            return True
    return False


@given(
    outputs=st.lists(
        st.tuples(st.frozensets(st.sampled_from(LABELS), max_size=2), texts), max_size=6
    ),
    value=arg_values.filter(lambda v: v is not None),
    wanted=st.frozensets(st.sampled_from(LABELS), min_size=1),
    min_length=st.integers(1, 6),
)
def test_the_taint_index_answers_as_a_brute_force_search(
    outputs: list[tuple[frozenset[str], str]], value: Any, wanted: frozenset[str], min_length: int
) -> None:
    state = RunState(
        RunEvent(seq=i + 1, tool="t", labels=labels, text=text, at=AT)
        for i, (labels, text) in enumerate(outputs)
    )
    expected = _brute(value, outputs, wanted, min_length)
    assert state.tainted(value, wanted, min_length) is expected
    # a value in no labelled output is never tainted, whatever the index holds
    if expected:
        assert state.matches(value, wanted, min_length)


@settings(max_examples=100)
@given(
    rules=flow_rules(monotone=True),
    # default allow: under default deny, an approval rule that starts to match is
    # "less than deny" by the language's own rule (2.2), whatever it reads
    default=st.just("allow"),
    before=observations,
    extra=observations,
    call=pay_calls,
)
def test_observing_never_makes_a_decision_more_permissive(
    rules: list[dict[str, Any]],
    default: str,
    before: list[tuple[str, str, str]],
    extra: list[tuple[str, str, str]],
    call: ToolCall,
) -> None:
    try:
        veto = flow_veto(flow_policy(rules, default))
    except PolicyError:
        return
    observe_all(veto, before)
    first = veto.decide(call)
    observe_all(veto, extra)
    then = veto.decide(call)
    assert RANK[then.effect] >= RANK[first.effect], (first, then)
