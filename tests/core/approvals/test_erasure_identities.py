"""Erasure finds a data subject under every spelling of their identity (DESIGN.md 2.8).

Records and approval requests keep the user id as the caller spelled it ("Bob",
"bob ", a full-width copy, the user's e-mail). ``veto audit erase --user X`` must
erase all of them when X is any of those spellings, or any alias the ``veto users``
table knows (user id and e-mail), and nobody else's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from approval_helpers import call, make_veto
from click.testing import CliRunner

from veto_core import Principal
from veto_core.approvals import ApprovalState
from veto_core.audit import open_audit
from veto_core.cli import main

# One person, four spellings: the user id with other case and spaces, its full-width
# copy, and the e-mail address the user table gives them.
BOB_SPELLINGS = ("Bob", "bob ", "\uff22\uff4f\uff42", "Bob@Example.com")
OTHERS = ("bobby", "robert@example.com")


def _bob(i: int) -> str:
    return f"BOB-SECRET-{i:02d}"


def _populate(url: str) -> dict[str, list[str]]:
    """Approval requests and allowed calls for each spelling; the request ids by user."""
    result = CliRunner().invoke(
        main,
        ["users", "add", "bob", "--role", "viewer", "--tenant", "acme",
         "--email", "bob@example.com", "--password-stdin", "--db", url],
        input="correct horse battery\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    veto = make_veto(url)
    ids: dict[str, list[str]] = {}
    n = 0
    try:
        for user in (*BOB_SPELLINGS, *OTHERS):
            secret = _bob(n) if user in BOB_SPELLINGS else f"KEEP-{user}"
            who = Principal(agent="bot", roles=("support",), user=user)
            auth = veto.authorize(
                call(args={"amount": 5, "to": secret}, principal=who, tool_call_id=f"p{n}")
            )
            assert auth.approval is not None, auth.decision.reasons
            ids.setdefault(user, []).append(auth.approval.id)
            read = veto.authorize(
                call("read", args={"q": secret}, principal=who, tool_call_id=f"r{n}")
            )
            assert read.run_tool
            n += 1
    finally:
        veto.close()
    return ids


@pytest.mark.parametrize("asked", ["BOB ", "bob@EXAMPLE.com", "\uff42\uff4f\uff42"])
def test_erase_matches_every_spelling_and_alias_of_the_subject(db_url: str, asked: str) -> None:
    ids = _populate(db_url)

    result = CliRunner().invoke(main, ["audit", "erase", "--db", db_url, "--user", asked])
    assert result.exit_code == 0, result.output
    assert "approval requests: erased 4" in result.output, result.output

    veto = make_veto(db_url)
    try:
        for user in BOB_SPELLINGS:
            for request_id in ids[user]:
                r = veto.approvals.get(request_id)
                assert r.state is ApprovalState.CANCELLED  # its call can never run now
                assert r.requester is None and r.principal.user is None and r.args is None
        for user in OTHERS:
            for request_id in ids[user]:
                r = veto.approvals.get(request_id)
                assert r.state is ApprovalState.PENDING and r.requester == user
                assert r.args is not None
    finally:
        veto.close()

    log = open_audit(db_url)
    try:
        records = log.query(tenant="acme", limit=None)
        users = {r.principal.user for r in records if r.tool in ("pay", "read")}
        assert users == {None, *OTHERS}, users
        for r in records:
            if r.tool in ("pay", "read") and r.principal.user is None:
                assert r.args is None
        text = "".join(str(r.to_dict()) for r in records)
        assert "BOB-SECRET" not in text and "KEEP-bobby" in text
        report = log.verify()
        assert report.ok, report.to_dict()
    finally:
        log.close()

    if db_url.startswith("sqlite:///"):
        files = Path(db_url.removeprefix("sqlite:///")).parent.glob("veto.db*")
        raw = b"".join(p.read_bytes() for p in files)
        for i in range(len(BOB_SPELLINGS)):
            assert _bob(i).encode() not in raw
        for spelling in BOB_SPELLINGS[:3]:
            assert f'"user":"{spelling}"'.encode() not in raw
        assert b"KEEP-bobby" in raw and b"KEEP-robert@example.com" in raw


def test_erase_of_someone_else_leaves_the_subject_alone(db_url: str) -> None:
    _populate(db_url)
    result = CliRunner().invoke(main, ["audit", "erase", "--db", db_url, "--user", "Bobby "])
    assert result.exit_code == 0, result.output
    assert "approval requests: erased 1" in result.output, result.output
    log = open_audit(db_url)
    try:
        users = {r.principal.user for r in log.query(tenant="acme", limit=None)}
        assert set(BOB_SPELLINGS) <= users and "bobby" not in users
        assert log.verify().ok
    finally:
        log.close()


def test_the_audit_api_matches_spellings_on_every_store(db_url: str, tmp_path: Path) -> None:
    """``AuditLog.erase_user`` alone (no user table): every spelling of the id, in
    every store kind, JSONL included; an id with a hidden character is someone else."""
    for url in (db_url, f"jsonl:///{tmp_path / 'a.jsonl'}"):
        veto = make_veto(url)
        try:
            for i, user in enumerate(("Zed", " zed", "ZED", "zed\u200b", "zedd")):
                who = Principal(agent="bot", user=user)
                veto.authorize(
                    call("read", args={"q": f"Z-{i}"}, principal=who, tool_call_id=f"z{i}")
                )
        finally:
            veto.close()
        log = open_audit(url)
        try:
            results = log.erase_user("zed ")
            assert sum(r.records for r in results) == 3, results
            left = {r.principal.user for r in log.query(tenant="acme", limit=None)}
            assert {"Zed", " zed", "ZED"}.isdisjoint(left) and "zedd" in left
            report = log.verify()
            assert report.ok, report.to_dict()
        finally:
            log.close()
