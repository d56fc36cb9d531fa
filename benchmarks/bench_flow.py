"""Cost of data-flow rules (DESIGN.md 2.7): `decide()` with a flow rule over a run
history vs the same decision without run rules, and `observe()` of a 10 KB output.

decide: a payments policy whose flow variant adds two rules, ``args.iban tainted_by
untrusted`` (require_approval) and ``run.labels contains secret`` (deny); the baseline is
the same policy minus those two rules (and its sources). The run holds 50 earlier calls
whose outputs (about 4 KB each, 200 KB in all, from ``read_inbox``) are labelled
``untrusted``. Both policies decide the same calls, interleaved one to one (which goes
first alternates), each call timed alone with perf_counter_ns. Two cases, reported apart:

- ``new value``: every call pays a fresh IBAN (the realistic case, an agent pays each
  payee once): the taint memo misses, so each decision normalizes the value and searches
  the run's 200 KB of text (one C substring search per label);
- ``repeated value``: the same IBAN again (a retry, or a second rule on the same field):
  the memo answers.

Both cases decide against a history that does not change, where the taint index pays for
itself; the "agent loop" line is the other rhythm: observe a 10 KB output, decide two new
values, 40 times, the run growing from 200 to 600 KB.

observe: ``Veto.observe`` of a 10 KB JSON-like inbox output (about 10 KB of extracted
text), on a `MemoryRunStore` (extraction, labelling, normalization and the in-process
state update: the engine's own cost) and on the default SQLite run store in a temporary
directory (the same plus the durable write, one transaction per observation). Each
run gets at most 40 observations, so the per-run 1 MiB text bound does not turn the
measurement into one of dropping old text.

Run: ``uv run python benchmarks/bench_flow.py`` (``--calls N`` per case, ``--repeat R``
keeps the run with the lowest median). The load average is printed before and after:
on a shared machine the figures are only as good as the load they were taken under.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from veto_core import MemoryRunStore, Principal, ToolCall, Veto
from veto_core.runs import extract_text, normalize

BASE_RULES = """\
  - id: pay-small
    effect: allow
    tools: [send_money]
    if: {field: args.amount, less_or_equal: 1000}
  - id: pay-large
    effect: require_approval
    tools: [send_money]
    if: {field: args.amount, greater_than: 1000}
    approval: {approvers: ["role:finance"]}
  - id: read
    effect: allow
    tools: [read_inbox, get_balance]
"""

FLOW_RULES = """\
  - id: pay-tainted-iban
    effect: require_approval
    tools: [send_money]
    if: {field: args.iban, tainted_by: untrusted}
    approval: {approvers: ["role:finance"]}
  - id: no-payment-after-secret
    effect: deny
    tools: [send_money]
    if: {field: run.labels, contains: secret}
"""

SOURCES = """\
sources:
  - id: inbox
    tools: [read_inbox]
    labels: [untrusted]
  - id: keys
    tools: [read_file]
    if: {field: args.path, glob: "/home/*/.ssh/**"}
    labels: [secret]
