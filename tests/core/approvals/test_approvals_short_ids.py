"""Short request ids (issue 16 item 7): ids are UUIDv7, so requests made close
together share their first characters; the end of an id is the unique short form."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from approval_helpers import call, make_veto
from click.testing import CliRunner

from veto_core.approvals import ApprovalState
from veto_core.cli import main


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_a_unique_suffix_names_a_request_and_a_shared_prefix_is_ambiguous(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the operator's admin key (--admin)
    veto = make_veto(db_url)
    ids = [
        veto.authorize(call(tool_call_id=f"c{i}", args={"amount": 500 + i})).approval.id
        for i in range(3)
    ]
    assert len({i[:8] for i in ids}) == 1  # made within one UUIDv7 time step: same prefix
    # The shared prefix is ambiguous: exit 2, and the error lists every candidate.
    code, _, err = run("approvals", "show", ids[0][:8], "--db", db_url)
    assert code == 2 and "ambiguous" in err
    assert all(i in err for i in ids)
    # The end of an id (what `list` shows, never wrapped) is enough, for every command.
    code, out, err = run("approvals", "show", ids[1][-8:], "--db", db_url)
    assert code == 0, err
    assert ids[1] in out
    code, out, err = run(
        "approvals", "approve", ids[1][-12:], "--as", "fiona", "--role", "finance", "--admin",
        "--db", db_url,
    )  # fmt: skip
    assert code == 0, err
    assert veto.approvals.get(ids[1]).state is ApprovalState.APPROVED
    code, out, err = run("approvals", "deny", ids[2][-8:].upper(), "--as", "f", "--role", "finance",
                         "--admin", "--db", db_url)  # fmt: skip
    assert code == 0, err
    assert veto.approvals.get(ids[2]).state is ApprovalState.DENIED
    code, out, err = run(
        "approvals", "cancel", ids[0][-8:], "--as", "ops", "--admin", "--db", db_url
    )
    assert code == 0, err
    assert veto.approvals.get(ids[0]).state is ApprovalState.CANCELLED
    # Too short, or matching nothing: a usage error naming the accepted forms.
    for fragment in (ids[0][-4:], "0123456789ab"):
        code, _, err = run("approvals", "show", fragment, "--db", db_url)
        assert code == 2 and "6+ characters" in err
    veto.close()


def test_list_never_wraps_an_id(sqlite_url: str) -> None:
    veto = make_veto(sqlite_url)
    ids = [
        veto.authorize(call(tool_call_id=f"c{i}", args={"amount": 500 + i, "to": "x" * 80})).approval.id
        for i in range(2)
    ]  # fmt: skip
    for width in ("60", "100", "140"):
        result = CliRunner().invoke(
            main, ["approvals", "list", "--db", sqlite_url], env={"COLUMNS": width}
        )
        assert result.exit_code == 0
        for rid in ids:
            assert rid in result.stdout, (width, result.stdout)
    code, out, _ = run("approvals", "list", "--json", "--db", sqlite_url)
    assert code == 0
    assert {json.loads(line)["id"] for line in out.splitlines()} == set(ids)
    assert all(re.fullmatch(r"[0-9a-f-]{36}", rid) for rid in ids)
    veto.close()
