"""Export AgentDojo's ground-truth runs, with their real tool outputs, as JSON.

Runs INSIDE the isolated AgentDojo virtualenv that `agentdojo_flow.py` manages (it
imports `agentdojo`, which is not a dependency of the Veto workspace); it does not
import Veto. For each suite and each (user task, injection task) pair it does what
AgentDojo does when it evaluates an attack, minus the model:

1. places the injection in the suite's environment (AgentDojo's
   ``important_instructions`` attack text, in every injection vector the user task's
   ground truth reads; the vectors are found with AgentDojo's own canary run);
2. executes the user task's ground-truth calls against that environment, in order,
   keeping each call's output as the model would see it (``tool_result_to_str``);
3. then executes the injection task's ground-truth calls on the same environment, as
   if the model had obeyed the injected text, keeping their outputs too.

It also records, per suite, each user task's ground-truth run without any injection,
and which tools' outputs carry injection vectors (a tool whose output contained a
canary in some user task's ground-truth run).

Usage (inside the venv): python agentdojo_export.py --version v1.2.2 --out runs.json [SUITE...]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any

from agentdojo.agent_pipeline.tool_execution import tool_result_to_str
from agentdojo.attacks.important_instructions_attacks import ImportantInstructionsAttack
from agentdojo.functions_runtime import FunctionsRuntime
from agentdojo.task_suite.load_suites import get_suites


class _NamedPipeline:
    """The attack text addresses the model by name; no model runs here."""

    name = "gpt-4o-2024-05-13"


def _run_calls(
    runtime: FunctionsRuntime, env: Any, calls: list[Any], canaries: dict[str, str]
) -> tuple[list[dict[str, Any]], set[str]]:
    steps: list[dict[str, Any]] = []
    injectable: set[str] = set()
    for tool_call in calls:
        result, error = runtime.run_function(env, tool_call.function, dict(tool_call.args))
        output = error if error is not None else tool_result_to_str(result)
        steps.append(
            {
                "tool": tool_call.function,
                "args": json.loads(json.dumps(dict(tool_call.args), default=str)),
                "output": output,
                "error": error,
            }
        )
        if any(c in output for c in canaries.values()):
            injectable.add(tool_call.function)
    return steps, injectable


def export_suite(suite: Any) -> dict[str, Any]:
    attack = ImportantInstructionsAttack(suite, _NamedPipeline())  # type: ignore[arg-type]
    runtime = FunctionsRuntime(suite.tools)
    # which tools' outputs carry injection vectors (AgentDojo's canary run)
    injectable: set[str] = set()
    canary_env = suite.load_and_inject_default_environment(attack.canary_injections)
    for user_task in suite.user_tasks.values():
        env = user_task.init_environment(canary_env.model_copy(deep=True))
        _, found = _run_calls(runtime, env, user_task.ground_truth(env), attack.canary_injections)
        injectable |= found
    # without any injection: the user tasks' own runs (utility without attack)
    clean: list[dict[str, Any]] = []
    for user_task in suite.user_tasks.values():
        env = user_task.init_environment(suite.load_and_inject_default_environment({}))
        benign, _ = _run_calls(runtime, env, user_task.ground_truth(env), {})
        clean.append({"user_task": user_task.ID, "prompt": user_task.PROMPT, "benign": benign})
    pairs: list[dict[str, Any]] = []
    for user_task in suite.user_tasks.values():
        for injection_task in suite.injection_tasks.values():
            try:
                injections = attack.attack(user_task, injection_task)
            except ValueError as exc:  # "not injectable": AgentDojo skips such a task too
                pairs.append({"user_task": user_task.ID, "injection_task": injection_task.ID,
                              "skipped": str(exc)})  # fmt: skip
                continue
            env = suite.load_and_inject_default_environment(injections)
            env = user_task.init_environment(env)
            benign, _ = _run_calls(runtime, env, user_task.ground_truth(env), {})
            hostile, _ = _run_calls(runtime, env, injection_task.ground_truth(env), {})
            pairs.append(
                {
                    "user_task": user_task.ID,
                    "injection_task": injection_task.ID,
                    "prompt": user_task.PROMPT,
                    "goal": injection_task.GOAL,
                    "vectors": sorted(injections),
                    "benign": benign,
                    "attack": hostile,
                }
            )
    return {
        "tools": sorted(f.name for f in suite.tools),
        "injectable_tools": sorted(injectable),
        "clean": clean,
        "pairs": pairs,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", default="v1.2.2")
    ap.add_argument("--out", required=True)
    ap.add_argument("suites", nargs="*")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import agentdojo

    suites = get_suites(args.version)
    names = args.suites or sorted(suites)
    data: dict[str, Any] = {
        "agentdojo": getattr(agentdojo, "__version__", None),
        "benchmark_version": args.version,
        "attack": "important_instructions",
        "suites": {},
    }
    for name in names:
        print(f"exporting {name}...", file=sys.stderr, flush=True)
        data["suites"][name] = export_suite(suites[name])
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
