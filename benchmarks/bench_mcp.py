"""MCP proxy benchmark: the latency ``veto mcp proxy`` adds to one ``tools/call``.

    uv run python benchmarks/bench_mcp.py [--calls 300] [--warmup 30] [--rounds 1]
        [--durability fsync|os] [--sdk-transport]

A real MCP client session (official SDK, stdio) calls a trivial tool of a real MCP
server, first directly, then through ``veto mcp proxy`` (stdio in, stdio out, the
audit trail in SQLite WAL with ``synchronous=FULL``). Calls are sequential; each is
timed from ``call_tool`` to its result. Separately, ``Veto.authorize`` (decision +
durable audit record, the same policy and store kind) is timed in-process, so the
report can say what the proxy adds *beyond* the durable record:

    added p50            = proxied p50 - direct p50
    beyond the record    = added p50 - authorize p50

``McpGate.check`` (the proxy's whole decision: schema check + ``authorize``, on the
loop's thread as in the stdio proxy) is timed in-process too. ``--durability os``
runs the proxy and the in-process timings with ``VETO_AUDIT_DURABILITY=os`` (the
record's commit without fsync), which shows the proxy's own work with the record's
share made small. ``--sdk-transport`` also times the proxy on the SDK's stdio
transports (``VETO_MCP_STDIO_TRANSPORT=sdk``: the reference relay of SDK models).
``--rounds N`` alternates the paths N times (pooled samples) so that a change in
the machine's load hits all of them alike.

The upstream is this file run with ``--serve`` (the SDK's FastMCP/MCPServer).

``--peers`` picks the client and server at both ends (the same for the direct and
the proxied path): ``sdk`` (the official SDK's ``ClientSession`` and server, as
above), ``raw`` (a JSON-RPC line client here and a line server, this file run with
``--serve-raw``, each a few µs of CPU per call) or ``both`` (the default). The SDK
peers burn ~2 ms of CPU each per call, so on a 2-core machine three processes in
the chain wait for a core and the proxy's share is inflated by that contention; the
raw peers leave the cores to the proxy and show what it adds by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp.client.stdio import stdio_client

from mcp import ClientSession, StdioServerParameters
from veto_core import Principal, ToolCall, Veto

POLICY = """
version: 1
name: bench-mcp
default: deny
rules:
  - id: ping-ok
    effect: allow
    tools: [mcp__bench__ping]
    if: {field: args.text, length_less_than: 100}
    reason: ping is harmless
  - id: no-delete
    effect: deny
    tools: [mcp__bench__delete]
"""

VETO = str(Path(sys.executable).parent / "veto")


def serve() -> None:
    try:
        from mcp.server.mcpserver import MCPServer as App
    except ImportError:
        from mcp.server.fastmcp import FastMCP as App  # type: ignore[no-redef]
    app = App("bench", log_level="WARNING")

    @app.tool()
    def ping(text: str) -> str:
        """Answer at once."""
        return text

    app.run()


def serve_raw() -> None:
    """A minimal MCP server over stdio lines: ``initialize``, ``tools/list`` (one
    tool, ``ping``), ``tools/call`` and ``ping``; notifications are read and ignored."""
    tool = {"name": "ping", "description": "Answer at once.",
            "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}},
                            "required": ["text"]}}  # fmt: skip
    out = sys.stdout
    for line in sys.stdin:
        msg = json.loads(line)
        if "id" not in msg or "method" not in msg:
            continue
        method, params = msg["method"], msg.get("params") or {}
        result: dict[str, object] = {}
        if method == "initialize":
            result = {"protocolVersion": params.get("protocolVersion"),
                      "capabilities": {"tools": {}}, "serverInfo": {"name": "bench", "version": "1"}}  # fmt: skip
        elif method == "tools/list":
            result = {"tools": [tool]}
        elif method == "tools/call":
            text = str((params.get("arguments") or {}).get("text"))
            result = {"content": [{"type": "text", "text": text}], "isError": False}
        out.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}) + "\n")
        out.flush()


def raw_timed_calls(command: list[str], calls: int, warmup: int, label: str) -> list[float]:
    """Sequential ``tools/call`` over the stdio pipes of ``command``, by a JSON-RPC
    line client (the ``raw`` peers): each timed from writing the request to reading
    its answer."""
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    send, recv = proc.stdin, proc.stdout

    def rpc(rid: int, method: str, params: dict[str, object]) -> dict[str, object]:
        body = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
        send.write(json.dumps(body).encode() + b"\n")
        send.flush()
        answer: dict[str, object] = json.loads(recv.readline())
        return answer

    out: list[float] = []
    try:
        rpc(0, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                              "clientInfo": {"name": "bench", "version": "1"}})  # fmt: skip
        send.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        send.flush()
        rpc(1, "tools/list", {})
        meter = _CpuMeter()
        for i in range(warmup + calls):
            if i == warmup:
                meter.start()
            t0 = time.perf_counter()
            answer = rpc(2 + i, "tools/call", {"name": "ping", "arguments": {"text": f"hello {i}"}})
            elapsed = time.perf_counter() - t0
            result = answer.get("result")
            if not isinstance(result, dict) or result.get("isError"):
                raise SystemExit(f"call failed: {answer}")
            if i >= warmup:
                out.append(elapsed)
        meter.stop(label, calls)
    finally:
        send.close()
        proc.wait(timeout=30)
    return out


def _children_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of this process's children, by pid (Linux /proc)."""
    out: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():  # ppid
            USER[int(entry.name)] = int(fields[11]) / tick
            out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


