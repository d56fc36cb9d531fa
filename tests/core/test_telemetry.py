"""OpenTelemetry spans and metrics per decision (issue 18 item 2; DESIGN.md 4).

Asserted through the SDK's in-memory span exporter and metric reader: the GenAI
``execute_tool`` span and its ``veto.*`` attributes per effect, the approval wait
child span, the metric values, that broken telemetry never changes a decision, and
that nothing is imported or recorded when no provider is configured.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from otel_helpers import Otel, assert_child_of, install, otel
from veto_core import Effect, Principal, ToolCall, Veto, telemetry
from veto_core.approvals.model import Approver

__all__ = ["otel"]  # the fixture, imported for this module's tests

POLICY = """
version: 1
name: otel-test
rules:
  - id: reads
    effect: allow
    tools: [read]
  - id: no-delete
    effect: deny
    tools: [delete]
    reason: deleting is never allowed
  - id: pay
    effect: require_approval
    tools: [pay]
    approval: {approvers: ["role:finance"], timeout: 1h}
  - id: big
    effect: deny
    tools: [transfer]
    if: {field: args.amount, greater_than: 100}
"""

BOT = Principal(agent="bot", roles=("support",), user="alice@example.com")


@pytest.fixture(autouse=True)
def _quiet_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VETO_DISABLE_PLUGINS", "1")


@pytest.fixture
def veto(tmp_path: Path) -> Iterator[Veto]:
    v = Veto.from_yaml(POLICY, env="prod", tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")
    yield v
    v.close()


def call(tool: str, args: dict[str, Any] | None = None, *, call_id: str = "call-1") -> ToolCall:
    return ToolCall(
        tool=tool, args=args or {}, principal=BOT, run_id="run-7", tool_call_id=call_id,
        framework="test",
    )  # fmt: skip


def only(spans: list[ReadableSpan]) -> ReadableSpan:
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def test_allowed_call_is_one_genai_execute_tool_span(veto: Veto, otel: Otel) -> None:
    auth = veto.authorize(call("read", {"path": "/srv/a"}))
    assert auth.run_tool
    span = only(otel.tool_spans())
    assert span.name == "execute_tool read"
    assert span.kind.name == "INTERNAL"
    a = dict(span.attributes or {})
    assert a["gen_ai.operation.name"] == "execute_tool"
    assert a["gen_ai.tool.name"] == "read"
    assert a["gen_ai.tool.type"] == "function"
    assert a["gen_ai.tool.call.id"] == "call-1"
    assert a["veto.effect"] == "allow"
    assert a["veto.outcome"] == "allowed"
    assert a["veto.run_tool"] is True
    assert a["veto.rule_ids"] == ("reads",)
    assert a["veto.deciding_rule_ids"] == ("reads",)
    assert a["veto.policy.name"] == "otel-test"
    assert a["veto.policy.revision"] == auth.decision.policy_revision
    assert a["veto.record_id"] == auth.record_id
    assert a["veto.tenant"] == "acme"
    assert a["veto.env"] == "prod"
    assert a["veto.run_id"] == "run-7"
    assert a["veto.framework"] == "test"
    assert isinstance(a["veto.latency_us"], int) and a["veto.latency_us"] >= 0
    assert "veto.approval.id" not in a
    assert span.status.status_code is StatusCode.UNSET
    # The arguments never leave through telemetry (the audit record holds them, redacted).
    assert not any("/srv/a" in str(v) for v in a.values())


def test_denied_call_span_says_why_without_being_an_error(veto: Veto, otel: Otel) -> None:
    auth = veto.authorize(call("delete"))
    assert not auth.run_tool
    a = dict(only(otel.tool_spans()).attributes or {})
    assert (a["veto.effect"], a["veto.outcome"], a["veto.run_tool"]) == ("deny", "denied", False)
    assert a["veto.deciding_rule_ids"] == ("no-delete",)
    assert only(otel.tool_spans()).status.status_code is StatusCode.UNSET


def test_fail_closed_call_is_an_error_span(tmp_path: Path, otel: Otel) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    v = Veto.from_yaml(POLICY, env="prod", tenant="acme", db=f"sqlite:///{blocker}/sub/v.db")
    try:
        auth = v.authorize(call("pay"))
    finally:
        v.close()
    assert not auth.run_tool and auth.decision.effect is Effect.DENY
    span = only(otel.tool_spans())
    a = dict(span.attributes or {})
    assert a["veto.effect"] == "deny" and a["veto.run_tool"] is False
    assert a["error.type"] == "veto.fail_closed"
    assert span.status.status_code is StatusCode.ERROR


def test_approval_span_wait_span_and_pending_gauge(veto: Veto, otel: Otel) -> None:
    first = veto.authorize(call("pay", {"amount": 5}))
    assert first.approval is not None
    a = dict(only(otel.tool_spans()).attributes or {})
    assert (a["veto.effect"], a["veto.outcome"]) == ("require_approval", "pending_approval")
    assert a["veto.approval.id"] == first.approval.id
    assert a["veto.approval.state"] == "pending"
    assert [(p.value, dict(p.attributes)) for p in otel.points("veto.approvals.pending")] == [
        (1, {"veto.tenant": "acme"})
    ]

    veto.approvals.decide(
        first.approval.id, approver=Approver(id="fin", roles=("finance",)), approve=True, via="test"
    )
    otel.exporter.clear()
    with otel.provider.get_tracer("app").start_as_current_span("agent step") as _:
        released = veto.authorize_and_wait(call("pay", {"amount": 5}), timeout=5)
    assert released.run_tool and released.released
    step = only(otel.spans("agent step"))
    tool = only(otel.tool_spans())
    wait = only(otel.spans(telemetry.WAIT_SPAN))
    assert_child_of(tool, step)
    assert_child_of(wait, tool)  # the wait is part of the call's span
    w = dict(wait.attributes or {})
    assert w["veto.approval.id"] == first.approval.id
    assert (w["veto.approval.state"], w["veto.approval.released"]) == ("approved", True)
    assert w["veto.outcome"] == "approved"
    t = dict(tool.attributes or {})
    assert (t["veto.outcome"], t["veto.run_tool"]) == ("approved", True)
    assert sum(p.value for p in otel.points("veto.approvals.pending")) == 0


def test_expired_wait_ends_with_the_final_state(veto: Veto, otel: Otel) -> None:
    auth = veto.authorize(call("pay", {"amount": 9}, call_id="c-exp"))
    final = veto.wait_for_approval(auth, timeout=0.05)
    assert not final.run_tool
    wait = only(otel.spans(telemetry.WAIT_SPAN))
    w = dict(wait.attributes or {})
    assert (w["veto.approval.state"], w["veto.outcome"]) == ("expired", "expired")
    assert w["veto.approval.timeout_s"] == 0.05
    assert wait.parent is None  # no span was current: a root of its own trace


def test_metrics_count_decisions_by_effect_and_outcome(veto: Veto, otel: Otel) -> None:
    for i in range(3):
        veto.authorize(call("read", call_id=f"r{i}"))
    veto.authorize(call("delete"))
    veto.authorize(call("transfer", {"amount": 5}, call_id="t1"))  # no rule allows it: default deny
    counts = {
        (p.attributes["veto.effect"], p.attributes["veto.outcome"], p.attributes["gen_ai.tool.name"]): p.value
        for p in otel.points("veto.decisions")
    }  # fmt: skip
    assert counts == {
        ("allow", "allowed", "read"): 3,
        ("deny", "denied", "delete"): 1,
        ("deny", "denied", "transfer"): 1,
    }
    points = otel.points("veto.decision.duration")
    assert sum(p.count for p in points) == 5
    assert all(p.min >= 0 and p.max < 5 for p in points)  # seconds
    one = next(
        p for p in otel.points("veto.decisions") if p.attributes["gen_ai.tool.name"] == "read"
    )
    assert dict(one.attributes) == {
        "veto.effect": "allow", "veto.outcome": "allowed", "gen_ai.tool.name": "read",
        "veto.tenant": "acme", "veto.env": "prod", "veto.framework": "test",
    }  # fmt: skip


def test_metrics_without_tracing_and_tracing_without_metrics(veto: Veto) -> None:
    try:
        metrics_only = install(tracing=False)
        veto.authorize(call("read"))
        assert [p.value for p in metrics_only.points("veto.decisions")] == [1]
        assert metrics_only.spans() == []
        tracing_only = install(metrics=False)
        veto.authorize(call("read", call_id="c2"))
        assert len(tracing_only.tool_spans()) == 1
        assert tracing_only.points("veto.decisions") == []
    finally:
        telemetry.configure()


class _Exploding(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        raise RuntimeError("collector down")


class _ExplodingProcessor(SimpleSpanProcessor):
    def on_start(self, span: Any, parent_context: Any = None) -> None:
        raise RuntimeError("processor on_start")

    def on_end(self, span: Any) -> None:
        raise RuntimeError("processor on_end")


class _BrokenTracerProvider(TracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no tracer today")


@pytest.mark.parametrize("breakage", ["exporter", "processor", "provider"])
def test_broken_telemetry_never_changes_a_decision(
    veto: Veto, breakage: str, caplog: pytest.LogCaptureFixture
) -> None:
    expected = {t: veto.decide(call(t)).effect for t in ("read", "delete", "pay")}
    provider: TracerProvider
    if breakage == "provider":
        provider = _BrokenTracerProvider()
    else:
        provider = TracerProvider()
        exporter = _Exploding()
        proc = (
            _ExplodingProcessor(exporter)
            if breakage == "processor"
            else SimpleSpanProcessor(exporter)
        )
        provider.add_span_processor(proc)
    telemetry.configure(tracer_provider=provider)
    try:
        for i in range(2):
            got = {
                t: veto.authorize(call(t, call_id=f"{t}-{i}")) for t in ("read", "delete", "pay")
            }
            assert {t: a.decision.effect for t, a in got.items()} == expected
            assert [got[t].run_tool for t in ("read", "delete", "pay")] == [True, False, False]
            assert all(a.record_id is not None for a in got.values())
        wait = veto.wait_for_approval(got["pay"], timeout=0.01)
        assert not wait.run_tool
    finally:
        telemetry.configure()


def test_nothing_reported_without_a_provider(veto: Veto) -> None:
    telemetry.configure()
    assert not telemetry.enabled()  # the API is imported here, but no SDK provider is set
    assert veto.authorize(call("read")).run_tool


def _run(code: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
        timeout=120, check=False, env={"VETO_DISABLE_PLUGINS": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_without_opentelemetry_loaded_nothing_imports_it(tmp_path: Path) -> None:
    result = _run(
        f"""
        import json, sys
        from veto_core import Principal, ToolCall, Veto, telemetry
        v = Veto.from_yaml({POLICY!r}, db="sqlite:///{tmp_path / "v.db"}")
        a = v.authorize(ToolCall(tool="read", principal=Principal(agent="b")))
        w = v.authorize_and_wait(ToolCall(tool="pay", principal=Principal(agent="b")), timeout=0.01)
        print(json.dumps({{"run": [a.run_tool, w.run_tool], "enabled": telemetry.enabled(),
            "otel": sorted(m for m in sys.modules if m.startswith("opentelemetry"))}}))
        """
    )
    assert result == {"run": [True, False], "enabled": False, "otel": []}


def test_global_sdk_provider_is_used_without_configure(tmp_path: Path) -> None:
    result = _run(
        f"""
        import json
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from veto_core import Principal, ToolCall, Veto, telemetry
        v = Veto.from_yaml({POLICY!r}, db="sqlite:///{tmp_path / "v.db"}")
        before = telemetry.enabled()
        v.authorize(ToolCall(tool="read", principal=Principal(agent="b")))
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        v.authorize(ToolCall(tool="delete", principal=Principal(agent="b")))
        print(json.dumps({{"before": before, "after": telemetry.enabled(),
            "spans": [s.name for s in exporter.get_finished_spans()]}}))
        """
    )
    assert result == {"before": False, "after": True, "spans": ["execute_tool delete"]}


def test_bundle_call_of_another_tenant_is_one_span_with_its_policy(
    tmp_path: Path, otel: Otel
) -> None:
    root = tmp_path / "bundle"
    (root / "tenants").mkdir(parents=True)
    (root / "base.yaml").write_text(POLICY)
    (root / "tenants" / "globex.yaml").write_text(
        "version: 1\nname: globex\nrules:\n  - {id: globex-no-read, effect: deny, tools: [read]}\n"
    )
    v = Veto.from_file(root, tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")
    try:
        auth = v.authorize(ToolCall(tool="read", principal=BOT, tenant="globex"))
    finally:
        v.close()
    assert not auth.run_tool
    a = dict(only(otel.tool_spans()).attributes or {})  # the tenant's Veto adds no second span
    assert (a["veto.tenant"], a["veto.outcome"]) == ("globex", "denied")
    assert a["veto.deciding_rule_ids"] == ("globex-no-read",)
    assert a["veto.policy.revision"] == auth.decision.policy_revision
    assert [p.value for p in otel.points("veto.decisions")] == [1]
