"""`Veto.authorize`: decide + durable audit record; fail closed when it cannot record."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from veto_core import Effect, Principal, ToolCall, Veto
from veto_core.audit import open_audit

POLICY = """
version: 1
name: authz
audit: {mode: %s}
redact: [args.password]
rules:
  - {id: reads, effect: allow, tools: [read]}
  - {id: big, effect: require_approval, tools: [pay], if: {field: args.amount, greater_than: 10}, approval: {approvers: [ops]}}
"""


def make(tmp_path: Path, mode: str = "required", db: str | None = None) -> Veto:
    return Veto.from_yaml(
        POLICY % mode, env="prod", tenant="acme", db=db or f"sqlite:///{tmp_path / 'v.db'}"
    )


def test_the_record_is_committed_before_authorize_returns(tmp_path: Path) -> None:
    veto = make(tmp_path)
    call = ToolCall(
        tool="read",
        args={"path": "/x", "password": "hunter2"},
        principal=Principal(agent="a", user="u"),
        run_id="r1",
        tool_call_id="c1",
    )
    auth = veto.authorize(call)
    assert auth.run_tool and auth.decision.effect is Effect.ALLOW and auth.record_id
    # A second, independent connection sees it: it is on disk, not in a buffer.
    other = open_audit(f"sqlite:///{tmp_path / 'v.db'}")
    (record,) = other.query(tenant="acme")
    assert record.id == auth.record_id
    assert record.outcome == "allowed" and record.rule_ids == ("reads",)
    assert record.args["password"] == "[REDACTED]" and record.args["path"] == "/x"
    assert record.policy_revision == veto.policy_revision
    assert [r.revision for r in other.policy_revisions()] == [veto.policy_revision]
    assert other.verify().ok
    other.close()
    veto.close()


def test_approval_required_calls_do_not_run(tmp_path: Path) -> None:
    veto = make(tmp_path)
    auth = veto.authorize(ToolCall(tool="pay", args={"amount": 50}))
    assert not auth.run_tool
    assert auth.decision.effect is Effect.REQUIRE_APPROVAL
    assert veto.audit.query(tenant="acme")[0].outcome == "pending_approval"
    veto.close()


def test_unavailable_audit_denies_the_call(tmp_path: Path) -> None:
    veto = make(tmp_path, db="nosuchscheme://nowhere")
    auth = veto.authorize(ToolCall(tool="read"))
    assert not auth.run_tool
    assert auth.decision.effect is Effect.DENY
    assert auth.record_id is None
    assert auth.decision.reasons[0].startswith("audit unavailable")


def test_unwritable_store_denies_the_call(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    veto = make(tmp_path, db=f"sqlite:///{blocker / 'sub' / 'v.db'}")
    auth = veto.authorize(ToolCall(tool="read"))
    assert auth.decision.effect is Effect.DENY and "audit unavailable" in auth.decision.reason


def test_best_effort_mode_warns_loudly_and_lets_the_call_through(tmp_path: Path) -> None:
    veto = make(tmp_path, mode="best_effort", db="nosuchscheme://nowhere")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        auth = veto.authorize(ToolCall(tool="read"))
    assert auth.run_tool and auth.record_id is None
    assert any("VETO AUDIT UNAVAILABLE" in str(w.message) for w in caught)


def test_best_effort_never_turns_a_deny_into_allow() -> None:
    veto = Veto.from_yaml(POLICY % "best_effort", db="nosuchscheme://nowhere")
    with pytest.warns(RuntimeWarning):
        auth = veto.authorize(ToolCall(tool="unknown"))
    assert auth.decision.effect is Effect.DENY and not auth.run_tool


def test_authorize_imports_nothing_per_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The adapters' path does its imports once (issue 17, item 4): a function-level
    ``import`` runs the import machinery on every call."""
    import builtins

    veto = make(tmp_path)
    call = ToolCall(tool="read", args={"path": "/x"}, principal=Principal(agent="a"))
    assert veto.authorize(call).run_tool  # warm up: the store opens, caches fill
    real = builtins.__import__
    seen: list[str] = []

    def counting(name: str, *args: object, **kwargs: object) -> object:
        seen.append(name)
        return real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", counting)
    for _ in range(5):
        assert veto.authorize(call).run_tool
    builtins.__import__ = real  # (monkeypatch.setattr would itself import)
    assert seen == []
    veto.close()
