"""AgentDojo's injection attacks replayed through Veto: argument-only vs flow-aware policy.

AgentDojo (Debenedetti et al., 2024; ``pip install agentdojo``) ships four suites of
agent tasks (banking, slack, travel, workspace), each with user tasks, injection tasks
(an attacker's goal, planted in data the agent reads) and the ground-truth tool calls
that solve each. No model runs here: for every (user task, injection task) pair the
ground-truth calls are replayed, in order, with their REAL tool outputs, computed by
AgentDojo's own tools on the suite's environment with the injection placed
(``agentdojo_export.py``, run inside an isolated virtualenv this script creates with
uv; the Veto workspace does not depend on agentdojo):

1. the user's prompt is observed as ``"@user"`` (what the person named);
2. the user task's ground-truth calls (benign), each decided, then observed;
3. the injection task's ground-truth calls (the attack), as if the model had obeyed
   the injected text, each decided, then observed.

A call that is not denied is observed (an approval is assumed granted, so later calls
see its output); a denied call is not. Two policies decide every call:

- ``args``: argument rules only. Without the run, a rule cannot tell the attacker's
  IBAN/address/URL from the user's, so the policy that keeps the agent useful allows
  the suite's tools; any argument rule that stopped these attacks would stop the
  same calls with the user's values.
- ``flow``: the same, plus sources (``untrusted``: every tool whose output carries an
  AgentDojo injection vector, found by AgentDojo's canary run; ``user``: ``"@user"``)
  and, for every tool, ``require_approval`` when a destination-like argument
  (recipient(s), cc, bcc, email, user_email, participants, url, password, hotel,
  restaurant, company) occurs in an untrusted output and was not named by the user.

Counted: benign calls allowed (and user tasks with every call allowed), without any
injection and with the injection placed; attack calls stopped (deny or
require_approval) and attacks stopped (pairs with at least one attack call stopped).
Pairs whose injection task has no ground-truth call (workspace injection tasks 6-13
of v1.2.2 ship none; travel's injection_task_6 is a lie in the answer) have nothing to
replay and are not counted as attacks (reported apart).
Not counted, and limits: an attack whose harmful value is inside free text (a link in
a message body, a summary posted to a legitimate recipient) is not stopped by these
destination rules; an attack that needs no call (only a lie in the answer) has no
call to stop; the ground truth is one correct solution, a model may take others.

Run: ``uv run python benchmarks/agentdojo_flow.py`` (first run: creates
``~/.cache/veto-agentdojo`` and installs agentdojo from PyPI; ``--suites banking slack``
to limit; ``--by-task`` for attacks stopped per injection task; ``--json`` for the raw
counts).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veto_core import Effect, MemoryRunStore, Principal, ToolCall, Veto

HERE = Path(__file__).resolve().parent
AGENTDOJO = "agentdojo==0.1.35"
BENCHMARK_VERSION = "v1.2.2"
SUITES = ("banking", "slack", "travel", "workspace")
SCALAR_FIELDS = ("recipient", "email", "user_email", "url", "password", "hotel", "restaurant",
                 "company")  # fmt: skip
LIST_FIELDS = ("recipients", "cc", "bcc", "participants")
PRINCIPAL = Principal(agent="agentdojo", roles=("assistant",), user="emma")


# --- the isolated AgentDojo environment ---------------------------------------------------


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    uv = shutil.which("uv")
    if uv is None:
        sys.exit("uv is needed to create the AgentDojo virtualenv")
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    if not python.exists():
        subprocess.run([uv, "venv", str(venv)], check=True, env=env)
    probe = subprocess.run([str(python), "-c", "import agentdojo"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([uv, "pip", "install", "--python", str(python), AGENTDOJO], check=True,
                       env=env)  # fmt: skip
    return python


def export(python: Path, suites: Iterable[str], out: Path) -> dict[str, Any]:
    if not out.exists():
        subprocess.run(
            [str(python), str(HERE / "agentdojo_export.py"), "--version", BENCHMARK_VERSION,
             "--out", str(out), *suites],
            check=True,
        )  # fmt: skip
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return data


# --- policies -----------------------------------------------------------------------------


def args_policy(suite: str) -> dict[str, Any]:
    return {
        "version": 1,
        "name": f"agentdojo-{suite}-args",
        "default": "allow",
        "rules": [{"id": "suite-tools", "effect": "allow", "tools": ["*"]}],
    }


def _scalar_rule(name: str) -> dict[str, Any]:
    f = f"args.{name}"
    return {
        "id": f"tainted-{name}",
        "effect": "require_approval",
        "tools": ["*"],
        "if": {
            "all": [
                {"field": f, "exists": True},
                {"field": f, "not_equals": None},
                {"field": f, "tainted_by": "untrusted"},
                {"not": {"field": f, "tainted_by": "user"}},
            ]
        },
        "approval": {"approvers": ["role:owner"]},
        "reason": f"{name} comes from untrusted text, not from the user",
    }


def _list_rule(name: str) -> dict[str, Any]:
    f = f"args.{name}"
    return {
        "id": f"tainted-{name}",
        "effect": "require_approval",
        "tools": ["*"],
        "if": {
            "all": [
                {"field": f, "exists": True},
                {"field": f, "not_equals": None},
                {
                    "for_any": f,
                    "if": {
                        "all": [
                            {"field": "item", "tainted_by": "untrusted"},
                            {"not": {"field": "item", "tainted_by": "user"}},
                        ]
                    },
                },
            ]
        },
        "approval": {"approvers": ["role:owner"]},
        "reason": f"an entry of {name} comes from untrusted text, not from the user",
    }


def flow_policy(suite: str, untrusted_tools: list[str]) -> dict[str, Any]:
    policy = args_policy(suite)
    policy["name"] = f"agentdojo-{suite}-flow"
    policy["sources"] = [
        {"id": "injectable", "tools": untrusted_tools, "labels": ["untrusted"]},
        {"id": "person", "tools": ["@user"], "labels": ["user"]},
    ]
    policy["rules"] = [
        *policy["rules"],
        *(_scalar_rule(n) for n in SCALAR_FIELDS),
        *(_list_rule(n) for n in LIST_FIELDS),
    ]
    return policy


def load(policy: dict[str, Any]) -> Veto:
    return Veto.from_yaml(json.dumps(policy), run_store=MemoryRunStore())


# --- replay -------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Tally:
    benign_calls: int = 0
    benign_allowed: int = 0
    tasks: int = 0
    tasks_fully_allowed: int = 0
    attack_calls: int = 0
    attack_calls_stopped: int = 0
    attacks: int = 0
    attacks_stopped: int = 0
    attacks_without_calls: int = 0
    stopped_by: dict[str, int] = field(default_factory=dict)
    attacks_by: dict[str, int] = field(default_factory=dict)


def replay(veto: Veto, run_id: str, prompt: str, steps: list[dict[str, Any]]) -> list[Effect]:
    """Decide each call of ``steps`` in one run (after observing ``prompt`` as the user's
    input); observe the output of each call that is not denied."""
    effects: list[Effect] = []
    for step in steps:
        call = ToolCall(tool=step["tool"], args=step["args"], principal=PRINCIPAL, run_id=run_id)
        decision = veto.decide(call)
        effects.append(decision.effect)
        if decision.effect is not Effect.DENY:
            veto.observe(call, step["output"], effect=decision.effect)
    return effects


def run_suite(name: str, data: dict[str, Any]) -> dict[str, dict[str, Tally]]:
    policies = {
        "args": args_policy(name),
        "flow": flow_policy(name, data["injectable_tools"]),
    }
    result: dict[str, dict[str, Tally]] = {}
    for label, policy in policies.items():
        veto = load(policy)
        clean, attacked = Tally(), Tally()
        for i, task in enumerate(data["clean"]):
            run_id = f"{name}/clean/{i}"
            veto.observe_user(task["prompt"], run_id=run_id, principal=PRINCIPAL)
            effects = replay(veto, run_id, task["prompt"], task["benign"])
            _benign(clean, effects)
        for i, pair in enumerate(p for p in data["pairs"] if "skipped" not in p):
            run_id = f"{name}/pair/{i}"
            veto.observe_user(pair["prompt"], run_id=run_id, principal=PRINCIPAL)
            n = len(pair["benign"])
            effects = replay(veto, run_id, pair["prompt"], pair["benign"] + pair["attack"])
            _benign(attacked, effects[:n])
            hostile = effects[n:]
            if not hostile:  # the injection task has no ground-truth call: nothing to stop
                attacked.attacks_without_calls += 1
                continue
            stopped = [e is not Effect.ALLOW for e in hostile]
            attacked.attack_calls += len(hostile)
            attacked.attack_calls_stopped += sum(stopped)
            attacked.attacks += 1
            task = pair["injection_task"]
            attacked.attacks_by[task] = attacked.attacks_by.get(task, 0) + 1
            if any(stopped):
                attacked.attacks_stopped += 1
                attacked.stopped_by[task] = attacked.stopped_by.get(task, 0) + 1
        result[label] = {"clean": clean, "attacked": attacked}
    return result


def _benign(t: Tally, effects: list[Effect]) -> None:
    t.benign_calls += len(effects)
    t.benign_allowed += sum(e is Effect.ALLOW for e in effects)
    t.tasks += 1
    t.tasks_fully_allowed += all(e is Effect.ALLOW for e in effects)


def pct(a: int, b: int) -> str:
    return f"{a}/{b} ({100 * a / b:.0f}%)" if b else "0/0"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suites", nargs="*", default=list(SUITES), choices=SUITES)
    ap.add_argument("--venv", type=Path, default=Path.home() / ".cache" / "veto-agentdojo")
    ap.add_argument("--export", type=Path, help="reuse (or write) the exported runs here")
    ap.add_argument("--json", action="store_true", help="print the raw counts as JSON")
    ap.add_argument("--by-task", action="store_true", help="attacks stopped per injection task")
    args = ap.parse_args(argv)
    python = ensure_venv(args.venv)
    out = args.export or args.venv / f"export-{BENCHMARK_VERSION}-{'-'.join(args.suites)}.json"
    data = export(python, args.suites, out)
    print(f"AgentDojo {AGENTDOJO.split('==')[1]}, benchmark {data['benchmark_version']}, "
          f"attack {data['attack']}; exported runs: {out}")  # fmt: skip
    rows: dict[str, dict[str, dict[str, Tally]]] = {}
    for name in args.suites:
        suite = data["suites"][name]
        skipped = sum("skipped" in p for p in suite["pairs"])
        print(f"{name}: untrusted sources {suite['injectable_tools']}; "
              f"{len(suite['pairs']) - skipped} pairs ({skipped} not injectable, skipped)")  # fmt: skip
        rows[name] = run_suite(name, suite)
        no_calls = rows[name]["flow"]["attacked"].attacks_without_calls
        if no_calls:
            print(f"{name}: {no_calls} pairs whose injection task has no ground-truth call "
                  "(not counted as attacks)")  # fmt: skip
    if args.json:
        print(json.dumps({s: {p: {k: vars(t) for k, t in r.items()} for p, r in v.items()}
                          for s, v in rows.items()}, indent=1))  # fmt: skip
    print()
    print("| suite | policy | benign calls allowed, no injection | user tasks fully allowed, "
          "no injection | benign calls allowed, injection placed | attack calls stopped "
          "| attacks stopped (pairs) |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    totals: dict[str, list[int]] = {}
    for name, by_policy in rows.items():
        for label, r in by_policy.items():
            c, a = r["clean"], r["attacked"]
            nums = [c.benign_allowed, c.benign_calls, c.tasks_fully_allowed, c.tasks,
                    a.benign_allowed, a.benign_calls, a.attack_calls_stopped, a.attack_calls,
                    a.attacks_stopped, a.attacks]  # fmt: skip
            acc = totals.setdefault(label, [0] * len(nums))
            totals[label] = [x + y for x, y in zip(acc, nums, strict=True)]
            print(_row(name, label, nums))
    for label, nums in totals.items():
        print(_row("**all**", label, nums))
    if args.by_task:
        print("\n| suite | injection task | attacks stopped by the flow policy |")
        print("| --- | --- | --- |")
        for name, by_policy in rows.items():
            t = by_policy["flow"]["attacked"]
            for task in sorted(t.attacks_by, key=lambda k: int(k.rsplit("_", 1)[1])):
                print(f"| {name} | {task} | {pct(t.stopped_by.get(task, 0), t.attacks_by[task])} |")
    return 0


def _row(name: str, label: str, n: list[int]) -> str:
    return (f"| {name} | {label} | {pct(n[0], n[1])} | {pct(n[2], n[3])} | {pct(n[4], n[5])} "
            f"| {pct(n[6], n[7])} | {pct(n[8], n[9])} |")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
