"""Soak: many processes deciding and recording while the dashboard is read.

    uv run python benchmarks/soak.py [--store sqlite|postgresql|both] [--processes 4]
        [--threads 8] [--seconds 60] [--pg postgresql://postgres@127.0.0.1:5432/test] [--json]

For each store: ``--processes`` worker processes, each with ``--threads`` threads,
call ``Veto.authorize`` (decide + durable audit record) in a loop for ``--seconds``,
while ``veto serve`` (started on 127.0.0.1, loopback only) is read in a loop through
its JSON API (``/api/audit``, ``/api/approvals``) with an API token. Reported:
throughput, p50/p99 latency of ``authorize``, resident memory of every worker after
warm-up and at the end (it should stay flat), records in the store vs. authorize
calls made (zero lost), ``verify`` of the chain, and dashboard reads/errors.

Everything is bounded: fixed duration, fixed worker count, one local server that is
stopped at the end. Exit code 0 only if nothing was lost, the chain verifies, every
worker and dashboard read succeeded and memory stayed within ``--max-rss-growth-mb``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

POLICY = """
version: 1
name: soak
rules:
  - {id: reads, effect: allow, tools: [read_file, search]}
  - {id: no-deletes, effect: deny, tools: [delete_file], reason: "deletes are not allowed"}
  - {id: small-refunds, effect: allow, tools: [issue_refund],
     if: {field: args.amount, less_or_equal: 100}}