CPU: dict[str, float] = {}  # label -> CPU seconds per call of the spawned process
USER: dict[int, float] = {}  # pid -> user-mode CPU seconds (of the last reading)
USER_CPU: dict[str, float] = {}  # label -> user-mode CPU seconds per call


class _CpuMeter:
    """CPU of this process's children between `start` and `stop`, per call."""

    def __init__(self) -> None:
        self.before: dict[int, float] = {}
        self.user: dict[int, float] = {}

    def start(self) -> None:
        self.before = _children_cpu()
        self.user = dict(USER)

    def stop(self, label: str, calls: int) -> None:
        after = _children_cpu()
        CPU[label] = sum(after[p] - self.before[p] for p in after if p in self.before) / calls
        USER_CPU[label] = sum(USER[p] - self.user[p] for p in USER if p in self.user) / calls


async def timed_calls(
    params: StdioServerParameters, calls: int, warmup: int, label: str = ""
) -> list[float]:
    out: list[float] = []
    with open(os.devnull, "w") as devnull:
        async with (
            stdio_client(params, errlog=devnull) as streams,
            ClientSession(streams[0], streams[1]) as session,
        ):
            await session.initialize()
            await session.list_tools()
            meter = _CpuMeter()
            for i in range(warmup + calls):
                if i == warmup:
                    meter.start()
                t0 = time.perf_counter()
                result = await session.call_tool("ping", {"text": f"hello {i}"})
                elapsed = time.perf_counter() - t0
                if result.model_dump(by_alias=True).get("isError"):
                    raise SystemExit(f"call failed: {result}")
                if i >= warmup:
                    out.append(elapsed)
            meter.stop(label, calls)
    return out


def authorize_times(db: str, calls: int, warmup: int) -> list[float]:
    veto = Veto.from_yaml(POLICY, db=db, tenant="acme")
    out = []
    try:
        for i in range(warmup + calls):
            call = ToolCall(
                tool="mcp__bench__ping", args={"text": f"hello {i}"},
                principal=Principal(agent="bench", user="u"), run_id="r", tool_call_id=f"c{i}",
                framework="mcp",
            )  # fmt: skip
            t0 = time.perf_counter()
            veto.authorize(call)
            if i >= warmup:
                out.append(time.perf_counter() - t0)
    finally:
        veto.close()
    return out


