"""Canonical identities (DESIGN.md 2.8) and per-rule approval requirements (2.2 step 3/4),
on both stores: aliases never count twice, never let the requester approve, and an
overlay's approvers never release a base rule's approval."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import pytest
from approval_helpers import call
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veto_core import PolicyError, Principal, ToolCall, Veto
from veto_core.approvals import ApprovalState, Approver, NotEligible, SelfApproval
from veto_core.identity import IdentityError, canonical_identity

POLICY = """
version: 1
name: identities
rules:
  - id: two-people
    effect: require_approval
    tools: [pay]
    approval: {approvers: [alice, bob, erin, "dana@example.com", "role:finance"], quorum: 2}
  - id: ops
    effect: require_approval
    tools: [restart]
    approval: {approvers: ["role:ops", bob, "dana@example.com"]}
  - {id: spend-ok, effect: allow, tools: [spend]}
limits:
  - id: budget
    tools: [spend]
    per: [principal.user]
    window: 1h
    count: true
    max: 1
"""

REQUESTER = Principal(agent="bot", user="mallory")


def veto_at(db: str) -> Veto:
    return Veto.from_yaml(POLICY, env="prod", tenant="acme", db=db)


def pending(veto: Veto, tool: str = "pay", principal: Principal = REQUESTER, n: int = 1) -> str:
    auth = veto.authorize(call(tool, principal=principal, tool_call_id=f"c{n}"))
    assert auth.approval is not None, auth.decision
    return str(auth.approval.id)


# --- class 2: one person is one vote, however spelled ------------------------------------


def fullwidth(text: str) -> str:
    """The full-width copy of an ASCII name (NFKC maps it back)."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


FULLWIDTH_ALICE = fullwidth("alice")


@pytest.mark.parametrize(
    "alias", ["alice ", " Alice", "ALICE", FULLWIDTH_ALICE, FULLWIDTH_ALICE + "\u3000"]
)
def test_one_approver_under_two_spellings_counts_once(db_url: str, alias: str) -> None:
    veto = veto_at(db_url)
    rid = pending(veto)
    svc = veto.approvals
    assert svc.decide(rid, approver=alias, approve=True).state is ApprovalState.PENDING
    after = svc.decide(rid, approver="alice", approve=True)
    assert after.state is ApprovalState.PENDING and len(after.approved_by) == 1
    assert svc.decide(rid, approver="bob", approve=True).state is ApprovalState.APPROVED
    veto.close()


@pytest.mark.parametrize(
    "hidden", ["\u200b", "\u200d", "\u2060", "\ufeff", "\u202e", "\u2066", "\x00", "\n", "\u3164"]
)
def test_an_id_with_hidden_characters_is_refused(db_url: str, hidden: str) -> None:
    veto = veto_at(db_url)
    rid = pending(veto)
    svc = veto.approvals
    svc.decide(rid, approver="erin", approve=True)
    with pytest.raises(NotEligible, match="not allowed in identities"):
        svc.decide(rid, approver="erin" + hidden, approve=True)
    assert svc.get(rid).state is ApprovalState.PENDING and len(svc.get(rid).votes) == 1
    veto.close()


@pytest.mark.parametrize("alias", ["mallory", "Mallory ", fullwidth("MALLORY"), "BOT"])
def test_the_requester_cannot_approve_under_any_spelling(db_url: str, alias: str) -> None:
    veto = Veto.from_yaml(
        POLICY.replace("[alice, bob,", "[alice, bob, mallory, bot,"), tenant="acme", db=db_url
    )
    rid = pending(veto)
    with pytest.raises(SelfApproval):
        veto.approvals.decide(rid, approver=alias, approve=True)
    veto.close()


def _users(db: str, *users: tuple[str, str | None, tuple[str, ...]]) -> None:
    from veto_core.server.store import ServerStore

    store = ServerStore(db)
    try:
        for name, email, roles in users:
            store.add_user(
                name, "correct horse", tenant="acme", role="approver", policy_roles=roles,
                email=email,
            )  # fmt: skip
    finally:
        store.close()


