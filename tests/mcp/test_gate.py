"""The proxy's gate and identity, in-process (no MCP transport): refusals before the
policy, --hide-denied's "can never run", veto.toml and token identities."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from mcp_helpers import POLICY

from veto_core import Principal, Veto
from veto_core.config import ConfigError
from veto_core.mcp import mcp_tool_aliases, mcp_tool_name
from veto_core.mcp.gate import Caller, McpGate, ToolCatalog, may_ever_run
from veto_core.mcp.identity import Identity, TokenAuthority, TokenRefused, load_identity

SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}


def _gate(tmp_path: Path) -> McpGate:
    return McpGate(Veto.from_yaml(POLICY, db=f"sqlite:///{tmp_path / 'v.db'}", tenant="acme"), "gh")


def test_tools_whose_names_collide_are_never_forwarded(tmp_path: Path) -> None:
    """`echo` and `gh_echo` both canonicalize to mcp__gh__echo: neither is forwarded,
    so a rule written for one can never silently release the other."""
    gate = _gate(tmp_path)
    catalog = ToolCatalog.build(
        "gh", [{"name": "echo", "inputSchema": SCHEMA}, {"name": "gh_echo", "inputSchema": SCHEMA}]
    )
    assert catalog.ambiguous == {"echo", "gh_echo"}
    caller = Caller(principal=Principal(user="bob"))
    for name in ("echo", "gh_echo"):
        verdict = anyio.run(gate.check, catalog, name, {"text": "x"}, caller)
        assert not verdict.run and "share the policy name 'mcp__gh__echo'" in verdict.reason
    single = ToolCatalog.build("gh", [{"name": "echo", "inputSchema": SCHEMA}])
    assert anyio.run(gate.check, single, "echo", {"text": "x"}, caller).run


def test_unusable_schema_no_catalog_and_bad_server_names_fail_closed(tmp_path: Path) -> None:
    gate = _gate(tmp_path)
    caller = Caller(principal=Principal(user="bob"))
    broken = ToolCatalog.build("gh", [{"name": "echo", "inputSchema": {"type": 12}}])
    verdict = anyio.run(gate.check, broken, "echo", {"text": "x"}, caller)
    assert not verdict.run and "inputSchema cannot be used" in verdict.reason
    no_schema = ToolCatalog.build("gh", [{"name": "echo"}])
    assert not anyio.run(gate.check, no_schema, "echo", {"text": "x"}, caller).run
    assert not anyio.run(gate.check, None, "echo", {"text": "x"}, caller).run
    with pytest.raises(ValueError, match="invalid MCP server name"):
        McpGate(gate.veto, "a__b")


def test_may_ever_run_hides_only_what_can_never_run() -> None:
    veto = Veto.from_yaml(
        """
version: 1
name: hide
default: deny
roles: {admin: {}}
rules:
  - {id: d, effect: deny, tools: [mcp__s__drop]}
  - {id: d-cond, effect: deny, tools: [mcp__s__write], if: {field: args.path, starts_with: /etc}}
  - {id: w, effect: allow, tools: [mcp__s__write]}
  - {id: admin-only, effect: allow, tools: [mcp__s__sudo], when: {role: [admin]}}
  - id: deny-else-ask
    effect: deny
    tools: [mcp__s__pay]
    if: {field: args.amount, greater_than: 1000}
    otherwise: require_approval
    approval: {approvers: [alice]}
