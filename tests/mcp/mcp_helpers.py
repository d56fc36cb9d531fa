"""Helpers of the MCP proxy tests: a real upstream MCP server (``upstream_server.py``,
started as a subprocess, counting its tool runs in a file), ``veto mcp proxy`` started
as a subprocess, and real ``mcp`` client sessions to it over stdio or streamable HTTP.

Runs with mcp 1.x (the workspace) and 2.x (``.ci/matrix/mcp.sh``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from mcp import ClientSession, StdioServerParameters
from veto_core.approvals import ApprovalRequest, ApprovalState, open_approvals
from veto_core.audit import open_audit

HERE = Path(__file__).parent
SERVER = HERE / "upstream_server.py"
VETO = str(Path(sys.executable).parent / "veto")

POLICY = """\
version: 1
name: mcp-proxy-test
default: deny
rules:
  - id: echo-ok
    effect: allow
    tools: [mcp__gh__echo]
    reason: Echo is harmless
  - id: no-delete
    effect: deny
    tools: [mcp__gh__delete_repo]
    reason: Repositories are never deleted by agents
  - id: refunds
    effect: require_approval
    tools: [mcp__gh__refund]
    if: {field: args.amount, greater_or_equal: 100}
    approval: {approvers: [alice], timeout: 60s}
    reason: Refunds of 100 or more need a person
  - id: refunds-small
    effect: require_approval
    tools: [mcp__gh__refund]
    if: {field: args.amount, less_than: 100}
    approval: {approvers: [alice], timeout: 2s}
    reason: Small refunds need a quick yes
  - id: faulty-tools
    effect: allow
    tools: [mcp__gh__crash, mcp__gh__garbage]
    reason: Tools that misbehave on purpose (fail-closed tests)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port} after {timeout}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass
class World:
    """One test's files: policy, database, the upstream's run log."""

    tmp: Path
    policy: Path
    db: str
    runs_file: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env["RUNS_FILE"] = str(self.runs_file)
        env["VETO_DB"] = self.db
        env["PYTHONUNBUFFERED"] = "1"
        env["HOME"] = str(self.tmp / "home")  # the operator's admin key (--admin) lives here
        return env

    def runs(self, tool: str | None = None) -> list[dict[str, Any]]:
        """The tool runs the upstream server logged (``tool`` only, if given)."""
        if not self.runs_file.exists():
            return []
        out = []
        for line in self.runs_file.read_text().splitlines():
            name, _, args = line.partition(" ")
            if tool is None or name == tool:
                out.append({"tool": name, "args": json.loads(args)})
        return out

    def proxy_args(self, *extra: str, upstream: list[str] | None = None) -> list[str]:
        args = ["mcp", "proxy", str(self.policy), "--name", "gh", "--db", self.db,
                "--tenant", "acme", "--user", "bob", "--agent", "ide", *extra]  # fmt: skip
        if upstream is None:
            upstream = ["--", sys.executable, str(SERVER), "stdio"]
        return [*args, *upstream]

    def start_upstream_http(self) -> str:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, str(SERVER), "http", str(port)], env=self.environ(),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.procs.append(proc)
        wait_port(port, proc)
        return f"http://127.0.0.1:{port}/mcp"

    def start_proxy_http(self, *extra: str, upstream: list[str] | None = None) -> str:
        port = free_port()
        proc = subprocess.Popen(
            [VETO, *self.proxy_args("--listen", f"127.0.0.1:{port}", *extra, upstream=upstream)],
            env=self.environ(), stdout=subprocess.DEVNULL,
        )  # fmt: skip
        self.procs.append(proc)
        wait_port(port, proc)
        return f"http://127.0.0.1:{port}/mcp"

    def requests(self, state: ApprovalState | None = None) -> list[ApprovalRequest]:
        service = open_approvals(self.db)
        try:
            return service.list(tenant="acme", state=state, limit=None)
        finally:
            service.close()

    def request(self, rid: str) -> ApprovalRequest:
        service = open_approvals(self.db)
        try:
            return service.get(rid)
        finally:
            service.close()

    async def pending(self, timeout: float = 20.0) -> ApprovalRequest:
        """The one pending request, once the proxy has opened it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = await anyio.to_thread.run_sync(self.requests, ApprovalState.PENDING)
            if found:
                assert len(found) == 1, found
                return found[0]
            await anyio.sleep(0.05)
        raise TimeoutError("no pending approval request appeared")

    def records(self, tool: str | None = None) -> list[Any]:
        with open_audit(self.db) as audit:
            recs = audit.query(tenant="acme", limit=1000)
        return [r for r in recs if tool is None or r.tool == tool]

    def veto_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [VETO, *args, *(["--admin"] if args[:1] == ("approvals",) and "--as" in args else []),
             "--db", self.db],
            env=self.environ(), capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip


@asynccontextmanager
async def stdio_session(
    world: World, *extra: str, upstream: list[str] | None = None
) -> AsyncIterator[ClientSession]:
    """A real client session to ``veto mcp proxy`` started over stdio."""
    params = StdioServerParameters(command=VETO, args=world.proxy_args(*extra, upstream=upstream),
                                   env=world.environ())  # fmt: skip
    with open(world.tmp / "proxy-stderr.log", "a") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as streams,
            ClientSession(streams[0], streams[1]) as session,
        ):
            await session.initialize()
            yield session


@asynccontextmanager
async def http_session(url: str, token: str | None) -> AsyncIterator[ClientSession]:
    """A real client session to a proxy served over streamable HTTP."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    client = create_mcp_http_client(headers=headers)
    async with (
        streamable_http_client(url, http_client=client) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        yield session


INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}  # fmt: skip
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


class RawClient:
    """``veto mcp proxy`` over stdio driven line by line (JSON-RPC written by hand:
    what a broken or unusual client sends)."""

    def __init__(self, world: World, *extra: str, upstream: list[str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [VETO, *world.proxy_args(*extra, upstream=upstream)], env=world.environ(), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        world.procs.append(self.proc)
        self.answers: dict[Any, dict[str, Any]] = {}
        self.notes: list[dict[str, Any]] = []

    def send(self, *messages: dict[str, Any] | str) -> None:
        assert self.proc.stdin is not None
        for m in messages:
            self.proc.stdin.write((m if isinstance(m, str) else json.dumps(m)) + "\n")
        self.proc.stdin.flush()

    def answer(self, *ids: Any) -> dict[Any, dict[str, Any]]:
        """Read until every request in ``ids`` is answered (answers come in any order)."""
        assert self.proc.stdout is not None
        while not set(ids) <= set(self.answers):
            line = self.proc.stdout.readline()
            assert line, f"the proxy closed its output; answers so far: {self.answers}"
            message = json.loads(line)
            if "id" in message:
                self.answers[message["id"]] = message
            else:
                self.notes.append(message)
        return {i: self.answers[i] for i in ids}

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()


def text_of(result: Any) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


def is_error(result: Any) -> bool:
    data = result.model_dump(by_alias=True)
    return bool(data.get("isError"))


async def call(session: ClientSession, tool: str, args: dict[str, Any],
               on_progress: Callable[[float, float | None, str | None], Any] | None = None) -> Any:  # fmt: skip
    return await session.call_tool(tool, args, progress_callback=on_progress)


def run(fn: Callable[[], Any]) -> Any:
    return anyio.run(fn)