def test_a_user_known_by_id_and_email_counts_once(db_url: str) -> None:
    veto = veto_at(db_url)
    _users(db_url, ("dana", "Dana@Example.com", ("finance",)))
    rid = pending(veto)
    svc = veto.approvals
    svc.decide(rid, approver="dana@example.com", approve=True)
    # The same person by user id (from the `veto users` table) is not a second approver.
    after = svc.decide(rid, approver=Approver(id="dana", roles=("finance",)), approve=True)
    assert after.state is ApprovalState.PENDING and len(after.approved_by) == 1
    assert svc.decide(rid, approver="bob", approve=True).state is ApprovalState.APPROVED
    veto.close()


def test_the_requester_cannot_approve_under_its_email_alias(db_url: str) -> None:
    veto = veto_at(db_url)
    _users(db_url, ("dana", "dana@example.com", ("ops",)))
    rid = pending(veto, "restart", Principal(agent="bot", user="dana"))
    with pytest.raises(SelfApproval):
        veto.approvals.decide(rid, approver="DANA@example.com ", approve=True)
    assert veto.approvals.get(rid).votes == ()
    veto.close()


def test_a_requester_with_hidden_characters_gets_no_request(sqlite_url: str) -> None:
    veto = veto_at(sqlite_url)
    auth = veto.authorize(call("pay", principal=Principal(agent="bot", user="bob\u200b")))
    assert not auth.run_tool and auth.approval is None
    assert "not allowed in identities" in auth.reason
    veto.close()


@pytest.mark.parametrize("alias", ["Bob", "bob ", " BOB", fullwidth("bob")])
def test_limit_keys_on_principal_user_are_canonical(sqlite_url: str, alias: str) -> None:
    veto = veto_at(sqlite_url)

    def spend(user: str) -> bool:
        return veto.authorize(ToolCall(tool="spend", principal=Principal(user=user))).run_tool

    assert spend("bob")
    assert not spend(alias)  # one budget, not one per spelling
    assert not spend("bob\u200b")  # a hidden character fails closed
    assert spend("carol")
    veto.close()


# --- properties over aliases ----------------------------------------------------------------

NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz.-_@", min_size=1, max_size=12).filter(
    lambda s: s.strip()
)
HIDDEN = st.sampled_from(["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u200e", "\u202a",
                          "\u202e", "\u2066", "\u2069", "\x07", "\x1b", "\u3164", "\ufe0f"])  # fmt: skip


@st.composite
def spelled(draw: st.DrawFn, name: str) -> str:
    """The same identity, spelled differently: case, full width, surrounding whitespace."""
    out = []
    for ch in name:
        if draw(st.booleans()):
            ch = ch.upper()
        if draw(st.booleans()) and "!" <= ch <= "~":
            ch = chr(ord(ch) + 0xFEE0)  # full-width form: NFKC maps it back
        out.append(ch)
    pad = st.sampled_from(["", " ", "\u00a0", "\u3000", "  "])
    return draw(pad) + "".join(out) + draw(pad)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), name=NAMES)
def test_aliases_have_one_canonical_identity(data: st.DataObject, name: str) -> None:
    alias = data.draw(spelled(name))
    assert canonical_identity(alias) == canonical_identity(name)
    assert canonical_identity(canonical_identity(alias)) == canonical_identity(alias)
    assert unicodedata.is_normalized("NFKC", canonical_identity(alias))


