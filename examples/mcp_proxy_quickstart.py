"""Veto in front of an MCP server, offline: one policy for every MCP client.

    uv run python examples/mcp_proxy_quickstart.py

Starts ``veto mcp proxy`` over stdio exactly as an MCP client (an IDE, a desktop app,
an agent framework) would from its configuration::

    {"command": "veto",
     "args": ["mcp", "proxy", "policy.yaml", "--name", "files", "--user", "dana",
              "--", "python", "examples/mcp_demo_server.py"]}

then talks to it with the official ``mcp`` client: a read is allowed, a delete is
denied (the client gets ``isError`` and the reason), and a write waits for approval,
which a person gives from another terminal (here: a thread running
``veto approvals approve``). Every decision lands in the audit trail as
``mcp__files__<tool>`` with ``framework: mcp``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp.client.stdio import stdio_client

from mcp import ClientSession, StdioServerParameters
from veto_core.approvals import ApprovalState, open_approvals
from veto_core.audit import open_audit

HERE = Path(__file__).resolve().parent
VETO = str(Path(sys.executable).parent / "veto")

POLICY = """
version: 1
name: mcp-quickstart
default: deny
rules:
  - id: reads
    effect: allow
    tools: ["mcp__files__read_*"]
    reason: Reading files is fine
  - id: writes
    effect: require_approval
    tools: [mcp__files__write_file]
    approval: {approvers: [alice], timeout: 5m}
    reason: Writes need a person
  - id: no-deletes
    effect: deny
    tools: [mcp__files__delete_file]
    reason: Agents never delete files
"""


def approve_when_asked(db: str) -> None:
    """What a person does in another terminal: `veto approvals approve ID --as alice --admin`
    (an operator holding the local admin key votes in alice's name)."""
    service = open_approvals(db)
    try:
        for _ in range(600):
            pending = service.list(state=ApprovalState.PENDING)
            if pending:
                rid = pending[0].id
                print(f"  [alice] veto approvals approve {rid[-12:]} --as alice --admin")
                subprocess.run(
                    [VETO, "approvals", "approve", rid, "--as", "alice", "--admin", "--db", db],
                    check=True, capture_output=True,
                )  # fmt: skip
                return
            time.sleep(0.1)
    finally:
        service.close()


async def main(workdir: Path) -> None:
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    db = f"sqlite:///{workdir / 'veto.db'}"
    server = StdioServerParameters(
        command=VETO,
        args=[
            "mcp",
            "proxy",
            str(policy),
            "--name",
            "files",
            "--user",
            "dana",
            "--db",
            db,
            "--",
            sys.executable,
            str(HERE / "mcp_demo_server.py"),
        ],
        env=dict(os.environ),
    )
    with open(workdir / "proxy.log", "w") as errlog:
        async with (
            stdio_client(server, errlog=errlog) as streams,
            ClientSession(streams[0], streams[1]) as session,
        ):
            await session.initialize()
            tools = await session.list_tools()
            print("tools:", ", ".join(t.name for t in tools.tools))
            for name, args in [
                ("read_file", {"path": "readme.txt"}),
                ("delete_file", {"path": "readme.txt"}),
                ("write_file", {"path": "notes.txt", "content": "approved write"}),
            ]:
                print(f"call {name}({args})")
                if name == "write_file":
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(anyio.to_thread.run_sync, approve_when_asked, db)
                        result = await session.call_tool(name, args)
                else:
                    result = await session.call_tool(name, args)
                text = " ".join(getattr(c, "text", "") for c in result.content)
                flag = "ERROR" if result.model_dump(by_alias=True).get("isError") else "ok"
                print(f"  -> {flag}: {text}")
    with open_audit(db) as audit:
        print("audit trail:")
        for rec in audit.query():
            print(f"  {rec.framework or '-':5} {rec.tool:26} {rec.outcome:18} {list(rec.rule_ids)}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        anyio.run(main, Path(tmp))
