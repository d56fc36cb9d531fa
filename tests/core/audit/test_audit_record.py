"""Record format: canonical JSON, UUIDv7, the hashed view, redaction, keyed digests."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid

from audit_helpers import call, decision
from hypothesis import given, settings
from hypothesis import strategies as st

from veto_core.audit import REDACTED, AuditLog, AuditRecord, canonical_json, new_uuid7, redact_args
from veto_core.audit.pending import PendingRecord, principal_fragments
from veto_core.audit.record import (
    ApprovalInfo,
    args_digest,
    compute_hash,
    hash_view,
    user_digest,
)
from veto_core.model import Effect, Principal

DESIGN_FIELDS = [
    "id",
    "seq",
    "ts",
    "tenant",
    "env",
    "principal",
    "framework",
    "run_id",
    "tool",
    "tool_call_id",
    "args",
    "args_digest",
    "effect",
    "outcome",
    "rule_ids",
    "reasons",
    "errors",
    "policy_name",
    "policy_revision",
    "approval",
    "latency_us",
    "prev_hash",
    "hash",
]


def test_record_has_exactly_the_design_fields() -> None:
    assert [f.name for f in dataclasses.fields(AuditRecord)] == DESIGN_FIELDS
    assert AuditRecord.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert all(f.kw_only for f in dataclasses.fields(AuditRecord))


def test_canonical_json_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": ["é", None]}) == '{"a":["é",null],"b":1}'.encode()


def test_uuid7_version_variant_and_monotonic() -> None:
    ids = [new_uuid7() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    u = uuid.UUID(ids[0])
    assert u.version == 7 and u.variant == uuid.RFC_4122
    ms = int(ids[-1].replace("-", "")[:12], 16)
    assert abs(ms / 1000 - dt.datetime.now(dt.UTC).timestamp()) < 60


text = st.text(max_size=12)
opt = st.none() | text


@settings(max_examples=150)
@given(
    agent=opt,
    user=opt,
    session=opt,
    ptenant=opt,
    roles=st.lists(text, max_size=3),
    env=opt,
    framework=opt,
    run_id=opt,
    tool=text,
    tool_call_id=opt,
    effect=opt,
    outcome=text,
    rules=st.lists(text, max_size=3),
    reasons=st.lists(text, max_size=3),
    policy=opt,
    latency=st.integers(0, 10**9),
    seq=st.integers(1, 10**12),
    ts_us=st.integers(0, 4_000_000_000_000_000),
    approval=st.booleans(),
)
def test_fast_hash_equals_reference_hash(
    agent: str | None,
    user: str | None,
    session: str | None,
    ptenant: str | None,
    roles: list[str],
    env: str | None,
    framework: str | None,
    run_id: str | None,
    tool: str,
    tool_call_id: str | None,
    effect: str | None,
    outcome: str,
    rules: list[str],
    reasons: list[str],
    policy: str | None,
    latency: int,
    seq: int,
    ts_us: int,
    approval: bool,
) -> None:
    """The hot path's string-built view is byte-identical to canonical_json(hash_view(r))."""
    key = b"k" * 32
    p = Principal(agent=agent, roles=tuple(roles), user=user, session=session, tenant=ptenant)
    ud = user_digest(key, user)
    pj, pv = principal_fragments(p, ud)
    assert json.loads(pj) == {
        "agent": agent,
        "roles": roles,
        "session": session,
        "tenant": ptenant,
        "user": user,
    }
    appr = (
        ApprovalInfo(
            id="ap1",
            approvers=("alice",),
            channel="slack",
            decided_at=dt.datetime(2025, 1, 2, tzinfo=dt.UTC),
        )
        if approval
        else None
    )
    pending = PendingRecord(
        id="id-1",
        ts_us=ts_us,
        tenant="t\u00e9",
        env=env,
        principal=p,
        principal_json=pj,
        principal_view=pv,
        framework=framework,
        run_id=run_id,
        tool=tool,
        tool_call_id=tool_call_id,
        args={"x": 1},
        args_json='{"x":1}',
        args_digest="d" * 64,
        effect=effect,
        outcome=outcome,
        rule_ids=tuple(rules),
        reasons=tuple(reasons),
        errors=("e",),
        policy_name=policy,
        policy_revision=policy,
        approval=appr,
        latency_us=latency,
        user_digest=ud,
        args_mac="m" * 64,
    )
    sealed = pending.seal(seq, "f" * 64)
    rec = sealed.record
    assert compute_hash(rec, ud) == rec.hash
    view = hash_view(rec, ud)
    assert "args" not in view and "hash" not in view
    assert view["principal"]["user_digest"] == ud and "user" not in view["principal"]