@settings(max_examples=200, deadline=None)
@given(name=NAMES, hidden=HIDDEN, at=st.integers(0, 12))
def test_hidden_characters_are_refused_not_stripped(name: str, hidden: str, at: int) -> None:
    with pytest.raises(IdentityError):
        canonical_identity(name[:at] + hidden + name[at:])


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_quorum_of_two_is_never_filled_by_one_person(
    sqlite_url: str, data: st.DataObject
) -> None:
    veto = veto_at(sqlite_url)
    n = data.draw(st.integers(0, 10**9))
    rid = pending(veto, n=n)
    svc = veto.approvals
    for _ in range(data.draw(st.integers(1, 4))):
        alias = data.draw(spelled("alice"))
        state = svc.decide(rid, approver=alias, approve=True).state
        assert state is ApprovalState.PENDING
    veto.close()


# --- class 3: every deciding rule's requirement is met on its own ---------------------------

BASE = """
version: 1
name: base
rules:
  - id: finance-gate
    effect: require_approval
    tools: [pay]
    approval: {approvers: ["role:finance"], timeout: 2h, channels: [dashboard]}
"""
OVERLAY = """
version: 1
name: acme
rules:
  - id: acme-gate
    effect: require_approval
    tools: [pay]
    approval: {approvers: [acme-admin], timeout: 30m, channels: [email]}
"""


def bundle(root: Path) -> Path:
    (root / "tenants").mkdir(parents=True)
    (root / "base.yaml").write_text(BASE)
    (root / "tenants" / "acme.yaml").write_text(OVERLAY)
    return root


def test_an_overlay_approver_alone_cannot_release_a_base_approval(
    db_url: str, tmp_path: Path
) -> None:
    veto = Veto.from_file(bundle(tmp_path / "b"), tenant="acme", db=db_url)
    d = veto.decide(call("pay"))
    assert d.deciding_rule_ids == ("acme-gate", "finance-gate")
    assert d.approval is not None
    assert [(r.rule_id, r.approvers, r.quorum) for r in d.approval.requirements] == [
        ("acme-gate", ("acme-admin",), 1),
        ("finance-gate", ("role:finance",), 1),
    ]
    assert d.approval.timeout_s == 1800.0 and d.approval.channels == ("dashboard", "email")
    rid = pending(veto)
    svc = veto.approvals
    after = svc.decide(rid, approver="acme-admin", approve=True)
    assert after.state is ApprovalState.PENDING  # the base rule's finance approver is missing
    assert not svc.consume(rid)
    assert svc.decide(rid, approver=Approver(id="fin", roles=("finance",)), approve=True).state is (
        ApprovalState.APPROVED
    )
    # Stored and read back with its requirements (both stores).
    again = svc.get(rid)
    assert [r.rule_id for r in again.requirements] == ["acme-gate", "finance-gate"]
    assert again.needs == "1 of acme-admin [acme-gate]; 1 of role:finance [finance-gate]"
    veto.close()


def test_one_approver_may_meet_several_requirements(db_url: str, tmp_path: Path) -> None:
    veto = Veto.from_file(bundle(tmp_path / "b"), tenant="acme", db=db_url)
    rid = pending(veto)
    both = Approver(id="acme-admin", roles=("finance",))
    assert veto.approvals.decide(rid, approver=both, approve=True).state is ApprovalState.APPROVED
    veto.close()


def test_a_base_approver_alone_cannot_release_the_overlay_requirement(
    db_url: str, tmp_path: Path
) -> None:
    veto = Veto.from_file(bundle(tmp_path / "b"), tenant="acme", db=db_url)
    rid = pending(veto)
    fin = Approver(id="fin", roles=("finance",))
    assert veto.approvals.decide(rid, approver=fin, approve=True).state is ApprovalState.PENDING
    with pytest.raises(NotEligible):
        veto.approvals.decide(rid, approver="stranger", approve=True)
    veto.close()


def test_a_limit_names_its_own_requirement(sqlite_url: str) -> None:
    policy = """
version: 1
name: p
rules:
  - {id: ok, effect: allow, tools: [spend]}
limits:
  - id: cap
    tools: [spend]
    per: [principal.user]
    window: 1h
    count: true
    max: 0
    effect: require_approval
    approval: {approvers: [bob]}
"""
    veto = Veto.from_yaml(policy, db=sqlite_url)
    d = veto.authorize(call("spend")).decision
    assert d.approval is not None
    assert [(r.rule_id, r.approvers) for r in d.approval.requirements] == [("cap", ("bob",))]
    veto.close()


