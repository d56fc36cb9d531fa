"""One policy decides an MCP tool identically through ``veto mcp proxy`` and through
each framework adapter's naming of the same server's tools, loaded by the framework's
own MCP client from the real upstream server:

- LangChain: ``langchain-mcp-adapters`` ``MultiServerMCPClient`` (with and without
  ``tool_name_prefix``) + ``ToolNames``;
- OpenAI Agents SDK: ``MCPServerStdio`` tools named by ``veto_openai``'s own
  ``mcp_canonical_name`` (what ``guard_agent`` uses);
- CrewAI: ``Agent.get_mcp_tools([MCPServerStdio(...)])`` + ``mcp_tool_aliases``.

Needs mcp 1.x (these frameworks pin it), so ``.ci/matrix/mcp.sh`` leaves it out.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import anyio
import pytest
from mcp_helpers import POLICY, SERVER, World, run, stdio_session

from veto_core import Effect, Principal, ToolCall, Veto
from veto_core.adapters import ToolNames
from veto_core.mcp import mcp_tool_aliases, mcp_tool_name

TOOLS = {"echo", "refund", "delete_repo", "crash", "garbage"}
ARGS: dict[str, dict[str, Any]] = {
    "echo": {"text": "x"},
    "refund": {"amount": 500, "to": "a"},
    "delete_repo": {"name": "r"},
    "crash": {},
    "garbage": {},
}
EXPECTED = {
    "mcp__gh__echo": Effect.ALLOW,
    "mcp__gh__refund": Effect.REQUIRE_APPROVAL,
    "mcp__gh__delete_repo": Effect.DENY,
    "mcp__gh__crash": Effect.ALLOW,
    "mcp__gh__garbage": Effect.ALLOW,
}


def _decide(veto: Veto, canonical: dict[str, str]) -> dict[str, Effect]:
    """The decision for each tool, by its MCP name, under its canonical name."""
    out = {}
    for mcp_name, name in canonical.items():
        call = ToolCall(tool=name, args=ARGS[mcp_name], principal=Principal(user="bob"))
        out[name] = veto.decide(call).effect
    return out


def _server_env(world: World) -> dict[str, str]:
    return {**os.environ, "RUNS_FILE": str(world.runs_file)}


def test_proxy_and_every_adapter_name_mcp_tools_alike(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CrewAI: offline, nothing written outside temp dirs (as tests/crewai/conftest.py).
    for key, value in {"CREWAI_DISABLE_TELEMETRY": "true", "CREWAI_DISABLE_TRACKING": "true",
                       "OTEL_SDK_DISABLED": "true", "CREWAI_TRACING_ENABLED": "false",
                       "HOME": str(world.tmp / "home")}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    veto = Veto.from_yaml(POLICY, tenant="acme")
    server_args = [str(SERVER), "stdio"]

    # The proxy: the names the proxy decides (computed from what the upstream lists).
    async def via_proxy() -> set[str]:
        async with stdio_session(world) as s:
            return {t.name for t in (await s.list_tools()).tools}

    listed = run(via_proxy)
    assert listed == TOOLS
    proxy = {n: mcp_tool_name("gh", n) for n in listed}
    assert _decide(veto, proxy) == EXPECTED

    # LangChain: langchain-mcp-adapters' own client, names "gh_<tool>" or "<tool>".
    from langchain_mcp_adapters.client import MultiServerMCPClient

    async def langchain_tools(prefix: bool) -> list[Any]:
        client = MultiServerMCPClient(
            {
                "gh": {
                    "transport": "stdio",
                    "command": sys.executable,
                    "args": server_args,
                    "env": _server_env(world),
                }
            },
            tool_name_prefix=prefix,
        )
        return await client.get_tools()

    prefixed = anyio.run(langchain_tools, True)
    assert {t.name for t in prefixed} == {f"gh_{n}" for n in TOOLS}
    names = ToolNames(mcp_servers=("gh",))
    lc = {t.name.removeprefix("gh_"): names.canonical(t.name) for t in prefixed}
    assert lc == proxy and _decide(veto, lc) == EXPECTED
    bare = anyio.run(langchain_tools, False)
    names = ToolNames(mcp_tools={t.name: "gh" for t in bare})
    assert {t.name: names.canonical(t.name) for t in bare} == proxy

    # OpenAI Agents SDK: MCPServerStdio named "gh", named by veto_openai's guard.
    from agents import Agent, RunContextWrapper
    from agents.mcp import MCPServerStdio

    from veto_openai import guard_agent
    from veto_openai.guard import guard_of, mcp_canonical_name

    async def openai_names() -> dict[str, str]:
        server = MCPServerStdio(
            params={"command": sys.executable, "args": server_args, "env": _server_env(world)},
            name="gh",
            client_session_timeout_seconds=120,  # a loaded CI machine starts Python slowly
        )
        async with server:
            agent = Agent(name="assistant", mcp_servers=[server])
            guard = guard_of(guard_agent(agent, veto))
            assert guard is not None
            tools = await agent.get_mcp_tools(RunContextWrapper(context=None))
            return {
                t.name: mcp_canonical_name(guard, t.name, getattr(t, "_tool_origin", None))
                for t in tools
            }

    oa = anyio.run(openai_names)
    assert oa == proxy and _decide(veto, oa) == EXPECTED

    # CrewAI: its native MCP client names tools "<derived server>_<tool>".
    from crewai.mcp import MCPServerStdio as CrewStdio

    from crewai import Agent as CrewAgent

    agent = CrewAgent(role="Support", goal="help", backstory="b")
    crew_tools = agent.get_mcp_tools(
        [CrewStdio(command=sys.executable, args=server_args, env=_server_env(world))]
    )
    assert len(crew_tools) == len(TOOLS) and all(t.name not in TOOLS for t in crew_tools)
    aliases = mcp_tool_aliases("gh", crew_tools)
    crew = {str(t.original_tool_name): aliases[t.name] for t in crew_tools}
    assert crew == proxy and _decide(veto, crew) == EXPECTED
    assert world.runs() == []  # naming only: nothing was called
