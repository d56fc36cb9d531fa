"""CrewAI adapter overhead: added time per tool call, with the durable audit record.

    uv run python benchmarks/bench_crewai.py [--hook-calls 3000] [--db DIR]

Reports, per tool call:
- hook alone: median of ``VetoHooks.before_tool_call`` on an allowed call (what CrewAI
  runs before the tool), split into the decision (``Veto.decide``), the durable record
  (``Veto.authorize`` - ``decide``) and the adapter's own work (building the call,
  reading the model's tool-call id, the verdict); and the hook again with
  ``Veto.authorize`` answered by a pre-made result (``_premade.py``): the adapter's own
  work with no fsync in the loop;
- dispatch: CrewAI's own ``run_before_tool_call_hooks`` + ``run_after_tool_call_hooks``
  for one call (what its executor runs around every tool), without and with
  ``install()``; the difference is what Veto adds to a tool call. (A whole
  ``Crew.kickoff`` takes ~100 ms here with a scripted model and varies by more than
  the whole difference, so it is not the measure.)
The record is committed (SQLite WAL, synchronous=FULL: an fsync) before the tool may
run, so the numbers depend on the disk under ``--db`` (default: a temp dir).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _premade import premade_authorize
from crewai.hooks.tool_hooks import (
    ToolCallHookContext,
    register_after_tool_call_hook,
    register_before_tool_call_hook,
    run_after_tool_call_hooks,
    run_before_tool_call_hooks,
    unregister_after_tool_call_hook,
    unregister_before_tool_call_hook,
)
from crewai.tools import tool

import veto_crewai
from crewai import Agent
from veto_core import Principal, Veto
from veto_crewai._calls import CallInput, Settings, build_call
from veto_crewai.testing import ScriptedLLM

POLICY = """
version: 1
name: bench
rules:
  - {id: reads, effect: allow, tools: [read_file], if: {field: args.path, starts_with: /data}}
  - {id: no-delete, effect: deny, tools: [delete_file]}
"""


@tool("read_file")
def _read_file(path: str) -> str:
    """Read a file."""
    return "x"


# What CrewAI hands the hooks: the structured tool (the hook validates the input with its
# schema before deciding, so that cost is measured too).
READ_FILE = _read_file.to_structured_tool()


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def bench_hook(veto: Veto, n: int) -> dict[str, float]:
    hooks = veto_crewai.VetoHooks(veto, Settings(principal=Principal(user="u"), run_id="bench"))
    agent = Agent(role="Reader", goal="g", backstory="b", llm=ScriptedLLM(turns=["x"]))
    hook_t, decide_t, auth_t, build_t = [], [], [], []
    for i in range(n):
        ctx = ToolCallHookContext(
            tool_name="read_file",
            tool_input={"path": f"/data/{i}"},
            tool=READ_FILE,
            agent=agent,  # type: ignore[arg-type]
        )
        t0 = time.perf_counter()
        assert hooks.before_tool_call(ctx) is None
        hook_t.append(time.perf_counter() - t0)
        item = CallInput(tool_name="read_file", args={"path": f"/data/x{i}"}, agent=agent)
        t0 = time.perf_counter()
        call = build_call(hooks.settings, item)
        build_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        veto.decide(call)
        decide_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        assert veto.authorize(call).run_tool
        auth_t.append(time.perf_counter() - t0)
    own = []  # the hook with no fsync in the loop (see _premade.py)
    with premade_authorize(veto):
        for i in range(n + 100):
            ctx = ToolCallHookContext(
                tool_name="read_file",
                tool_input={"path": f"/data/p{i}"},
                tool=READ_FILE,
                agent=agent,  # type: ignore[arg-type]
            )
            t0 = time.perf_counter()
            assert hooks.before_tool_call(ctx) is None
            if i >= 100:
                own.append(time.perf_counter() - t0)
    return {
        "own_no_record": median_us(own),
        "hook": median_us(hook_t),
        "decide": median_us(decide_t),
        "record": median_us(auth_t) - median_us(decide_t),
        "build_call": median_us(build_t),
    }


def time_dispatch(agent: Any, n: int) -> list[float]:
    """CrewAI's own before+after tool-call hook dispatch for one call, as its executor runs it."""
    out = []
    for i in range(n):
        args = {"path": f"/data/d{i}"}
        before = ToolCallHookContext(
            tool_name="read_file",
            tool_input=args,
            tool=READ_FILE,
            agent=agent,  # type: ignore[arg-type]
        )
        t0 = time.perf_counter()
        blocked = run_before_tool_call_hooks(before)
        after = ToolCallHookContext(
            tool_name="read_file",
            tool_input=args,
            tool=None,
            agent=agent,
            tool_result="x",  # type: ignore[arg-type]
        )
        run_after_tool_call_hooks(after)
        out.append(time.perf_counter() - t0)
        assert not blocked
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hook-calls", type=int, default=3000)
    parser.add_argument("--db", type=Path, default=None, help="directory for the SQLite db")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        where = args.db or Path(tmp)
        veto = Veto.from_yaml(
            POLICY, env="prod", tenant="acme", db=f"sqlite:///{where / 'bench.db'}"
        )
        hook = bench_hook(veto, args.hook_calls)
        adapter = hook["hook"] - hook["decide"] - hook["record"]
        print(f"hook alone (allowed call, median of {args.hook_calls}):")
        print(f"  before_tool_call total   {hook['hook']:8.1f} us")
        print(f"    decision (decide)      {hook['decide']:8.1f} us")
        print(f"    durable record         {hook['record']:8.1f} us")
        print(
            f"    adapter (rest)         {adapter:8.1f} us   (build_call alone {hook['build_call']:.1f} us)"
        )
        print(
            f"    adapter, no record     {hook['own_no_record']:8.1f} us   (authorize answered "
            "by a pre-made result)"
        )
        agent = Agent(role="Reader", goal="g", backstory="b", llm=ScriptedLLM(turns=["x"]))
        without = time_dispatch(agent, args.hook_calls)

        def noop(ctx: Any) -> None:
            return None

        register_before_tool_call_hook(noop)
        register_after_tool_call_hook(noop)
        with_noop = time_dispatch(agent, args.hook_calls)
        unregister_before_tool_call_hook(noop)
        unregister_after_tool_call_hook(noop)
        veto_crewai.install(veto, principal=Principal(user="u"))
        with_veto = time_dispatch(agent, args.hook_calls)
        veto_crewai.uninstall()
        added = median_us(with_veto) - median_us(without)
        print(f"CrewAI hook dispatch per tool call (median of {args.hook_calls}):")
        print(f"  no hooks                 {median_us(without):8.1f} us")
        print(
            f"  a no-op hook pair        {median_us(with_noop):8.1f} us   (CrewAI's cost of any hook)"
        )
        print(f"  with install()           {median_us(with_veto):8.1f} us")
        print(f"  added per tool call      {added:8.1f} us")
        veto.close()
        noop_cost = median_us(with_noop) - median_us(without)
        print(f"  Veto beyond a no-op hook {added - noop_cost:8.1f} us")
        return {**hook, "adapter": adapter, "dispatch_added": added, "noop_hooks": noop_cost}


if __name__ == "__main__":
    main()
