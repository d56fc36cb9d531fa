"""Decision latency of `Veto.decide()` as the policy grows from 10 to 10,000 rules.

Each policy has a realistic mix: ~5 rules per tool, argument conditions
(numeric, membership, string, regex, email domain), role scopes with
inheritance, env scopes, `otherwise`, and glob rules (`svcN.*`, `mcp__*`)
that match many tools. Calls are drawn from tools the policy names, plus
unknown tools, with arguments that make rules match and not match; one call
in 20 lacks an argument a rule reads (the fail-closed error path).

Each call is timed on its own (perf_counter_ns around one decide(), timer
overhead included), after a warm-up pass (which also builds each tool's compiled
decider, on its first call). On a shared machine, `--repeat N` times every size N
times and reports the run with the lowest median (and the fastest of N loads);
the load average is printed before and after.
"load" is `Veto.from_yaml` on the policy's YAML text: parse, validate, compile.
Run: `uv run python benchmarks/bench_engine.py --repeat 3`.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time

import yaml

from veto_core import Principal, ToolCall, Veto

ROLES = {
    "agent": {},
    "support": {"inherits": ["agent"]},
    "lead": {"inherits": ["support"]},
    "finance": {},
}


def make_policy(n_rules: int, seed: int = 7) -> dict[str, object]:
    rng = random.Random(seed)
    n_tools = max(2, n_rules // 5)
    rules: list[dict[str, object]] = []
    for i in range(n_rules):
        kind = i % 10
        tool = f"svc{i % max(1, n_tools // 10)}.tool{rng.randrange(n_tools)}"
        rule: dict[str, object] = {"id": f"r{i}", "tools": [tool]}
        if kind in (0, 1, 2):
            rule["effect"] = "allow"
            rule["if"] = {"field": "args.amount", "less_or_equal": rng.randrange(10, 1000)}
            rule["when"] = {"role": ["support"]}
        elif kind == 3:
            rule["effect"] = "require_approval"
            rule["if"] = {"field": "args.amount", "greater_than": rng.randrange(100, 5000)}
            rule["approval"] = {"approvers": ["role:finance"], "timeout": "30m"}
        elif kind == 4:
            rule["effect"] = "deny"
            rule["if"] = {
                "not": {"field": "args.to", "email_domain_in": ["example.com", "*.example.org"]}
            }
        elif kind == 5:
            rule["effect"] = "allow"
            rule["if"] = {"field": "args.status", "in": ["open", "pending", "solved"]}
            rule["otherwise"] = "deny"
        elif kind == 6:
            rule["effect"] = "deny"
            rule["if"] = {"field": "args.query", "matches": "(?i)drop\\s+table"}
            rule["when"] = {"env": ["prod", "staging"]}
        elif kind == 7:
            rule["effect"] = "allow"
            rule["if"] = {
                "all": [
                    {"field": "args.amount", "greater_than": 0},
                    {"field": "principal.user", "starts_with": "u"},
                ]
            }
        elif kind == 8:
            rule["effect"] = "allow"
            rule["when"] = {"role": ["lead"], "env": ["prod", "dev"]}
        else:
            # Glob rules: a service-wide deny on a path condition, or MCP tools.
            rule["effect"] = "deny"
            rule["tools"] = (
                [f"svc{i % max(1, n_tools // 10)}.*"] if i % 20 == 9 else ["mcp__github__*"]
            )
            rule["if"] = {"field": "args.path", "starts_with": "/etc/"}
        rules.append(rule)
    return {
        "version": 1,
        "name": f"bench-{n_rules}",
        "default": "deny",
        "roles": ROLES,
        "rules": rules,
    }


def make_calls(policy: dict[str, object], count: int, seed: int = 11) -> list[ToolCall]:
    rng = random.Random(seed)
    tools = sorted({t for r in policy["rules"] for t in r["tools"] if "*" not in t})  # type: ignore[attr-defined]
    principals = [
        Principal(agent="bot", roles=("support",), user="u1"),
        Principal(agent="bot", roles=("lead",), user="u2"),
        Principal(agent="bot", roles=("agent",), user="x9"),
    ]
    full = {
        "amount": 50,
        "to": "a@example.com",
        "status": "open",
        "query": "select 1",
        "path": "/srv/x",
    }
    arg_choices = [
        full,
        {**full, "amount": "750.5", "to": "b@mail.example.org", "status": "closed"},
        {**full, "amount": 20000, "to": "c@evil.test", "query": "DROP  TABLE users"},
        {**full, "amount": 5, "status": "pending", "path": "/etc/passwd"},
        {**full, "amount": 99.5, "to": "Dana <d@example.com>", "status": "solved"},
    ]
    # One call in 20 lacks an argument some rule reads: the fail-closed error path.
    partial = [
        {k: v for k, v in a.items() if k != drop} for a in arg_choices for drop in ("amount", "to")
    ]
    calls = []
    for _ in range(count):
        tool = rng.choice(tools) if rng.random() < 0.95 else f"unknown_tool_{rng.randrange(50)}"
        if rng.random() < 0.03:
            tool = f"mcp__github__op{rng.randrange(5)}"
        args = rng.choice(partial) if rng.random() < 0.05 else rng.choice(arg_choices)
        calls.append(
            ToolCall(
                tool=tool,
                args=args,
                principal=rng.choice(principals),
                env=rng.choice(["prod", "dev"]),
            )
        )
    return calls


def measure(veto: Veto, calls: list[ToolCall]) -> tuple[float, float, float]:
    decide = veto.decide
    for call in calls:  # warm the tool-name and role caches, as in a running agent
        decide(call)
    timings = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for call in calls:
            t0 = clock()
            decide(call)
            timings.append(clock() - t0)
    finally:
        gc.enable()
    timings.sort()
    median = statistics.median(timings) / 1000
    p99 = timings[int(len(timings) * 0.99)] / 1000
    mean = sum(timings) / len(timings) / 1000
    return median, p99, mean


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per size; the best median is kept"
    )
    args = parser.parse_args()
    print(
        f"Python {sys.version.split()[0]}, {args.calls} calls per size, one decide() per timing "
        f"(timer included), best of {args.repeat} run(s); load average {_load()}\n"
    )
    print("| rules | load (ms) | median µs | p99 µs | mean µs |")
    print("|------:|----------:|----------:|-------:|--------:|")
    results = {}
    for size in (int(s) for s in args.sizes.split(",")):
        policy = make_policy(size)
        text = yaml.safe_dump(policy, sort_keys=False)
        load_ms = float("inf")
        best: tuple[float, float, float] | None = None
        calls = make_calls(policy, args.calls)
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            veto = Veto.from_yaml(text, file=f"bench-{size}.yaml")
            load_ms = min(load_ms, (time.perf_counter() - t0) * 1000)
            run = measure(veto, calls)
            if best is None or run[0] < best[0]:
                best = run
        assert best is not None
        median, p99, mean = best
        results[size] = median
        print(f"| {size:,} | {load_ms:,.0f} | {median:.2f} | {p99:.2f} | {mean:.2f} |")
    print(f"\nload average after: {_load()}")
    if 100 in results and 10000 in results:
        print(
            f"\n10,000-rule median / 100-rule median = {results[10000] / results[100]:.2f} (target ≤ 1.5)"
        )
    if 1000 in results:
        print(f"1,000-rule median = {results[1000]:.2f} µs (target ≤ 1 µs)")
    return 0


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


if __name__ == "__main__":
    raise SystemExit(main())
