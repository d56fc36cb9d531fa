"""Telemetry benchmark: what OpenTelemetry support costs per ``Veto.authorize`` call.

    uv run python benchmarks/bench_telemetry.py [--calls 3000] [--loops 1000000]

Measured in one process, in this order (each pair interleaved, medians of rounds):
1. OpenTelemetry not imported (the default): the ``trace_authorize`` decorator around a
   no-op, against the bare no-op (ns per call); checks nothing imported opentelemetry;
2. the same with ``opentelemetry`` imported but no SDK provider installed;
3. ``Veto.authorize`` on a SQLite audit trail (fsync per commit) decorated against
   undecorated (``Veto.authorize.__wrapped__``), telemetry off (µs per call);
4. the same with an SDK tracer provider (in-memory exporter, simple processor) and a
   meter provider: the span and metrics cost per decision;
5. that span and metrics cost alone, around a no-op standing in for authorize.
Prints the load average before and after: the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

from veto_core import Principal, ToolCall, Veto, telemetry

POLICY = """
version: 1
name: bench-telemetry
rules:
  - {id: reads, effect: allow, tools: [read_file]}
"""


def per_call_ns(fn: Callable[[], Any], n: int) -> float:
    t0 = perf_counter_ns()
    for _ in range(n):
        fn()
    return (perf_counter_ns() - t0) / n


def interleaved(
    a: Callable[[], Any], b: Callable[[], Any], n: int, rounds: int
) -> tuple[float, float]:
    xs, ys = [], []
    for _ in range(rounds):
        xs.append(per_call_ns(a, n))
        ys.append(per_call_ns(b, n))
    return statistics.median(xs), statistics.median(ys)


def decorator_cost(loops: int) -> tuple[float, float]:
    def bare(self: Any, call: Any) -> None:
        return None

    traced = telemetry.trace_authorize(bare)
    return interleaved(lambda: bare(None, None), lambda: traced(None, None), loops, 7)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--loops", type=int, default=1_000_000)
    opts = ap.parse_args()
    print(f"load average before: {os.getloadavg()}")

    bare, traced = decorator_cost(opts.loops)
    assert not any(m.startswith("opentelemetry") for m in sys.modules), "opentelemetry imported"
    print(
        f"1. decorator, opentelemetry not imported: bare {bare:.0f} ns, decorated {traced:.0f} ns, "
        f"overhead {traced - bare:.0f} ns/call"
    )

    import opentelemetry.trace  # noqa: F401  (imported, no provider installed)

    bare, traced = decorator_cost(opts.loops // 4)
    print(
        f"2. decorator, opentelemetry imported, no provider: overhead {traced - bare:.0f} ns/call"
    )

    with tempfile.TemporaryDirectory() as tmp:
        veto = Veto.from_yaml(POLICY, tenant="acme", db=f"sqlite:///{tmp}/v.db")
        call = ToolCall(tool="read_file", args={"path": "/a"}, principal=Principal(agent="b"))
        undecorated = Veto.authorize.__wrapped__  # type: ignore[attr-defined]
        veto.authorize(call)
        n, rounds = max(opts.calls // 5, 1), 5
        plain, dec = interleaved(
            lambda: undecorated(veto, call), lambda: veto.authorize(call), n, rounds
        )
        print(
            f"3. authorize, telemetry off: undecorated {plain / 1000:.1f} µs, decorated "
            f"{dec / 1000:.1f} µs, difference {(dec - plain) / 1000:+.1f} µs/call"
        )

        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        tp = TracerProvider()
        tp.add_span_processor(SimpleSpanProcessor(exporter))
        telemetry.configure(
            tracer_provider=tp,
            meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
        )

        def traced_call() -> None:
            veto.authorize(call)
            exporter.clear()

        plain, dec = interleaved(lambda: undecorated(veto, call), traced_call, n, rounds)
        print(
            f"4. authorize, spans + metrics on: undecorated {plain / 1000:.1f} µs, traced "
            f"{dec / 1000:.1f} µs, telemetry cost {(dec - plain) / 1000:+.1f} µs/call"
        )
        fixed = undecorated(veto, call)
        traced_fixed = telemetry.trace_authorize(lambda self, c: fixed)

        def telemetry_only() -> None:
            traced_fixed(veto, call)
            exporter.clear()

        bare_ns, tel_ns = interleaved(lambda: fixed, telemetry_only, max(opts.loops // 100, 1), 7)
        print(
            f"5. spans + metrics around a no-op authorize (telemetry alone): "
            f"{(tel_ns - bare_ns) / 1000:.1f} µs/call"
        )
        telemetry.configure()
        veto.close()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
