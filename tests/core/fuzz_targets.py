"""atheris (libFuzzer) targets: the policy loader, the `veto check --batch` line parser
and every string operator (issue 14). test_fuzz_atheris.py runs each for a few seconds.

    python tests/core/fuzz_targets.py TARGET [libFuzzer flags] [corpus dirs]

TARGET is `loader`, `batch` or `operator:NAME`. An input fails the run when it raises
anything but the documented errors (PolicyError when loading; nothing at all from a
decision or a batch) or when deciding it takes more than 50 ms (the fastest of three
tries, so a busy machine is not a finding).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import atheris

with atheris.instrument_imports(include=["veto_core"]):
    from veto_core import Decision, Effect, PolicyError, Principal, ToolCall, Veto
    from veto_core.cli import run_batch
    from veto_core.policy.operators import BUILTIN_OPERATORS, EvalError, OperandError

BUDGET_S = 0.05

#: One operand per operator: what the fuzzed value is compared with.
OPERANDS: dict[str, Any] = {
    "equals": "api.example.com",
    "not_equals": 5,
    "in": ["a", "b", 3],
    "not_in": ["a", 2.5],
    "contains": ["x", "@"],
    "starts_with": ["https://", "/srv"],
    "ends_with": [".com", ".exe"],
    "matches": "^(a|b)+[0-9]{2,}$",
    "glob": ["*.example.com", "/srv/[ab]*/x?"],
    "greater_than": 100,
    "less_or_equal": -1.5,
    "between": [0, 1000],
    "length_greater_than": 3,
    "path_within": ["/srv/data", "/tmp"],
    "url_host_in": ["api.example.com", "*.example.org", "127.0.0.1", "::1"],
    "email_domain_in": ["example.com", "*.example.org"],
    "ip_in_cidr": ["127.0.0.0/8", "10.0.0.0/8", "fe80::/10", "::ffff:0:0/96"],
    "time_between": {"from": "09:00", "to": "17:00", "timezone": "Europe/Paris"},
    "weekday_in": ["mon", "fri"],
}
#: The operators whose operand is a string the fuzzer may also write.
STRING_OPERANDS = frozenset(
    {"equals", "contains", "starts_with", "ends_with", "matches", "glob", "path_within",
     "url_host_in", "email_domain_in", "ip_in_cidr"}
)  # fmt: skip

BATCH_POLICY = """\
version: 1
name: batch-fuzz
lists: {hosts: [api.example.com, "*.example.org"]}
rules:
  - {id: fetch, effect: allow, tools: [fetch], if: {field: args.url, url_host_in: {list: hosts}}}
  - {id: local, effect: deny, tools: [fetch, connect], if: {any: [{field: args.url, url_host_in: ["127.0.0.1"]}, {field: args.ip, ip_in_cidr: 127.0.0.0/8}]}}
  - {id: refund, effect: allow, tools: [refund], if: {all: [{field: args.amount, less_or_equal: 100}, {field: "args.items[*].sku", matches: "^[A-Z]+$"}]}}
  - {id: big, effect: require_approval, tools: [refund], if: {field: args.amount, greater_than: {field: context.cap}},
     approval: {approvers: ["role:finance"]}}
  - {id: mail, effect: allow, tools: [send], if: {field: args.to, email_domain_in: [example.com]}}
  - {id: files, effect: allow, tools: [read], if: {for_all: args.paths, if: {field: item, path_within: /srv}}}
"""


def _fastest(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    for _ in range(2):
        if elapsed <= BUDGET_S:
            break
        start = time.perf_counter()
        fn()
        elapsed = min(elapsed, time.perf_counter() - start)
    return elapsed


def _text(data: bytes) -> str:
    # Invalid UTF-8 becomes lone surrogates: hostile too, and reachable from Python callers.
    return data.decode("utf-8", "surrogateescape")


def _check_decision(d: Decision) -> None:
    assert d.effect in (Effect.ALLOW, Effect.DENY, Effect.REQUIRE_APPROVAL)
    assert set(d.deciding_rule_ids) <= set(d.rule_ids)
    assert (d.approval is not None) is (d.effect is Effect.REQUIRE_APPROVAL)


# --- targets ------------------------------------------------------------------------------


def loader_target() -> Callable[[bytes], None]:
    probe = ToolCall(tool="t", args={"a": "x", "b": 1}, principal=Principal(agent="a"))

    def one(data: bytes) -> None:
        text = _text(data)
        try:
            veto = Veto.from_yaml(text, file="fuzz.yaml")
        except PolicyError as exc:
            assert exc.problems and str(exc)
            return
        _check_decision(veto.decide(probe))

    return one


def batch_target() -> Callable[[bytes], None]:
    veto = Veto.from_yaml(BATCH_POLICY)

    def one(data: bytes) -> None:
        text = _text(data)
        expected = sum(1 for line in io.StringIO(text) if line.strip())
        outs: list[io.StringIO] = []

        def run() -> None:
            outs.append(io.StringIO())
            run_batch(veto, io.StringIO(text), outs[-1])

        elapsed = _fastest(run)
        assert elapsed <= BUDGET_S * max(1, expected), f"{expected} lines took {elapsed:.3f}s"
        lines = outs[0].getvalue().splitlines()
        assert len(lines) == expected, (len(lines), expected)
        for line in lines:
            answer = json.loads(line)
            assert "error" in answer or answer["effect"] in ("allow", "deny", "require_approval")

    return one


def operator_target(name: str) -> Callable[[bytes], None]:
    operand = OPERANDS[name]
    veto = Veto.from_yaml(
        json.dumps(
            {
                "version": 1,
                "name": "op-fuzz",
                "default": "allow",
                "rules": [
                    {"id": "plain", "effect": "deny", "tools": ["t"], "if": {"field": "args.x", name: operand}},
                    {"id": "each", "effect": "deny", "tools": ["u"], "if": {"field": "args.x[*]", name: operand}},
                ],
            }
        )
    )  # fmt: skip
    compile_op = BUILTIN_OPERATORS[name]

    def one(data: bytes) -> None:
        text = _text(data)
        value: Any = text
        tool = "t"
        if data[:1] == b"\x00":  # a list of values, split on NUL
            value, tool = _text(data[1:]).split("\x00"), "u"
        elif data[:1] == b"\x01":  # a JSON value, when it is one
            try:
                value = json.loads(text[1:])
            except (ValueError, RecursionError):
                value = text
        call = ToolCall(tool=tool, args={"x": value}, principal=Principal(agent="a"))
        decision: list[Decision] = []
        elapsed = _fastest(lambda: decision.append(veto.decide(call)))
        assert elapsed <= BUDGET_S, f"{name} took {elapsed * 1000:.1f} ms on {text[:80]!r}"
        _check_decision(decision[0])
        if decision[0].effect is Effect.ALLOW:
            assert not decision[0].errors
        # The fuzzed text as the operand: refused at compile time, or it decides.
        if name in STRING_OPERANDS and len(text) < 4096:
            try:
                pred = compile_op(text, ignore_case=bool(data[-1:] == b"i"))
            except OperandError:
                return
            with contextlib.suppress(EvalError):
                assert pred("/srv/data/a@example.com") in (True, False)

    return one


def main() -> None:
    target = sys.argv.pop(1)
    if target == "loader":
        one = loader_target()
    elif target == "batch":
        one = batch_target()
    elif target.startswith("operator:"):
        one = operator_target(target.split(":", 1)[1])
    else:
        raise SystemExit(f"unknown target {target!r}")
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