def gate_times(db: str, calls: int, warmup: int) -> list[float]:
    """The proxy's own decision path in-process: ``McpGate.check`` (schema check, then
    ``Veto.authorize`` on the loop's thread, as the stdio proxy runs it), without any
    MCP transport."""
    from veto_core.mcp.gate import Caller, McpGate, ToolCatalog

    veto = Veto.from_yaml(POLICY, db=db, tenant="acme")
    gate = McpGate(veto, "bench", single_client=True)  # as `veto mcp proxy` over stdio
    schema = {"properties": {"text": {"type": "string"}}, "required": ["text"], "type": "object"}
    catalog = ToolCatalog.build("bench", [{"name": "ping", "inputSchema": schema}])
    caller = Caller(principal=Principal(agent="bench", user="u"))

    async def run() -> list[float]:
        out = []
        for i in range(warmup + calls):
            t0 = time.perf_counter()
            verdict = await gate.check(catalog, "ping", {"text": f"hello {i}"}, caller)
            if i >= warmup:
                out.append(time.perf_counter() - t0)
            assert verdict.run, verdict.reason
        return out

    try:
        return anyio.run(run)
    finally:
        veto.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=1, help="alternate the paths N times")
    parser.add_argument("--durability", choices=("fsync", "os"), default="fsync")
    parser.add_argument("--peers", choices=("sdk", "raw", "both"), default="both",
                        help="the MCP client and server at both ends (see the module doc)")  # fmt: skip
    parser.add_argument("--sdk-transport", action="store_true",
                        help="also time the proxy on the SDK's stdio transports")  # fmt: skip
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-raw", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    if args.serve_raw:
        serve_raw()
        return
    os.environ["VETO_AUDIT_DURABILITY"] = args.durability  # the proxy and in-process timings
    load0 = os.getloadavg()
    env = dict(os.environ)
    here = [sys.executable, os.path.abspath(__file__)]
    peers = ("sdk", "raw") if args.peers == "both" else (args.peers,)
    variants: list[tuple[str, dict[str, str]]] = [("proxy", {})]
    if args.sdk_transport:
        variants.append(("proxy-sdk", {"VETO_MCP_STDIO_TRANSPORT": "sdk"}))
    times: dict[str, list[float]] = {}
    cpu: dict[str, list[tuple[float, float]]] = {}

    def timed(kind: str, label: str, command: list[str], extra: dict[str, str]) -> None:
        key = f"{kind}/{label}"
        if kind == "sdk":
            params = StdioServerParameters(
                command=command[0], args=command[1:], env={**env, **extra}
            )
            got = anyio.run(timed_calls, params, args.calls, args.warmup, key)
        else:
            saved = {k: os.environ.get(k) for k in extra}
            os.environ.update(extra)
            try:
                got = raw_timed_calls(command, args.calls, args.warmup, key)
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        times.setdefault(key, []).extend(got)
        cpu.setdefault(key, []).append((CPU[key], USER_CPU[key]))

    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(POLICY)
        for r in range(args.rounds):
            for kind in peers:
                upstream = [*here, "--serve" if kind == "sdk" else "--serve-raw"]
                timed(kind, "direct", upstream, {})
                for label, extra in variants:
                    db = f"sqlite:///{Path(tmp) / f'veto-{kind}-{label}-{r}.db'}"
                    proxy = [VETO, "mcp", "proxy", str(policy), "--name", "bench", "--db", db,
                             "--tenant", "acme", "--", *upstream]  # fmt: skip
                    timed(kind, label, proxy, extra)
        record = authorize_times(f"sqlite:///{Path(tmp) / 'authorize.db'}", args.calls, args.warmup)
        gated = gate_times(f"sqlite:///{Path(tmp) / 'gate.db'}", args.calls, args.warmup)
    names = {"direct": "direct", "proxy": "through veto mcp proxy",
             "proxy-sdk": "through veto mcp proxy, SDK transports (reference)"}  # fmt: skip
    peer_names = {"sdk": "SDK client and server", "raw": "raw JSON-RPC client and server"}
    print(f"{args.rounds} x {args.calls} sequential tools/call, stdio, "
          f"mcp {__import__('importlib.metadata').metadata.version('mcp')}, "
          f"CPython {sys.version.split()[0]}, audit durability {args.durability}")  # fmt: skip
    print(f"{'path':60} {'p50 µs':>9} {'p99 µs':>9} {'mean µs':>9} {'CPU/call µs':>12}")
    for key, values in times.items():
        kind, label = key.split("/")
        spent = statistics.fmean(c for c, _ in cpu[key]) * 1e6
        print(f"{peer_names[kind] + ': ' + names[label]:60} {pct(values, 0.5):9.0f} "
              f"{pct(values, 0.99):9.0f} {statistics.fmean(values) * 1e6:9.0f} {spent:12.0f}")  # fmt: skip
    for name, values in (("Veto.authorize alone (decision + durable record)", record),
                         ("McpGate.check in-process (schema + authorize)", gated)):  # fmt: skip
        print(f"{name:60} {pct(values, 0.5):9.0f} {pct(values, 0.99):9.0f} "
              f"{statistics.fmean(values) * 1e6:9.0f}")  # fmt: skip
    for kind in peers:
        direct = times[f"{kind}/direct"]
        for label, _ in variants:
            proxied = times[f"{kind}/{label}"]
            added50 = pct(proxied, 0.5) - pct(direct, 0.5)
            added99 = pct(proxied, 0.99) - pct(direct, 0.99)
            print(
                f"{peer_names[kind]}, {names[label]}: added p50 {added50:.0f} µs, p99 "
                f"{added99:.0f} µs; beyond the durable record (authorize p50): p50 "
                f"{added50 - pct(record, 0.5):.0f} µs (target <= 1000); beyond "
                f"McpGate.check p50: {added50 - pct(gated, 0.5):.0f} µs"
            )
    # CPU per call is the spawned process's own (the proxy's; the upstream is its
    # child): on a shared, loaded machine wall times mostly measure waiting for a core.
    load1 = os.getloadavg()
    print(
        f"CPU/call: of the spawned process (the upstream alone, or the proxy without its "
        f"child); load average {load0[0]:.2f} {load0[1]:.2f} -> {load1[0]:.2f} "
        f"{load1[1]:.2f} on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
