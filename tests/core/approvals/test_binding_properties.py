"""Property: an approval for call A can never release a call B that differs from A in
its arguments, tool_call_id, run or tenant (DESIGN.md 5: bound to
``(tenant, run_id, tool_call_id, tool, args_digest)``)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from approval_helpers import PG_URL, call, make_veto
from hypothesis import given, settings
from hypothesis import strategies as st

from veto_core import Veto
from veto_core.approvals import ApprovalState, Approver

FIELDS = ("args", "tool_call_id", "run_id", "tenant")
_counter = itertools.count()

scalars = st.one_of(st.integers(-(10**6), 10**6), st.text(max_size=6), st.booleans(), st.none())
arg_edits = st.one_of(
    st.tuples(st.just("amount"), st.integers(-1000, 1000).filter(lambda d: d != 0)),
    st.tuples(st.just("amount-as-string"), st.just(None)),
    st.tuples(st.just("amount-as-float"), st.just(None)),
    st.tuples(st.just("add"), st.tuples(st.text(min_size=1, max_size=5), scalars)),
    st.tuples(st.just("drop"), st.sampled_from(["amount", "to"])),
    st.tuples(st.just("to"), st.text(max_size=8)),
)


def _edit(args: dict[str, Any], edit: tuple[str, Any]) -> dict[str, Any]:
    kind, value = edit
    out = dict(args)
    if kind == "amount":
        out["amount"] = args["amount"] + value
    elif kind == "amount-as-string":
        out["amount"] = str(args["amount"])
    elif kind == "amount-as-float":
        out["amount"] = float(args["amount"])
    elif kind == "add":
        key, v = value
        if key in out:
            key += "_x"
        out[key] = v
    elif kind == "drop":
        del out[value]
    else:
        out["to"] = args["to"] + "|" + value  # always different
    return out


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def veto(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Veto]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('prop') / 'veto.db'}"
        v = make_veto(url)
        yield v
        v.close()
        return
    # PostgreSQL: same failure rules as the pg_url fixture (module scope here).
    import os
    import secrets

    import psycopg

    if os.environ.get("VETO_SKIP_POSTGRES") == "1":
        pytest.skip("VETO_SKIP_POSTGRES=1")
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL unreachable at {PG_URL} (set VETO_SKIP_POSTGRES=1 to skip): {exc}")
    schema = f"veto_prop_{secrets.token_hex(6)}"
    v = make_veto(f"{PG_URL}?schema={schema}")
    yield v
    v.close()
    admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    admin.close()


@settings(max_examples=40, deadline=None)
@given(
    changed=st.sets(st.sampled_from(FIELDS), min_size=1),
    amount=st.integers(101, 10**6),
    edit=arg_edits,
    suffix=st.text(alphabet="abcxyz019-", min_size=1, max_size=6),
)
def test_an_approval_releases_only_its_own_call(
    veto: Veto, changed: set[str], amount: int, edit: tuple[str, Any], suffix: str
) -> None:
    n = next(_counter)
    a_args = {"amount": amount, "to": f"acct-{n}"}
    a = call(args=a_args, run_id=f"run-{n}", tool_call_id=f"call-{n}")
    b = call(
        args=_edit(a_args, edit) if "args" in changed else a_args,
        run_id=f"run-{n}-{suffix}" if "run_id" in changed else a.run_id,
        tool_call_id=f"call-{n}-{suffix}" if "tool_call_id" in changed else a.tool_call_id,
        tenant="globex" if "tenant" in changed else None,
    )
    request = veto.authorize(a).approval
    assert request is not None
    veto.approvals.decide(request.id, approver=Approver(id="fin", roles=("finance",)), approve=True)

    assert veto.check_approval(b) is False
    found = veto.find_approval(b)
    assert found is None or found.id != request.id
    b_auth = veto.authorize_and_wait(b, timeout=0)
    assert not b_auth.run_tool
    assert b_auth.approval is None or b_auth.approval.id != request.id
    # A's approval is untouched by every attempt with B, and releases A exactly once.
    assert veto.approvals.get(request.id).state is ApprovalState.APPROVED
    assert veto.approvals.get(request.id).consumed_at is None
    assert veto.check_approval(a) is True
    assert veto.check_approval(a) is False
