"""Veto decisions in an OpenTelemetry trace, offline: a LangChain agent reads a
customer, is refused an e-mail to an outside address, and waits for a refund approval
that a finance approver grants; every decision is an ``execute_tool`` span under the
application's own span, the approval wait a child of its call's span.

    uv run python examples/otel_trace.py            # the span tree
    uv run python examples/otel_trace.py --console  # plus the ConsoleSpanExporter's JSON

Needs ``veto-core[otel]``. In an application, install your tracer and meter providers
(e.g. an OTLP exporter) as usual: Veto reports to the global ones.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from langchain.agents import create_agent
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from veto_core import Principal, Veto
from veto_langchain import VetoMiddleware
from veto_langchain.testing import ScriptedChatModel, tool_call

POLICY = """
version: 1
name: support
rules:
  - {id: crm-reads, effect: allow, tools: [lookup_customer]}
  - id: refunds-large
    effect: require_approval
    tools: [issue_refund]
    if: {field: args.amount, greater_than: 100}
    approval: {approvers: [alice], timeout: 30s}
  - id: no-external-mail
    effect: deny
    tools: [send_email]
    if: {not: {field: args.to, email_domain_in: [example.com]}}
    reason: Mail may only go to company addresses
"""

SHOWN = ("veto.effect", "veto.outcome", "veto.deciding_rule_ids", "veto.approval.state")


@tool
def lookup_customer(email: str) -> str:
    """Look a customer up by email."""
    return f"customer {email}: gold tier"


@tool
def issue_refund(amount: float) -> str:
    """Refund the customer."""
    return f"refunded {amount:.2f}"


@tool
def send_email(to: str, body: str) -> str:
    """Send an email."""
    return f"sent to {to}"


def approve_when_asked(veto: Veto) -> threading.Thread:
    def run() -> None:
        for _ in range(500):
            pending = veto.approvals.list(state="pending")
            if pending:
                time.sleep(0.2)  # the approver takes a moment
                veto.approvals.decide(pending[0].id, approver="alice", approve=True, via="example")
                return
            time.sleep(0.01)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def tree(spans: list[ReadableSpan]) -> list[str]:
    """The spans as an indented tree, children in start order."""
    children: dict[int | None, list[ReadableSpan]] = {}
    ids = {s.context.span_id for s in spans if s.context}
    for s in sorted(spans, key=lambda s: s.start_time or 0):
        parent = s.parent.span_id if s.parent and s.parent.span_id in ids else None
        children.setdefault(parent, []).append(s)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for s in children.get(parent, []):
            ms = ((s.end_time or 0) - (s.start_time or 0)) / 1e6
            attrs = s.attributes or {}
            shown = "  ".join(
                f"{k.removeprefix('veto.')}={list(v) if isinstance(v, tuple) else v}"
                for k in SHOWN
                if (v := attrs.get(k)) not in (None, ())
            )
            lines.append(f"{'  ' * depth}{s.name}  ({ms:.1f} ms)  {shown}".rstrip())
            walk(s.context.span_id if s.context else None, depth + 1)

    walk(None, 0)
    return lines


def main() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    if "--console" in sys.argv:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

    home = Path(tempfile.mkdtemp(prefix="veto-otel-"))
    veto = Veto.from_yaml(POLICY, env="prod", tenant="acme", db=f"sqlite:///{home / 'veto.db'}")
    model = ScriptedChatModel(
        responses=[
            AIMessage(
                content="",
                tool_calls=[
                    tool_call("lookup_customer", {"email": "ann@example.com"}, "call_1"),
                    tool_call("send_email", {"to": "x@evil.test", "body": "hi"}, "call_2"),
                    tool_call("issue_refund", {"amount": 250}, "call_3"),
                ],
            ),
            AIMessage(content="done"),
        ]
    )
    agent = create_agent(
        model,
        [lookup_customer, issue_refund, send_email],
        middleware=[VetoMiddleware(veto, principal=Principal(agent="support-bot", user="u1"))],
    )
    approver = approve_when_asked(veto)
    with trace.get_tracer("support-app").start_as_current_span("handle ticket #4711"):
        agent.invoke({"messages": [("user", "refund ann")]})
    approver.join(5)
    veto.close()

    print("\n".join(tree(memory.get_finished_spans())))
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == "veto.decisions":
                    for p in m.data.data_points:
                        a = p.attributes or {}
                        print(
                            f"veto.decisions{{{a['gen_ai.tool.name']}, {a['veto.outcome']}}} = {p.value}"
                        )
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