# --- issue 16 item 2: an approval that names nobody is a policy error ---------------------


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "rules:\n  - {id: r, effect: require_approval, tools: [t]}\n",
            "<policy>:4:21 rules[0].effect: 'r' can require approval but names no approvers",
        ),
        (
            "rules:\n  - {id: r, effect: require_approval, tools: [t], approval: {timeout: 1h}}\n",
            "<policy>:4:61 rules[0].approval.approvers: 'r' can require approval but names no approvers",
        ),
        (
            "rules:\n  - {id: r, effect: require_approval, tools: [t], approval: {approvers: []}}\n",
            "<policy>:4:73 rules[0].approval.approvers: 'r' can require approval but names no approvers",
        ),
        (
            "rules:\n  - {id: r, effect: allow, tools: [t], if: {field: args.x, equals: 1}, "
            "otherwise: require_approval}\n",
            "<policy>:4:21 rules[0].effect: 'r' can require approval but names no approvers",
        ),
        (
            "limits:\n  - {id: l, tools: [t], window: 1h, count: true, max: 3, "
            "effect: require_approval}\n",
            "limits[0].effect: 'l' can require approval but names no approvers",
        ),
        (
            "default: require_approval\n",
            "<policy>:3:10 default: 'default: require_approval' names no approvers",
        ),
        (
            "rules:\n  - {id: r, effect: require_approval, tools: [t], "
            'approval: {approvers: ["erin\\u200b"]}}\n',
            "rules[0].approval.approvers[0]: approver user name 'erin\\u200b' contains U+200B",
        ),
        (
            "rules:\n  - {id: r, effect: require_approval, tools: [t], "
            'approval: {approvers: [a, " A "], quorum: 2}}\n',
            "rules[0].approval.quorum: quorum 2 can never be met: only 1 distinct approver(s)",
        ),
    ],
)
def test_an_approval_that_names_nobody_is_a_policy_error(text: str, where: str) -> None:
    with pytest.raises(PolicyError) as info:
        Veto.from_yaml("version: 1\nname: p\n" + text)
    assert where in str(info.value)


