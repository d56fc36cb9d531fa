"""Audit benchmark: cost of one durable ``record_decision`` (commit + fsync before return).

    uv run python benchmarks/bench_audit.py [--pg postgresql://postgres@127.0.0.1:5432/test]
        [--calls 2000] [--no-pg]

For SQLite (WAL, synchronous=FULL) and PostgreSQL, with 1 and 8 threads, it reports:
- per-call latency (median, p99): wall time one caller waits in ``record_decision``,
  which includes its share of a group commit (the fsync) and waiting for the leader;
- amortized cost: elapsed wall time / records, i.e. the throughput-derived cost per
  record when 8 callers share each fsync. This is the number group commit improves;
  per-call latency can never be below one fsync.
The Decision is made once up front: this measures the audit path only.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from veto_core.audit import AuditLog, open_audit
from veto_core.model import Decision, Effect, Principal, ToolCall

DECISION = Decision(
    effect=Effect.ALLOW,
    rule_ids=("refunds-small",),
    deciding_rule_ids=("refunds-small",),
    reasons=("small refunds are fine",),
    errors=(),
    policy_name="support-agent",
    policy_revision="0" * 64,
)
CALL = ToolCall(
    tool="issue_refund",
    args={"order_id": "o-123", "amount": 42.5, "password": "hunter2"},
    principal=Principal(agent="support-bot", roles=("support",), user="u-1"),
    tenant="acme",
    run_id="run-1",
    tool_call_id="call-1",
    framework="langchain",
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Result:
    sink: str
    threads: int
    records: int
    median_us: float
    p99_us: float
    amortized_us: float


def run(log: AuditLog, threads: int, per_thread: int) -> tuple[list[float], float]:
    lat: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def work(i: int) -> None:
        mine = lat[i]
        rec = log.record_decision
        clock = time.perf_counter_ns
        barrier.wait()
        for _ in range(per_thread):
            t0 = clock()
            rec(CALL, DECISION, env="prod", redact=("args.password",), latency_us=2)
            mine.append((clock() - t0) / 1000)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    return [x for xs in lat for x in xs], elapsed


def bench(name: str, url: str, calls: int) -> list[Result]:
    out = []
    log = open_audit(url)
    try:
        run(log, 1, 200)  # warm up: keys, caches, schema
        for threads in (1, 8):
            per_thread = max(50, calls // threads) if threads == 1 else max(50, calls // 2)
            lats, elapsed = run(log, threads, per_thread)
            lats.sort()
            n = len(lats)
            out.append(
                Result(
                    sink=name,
                    threads=threads,
                    records=n,
                    median_us=statistics.median(lats),
                    p99_us=lats[min(n - 1, int(n * 0.99))],
                    amortized_us=elapsed / n * 1e6,
                )
            )
        report = log.verify()
        if not report.ok:
            raise SystemExit(f"chain broken after benchmark: {report.first_broken}")
    finally:
        log.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument(
        "--pg", default=os.environ.get("VETO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
    )
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        results += bench(
            "SQLite (WAL, synchronous=FULL)", os.path.join(tmp, "bench.db"), args.calls
        )
    if not args.no_pg:
        schema = f"veto_bench_{secrets.token_hex(4)}"
        try:
            results += bench("PostgreSQL", f"{args.pg}?schema={schema}", max(200, args.calls // 4))
        finally:
            try:
                import psycopg

                with psycopg.connect(args.pg, autocommit=True) as con:
                    con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            except Exception as exc:  # report, don't hide
                print(f"(could not drop {schema}: {exc})", file=sys.stderr)
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; durable record_decision, pre-made Decision\n"
    )
    print(
        "| sink | threads | records | per-call median µs | per-call p99 µs | amortized µs/record (wall / records) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r.sink} | {r.threads} | {r.records} | {r.median_us:,.0f} | {r.p99_us:,.0f} | {r.amortized_us:,.1f} |"
        )


if __name__ == "__main__":
    main()