"""
TOOLS = (
    ("read_file", {"path": "/srv/data/report.csv"}),
    ("search", {"query": "quarterly numbers"}),
    ("delete_file", {"path": "/srv/data/report.csv"}),
    ("issue_refund", {"order_id": "o-1", "amount": 42.5}),
)

# Latency histogram: log buckets (2% wide) from 1 µs, fixed size so memory stays flat.
_RATIO = 1.02
_BUCKETS = 1200


def _bucket(us: float) -> int:
    return min(_BUCKETS - 1, max(0, int(math.log(max(us, 1.0)) / math.log(_RATIO))))


def _percentile(hist: list[int], q: float) -> float:
    total = sum(hist)
    if total == 0:
        return 0.0
    rank = q * total
    seen = 0
    for i, n in enumerate(hist):
        seen += n
        if seen >= rank:
            return float(_RATIO ** (i + 1))
    return float(_RATIO**_BUCKETS)


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------- worker


def worker(policy: str, db: str, threads: int, seconds: float, name: str, warmup: float) -> None:
    """One process: ``threads`` callers for ``seconds``; prints one JSON line."""
    from veto_core import Principal, ToolCall, Veto

    veto = Veto.from_file(policy, env="prod", tenant="acme", db=db)
    # Open the stores before the clock starts (counted like every other call).
    first = veto.authorize(
        ToolCall(tool=TOOLS[0][0], args=TOOLS[0][1], principal=Principal(agent="soak-bot"),
                 run_id=f"{name}-warmup", tool_call_id=f"{name}-warmup")
    )  # fmt: skip
    hists = [[0] * _BUCKETS for _ in range(threads)]
    counts = [0] * threads
    recorded = [0] * threads
    errors: list[str] = []
    start = threading.Barrier(threads + 1)
    state: dict[str, float] = {}

    def run(t: int) -> None:
        principal = Principal(agent="soak-bot", roles=("support",), user=f"user-{t}")
        hist = hists[t]
        n = 0
        start.wait()
        end = state["end"]
        while True:
            t0 = time.perf_counter_ns()
            if t0 / 1e9 >= end:
                break
            tool, args = TOOLS[n % len(TOOLS)]
            try:
                auth = veto.authorize(
                    ToolCall(
                        tool=tool,
                        args=args,
                        principal=principal,
                        run_id=f"{name}-t{t}",
                        tool_call_id=f"{name}-t{t}-{n}",
                    )
                )
            except Exception as exc:  # the soak reports, it does not stop
                errors.append(repr(exc))
                n += 1
                continue
            hist[_bucket((time.perf_counter_ns() - t0) / 1000)] += 1
            counts[t] += 1
            if auth.record_id is not None:
                recorded[t] += 1
            n += 1

    pool = [threading.Thread(target=run, args=(t,), daemon=True) for t in range(threads)]
    for th in pool:
        th.start()
    state["end"] = time.perf_counter_ns() / 1e9 + seconds
    start.wait()
    time.sleep(min(warmup, seconds / 2))
    rss_start = _rss_mb()
    for th in pool:
        th.join()
    rss_end = _rss_mb()
    veto.close()
    merged = [sum(col) for col in zip(*hists, strict=True)]
    print(
        json.dumps(
            {
                "name": name,
                "calls": sum(counts) + 1,
                "recorded": sum(recorded) + (first.record_id is not None),
                "errors": errors[:5],
                "error_count": len(errors),
                "hist": merged,
                "rss_start_mb": rss_start,
                "rss_end_mb": rss_end,
            }
        ),
        flush=True,
    )


# --------------------------------------------------------------------------- dashboard


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dashboard:
    """``veto serve`` on 127.0.0.1 and a thread reading its API until stopped."""

    def __init__(self, db: str, env: dict[str, str]) -> None:
        from veto_core.server.store import ServerStore

        store = ServerStore(db)
        try:
            store.add_user("soak", secrets.token_urlsafe(16), tenant="acme", role="viewer")
            _tok, self.token = store.create_token("soak", "soak")
        finally:
            store.close()
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from veto_core.cli import main; main()", "serve",
             "--host", "127.0.0.1", "--port", str(self.port), "--db", db, "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.reads = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        deadline = time.monotonic() + 60
        while True:
            try:
                self._get("/healthz")
                break
            except OSError as exc:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"veto serve did not start: {exc}") from exc
                time.sleep(0.2)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _get(self, path: str) -> Any:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            headers={"Authorization": f"Bearer {self.token}"} if path != "/healthz" else {},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def _loop(self) -> None:
        paths = ("/api/audit?tenant=acme&limit=50", "/api/approvals?tenant=acme",
                 "/api/audit?tenant=acme&outcome=denied&limit=20")  # fmt: skip
        i = 0
        while not self._stop.is_set():
            try:
                self._get(paths[i % len(paths)])
                self.reads += 1
            except Exception as exc:
                self.errors.append(repr(exc))
                self._stop.wait(0.2)
            i += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------- one store


def soak(
    store: str, *, processes: int, threads: int, seconds: float, pg: str, work: Path
) -> dict[str, Any]:
    from veto_core.audit import open_audit

    policy = work / "policy.yaml"
    policy.write_text(POLICY)
    schema = None
    if store == "sqlite":
        db = f"sqlite:///{work / 'veto.db'}"
    else:
        schema = f"veto_soak_{secrets.token_hex(4)}"
        db = f"{pg}?schema={schema}"
    env = dict(os.environ)
    env["VETO_AUDIT_SIGNING_KEY"] = str(work / "audit-signing.key")  # never ~/.veto
    env.pop("VETO_AUDIT_WITNESS", None)
    os.environ["VETO_AUDIT_SIGNING_KEY"] = env["VETO_AUDIT_SIGNING_KEY"]
    open_audit(db).close()  # create the schema once, before everyone races to
    dash = Dashboard(db, env)
    try:
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    str(policy),
                    db,
                    str(threads),
                    str(seconds),
                    f"p{i}",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(processes)
        ]
        t0 = time.monotonic()
        outs = [p.communicate(timeout=seconds + 300) for p in procs]
        wall = time.monotonic() - t0
    finally:
        dash.stop()
    results = []
    failures = []
    for p, (out, err) in zip(procs, outs, strict=True):
        if p.returncode != 0 or not out.strip():
            failures.append(f"worker exited {p.returncode}: {err[-2000:]}")
            continue
        results.append(json.loads(out.strip().splitlines()[-1]))
    hist = [sum(col) for col in zip(*(r["hist"] for r in results), strict=True)] if results else []
    calls = sum(r["calls"] for r in results)
    with open_audit(db, create=False) as log:
        stored = sum(1 for r in log.iter_records(tenant="acme") if r.tool in dict(TOOLS))
        report = log.verify()
    if schema is not None:
        import psycopg

        with psycopg.connect(pg, autocommit=True) as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return {
        "store": store,
        "processes": processes,
        "threads": threads,
        "seconds": seconds,
        "calls": calls,
        "records": stored,
        "lost": calls - stored,
        "worker_errors": sum(r["error_count"] for r in results),
        "worker_failures": failures,
        "throughput_per_s": calls / seconds if seconds else 0.0,
        "p50_us": _percentile(hist, 0.50),
        "p99_us": _percentile(hist, 0.99),
        "rss_mb": [(round(r["rss_start_mb"], 1), round(r["rss_end_mb"], 1)) for r in results],
        "rss_growth_mb": max((r["rss_end_mb"] - r["rss_start_mb"] for r in results), default=0.0),
        "verify_ok": report.ok,
        "dashboard_reads": dash.reads,
        "dashboard_errors": dash.errors[:5],
        "wall_s": wall,
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        policy, db, threads, seconds, name = sys.argv[2:7]
        worker(policy, db, int(threads), float(seconds), name, warmup=float(seconds) * 0.2)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--max-rss-growth-mb", type=float, default=20.0)
    ap.add_argument("--json", action="store_true", help="One JSON object per store.")
    args = ap.parse_args()
    if not 0 < args.seconds <= 600 or not 0 < args.processes <= 16 or not 0 < args.threads <= 64:
        ap.error("bounded runs only: seconds <= 600, processes <= 16, threads <= 64")
    stores = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    ok = True
    for store in stores:
        with tempfile.TemporaryDirectory(prefix="veto-soak-") as tmp:
            r = soak(store, processes=args.processes, threads=args.threads,
                     seconds=args.seconds, pg=args.pg, work=Path(tmp))  # fmt: skip
        good = (
            r["lost"] == 0
            and r["calls"] > 0
            and r["verify_ok"]
            and not r["worker_failures"]
            and r["worker_errors"] == 0
            and not r["dashboard_errors"]
            and r["dashboard_reads"] > 0
            and r["rss_growth_mb"] <= args.max_rss_growth_mb
        )
        ok = ok and good
        if args.json:
            print(json.dumps(r | {"ok": good}), flush=True)
        else:
            print(
                f"{store:10} {r['processes']}x{r['threads']} for {r['seconds']:.0f}s: "
                f"{r['calls']} calls, {r['throughput_per_s']:.0f}/s, p50 {r['p50_us']:.0f} µs, "
                f"p99 {r['p99_us']:.0f} µs; records {r['records']} (lost {r['lost']}); "
                f"verify {'OK' if r['verify_ok'] else 'BROKEN'}; RSS start/end MB {r['rss_mb']} "
                f"(max growth {r['rss_growth_mb']:.1f}); dashboard reads {r['dashboard_reads']} "
                f"errors {len(r['dashboard_errors'])}; {'OK' if good else 'FAILED'}",
                flush=True,
            )
            for f in r["worker_failures"] + r["dashboard_errors"]:
                print(f"  {f}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
