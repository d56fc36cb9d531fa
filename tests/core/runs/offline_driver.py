"""Runs driven three ways (DESIGN.md 2.7 and the batch format of section 9): as
`veto check --batch` lines, and in process as an adapter drives them (`authorize`,
then `observe` right after each call that ran). Absolute imports only: the restart
worker (offline_worker.py) imports this file from another process.

A step is a JSON-able list:
- ``["call", tool, args, output]``: a call line; when ``output`` is not `NO_OUTPUT`
  an observe line of the same call follows (the adapter observes the call if it ran);
- ``["observe", tool, args, output]``: an observation on its own (the person's input
  ``"@user"``, or a call made outside the sequence).
"""

from __future__ import annotations

import io
import json
from typing import Any

from veto_core import Effect, ToolCall, Veto

NO_OUTPUT = "<no observe line>"
RUN = "r"


def call_of(tool: str, args: dict[str, Any]) -> ToolCall:
    return ToolCall(tool=tool, args=args, run_id=RUN, tool_call_id=None)


def batch_lines(steps: list[list[Any]]) -> list[str]:
    lines: list[str] = []
    for kind, tool, args, output in steps:
        body = {"tool": tool, "args": args, "run_id": RUN}
        if kind == "call":
            lines.append(json.dumps(body))
            if output != NO_OUTPUT:
                lines.append(json.dumps({"observe": {**body, "output": output}}))
        else:
            lines.append(json.dumps({"observe": {**body, "output": output}}))
    return lines


def run_as_batch(veto: Veto, steps: list[list[Any]]) -> list[dict[str, Any]]:
    """Every output line of the batch."""
    from veto_core.cli import run_batch

    out = io.StringIO()
    run_batch(veto, io.StringIO("\n".join(batch_lines(steps)) + "\n"), out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def batch_decisions(veto: Veto, steps: list[list[Any]]) -> list[str]:
    """The effects of the call lines of the batch, in order."""
    return [line["effect"] for line in run_as_batch(veto, steps) if "effect" in line]


def run_in_process(veto: Veto, steps: list[list[Any]]) -> list[str]:
    """What an adapter does: authorize each call; observe its output right after it
    ran (allowed, or approved: an output given for a call that required approval
    means it was approved); the effects of the calls, in order."""
    effects: list[str] = []
    for kind, tool, args, output in steps:
        call = call_of(tool, args)
        if kind == "observe":
            veto.observe(call, output)
            continue
        effect = veto.authorize(call).decision.effect
        effects.append(effect.value)
        if effect is Effect.ALLOW:
            veto.observe(call, None if output == NO_OUTPUT else output)
        elif effect is Effect.REQUIRE_APPROVAL and output != NO_OUTPUT:
            veto.observe(call, output, effect=Effect.REQUIRE_APPROVAL)
    return effects
