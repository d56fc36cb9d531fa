"""The toolkit the framework adapters share (``veto_core.adapters``)."""

from __future__ import annotations

import unicodedata
from dataclasses import FrozenInstanceError
from types import SimpleNamespace
from typing import Any

import pytest

from veto_core import Authorization, Decision, Effect, Principal, ToolCall
from veto_core import adapters as A
from veto_core.approvals.model import ApprovalState

CALL = ToolCall(tool="refund", args={"amount": 5}, tool_call_id="tc-1")


def _decision(effect: Effect, reasons: tuple[str, ...] = ("too big",), **kw: Any) -> Decision:
    return Decision(
        effect=effect,
        rule_ids=("r1", "r2"),
        deciding_rule_ids=("r1", "r2"),
        reasons=reasons,
        errors=(),
        policy_name="p",
        policy_revision="rev-1",
        **kw,
    )


def _request(state: ApprovalState | str | None, final_reason: str | None = None) -> Any:
    return SimpleNamespace(id="req-9", state=state, final_reason=final_reason)


def _auth(effect: Effect, approval: Any = None, **kw: Any) -> Authorization:
    return Authorization(decision=_decision(effect), record_id="rec-1", approval=approval, **kw)


# --- VetoContext ------------------------------------------------------------------------


def test_veto_context_coerces_a_mapping_and_keeps_an_instance() -> None:
    ctx = A.VetoContext.coerce(
        {
            "principal": {"user": "u1", "roles": ["ops", "admin"]},
            "env": "prod",
            "tenant": "acme",
            "run_id": "r-1",
            "context": {"ticket": 7},
        }
    )
    assert ctx == A.VetoContext(
        principal=Principal(user="u1", roles=("ops", "admin")),
        env="prod",
        tenant="acme",
        run_id="r-1",
        context={"ticket": 7},
    )
    assert A.VetoContext.coerce(ctx) is ctx
    assert A.VetoContext.coerce(None) is None
    with pytest.raises(FrozenInstanceError):
        ctx.env = "dev"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"who": "x"}, "unknown VetoContext keys: ['who']"),
        ({"principal": "alice"}, "VetoContext.principal must be a Principal"),
        ({"env": 5}, "VetoContext.env must be a string, not int"),
        ({"tenant": ["a"]}, "VetoContext.tenant must be a string, not list"),
        ({"run_id": 1.5}, "VetoContext.run_id must be a string, not float"),
        ({"context": "k=v"}, "VetoContext.context must be a mapping"),
        ("prod", "expected a VetoContext or a mapping, got str"),
    ],
)
def test_veto_context_rejects_malformed_values(value: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        A.VetoContext.coerce(value)


def test_veto_context_over_fills_only_unset_fields() -> None:
    base = A.VetoContext(
        principal=Principal(user="base"), env="dev", tenant="t0", run_id="r0", context={"a": 1}
    )
    top = A.VetoContext(env="prod", run_id="r1")
    merged = top.over(base)
    assert merged == A.VetoContext(
        principal=Principal(user="base"), env="prod", tenant="t0", run_id="r1", context={"a": 1}
    )
    assert A.VetoContext().over(base) == base
    assert top.over(A.VetoContext()) == top


def test_veto_context_from_run_context() -> None:
    ctx = A.VetoContext(run_id="r")
    assert A.VetoContext.from_run_context(None) is None
    assert A.VetoContext.from_run_context(ctx) is ctx
    assert A.VetoContext.from_run_context({"veto": {"run_id": "r"}}) == ctx
    assert A.VetoContext.from_run_context({"other": 1}) is None
    assert A.VetoContext.from_run_context(SimpleNamespace(veto=ctx)) is ctx
    assert A.VetoContext.from_run_context(SimpleNamespace()) is None
    with pytest.raises(TypeError):
        A.VetoContext.from_run_context({"veto": {"bogus": 1}})


# --- ToolNames --------------------------------------------------------------------------


def test_tool_names_aliases_custom_and_plain() -> None:
    names = A.ToolNames(aliases={"s": "web.search"}, custom=lambda n: "x." + n)
    assert names.canonical("s") == "web.search"
    assert names.canonical("other") == "x.other"
    assert A.ToolNames().canonical("plain") == "plain"


def test_tool_names_mcp_canonicalization() -> None:
    names = A.ToolNames(mcp_servers=("git", "github"), mcp_tools={"get_pull": "github"})
    assert names.mcp_servers == ("github", "git")  # longest server first
    assert names.canonical("github_create_issue") == "mcp__github__create_issue"
    assert names.canonical("git_log") == "mcp__git__log"
    assert names.canonical("get_pull") == "mcp__github__get_pull"
    assert names.canonical("github_") == "github_"  # no tool after the prefix
    assert names.canonical("mcp__a__b") == "mcp__a__b"  # already canonical: kept
    assert names.canonical("unrelated") == "unrelated"


def test_tool_names_mcp_with_the_server_given_separately() -> None:
    names = A.ToolNames(aliases={"mcp__gh__merge": "git.merge"})
    assert names.mcp("gh", "gh_create") == "mcp__gh__create"  # server prefix removed
    assert names.mcp("gh", "create") == "mcp__gh__create"
    assert names.mcp("gh", "gh_") == "mcp__gh__gh_"
    assert names.mcp("gh", "merge") == "git.merge"  # aliases apply to the MCP name


def test_tool_names_nfc_normalizes_and_rejects_a_bare_string_of_servers() -> None:
    decomposed = unicodedata.normalize("NFD", "café")
    names = A.ToolNames(aliases={"café": "coffee"})
    assert names.canonical(decomposed) == "coffee"
    assert A.ToolNames().canonical(decomposed) == "café"
    with pytest.raises(TypeError, match="tuple of server names"):
        A.ToolNames(mcp_servers="github")  # type: ignore[arg-type]


# --- verdicts ---------------------------------------------------------------------------


def test_decision_text_appends_missing_rule_ids() -> None:
    assert A.decision_text(_decision(Effect.DENY)) == "too big [r1, r2]"
    assert A.decision_text(_decision(Effect.DENY, ("too big [r1]",))) == "too big [r1] [r2]"
    assert A.decision_text(_decision(Effect.DENY, ())) == "no reason given [r1, r2]"
    assert A.decision_text(_decision(Effect.DENY), "other [r2]") == "other [r2] [r1]"
    assert A.decision_text(_decision(Effect.DENY), "") == "no reason given [r1, r2]"


def test_allowed_and_approved_run() -> None:
    allowed = A.from_authorization(CALL, _auth(Effect.ALLOW))
    assert (allowed.run, allowed.outcome, allowed.reason) == (True, "allowed", "")
    assert allowed.call is CALL and allowed.decision is not None
    approved = A.from_authorization(
        CALL,
        _auth(Effect.REQUIRE_APPROVAL, _request(ApprovalState.APPROVED), released=True),
    )
    assert (approved.run, approved.outcome, approved.approval_id) == (True, "approved", "req-9")


def test_shadow_decisions_run() -> None:
    auth = Authorization(decision=_decision(Effect.DENY, enforced=False), record_id="rec")
    assert A.from_authorization(CALL, auth).run is True


def test_denied_names_the_rules() -> None:
    v = A.from_authorization(CALL, _auth(Effect.DENY))
    assert not v.run and v.outcome == "denied"
    assert v.reason == "Veto: tool call 'refund' was not run (denied): too big [r1, r2]"
    assert v.info()["veto"] == {
        "outcome": "denied",
        "reason": v.reason,
        "approval_id": None,
        "rule_ids": ["r1", "r2"],
        "policy_revision": "rev-1",
    }


@pytest.mark.parametrize(
    ("state", "outcome", "says"),
    [
        (None, "pending", "approval request req-9 is pending."),
        (ApprovalState.PENDING, "pending", "approval request req-9 is pending."),
        (ApprovalState.DENIED, "rejected", "approval request req-9 is denied (no way)."),
        (ApprovalState.EXPIRED, "expired", "approval request req-9 is expired (no way)."),
        (ApprovalState.CANCELLED, "cancelled", "approval request req-9 is cancelled (no way)."),
        (
            ApprovalState.APPROVED,
            "not released",
            "approval request req-9 is approved but already used",
        ),
    ],
)
def test_require_approval_not_released(state: Any, outcome: str, says: str) -> None:
    v = A.from_authorization(CALL, _auth(Effect.REQUIRE_APPROVAL, _request(state, "no way")))
    assert not v.run and v.outcome == outcome and outcome in A.OUTCOMES
    assert v.reason.startswith(f"Veto: tool call 'refund' was not run ({outcome}): {says}")
    assert v.reason.endswith("Approval was required: too big [r1, r2]")
    assert v.approval_id == "req-9"


def test_require_approval_without_a_request_is_pending() -> None:
    v = A.from_authorization(CALL, _auth(Effect.REQUIRE_APPROVAL))
    assert (v.run, v.outcome, v.approval_id) == (False, "pending", None)
    assert "the approval request is pending" in v.reason


def test_approval_error_is_an_error() -> None:
    v = A.from_authorization(
        CALL, _auth(Effect.REQUIRE_APPROVAL, _request("pending"), approval_error="store down")
    )
    assert not v.run and v.outcome == "error"
    assert "the approval could not be handled (fail closed): store down." in v.reason


def test_explain_approval_replaces_only_the_text() -> None:
    seen: list[str] = []

    def explain(auth: Authorization, outcome: str) -> str:
        seen.append(outcome)
        return "custom"

    v = A.from_authorization(
        CALL, _auth(Effect.REQUIRE_APPROVAL, _request("denied")), explain_approval=explain
    )
    assert (v.outcome, v.reason) == (
        "rejected",
        "Veto: tool call 'refund' was not run (rejected): custom",
    )
    denied = A.from_authorization(CALL, _auth(Effect.DENY), explain_approval=explain)
    assert denied.outcome == "denied" and seen == ["rejected"]


def test_not_released_appends_the_note() -> None:
    v = A.not_released(CALL, _decision(Effect.REQUIRE_APPROVAL), _request("pending"), "; waiting")
    assert v.outcome == "pending" and "is pending; waiting. Approval was required" in v.reason


def test_approval_helpers() -> None:
    assert A.state_name(None) is None
    assert A.state_name(_request(ApprovalState.DENIED)) == "denied"
    assert A.state_name(_request("EXPIRED")) == "expired"
    assert A.approval_id(None) is None
    assert A.approval_id(SimpleNamespace(id=12)) == "12"
    assert A.approval_outcome(None) == "pending"


# --- failing closed ---------------------------------------------------------------------


def test_error_verdict_and_fail_closed() -> None:
    v = A.error_verdict("refund", KeyError("k"), call=CALL)
    assert not v.run and v.outcome == "error" and v.call is CALL
    assert v.reason == (
        "Veto: tool call 'refund' was not run (error): the policy check failed, so the "
        "call is blocked (fail closed): KeyError: 'k'"
    )

    def boom() -> A.Verdict:
        raise RuntimeError("bug")

    assert A.fail_closed("refund", boom).outcome == "error"
    ok = A.Verdict(run=True, outcome="allowed", reason="")
    assert A.fail_closed("refund", lambda: ok) is ok


class _Veto:
    """Stands in for ``Veto``: returns ``auth`` or raises ``exc``."""

    def __init__(self, auth: Authorization | None = None, exc: Exception | None = None) -> None:
        self.auth, self.exc, self.timeouts = auth, exc, []  # type: list[float | None]

    def authorize(self, call: ToolCall) -> Authorization:
        if self.exc:
            raise self.exc
        assert self.auth is not None
        return self.auth

    def authorize_and_wait(self, call: ToolCall, timeout: float | None = None) -> Authorization:
        self.timeouts.append(timeout)
        return self.authorize(call)


def test_authorize_maps_and_fails_closed() -> None:
    auth = _auth(Effect.DENY)
    verdict, got = A.authorize(_Veto(auth), CALL)  # type: ignore[arg-type]
    assert got is auth and verdict.outcome == "denied"
    verdict, got = A.authorize(_Veto(exc=OSError("disk")), CALL)  # type: ignore[arg-type]
    assert got is None and verdict.outcome == "error" and "OSError: disk" in verdict.reason


def test_authorize_and_wait_passes_the_timeout_and_fails_closed() -> None:
    veto = _Veto(_auth(Effect.ALLOW))
    assert A.authorize_and_wait(veto, CALL, 2.5).run  # type: ignore[arg-type]
    assert veto.timeouts == [2.5]
    broken = A.authorize_and_wait(_Veto(exc=RuntimeError("x")), CALL)  # type: ignore[arg-type]
    assert not broken.run and broken.outcome == "error"


def test_tool_call_denied_carries_the_verdict() -> None:
    exc = A.ToolCallDenied("nope", tool="refund", outcome="denied", tool_call_id="tc-1")
    assert isinstance(exc, PermissionError) and str(exc) == "nope"
    assert (exc.reason, exc.tool, exc.outcome, exc.tool_call_id) == (
        "nope",
        "refund",
        "denied",
        "tc-1",
    )
    assert exc.decision is None and exc.approval_id is None


def test_everything_exported_exists() -> None:
    assert sorted(A.__all__) == sorted(set(A.__all__))
    for name in A.__all__:
        assert hasattr(A, name), name


def test_coerce_follows_a_run_context_changed_in_place() -> None:
    VetoContext = A.VetoContext
    run = {"run_id": "r1", "env": "prod"}
    first = VetoContext.coerce(run)
    assert VetoContext.coerce(run) == first  # the same items: the same answer
    run["run_id"] = "r2"
    assert VetoContext.coerce(run) == VetoContext(run_id="r2", env="prod")
    run["principal"] = Principal(user="a")
    assert VetoContext.coerce(run).principal == Principal(user="a")  # type: ignore[union-attr]
    nested = {"principal": {"user": "a"}}
    assert VetoContext.coerce(nested).principal == Principal(user="a")  # type: ignore[union-attr]
    nested["principal"]["user"] = "b"  # type: ignore[index]
    assert VetoContext.coerce(nested).principal == Principal(user="b")  # type: ignore[union-attr]
    run["env"] = 5  # type: ignore[assignment]
    with pytest.raises(TypeError, match="env"):
        VetoContext.coerce(run)
