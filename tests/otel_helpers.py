"""In-memory OpenTelemetry for the telemetry tests (core and every adapter).

A fresh SDK tracer provider with an ``InMemorySpanExporter`` and a meter provider with
an ``InMemoryMetricReader`` per test, handed to ``veto_core.telemetry.configure`` (the
global providers can be set only once per process). ``parent_span`` opens the
caller's own span through the same provider, as an application or a framework would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from veto_core import telemetry


@dataclass(frozen=True, kw_only=True)
class Otel:
    provider: TracerProvider
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self, prefix: str = "") -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name.startswith(prefix)]

    def tool_spans(self) -> list[ReadableSpan]:
        return self.spans("execute_tool ")

    def points(self, metric: str) -> list[Any]:
        """The data points of one metric (empty when it was never reported)."""
        data = self.reader.get_metrics_data()
        out: list[Any] = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == metric:
                        out.extend(m.data.data_points)
        return out


def install(*, tracing: bool = True, metrics: bool = True) -> Otel:
    """Fresh in-memory providers for Veto. They are built with ``OTEL_SDK_DISABLED``
    unset: the CrewAI tests set it so that CrewAI's own telemetry stays off, and the
    SDK would hand out no-op tracers."""
    saved = os.environ.pop("OTEL_SDK_DISABLED", None)
    try:
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        reader = InMemoryMetricReader()
        meters = MeterProvider(metric_readers=[reader])
    finally:
        if saved is not None:
            os.environ["OTEL_SDK_DISABLED"] = saved
    telemetry.configure(
        tracer_provider=provider if tracing else None,
        meter_provider=meters if metrics else None,
    )
    return Otel(provider=provider, exporter=exporter, reader=reader)


@pytest.fixture
def otel() -> Iterator[Otel]:
    yield install()
    telemetry.configure()


def assert_child_of(child: ReadableSpan, parent: ReadableSpan) -> None:
    assert child.parent is not None, f"{child.name} has no parent (expected {parent.name})"
    assert child.context is not None and parent.context is not None
    assert child.context.trace_id == parent.context.trace_id
    assert child.parent.span_id == parent.context.span_id, (
        f"{child.name} is not a child of {parent.name}"
    )


def assert_calls_nested(otel: Otel, parent: str, effects: Mapping[str, str]) -> None:
    """Exactly one ``execute_tool`` span per tool-call id in ``effects`` (id -> veto.effect),
    each a child of the one finished span named ``parent``."""
    (outer,) = otel.spans(parent)
    ids = sorted(str((s.attributes or {}).get("gen_ai.tool.call.id")) for s in otel.tool_spans())
    assert ids == sorted(effects), f"one span per call expected, got {ids}"
    by_id = {(s.attributes or {}).get("gen_ai.tool.call.id"): s for s in otel.tool_spans()}
    assert {
        k: (by_id[k].attributes or {}).get("veto.effect") for k in effects if k in by_id
    } == dict(effects), {k: dict(v.attributes or {}) for k, v in by_id.items()}
    for call_id in effects:
        assert_child_of(by_id[call_id], outer)
