"""Query filters, paging, tenant scoping (property test), schema migrations, plugins."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from audit_helpers import call, decision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veto_core.audit import (
    AuditLog,
    AuditQuery,
    AuditSchemaError,
    AuditUnavailable,
    SinkConfig,
    open_audit,
)
from veto_core.audit.sqlite import SCHEMA_VERSION, migrate
from veto_core.model import Effect

NOW = dt.datetime.now(dt.UTC)


def _mixed(log: AuditLog) -> None:
    for i in range(12):
        log.record_decision(
            call(
                tool=("send_email", "issue_refund", "mcp__gh__push")[i % 3],
                tenant=("acme", "beta")[i % 2],
                user=f"user{i % 4}",
                agent=f"agent{i % 3}",
                run_id=f"run{i % 5}",
            ),
            decision(
                (Effect.ALLOW, Effect.DENY, Effect.REQUIRE_APPROVAL)[i % 3],
                rules=(f"rule-{i % 4}", "common"),
                reasons=(f"Reason number {i} about REFUNDS",),
            ),
            now=NOW - dt.timedelta(hours=i * 10),
        )


FILTERS = [
    {"tenant": "acme"},
    {"since": NOW - dt.timedelta(hours=25)},
    {"until": NOW - dt.timedelta(hours=25)},
    {"tool": "issue_refund"},
    {"outcome": "denied"},
    {"effect": "require_approval"},
    {"rule_id": "rule-2"},
    {"agent": "agent1"},
    {"user": "user3"},
    {"run_id": "run4"},
    {"text": "number 7 about refunds"},
    {"tenant": "beta", "tool": "send_email", "rule_id": "common"},
]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f))
def test_filters_match_reference_semantics(any_log: AuditLog, filters: dict[str, object]) -> None:
    _mixed(any_log)
    every = list(any_log.iter_records())
    assert len(every) == 12
    q = AuditQuery(**filters)  # type: ignore[arg-type]
    expected = {r.id for r in every if q.matches(r)}
    got = any_log.query(q)
    assert {r.id for r in got} == expected and expected
    if any_log.sink.scheme != "jsonl":  # JSONL returns append order
        assert [r.ts for r in got] == sorted(r.ts for r in got)


def test_paging_and_newest_first(any_log: AuditLog) -> None:
    _mixed(any_log)
    pages = [any_log.query(limit=5, offset=o) for o in (0, 5, 10)]
    assert [len(p) for p in pages] == [5, 5, 2]
    flat = [r.id for p in pages for r in p]
    assert flat == [r.id for r in any_log.iter_records()]
    newest = any_log.query(limit=3, newest_first=True)
    assert [r.id for r in newest] == flat[::-1][:3]


@settings(
    max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(
    writes=st.lists(
        st.tuples(st.sampled_from(["A", "B", "tenant-c"]), st.sampled_from(["t1", "t2"])),
        min_size=1,
        max_size=15,
    ),
    scope=st.sampled_from(["A", "B", "tenant-c"]),
    tool=st.none() | st.sampled_from(["t1", "t2"]),
)
def test_query_scoped_to_a_tenant_never_returns_another(
    tmp_path_factory: pytest.TempPathFactory,
    writes: list[tuple[str, str]],
    scope: str,
    tool: str | None,
) -> None:
    log = open_audit(str(tmp_path_factory.mktemp("prop") / "v.db"))
    for tenant, t in writes:
        log.record_decision(call(tool=t, tenant=tenant), decision())
    got = log.query(tenant=scope, tool=tool, limit=None)
    assert all(r.tenant == scope for r in got)
    assert len(got) == sum(1 for te, t in writes if te == scope and (tool is None or t == tool))
    assert all(r.tenant == scope for r in log.iter_records(AuditQuery(tenant=scope, text="")))
    log.close()


def test_older_schema_is_upgraded_newer_is_refused(db_path: Path) -> None:
    con = sqlite3.connect(db_path, isolation_level=None)
    assert migrate(con, target=1) == 0
    con.close()
    log = open_audit(str(db_path))
    log.record_decision(call(), decision())
    log.close()
    con = sqlite3.connect(db_path)
    assert con.execute("SELECT version FROM veto_schema WHERE component='audit'").fetchone() == (
        SCHEMA_VERSION,
    )
    con.execute("UPDATE veto_schema SET version = 99 WHERE component='audit'")
    con.commit()
    con.close()
    with pytest.raises(AuditSchemaError, match="newer than this veto-core"):
        open_audit(str(db_path))


def test_unavailable_store_raises_audit_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AuditUnavailable):
        open_audit(str(blocker / "sub" / "veto.db"))
    with pytest.raises(AuditUnavailable, match="no audit sink"):
        open_audit("nosuch://x")
    with pytest.raises(AuditUnavailable):
        open_audit("postgresql://nobody@127.0.0.1:1/none")


def test_write_failure_raises_audit_unavailable(sqlite_log: AuditLog, db_path: Path) -> None:
    sqlite_log.record_decision(call(), decision())
    con = sqlite3.connect(db_path)
    con.execute("DROP TABLE audit_records")
    con.commit()
    con.close()
    with pytest.raises(AuditUnavailable, match="not committed"):
        sqlite_log.record_decision(call(), decision())


def test_default_url_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VETO_DB", str(tmp_path / "env.db"))
    log = open_audit(None)
    log.record_decision(call(), decision())
    assert (tmp_path / "env.db").exists()
    monkeypatch.delenv("VETO_DB")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert open_audit(None).url.endswith(".veto/veto.db")


def test_third_party_sink_plugin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A plugin answering veto_audit_sinks for its scheme is used by open_audit."""
    from veto_core import plugins
    from veto_core.audit.sqlite import SqliteSink
    from veto_core.hookspecs import hookimpl

    class MemPlugin:
        @hookimpl
        def veto_audit_sinks(self, config: SinkConfig) -> list[object]:
            if config.scheme != "mine":
                return []
            return [SqliteSink(SinkConfig.parse(str(tmp_path / "mine.db")))]

    real = plugins.get_plugin_manager

    def pm_with_plugin(**kw: object) -> object:
        pm = real(load_entrypoints=False)
        pm.register(MemPlugin())
        return pm

    monkeypatch.setattr(plugins, "get_plugin_manager", pm_with_plugin)
    log = open_audit("mine://anything")
    log.record_decision(call(), decision())
    assert (tmp_path / "mine.db").exists()
    pm = real()
    assert {h.plugin_name for h in pm.hook.veto_audit_sinks.get_hookimpls()} >= {
        "veto_core.audit.plugin"
    }


def test_policy_revisions_roundtrip(any_log: AuditLog) -> None:
    any_log.store_policy_revision("r1" * 32, "support", "version: 1\n", "policies/s.yaml")
    any_log.store_policy_revision("r1" * 32, "support", "changed?", "x")  # immutable
    revs = any_log.policy_revisions()
    assert [(r.revision, r.content) for r in revs] == [("r1" * 32, "version: 1\n")]
