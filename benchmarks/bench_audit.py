"""Audit benchmark: cost of one durable ``record_decision`` (commit before return).

    uv run python benchmarks/bench_audit.py [--calls 2000] [--no-pg] [--durability fsync|os]
        [--pg postgresql://postgres@127.0.0.1:5432/test]

For SQLite (WAL; ``synchronous=FULL`` with the default ``--durability fsync``) and
PostgreSQL it reports, in one run:
- 1 caller: per-call latency (median, p99), beside the floor it cannot go under,
  measured interleaved with it: one ``fsync`` of a 4 KiB overwrite in the same
  directory, and one bare SQLite commit of one row (WAL, same ``synchronous``);
- 8 threads and 32 asyncio tasks (``arecord_decision``) recording at once: per-call
  latency and the amortized cost, elapsed wall time / records (what batching by the
  store's writer improves: every caller still waits for the commit holding its record);
- the CPU the process spent per record at 8 threads (all threads, incl. the writer);
- the load average before and after (the machine is shared).
The Decision is made once up front: this measures the audit path only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from veto_core.audit import AuditLog, open_audit
from veto_core.config import AuditConfig
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
REDACT = ("args.password",)


@dataclass(frozen=True, kw_only=True, slots=True)
class Result:
    sink: str
    callers: str
    records: int
    median_us: float
    p99_us: float
    amortized_us: float
    cpu_us: float | None = None


def run_threads(log: AuditLog, threads: int, per_thread: int) -> tuple[list[float], float, float]:
    lat: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def work(i: int) -> None:
        mine = lat[i]
        rec = log.record_decision
        clock = time.perf_counter_ns
        barrier.wait()
        for _ in range(per_thread):
            t0 = clock()
            rec(CALL, DECISION, env="prod", redact=REDACT, latency_us=2)
            mine.append((clock() - t0) / 1000)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    c0 = time.process_time()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return [x for xs in lat for x in xs], elapsed, cpu


def run_tasks(log: AuditLog, tasks: int, per_task: int) -> tuple[list[float], float, float]:
    async def main() -> tuple[list[float], float, float]:
        lat: list[float] = []
        clock = time.perf_counter_ns

        async def work() -> None:
            rec = log.arecord_decision
            for _ in range(per_task):
                t0 = clock()
                await rec(CALL, DECISION, env="prod", redact=REDACT, latency_us=2)
                lat.append((clock() - t0) / 1000)

        c0 = time.process_time()
        t0 = time.perf_counter()
        await asyncio.gather(*(work() for _ in range(tasks)))
        return lat, time.perf_counter() - t0, time.process_time() - c0

    return asyncio.run(main())


def store_commit_floor(floor: AuditLog, rounds: int) -> list[float]:
    """``rounds`` samples of the store's own commit of one ready-made record (the SQL
    and the fsync the record costs, without building it and without the writer)."""
    fields = floor._decision_fields(CALL, DECISION, "prod", None, REDACT, 2, None, None, None)
    out: list[float] = []
    for _ in range(rounds):
        pending = floor._pending(*fields)
        t0 = time.perf_counter_ns()
        floor.sink.append([pending])
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out


def build_cpu(log: AuditLog, n: int = 5000) -> tuple[float, float]:
    """CPU µs per record (best of 5 rounds) to build it on the caller's thread and to
    seal it (chain hash, row) in the commit: the per-record work, without any I/O."""
    fields = log._decision_fields(CALL, DECISION, "prod", None, REDACT, 2, None, None, None)
    build = seal = float("inf")
    for _ in range(5):
        c0 = time.process_time()
        ps = [log._pending(*fields) for _ in range(n)]
        c1 = time.process_time()
        for p in ps:
            p.seal(1, "0" * 64)
        c2 = time.process_time()
        build = min(build, (c1 - c0) / n * 1e6)
        seal = min(seal, (c2 - c1) / n * 1e6)
    return build, seal


def fsync_floor(directory: str, durability: str, rounds: int) -> tuple[list[float], list[float]]:
    """``rounds`` samples of one fsync (4 KiB overwrite) and of one bare SQLite commit."""
    path = os.path.join(directory, f"floor-{secrets.token_hex(4)}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.pwrite(fd, b"\0" * 65536, 0)
    os.fsync(fd)
    con = sqlite3.connect(path + ".db", isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={'NORMAL' if durability == 'os' else 'FULL'}")
    con.execute("CREATE TABLE t (a TEXT)")
    for _ in range(1500):  # past the first WAL checkpoint: the WAL is then reused
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO t VALUES (?)", ("x" * 600,))
        con.execute("COMMIT")
    fs: list[float] = []
    commits: list[float] = []
    for i in range(rounds):
        os.pwrite(fd, b"x" * 4096, (i % 16) * 4096)
        t0 = time.perf_counter_ns()
        os.fsync(fd)
        fs.append((time.perf_counter_ns() - t0) / 1000)
        t0 = time.perf_counter_ns()
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO t VALUES (?)", ("x" * 600,))
        con.execute("COMMIT")
        commits.append((time.perf_counter_ns() - t0) / 1000)
    con.close()
    os.close(fd)
    return fs, commits


def _result(
    sink: str, callers: str, lats: list[float], elapsed: float, cpu: float | None
) -> Result:
    lats.sort()
    n = len(lats)
    return Result(
        sink=sink,
        callers=callers,
        records=n,
        median_us=statistics.median(lats),
        p99_us=lats[min(n - 1, int(n * 0.99))],
        amortized_us=elapsed / n * 1e6,
        cpu_us=None if cpu is None else cpu / n * 1e6,
    )


def bench(
    name: str, url: str, calls: int, durability: str, floor_dir: str | None
) -> tuple[list[Result], list[str]]:
    out: list[Result] = []
    notes: list[str] = []
    log = open_audit(url, config=AuditConfig(durability=durability))
    try:
        run_threads(log, 1, 1500 if floor_dir else 200)  # warm up: keys, caches, a reused WAL
        if floor_dir:
            build, seal = build_cpu(log)
            notes.append(
                f"Per-record CPU without I/O (best of 5 x 5,000): build {build:.1f} µs "
                f"(caller's thread) + seal {seal:.1f} µs (in the commit) = {build + seal:.1f} µs"
            )
        floor = None
        if floor_dir:
            floor = open_audit(
                os.path.join(floor_dir, "floor.db"), config=AuditConfig(durability=durability)
            )
            store_commit_floor(floor, 1500)
        # 1 caller, interleaved in blocks with the floors so all see the same disk.
        single: list[float] = []
        fs: list[float] = []
        commits: list[float] = []
        store: list[float] = []
        t_single = 0.0
        for _ in range(5):
            lats, elapsed, _ = run_threads(log, 1, max(20, calls // 5))
            single += lats
            t_single += elapsed
            if floor_dir and floor is not None:
                f, c = fsync_floor(floor_dir, durability, 40)
                fs += f
                commits += c
                store += store_commit_floor(floor, 40)
        if floor is not None:
            floor.close()
        out.append(_result(name, "1 thread", single, t_single, None))
        if fs:
            notes.append(
                f"{name}: one fsync (4 KiB overwrite) p50 {statistics.median(fs):,.0f} µs; "
                f"one bare SQLite commit p50 {statistics.median(commits):,.0f} µs "
                f"(same run, interleaved with the 1-caller samples); 1-caller p50 "
                f"{statistics.median(single):,.0f} µs = fsync + "
                f"{statistics.median(single) - statistics.median(fs):,.0f} µs, "
                f"bare commit + {statistics.median(single) - statistics.median(commits):,.0f} µs; "
                f"the store's commit of one ready-made record (its SQL and fsync, no writer) "
                f"p50 {statistics.median(store):,.0f} µs, 1-caller p50 = that + "
                f"{statistics.median(single) - statistics.median(store):,.0f} µs"
            )
        lats, elapsed, cpu = run_threads(log, 8, max(50, calls // 2))
        out.append(_result(name, "8 threads", lats, elapsed, cpu))
        lats, elapsed, cpu = run_tasks(log, 32, max(20, calls // 8))
        out.append(_result(name, "32 asyncio tasks", lats, elapsed, cpu))
        report = log.verify()
        if not report.ok:
            raise SystemExit(f"chain broken after benchmark: {report.first_broken}")
    finally:
        log.close()
    return out, notes


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument(
        "--pg", default=os.environ.get("VETO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
    )
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--durability", choices=("fsync", "os"), default="fsync")
    args = ap.parse_args()
    load0 = os.getloadavg()
    results: list[Result] = []
    notes: list[str] = []
    sync = "NORMAL" if args.durability == "os" else "FULL"
    # The store lives next to this project (the disk the CI and the users' runs use).
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(__file__))) as tmp:
        r, n = bench(
            f"SQLite (WAL, synchronous={sync})",
            os.path.join(tmp, "bench.db"),
            args.calls,
            args.durability,
            tmp,
        )
        results += r
        notes += n
    if not args.no_pg:
        schema = f"veto_bench_{secrets.token_hex(4)}"
        try:
            r, n = bench(
                f"PostgreSQL (synchronous_commit={'off' if args.durability == 'os' else 'on'})",
                f"{args.pg}?schema={schema}",
                max(200, args.calls // 2),
                args.durability,
                None,
            )
            results += r
        finally:
            try:
                import psycopg

                with psycopg.connect(args.pg, autocommit=True) as con:
                    con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            except Exception as exc:  # report, don't hide
                print(f"(could not drop {schema}: {exc})", file=sys.stderr)
    load1 = os.getloadavg()
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, durability={args.durability}; "
        f"load average before {load0[0]:.2f} / after {load1[0]:.2f} (1 min)\n"
    )
    print(
        "| sink | callers | records | per-call median µs | per-call p99 µs "
        "| amortized µs/record (wall / records) | CPU µs/record |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for x in results:
        cpu = "" if x.cpu_us is None else f"{x.cpu_us:,.1f}"
        print(
            f"| {x.sink} | {x.callers} | {x.records} | {x.median_us:,.0f} | {x.p99_us:,.0f} "
            f"| {x.amortized_us:,.1f} | {cpu} |"
        )
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