"""

HEAD = "version: 1\nname: {name}\ndefault: deny\n"

FLOW_POLICY = HEAD.format(name="flow") + SOURCES + "rules:\n" + BASE_RULES + FLOW_RULES
PLAIN_POLICY = HEAD.format(name="plain") + "rules:\n" + BASE_RULES

PRINCIPAL = Principal(agent="assistant", roles=("assistant",), user="u1")
HISTORY_CALLS = 50
HISTORY_BYTES = 200_000
OBSERVE_BYTES = 10_000
RUN_OBSERVATIONS = 40


def words(rng: random.Random, n_bytes: int) -> str:
    out: list[str] = []
    size = 0
    while size < n_bytes:
        w = "".join(rng.choices(string.ascii_lowercase, k=rng.randrange(2, 10)))
        out.append(w)
        size += len(w) + 1
    return " ".join(out)[:n_bytes]


def iban(rng: random.Random) -> str:
    digits = "".join(rng.choices(string.digits, k=18))
    return f"DE{rng.randrange(10, 99)} {digits[:4]} {digits[4:8]} {digits[8:12]} {digits[12:16]} {digits[16:]}"


def inbox_output(rng: random.Random, n_bytes: int) -> dict[str, object]:
    """A JSON-like inbox page: a few messages, each with sender, subject, body; one IBAN
    per message (values that a later payment may or may not copy)."""
    messages = []
    per = n_bytes // 4
    for i in range(4):
        messages.append(
            {
                "id": rng.randrange(10**6),
                "from": f"sender{i}@mail{rng.randrange(100)}.example",
                "subject": words(rng, 40),
                "body": words(rng, per - 120) + f" please pay {iban(rng)} today",
            }
        )
    return {"messages": messages}


def call(tool: str, run_id: str, **args: object) -> ToolCall:
    return ToolCall(tool=tool, args=args, principal=PRINCIPAL, run_id=run_id)


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def summary(values: list[int]) -> tuple[float, float]:
    return statistics.median(values) / 1000, pct(values, 0.99)


def build_history(veto: Veto, run_id: str, rng: random.Random) -> None:
    """50 observed read_inbox calls, 200 KB of output text."""
    for i in range(HISTORY_CALLS):
        out = inbox_output(rng, HISTORY_BYTES // HISTORY_CALLS)
        veto.observe(call("read_inbox", run_id, page=i), out)
    state = veto._runs.state(None, run_id)
    assert len(state.calls) == HISTORY_CALLS, state.calls
    assert state.text_bytes >= HISTORY_BYTES * 0.95, state.text_bytes


def bench_decide(n_calls: int, seed: int) -> dict[str, tuple[list[int], list[int]]]:
    rng = random.Random(seed)
    flow = Veto.from_yaml(FLOW_POLICY, run_store=MemoryRunStore())
    plain = Veto.from_yaml(PLAIN_POLICY, run_store=MemoryRunStore())
    run_id = "bench-run"
    build_history(flow, run_id, rng)
    # sanity: the flow rule sees the history (a copied IBAN needs approval)
    tainted = flow._runs.state(None, run_id)._obs[3].norm
    assert tainted is not None
    at = tainted.find("please pay ") + len("please pay ")
    copied = tainted[at : at + 27]
    assert flow.decide(call("send_money", run_id, iban=copied, amount=5)).effect.value == (
        "require_approval"
    )
    results: dict[str, tuple[list[int], list[int]]] = {}
    for case in ("new value", "repeated value"):
        fixed = iban(rng)
        calls = [
            call("send_money", run_id, iban=iban(rng) if case == "new value" else fixed, amount=50)
            for _ in range(n_calls)
        ]
        for c in calls[:50]:  # warm-up (compiled deciders, caches)
            flow.decide(c)
            plain.decide(c)
        if case == "new value":  # warm-up consumed those values: use fresh ones
            calls = [call("send_money", run_id, iban=iban(rng), amount=50) for _ in range(n_calls)]
        t_flow: list[int] = []
        t_plain: list[int] = []
        gc.collect()
        gc.disable()
        try:
            clock = time.perf_counter_ns
            for i, c in enumerate(calls):
                order: tuple[tuple[Veto, list[int]], ...] = (
                    ((flow, t_flow), (plain, t_plain))
                    if i % 2
                    else ((plain, t_plain), (flow, t_flow))
                )
                for veto, sink in order:
                    t0 = clock()
                    d = veto.decide(c)
                    sink.append(clock() - t0)
                    assert d.effect.value == "allow", (d.effect, d.reasons, d.errors)
        finally:
            gc.enable()
        results[case] = (t_flow, t_plain)
    # where the new-value time goes: the substring search alone (runs/state.py), on the
    # run's haystack, for values of the same shape
    hay = flow._runs.state(None, run_id)._haystacks()["untrusted"]
    needles = [normalize(iban(rng)) for _ in range(n_calls)]
    t_search: list[int] = []
    clock = time.perf_counter_ns
    for needle in needles:
        t0 = clock()
        _ = needle in hay
        t_search.append(clock() - t0)
    results["search alone"] = (t_search, t_search)
    return results


def bench_observe(n_obs: int, seed: int, make: Callable[[], Veto]) -> list[int]:
    rng = random.Random(seed)
    veto = make()
    outputs = [inbox_output(rng, OBSERVE_BYTES) for _ in range(20)]
    timings: list[int] = []
    clock = time.perf_counter_ns
    run = 0
    for i in range(n_obs + 20):
        if i % RUN_OBSERVATIONS == 0:
            run += 1
            run_id = f"obs-{seed}-{run}"
            veto.decide(call("get_balance", run_id))  # the run is cached, as in an agent
        c = call("read_inbox", run_id, page=i)
        out = outputs[i % len(outputs)]
        t0 = clock()
        veto.observe(c, out)
        dt = clock() - t0
        if i >= 20:  # first 20: warm-up
            timings.append(dt)
    return timings


def bench_agent_loop(seed: int, rounds: int = 40, per_round: int = 2) -> list[int]:
    """An agent's rhythm: observe a 10 KB output, then decide ``per_round`` payments
    with new IBANs, ``rounds`` times, on a run growing from 200 KB (what the flow rule
    costs when the history keeps changing: no index pays for itself here)."""
    rng = random.Random(seed)
    veto = Veto.from_yaml(FLOW_POLICY, run_store=MemoryRunStore())
    run_id = "agent-loop"
    build_history(veto, run_id, rng)
    clock = time.perf_counter_ns
    timings: list[int] = []
    for i in range(rounds):
        veto.observe(
            call("read_inbox", run_id, page=HISTORY_CALLS + i), inbox_output(rng, OBSERVE_BYTES)
        )
        for _ in range(per_round):
            c = call("send_money", run_id, iban=iban(rng), amount=50)
            t0 = clock()
            d = veto.decide(c)
            timings.append(clock() - t0)
            assert d.effect.value == "allow", (d.effect, d.reasons, d.errors)
    return timings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000, help="decisions per case and policy")
    ap.add_argument("--observations", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    print(f"python {sys.version.split()[0]}; load average before: {loadavg()}")
    sample = inbox_output(random.Random(1), OBSERVE_BYTES)

    print(
        f"history: {HISTORY_CALLS} calls, {HISTORY_BYTES // 1000} KB labelled text; "
        f"observed output: {len(extract_text(sample).encode()) / 1000:.1f} KB of text"
    )
    best: dict[str, tuple[float, float, float, float]] = {}
    for r in range(args.repeat):
        for case, (t_flow, t_plain) in bench_decide(args.calls, seed=11 + r).items():
            fm, fp = summary(t_flow)
            pm, pp = summary(t_plain)
            if case not in best or fm < best[case][0]:
                best[case] = (fm, fp, pm, pp)
    print()
    print(
        "| decide() case | flow rule: median / p99 (µs) | no run rules: median / p99 (µs) | ratio (medians) |"
    )
    print("| --- | --- | --- | --- |")
    search = best.pop("search alone")
    for case, (fm, fp, pm, pp) in best.items():
        print(f"| {case} | {fm:.1f} / {fp:.1f} | {pm:.1f} / {pp:.1f} | {fm / pm:.2f}x |")
    print(
        f"\nthe substring search alone (one label's haystack, {HISTORY_BYTES // 1000} KB, "
        f"a new IBAN): median {search[0]:.1f} µs, p99 {search[1]:.1f} µs"
    )

    loops = [bench_agent_loop(21 + r) for r in range(args.repeat)]
    loop = min(loops, key=statistics.median)
    print(
        "\nagent loop (observe 10 KB, then decide 2 new values; 40 rounds, the run growing "
        f"from 200 to 600 KB): decide median {statistics.median(loop) / 1000:.1f} µs, "
        f"max {max(loop) / 1000:.1f} µs"
    )

    with tempfile.TemporaryDirectory() as tmp:
        stores: dict[str, Callable[[], Veto]] = {
            "MemoryRunStore": lambda: Veto.from_yaml(FLOW_POLICY, run_store=MemoryRunStore()),
            "SQLite run store": lambda: Veto.from_yaml(
                FLOW_POLICY, db=f"sqlite:///{Path(tmp) / 'veto.db'}"
            ),
        }
        obs: dict[str, tuple[float, float]] = {}
        for name, make in stores.items():
            runs = [
                summary(bench_observe(args.observations, 5 + r, make)) for r in range(args.repeat)
            ]
            obs[name] = min(runs)
    print()
    print("| observe() of a 10 KB output | median (µs) | p99 (µs) |")
    print("| --- | --- | --- |")
    for name, (m, p) in obs.items():
        print(f"| {name} | {m:.1f} | {p:.1f} |")
    write = obs["SQLite run store"][0] - obs["MemoryRunStore"][0]
    print(f"\nSQLite store write (difference of medians): {write:.1f} µs")
    print(f"load average after: {loadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
