"""``VetoGuard.build_call`` reuses the call the guardrail built for the body gate (the
SDK shows it the same JSON text): always equal to the reference ``_build_call``, even
when the run context, the guard's settings or the arguments change between calls."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from veto_core import Principal, ToolCall, Veto
from veto_openai import VetoContext
from veto_openai._calls import ArgumentSchema
from veto_openai.guard import VetoGuard

POLICY = "version: 1\nname: p\nrules: [{id: r, effect: allow, tools: [t]}]\n"
SCHEMA = ArgumentSchema(
    {"type": "object", "properties": {"path": {"type": "string"}}, "additionalProperties": False}
)
TEXTS = ['{"path": "/a"}', '{"path": "/a"}', '{"path": 1}', "", "{"]  # mostly the same call


def _build(guard: VetoGuard, fast: bool, args: str, cid: str, ctx: Any, agent: str) -> Any:
    build = guard.build_call if fast else guard._build_call
    try:
        return build("t", args, tool_call_id=cid, run_context=ctx, agent_name=agent, schema=SCHEMA)
    except Exception as exc:  # the same refusal, whichever path
        return (type(exc), str(exc))


step = st.one_of(
    st.tuples(
        st.just("call"),
        st.sampled_from(TEXTS),
        st.sampled_from(["c1", "c1", "c2"]),
        st.integers(0, 3),
        st.sampled_from(["bot", "bot", "other"]),
    ),
    st.tuples(
        st.just("mutate"),
        st.integers(0, 3),
        st.sampled_from(["run_id", "principal", "context", "env"]),
        st.sampled_from(["a", "b"]),
    ),
    st.tuples(
        st.just("guard"),
        st.sampled_from(["principal", "env", "tenant", "context"]),
        st.sampled_from(["a", "b"]),
    ),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(step, max_size=30))
def test_build_call_equals_the_reference(steps: list[Any]) -> None:
    veto = Veto.from_yaml(POLICY)
    guard = VetoGuard(veto, principal=Principal(user="u"))

    class Holder:
        veto: Any = None

    holder = Holder()
    holder.veto = VetoContext(run_id="r0")
    contexts: list[Any] = [{"veto": {"run_id": "r0"}}, {}, holder, None]
    for s in steps:
        if s[0] == "call":
            _, args, cid, i, agent = s
            ctx = contexts[i]
            fast = _build(guard, True, args, cid, ctx, agent)
            assert fast == _build(guard, False, args, cid, ctx, agent)
            if isinstance(fast, ToolCall):
                assert fast.run_id == (VetoContext.from_run_context(ctx) or VetoContext()).run_id
        elif s[0] == "mutate":
            _, i, field, value = s
            ctx = contexts[i]
            new = {
                "run_id": {"run_id": value},
                "principal": {"principal": Principal(user=value)},
                "context": {"context": {"k": value}},
                "env": {"env": value},
            }[field]
            if isinstance(ctx, dict):
                inner = ctx.setdefault("veto", {})
                if field == "context" and isinstance(inner.get("context"), dict):
                    inner["context"]["k"] = value  # changed in place
                else:
                    inner.update(new)
            elif isinstance(ctx, Holder):
                ctx.veto = VetoContext(**new)  # type: ignore[arg-type]
        else:
            _, field, value = s
            made = {
                "principal": Principal(user=value),
                "env": value,
                "tenant": value,
                "context": {"k": value},
            }[field]
            setattr(guard, field, made)
    veto.close()