"""
    )
    user = Caller(principal=Principal(user="u"))
    admin = Caller(principal=Principal(user="u", roles=("admin",)))
    assert not may_ever_run(veto, "mcp__s__drop", user)  # unconditional deny
    assert may_ever_run(veto, "mcp__s__write", user)  # conditional deny, else allow
    assert not may_ever_run(veto, "mcp__s__unknown", user)  # default deny
    assert not may_ever_run(veto, "mcp__s__sudo", user) and may_ever_run(
        veto, "mcp__s__sudo", admin
    )
    assert may_ever_run(veto, "mcp__s__pay", user)  # otherwise: require_approval


def test_identity_from_veto_toml_and_flags(tmp_path: Path) -> None:
    toml = tmp_path / "veto.toml"
    toml.write_text(
        '[mcp]\nagent = "ide"\nroles = ["dev"]\ntenant = "acme"\n'
        '[mcp.servers.gh]\nroles = ["dev", "gh-reader"]\nuser = "dana"\n'
    )
    ident = load_identity("gh", config=toml)
    assert ident.principal == Principal(
        agent="ide", roles=("dev", "gh-reader"), user="dana", tenant="acme"
    )
    assert ident.tenant == "acme" and ident.env is None
    other = load_identity("docs", config=toml, env="prod", user="eve")
    assert (
        other.principal.roles == ("dev",) and other.principal.user == "eve" and other.env == "prod"
    )
    assert load_identity("x", config=toml, roles=("r",), tenant="globex").principal.roles == ("r",)
    toml.write_text('[mcp]\nrole = "typo"\n')
    with pytest.raises(ConfigError, match=r"unknown keys \['role'\]"):
        load_identity("gh", config=toml)
    toml.write_text('[mcp]\nroles = "dev"\n')
    with pytest.raises(ConfigError, match="roles must be a list"):
        load_identity("gh", config=toml)


@pytest.mark.usefixtures("fast_passwords")
def test_token_identity(tmp_path: Path) -> None:
    from veto_core.server import open_server_store

    db = f"sqlite:///{tmp_path / 'v.db'}"
    store = open_server_store(db)
    store.add_user("bob", "correct horse battery", tenant="acme", role="viewer")
    store.add_user("multi", "correct horse battery", tenant="acme", role="viewer")
    store.set_role("multi", tenant="globex", role="viewer")
    bob = store.create_token("bob", "t")[1]
    multi = store.create_token("multi", "t", tenant="globex")[1]  # a token acts in one tenant
    store.close()
    base = Identity(principal=Principal(agent="ide", roles=("dev",)))
    tokens = TokenAuthority(db, base)
    try:
        got = tokens.identity(bob)
        assert got.principal == Principal(agent="ide", roles=("dev",), user="bob", tenant="acme")
        assert got.tenant == "acme"
        assert tokens.identity(multi).tenant == "globex"  # the token's tenant, not both
        with pytest.raises(TokenRefused, match="unknown"):
            tokens.identity("veto_nope")
    finally:
        tokens.close()
    pinned = TokenAuthority(db, Identity(principal=Principal(), tenant="globex"))
    try:
        assert pinned.identity(multi).tenant == "globex"
        with pytest.raises(TokenRefused, match="no role in tenant 'globex'"):
            pinned.identity(bob)
    finally:
        pinned.close()
    pinned = TokenAuthority(db, Identity(principal=Principal(), tenant="acme"))
    try:  # multi has a role in acme, but this token was made for globex
        with pytest.raises(TokenRefused, match="no role in tenant 'acme'"):
            pinned.identity(multi)
    finally:
        pinned.close()


def test_names_match_the_adapters_toolkit() -> None:
    from veto_core.adapters import ToolNames

    assert mcp_tool_name("gh", "echo") == ToolNames().mcp("gh", "echo") == "mcp__gh__echo"

    class CrewTool:  # what CrewAI's MCPNativeTool carries
        name = "python_server_py_create_issue"
        original_tool_name = "create_issue"

    assert mcp_tool_aliases("gh", [CrewTool()]) == {
        "python_server_py_create_issue": "mcp__gh__create_issue"
    }
    assert mcp_tool_aliases("gh", ["gh_echo", "echo"]) == {
        "gh_echo": "mcp__gh__echo",
        "echo": "mcp__gh__echo",
    }


def test_the_cli_imports_no_mcp_sdk() -> None:
    """`veto --help` stays fast: the mcp command group imports the SDK only when run."""
    import subprocess
    import sys

    code = (
        "import sys, veto_core.cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mcp', 'anyio', 'jsonschema')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_single_client_gate_decides_and_records_like_the_threaded_one(tmp_path: Path) -> None:
    """The stdio proxy's gate authorizes outright allows/denies on the loop's thread
    (local SQLite store): same verdicts, same durable records."""
    from veto_core.audit import open_audit

    delete = {"type": "object", "properties": {"name": {"type": "string"}}}
    catalog = ToolCatalog.build(
        "gh",
        [{"name": "echo", "inputSchema": SCHEMA}, {"name": "delete_repo", "inputSchema": delete}],
    )
    caller = Caller(principal=Principal(user="bob"))
    for single in (False, True):
        db = f"sqlite:///{tmp_path / f'{single}.db'}"
        gate = McpGate(Veto.from_yaml(POLICY, db=db, tenant="acme"), "gh", single_client=single)
        assert gate.inline is single
        assert anyio.run(gate.check, catalog, "echo", {"text": "x"}, caller).run
        assert not anyio.run(gate.check, catalog, "delete_repo", {"name": "x"}, caller).run
        assert not anyio.run(gate.check, catalog, "echo", {"text": 1}, caller).run
        gate.veto.close()
        with open_audit(db) as audit:
            outcomes = sorted((r.tool, r.outcome) for r in audit.query(tenant="acme"))
        assert outcomes == [
            ("mcp__gh__delete_repo", "denied"),
            ("mcp__gh__echo", "allowed"),
            ("mcp__gh__echo", "denied"),
        ]
    remote = Veto.from_yaml(POLICY, db="postgresql://127.0.0.1:1/none", tenant="acme")
    assert not McpGate(remote, "gh", single_client=True).inline  # a remote store: threads