def test_the_cli_refuses_an_acting_id_with_hidden_characters(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from veto_core.cli import main

    veto = veto_at(sqlite_url)
    rid = pending(veto)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the operator's admin key (--admin)
    result = CliRunner().invoke(
        main, ["approvals", "approve", rid, "--as", "erin\u200b", "--admin", "--db", sqlite_url]
    )
    assert result.exit_code == 2  # a refusal, never a traceback
    assert "not allowed in identities" in result.stderr
    assert veto.approvals.get(rid).votes == ()
    veto.close()


def test_a_v1_request_is_read_as_one_requirement_after_the_migration(tmp_path: Path) -> None:
    """Schema v1 rows (approvers + quorum, no requirements) upgrade in place; an empty
    approver list admits nobody (it used to mean "anyone but the requester")."""
    import sqlite3

    from veto_core.approvals import sqlite as approvals_sqlite
    from veto_core.approvals.store import REQUEST_COLUMNS
    from veto_core.storage import migrate_sqlite

    path = tmp_path / "v1.db"
    con = sqlite3.connect(path, isolation_level=None)
    migrate_sqlite(
        con, component="approvals", migrations=approvals_sqlite.MIGRATIONS,
        too_new=lambda a, b: RuntimeError(), target=1,
    )  # fmt: skip
    v1 = [c for c in REQUEST_COLUMNS if c != "requirements"]
    for rid, approvers in (("r-old", '["role:finance"]'), ("r-anyone", "[]")):
        row = {
            "id": rid, "binding": rid, "tenant": "acme", "run_id": None, "tool_call_id": None,
            "tool": "pay", "args_digest": "d", "state": "pending", "created_us": 1,
            "expires_us": 4_000_000_000_000_000, "env": None, "principal": '{"user":"m"}', "requester": "m",
            "args": None, "approvers": approvers, "quorum": 2, "channels": "[]",
            "rule_ids": '["pay"]', "reasons": "[]", "policy_name": "p", "policy_revision": "x",
            "decided_us": None, "consumed_us": None, "final_reason": None,
        }  # fmt: skip
        con.execute(
            f"INSERT INTO approval_requests ({', '.join(v1)}) VALUES ({', '.join('?' * len(v1))})",
            [row[c] for c in v1],
        )
    con.close()
    from veto_core.approvals import open_approvals

    svc = open_approvals(f"sqlite:///{path}")
    old = svc.get("r-old")
    assert [(r.rule_id, r.approvers, r.quorum) for r in old.requirements] == [
        ("pay", ("role:finance",), 2)
    ]
    svc.decide("r-old", approver=Approver(id="f1", roles=("finance",)), approve=True)
    after = svc.decide("r-old", approver=Approver(id="f2", roles=("Finance ",)), approve=True)
    assert after.state is ApprovalState.APPROVED
    with pytest.raises(NotEligible):
        svc.decide("r-anyone", approver="bob", approve=True)
    svc.close()


# --- properties of the combination --------------------------------------------------------

PEOPLE = ["alice", "bob", "carol", "dana"]
ROLES = ["finance", "ops"]


@st.composite
def requirement_sets(draw: st.DrawFn) -> list[Any]:
    from veto_core import ApprovalRequirement

    out = []
    for i in range(draw(st.integers(1, 3))):
        approvers = draw(
            st.lists(
                st.sampled_from([*PEOPLE, *(f"role:{r}" for r in ROLES)]),
                min_size=1, max_size=3, unique=True,
            )
        )  # fmt: skip
        out.append(
            ApprovalRequirement(
                rule_id=f"r{i}", approvers=tuple(approvers), quorum=draw(st.integers(1, 2))
            )
        )
    return out


@st.composite
def vote_lists(draw: st.DrawFn) -> list[Any]:
    import datetime as _dt

    from veto_core.approvals import Vote

    votes = []
    for name in draw(st.lists(st.sampled_from(PEOPLE), max_size=6)):
        spelled_as = draw(spelled(name))
        votes.append(
            Vote(
                approver=spelled_as, approve=True, via="test", at=_dt.datetime(2026, 1, 1, tzinfo=_dt.UTC),
                roles=tuple(draw(st.lists(st.sampled_from(ROLES), max_size=2, unique=True))),
                identities=(canonical_identity(spelled_as),),
            )
        )  # fmt: skip
    return votes


@settings(max_examples=300, deadline=None)
@given(reqs=requirement_sets(), extra=requirement_sets(), votes=vote_lists())
def test_each_requirement_is_met_on_its_own(
    reqs: list[Any], extra: list[Any], votes: list[Any]
) -> None:
    from veto_core.approvals.service import requirements_met

    met = requirements_met(reqs, votes)

    # Reference: per requirement, distinct people (by canonical name) eligible for it.
    def eligible(req: Any, v: Any) -> bool:
        who = canonical_identity(v.approver)
        return any(a == who or (a.startswith("role:") and a[5:] in v.roles) for a in req.approvers)

    assert met == all(
        len({canonical_identity(v.approver) for v in votes if eligible(r, v)}) >= r.quorum
        for r in reqs
    )
    # An added rule (an overlay) only ever adds a requirement: never releases more.
    if requirements_met([*reqs, *extra], votes):
        assert met
    # One person's votes under any spelling never count twice.
    if len({canonical_identity(v.approver) for v in votes}) < 2:
        assert not requirements_met(
            [type(reqs[0])(rule_id="q2", approvers=tuple(PEOPLE), quorum=2)], votes
        )
