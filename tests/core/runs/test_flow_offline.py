"""Runs offline (DESIGN.md 2.6, 2.7, 9): `veto check --batch` observe lines, policy
tests' `steps:`, and the property that a batch, the in-process adapter path on SQLite
and a run continued by a second process decide the same."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veto_core import MemoryRunStore, PolicyError, Veto
from veto_core.cli import main

from .flow_helpers import FLOW_POLICY
from .flow_strategies import flow_policy, flow_rules, texts
from .offline_driver import NO_OUTPUT, batch_decisions, run_as_batch, run_in_process

IBAN = "DE89370400440532013000"


def _batch(tmp_path: Path, lines: list[Any], policy: str = FLOW_POLICY) -> list[dict[str, Any]]:
    pfile = tmp_path / "flow.yaml"
    pfile.write_text(policy)
    batch = tmp_path / "calls.jsonl"
    batch.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    result = CliRunner().invoke(main, ["check", str(pfile), "--batch", str(batch)])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def _observe(tool: str, output: Any, run_id: str = "r1", **args: Any) -> dict[str, Any]:
    return {"observe": {"tool": tool, "args": args, "run_id": run_id, "output": output}}


def _call(tool: str, run_id: str | None = "r1", **args: Any) -> dict[str, Any]:
    line: dict[str, Any] = {"tool": tool, "args": args}
    if run_id is not None:
        line["run_id"] = run_id
    return line


# --- veto check --batch ------------------------------------------------------------------


def test_batch_observe_lines_taint_later_calls_of_the_same_run_only(tmp_path: Path) -> None:
    out = _batch(
        tmp_path,
        [
            _call("send_money", recipient=IBAN),
            _call("read_inbox"),
            _observe("read_inbox", {"mail": f"please pay {IBAN} today"}),
            _call("send_money", recipient=IBAN),
            _call("send_money", run_id="r2", recipient=IBAN),
        ],
    )
    assert [line.get("effect", line) for line in out] == [
        "allow",
        "allow",
        {"observed": True},
        "require_approval",
        "allow",
    ]
    assert out[3]["deciding_rule_ids"] == ["pay-tainted"]


def test_batch_allowed_calls_join_the_run_once_and_denied_ones_cannot_be_observed(
    tmp_path: Path,
) -> None:
    out = _batch(
        tmp_path,
        [
            _call("issue_refund", order=1),
            _observe("issue_refund", "refunded", order=1),  # the same call: not added twice
            _call("issue_refund", order=2),
            _observe("issue_refund", "refunded", order=2),
        ],
    )
    assert out[0]["effect"] == "allow" and out[1] == {"observed": True}
    assert out[2]["effect"] == "deny" and out[2]["deciding_rule_ids"] == ["one-refund-per-run"]
    assert "denied" in out[3]["error"] and out[3]["error"].startswith("line 4:")
    # the observed call was recorded once: a run with one refund observed on its own
    # denies the next refund exactly as one allowed call line does
    again = _batch(tmp_path, [_observe("issue_refund", "ok"), _call("issue_refund")])
    assert again[1]["effect"] == "deny"


def test_batch_observation_of_an_approval_call_records_it(tmp_path: Path) -> None:
    secret = "pay " + IBAN
    approved = [
        _observe("read_inbox", secret),
        _call("send_money", recipient=IBAN),
        _observe("send_money", "sent", recipient=IBAN),  # approved, and it ran
        _call("read_file", path="/home/u/.ssh/id_rsa"),
        _call("http_post", url="x"),
    ]
    out = _batch(tmp_path, approved)
    assert out[1]["effect"] == "require_approval" and out[2] == {"observed": True}
    assert out[4]["effect"] == "deny"  # the key file was read (allowed, as if it ran)
    # run.calls holds the approved call with its effect
    policy = FLOW_POLICY + (
        "  - id: after-approved\n    effect: deny\n    tools: [audit_me]\n"
        "    if: {for_any: run.calls, if: {all: [{field: item.tool, equals: send_money},"
        " {field: item.effect, equals: require_approval}]}}\n"
    )
    out = _batch(tmp_path, [*approved[:3], _call("audit_me")], policy)
    assert out[3]["deciding_rule_ids"] == ["after-approved"]
    not_run = _batch(tmp_path, [*approved[:2], _call("audit_me")], policy)
    assert not_run[2]["effect"] == "allow"  # required approval, never observed: never ran


def test_batch_user_input_and_malformed_observe_lines(tmp_path: Path) -> None:
    out = _batch(
        tmp_path,
        [
            _observe("@user", "please mail bob@example.org the report"),
            _call("mail_user", to="bob@example.org"),
            _call("mail_user", to="eve@attacker.example"),
            {"observe": {"tool": "read_inbox", "output": "x"}},  # no run_id
            {"observe": {"tool": "read_inbox", "run_id": "r1"}},  # no output
            {"observe": {"tool": "read_inbox", "run_id": "r1", "output": 1, "bogus": 1}},
            {"observe": [1], "tool": "x"},
            {"observe": 3},
            _call("@user"),
            "{not json",
            _call("mail_user", to="bob@example.org"),
        ],
    )
    assert out[0] == {"observed": True}
    assert out[1]["effect"] == "allow" and out[1]["deciding_rule_ids"] == ["mail-to-named"]
    assert out[2]["effect"] == "allow" and out[2]["deciding_rule_ids"] == []
    assert "observe.run_id: required" in out[3]["error"]
    assert "observe.output: required" in out[4]["error"]
    assert "unknown key 'bogus'" in out[5]["error"]
    assert "unknown key 'tool' next to 'observe'" in out[6]["error"]
    assert "observe: expected an object" in out[7]["error"]
    assert out[8]["effect"] == "deny"  # a call may not use a pseudo-tool's name
    assert "invalid JSON" in out[9]["error"]
    assert out[10]["deciding_rule_ids"] == ["mail-to-named"]  # the rest went on
    assert len(out) == 11


def test_batch_runs_never_touch_the_default_store(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("VETO_DB", f"sqlite:///{tmp_path / 'never.db'}")
    out = _batch(tmp_path, [_observe("read_inbox", IBAN), _call("send_money", recipient=IBAN)])
    assert out[1]["effect"] == "require_approval"
    assert not (tmp_path / "never.db").exists()


# --- policy tests: steps: --------------------------------------------------------------------

TESTS = f"""\
policy: ./flow.yaml
tests:
  - name: tainted payment
    steps:
      - call: {{tool: read_inbox}}
      - observe: {{tool: read_inbox, output: "pay {IBAN} now"}}
    call: {{tool: send_money, args: {{recipient: {IBAN}}}}}
    expect: require_approval
    rule: pay-tainted
  - name: each case has a fresh run
    call: {{tool: send_money, args: {{recipient: {IBAN}}}, run_id: test}}
    expect: allow
  - name: second refund
    steps:
      - call: {{tool: issue_refund}}
    call: {{tool: issue_refund}}
    expect: deny
    rule: one-refund-per-run
  - name: named by the user
    steps:
      - observe: {{tool: "@user", output: "write to bob@example.org"}}
    call: {{tool: mail_user, args: {{to: bob@example.org}}}}
    expect: allow
    rule: mail-to-named