def test_redaction_paths_globs_nested_and_lists() -> None:
    args = {
        "password": "hunter2",
        "api_token": "t1",
        "AccessToken": "t2",
        "card": {"number": "4111", "exp": "12/30"},
        "items": [{"sku": "a", "secret": "s1"}, {"sku": "b", "secret": "s2"}],
        "to": "a@b.c",
    }
    out = redact_args(
        args, ["args.password", "args.*token*", "args.card.number", "args.items[*].secret"]
    )
    assert out == {
        "password": REDACTED,
        "api_token": REDACTED,
        "AccessToken": REDACTED,
        "card": {"number": REDACTED, "exp": "12/30"},
        "items": [{"sku": "a", "secret": REDACTED}, {"sku": "b", "secret": REDACTED}],
        "to": "a@b.c",
    }
    assert args["password"] == "hunter2"  # the caller's dict is untouched
    # A pattern without "args." hides the key at any depth.
    assert redact_args({"a": {"b": {"my_secret": 1}}}, ["*secret*"]) == {
        "a": {"b": {"my_secret": REDACTED}}
    }


def test_redacted_values_never_stored_but_digest_covers_originals(
    sqlite_log: AuditLog, db_path: object
) -> None:
    c = call(args={"to": "x@example.com", "password": "hunter2-SECRET", "api_token": "tok-XYZ"})
    rec = sqlite_log.record_decision(
        c, decision(), env="prod", redact=("args.password", "args.*token*"), latency_us=3
    )
    assert rec.args == {"to": "x@example.com", "password": REDACTED, "api_token": REDACTED}
    key = sqlite_log.tenant_key("acme")
    assert rec.args_digest == args_digest(key, c.args)
    assert rec.args_digest != args_digest(key, rec.args or {})
    stored = sqlite_log.query(tenant="acme")[0]
    assert stored == rec
    sqlite_log.close()
    raw = b"".join(p.read_bytes() for p in db_path.parent.iterdir())  # type: ignore[attr-defined]
    assert b"hunter2-SECRET" not in raw and b"tok-XYZ" not in raw


def test_returned_record_equals_stored_record(any_log: AuditLog) -> None:
    appr = ApprovalInfo(
        id="ap-1",
        approvers=("alice", "bob"),
        channel="slack",
        decided_at=dt.datetime(2025, 5, 1, 12, 0, tzinfo=dt.UTC),
    )
    rec = any_log.record_decision(
        # Tuples and dates are stored tagged (NaN has no JSON form: refused, DESIGN.md 7).
        call(args={"n": (1, 2), "d": dt.date(2025, 1, 1), "f": 1.5, "u": "ü"}),
        decision(Effect.REQUIRE_APPROVAL, rules=("big",), reasons=("needs finance",)),
        env="prod",
        latency_us=17,
        approval=appr,
    )
    assert rec.outcome == "pending_approval" and rec.effect == "require_approval"
    assert rec.seq == 1 and len(rec.hash) == 64
    assert any_log.query(tenant="acme") == [rec]
    assert rec.args == {"n": {"$tuple": [1, 2]}, "d": {"$date": "2025-01-01"}, "f": 1.5, "u": "ü"}
    assert any_log.verify().ok


def test_tenant_resolution_and_default_tenant(sqlite_log: AuditLog) -> None:
    r1 = sqlite_log.record_decision(call(tenant=None), decision(), tenant="inst", env="dev")
    assert r1.tenant == "inst" and r1.env == "dev"
    r2 = sqlite_log.record_decision(call(tenant=None), decision())
    assert r2.tenant == "default"
    r3 = sqlite_log.record_decision(call(tenant="acme"), decision(), tenant="inst")
    assert r3.tenant == "acme"