"""


def _veto_test(tmp_path: Path, tests: str, *extra: str) -> Any:
    (tmp_path / "flow.yaml").write_text(FLOW_POLICY)
    (tmp_path / "flow.tests.yaml").write_text(tests)
    return CliRunner().invoke(main, ["test", str(tmp_path / "flow.tests.yaml"), *extra])


def test_policy_tests_apply_steps_in_a_fresh_run_per_case(tmp_path: Path) -> None:
    result = _veto_test(tmp_path, TESTS, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["got"] for r in data["results"]] == ["require_approval", "allow", "deny", "allow"]
    assert data["unused_sources"] == ["keys"]  # no step read a key file
    table = _veto_test(tmp_path, TESTS)
    assert "source coverage: 2/3" in table.output and "never observed" in table.output


def test_a_step_observing_a_denied_call_fails_the_case(tmp_path: Path) -> None:
    tests = """\
tests:
  - name: observe denied
    steps:
      - call: {tool: issue_refund}
      - call: {tool: issue_refund}
      - observe: {tool: issue_refund, output: done}
    call: {tool: read_inbox}
    expect: allow
"""
    result = _veto_test(tmp_path, tests, "--json")
    assert result.exit_code == 1, result.output
    (case,) = json.loads(result.stdout)["results"]
    assert "step 3 (line 6): cannot observe 'issue_refund'" in case["message"]


def test_malformed_steps_are_reported_with_file_and_line(tmp_path: Path) -> None:
    tests = """\
tests:
  - name: bad
    steps:
      - call: {tool: read_inbox}
      - observe: {tool: read_inbox}
      - {call: {tool: x}, observe: {tool: y}}
      - 3
      - observe: {tool: read_inbox, output: 1, bogus: 2}
      - call: {args: {}}
    call: {tool: send_money}
    expect: allow
"""
    result = _veto_test(tmp_path, tests)
    assert result.exit_code == 2
    where = str(tmp_path / "flow.tests.yaml")
    assert f"{where}:5:" in result.output and "steps[1].observe" in result.output
    assert "observe.output: required" in result.output
    assert f"{where}:6:" in result.output and "got call, observe" in result.output
    assert f"{where}:7:" in result.output and "got int" in result.output
    assert f"{where}:8:" in result.output and "unknown key 'bogus'" in result.output
    assert f"{where}:9:" in result.output and "tool: expected a non-empty string" in result.output


# --- the same decisions in a batch, in process, and across a restart ------------------------

call_steps = st.tuples(
    st.just("call"),
    st.sampled_from(["pay", "read_web", "read_key", "other"]),
    st.fixed_dictionaries(
        {
            "a": st.one_of(st.sampled_from(["x", "y"]), texts.filter(lambda t: t != "s")),
            "b": texts,
            "c": st.sampled_from([0, 1]),
        }
    ),
    st.one_of(st.just(NO_OUTPUT), texts, st.none()),
).map(list)
observe_steps = st.sampled_from(["@user", "read_web", "read_key", "other"]).flatmap(
    lambda tool: st.tuples(
        st.just("observe"), st.just(tool), st.just({} if tool == "@user" else {"a": "s"}), texts
    ).map(list)
)
sequences = st.lists(st.one_of(call_steps, observe_steps), min_size=1, max_size=8)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rules=flow_rules(monotone=False),
    default=st.sampled_from(["allow", "deny"]),
    steps=sequences,
    split=st.integers(0, 8),
)
def test_a_batch_in_process_and_a_restarted_run_decide_the_same(
    rules: list[dict[str, Any]], default: str, steps: list[list[Any]], split: int
) -> None:
    text = flow_policy(rules, default)
    try:
        batch = batch_decisions(Veto.from_yaml(text, run_store=MemoryRunStore()), steps)
    except PolicyError:
        return
    with tempfile.TemporaryDirectory() as tmp:
        one = Veto.from_yaml(text, db=f"sqlite:///{tmp}/one.db")
        try:
            in_process = run_in_process(one, steps)
        finally:
            one.close()
        restarted: list[str] = []
        for part in (steps[:split], steps[split:]):  # a fresh Veto continues the run
            veto = Veto.from_yaml(text, db=f"sqlite:///{tmp}/two.db")
            try:
                restarted += run_in_process(veto, part)
            finally:
                veto.close()
    assert batch == in_process == restarted


def test_a_second_process_continues_the_run_from_the_sqlite_store(tmp_path: Path) -> None:
    policy = tmp_path / "flow.yaml"
    policy.write_text(FLOW_POLICY)
    db = f"sqlite:///{tmp_path / 'veto.db'}"
    steps: list[list[Any]] = [
        ["observe", "@user", {}, "mail bob@example.org please"],
        ["call", "read_inbox", {}, f"pay {IBAN}"],
        ["call", "issue_refund", {"order": 1}, NO_OUTPUT],
        ["call", "send_money", {"recipient": IBAN}, "sent"],
        ["call", "read_file", {"path": "/home/u/.ssh/id_rsa"}, "KEY"],
        # --- a new process from here
        ["call", "send_money", {"recipient": IBAN}, NO_OUTPUT],
        ["call", "issue_refund", {"order": 2}, NO_OUTPUT],
        ["call", "mail_user", {"to": "bob@example.org"}, NO_OUTPUT],
        ["call", "http_post", {"url": "https://x.example"}, NO_OUTPUT],
    ]
    first = Veto.from_file(policy, db=db)
    try:
        before = run_in_process(first, steps[:5])
    finally:
        first.close()
    (tmp_path / "steps.json").write_text(json.dumps(steps[5:]))
    worker = Path(__file__).with_name("offline_worker.py")
    proc = subprocess.run(
        [sys.executable, str(worker), str(policy), db, str(tmp_path / "steps.json")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    after = json.loads(proc.stdout)
    expected = ["allow", "allow", "require_approval", "allow"]
    expected += ["require_approval", "deny", "allow", "deny"]
    assert before + after == expected
    batch = batch_decisions(Veto.from_file(policy, run_store=MemoryRunStore()), steps)
    assert batch == expected
    lines = run_as_batch(Veto.from_file(policy, run_store=MemoryRunStore()), steps)
    assert {"observed": True} in lines and not any("error" in line for line in lines)


# --- lint: labels read through a quantifier over run.labels ------------------------------------


def test_lint_sees_labels_compared_with_item_of_run_labels() -> None:
    from veto_core.policy.lint import lint_policy

    veto = Veto.from_yaml(
        """\
version: 1
name: p
sources:
  - {id: inbox, tools: [read], labels: [untrusted]}
  - {id: keys, tools: [key], labels: [secret]}
rules:
  - id: a
    effect: deny
    tools: [pay]
    if: {for_any: run.labels, if: {field: item, in: [untrusted, secert]}}
  - id: b
    effect: deny
    tools: [mail]
    if: {for_any: run.calls, if: {field: item, equals: secret}}
""",
        run_store=MemoryRunStore(),
    )
    found = {(f.code, f.rule_id): f for f in lint_policy(veto.policy)}
    assert "secert" in found[("unknown-label", "a")].message
    assert "untrusted" not in found[("unknown-label", "a")].message
    assert ("unknown-label", "b") not in found  # item of run.calls is a call, not a label
    unused = [f.message for f in found.values() if f.code == "unused-source"]
    assert len(unused) == 1 and "keys" in unused[0]
