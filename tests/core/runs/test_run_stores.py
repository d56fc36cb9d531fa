"""Run stores (DESIGN.md 2.7): one conformance suite over SQLite, PostgreSQL and Redis.

PostgreSQL and Redis tests FAIL when the service is missing, unless
``VETO_SKIP_POSTGRES=1`` / ``VETO_SKIP_REDIS=1``. Redis runs use database 11 and tenants
of their own; PostgreSQL a schema per test (the ``pg_url`` fixture).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from veto_core.runs import RunEvent, RunStore, RunStoreUnavailable
from veto_core.runs.backends import (
    ENV_RUNS_URL,
    MAX_RUN_TEXT_BYTES,
    PostgresRunStore,
    RedisRunStore,
    SQLiteRunStore,
    open_run_store,
)

_AUDIT_TESTS = str(Path(__file__).resolve().parents[1] / "audit")
if _AUDIT_TESTS not in sys.path:
    sys.path.insert(0, _AUDIT_TESTS)

from tcp_proxy import TcpProxy  # noqa: E402  (the fault suites' loopback proxy)
from test_store_faults import _tagged, _terminate, _via  # noqa: E402

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TTL = 3600.0
REDIS_URL = "redis://127.0.0.1:6379/11"


def _redis_up() -> None:
    if os.environ.get("VETO_SKIP_REDIS") == "1":
        pytest.skip("VETO_SKIP_REDIS=1")
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis unreachable at 127.0.0.1:6379 (set VETO_SKIP_REDIS=1 to skip): {exc}")


def _url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'veto.db'}"
    if kind == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    _redis_up()
    return REDIS_URL


class Runs:
    """A store under test, with tenants of its own (Redis databases are shared)."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind, self.url = kind, url
        self.store = open_run_store(url)
        tag = secrets.token_hex(4)
        self.acme, self.globex = f"acme-{tag}", f"globex-{tag}"
        self.run = f"run-{tag}"

    def add(
        self,
        tool: str = "read",
        *,
        tenant: str | None = "",
        run_id: str = "",
        text: str = "",
        at: datetime = T0,
        ttl_s: float = TTL,
        **kw: Any,
    ) -> int:
        event = RunEvent(tool=tool, text=text, at=at, **kw)
        return self.store.append(
            self.acme if tenant == "" else tenant,
            run_id or self.run,
            event,
            ttl_s=ttl_s,
            now=at,
        )

    def events(
        self, *, tenant: str | None = "", run_id: str = "", now: datetime = T0, after: int = 0
    ) -> tuple[RunEvent, ...]:
        return self.store.load(
            self.acme if tenant == "" else tenant, run_id or self.run, now=now, after_seq=after
        )

    def head(self, *, tenant: str | None = "", run_id: str = "", now: datetime = T0) -> int:
        return self.store.head(self.acme if tenant == "" else tenant, run_id or self.run, now=now)


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def runs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runs]:
    r = Runs(request.param, _url(request.param, tmp_path, request))
    yield r
    for tenant in (r.acme, r.globex, None, "null"):
        if r.kind != "redis" and tenant in (None, "null"):
            continue  # a schema or file of the test's own: nothing to clean up
        r.store.erase(tenant=tenant)
    r.store.close()


# --------------------------------------------------------------------------- conformance


def test_append_load_head_round_trip_in_order(runs: Runs) -> None:
    assert runs.head() == 0 and runs.events() == ()
    assert runs.add("@user", text="pay bob@example.com", labels=frozenset({"user"})) == 1
    args = {"path": "/tmp/x", "n": [1, 2.5, None, True], "deep": {"é": "ü"}}
    at = T0 + timedelta(microseconds=123457)
    seq = runs.add(
        "read_file",
        args=args,
        effect="require_approval",
        tool_call_id="call-7",
        labels=frozenset({"untrusted", "secret", "a"}),
        source_ids=("ssh-keys", "inbox"),
        text="line 1\nIBAN DE89 3704",
        at=at,
    )
    assert seq == 2
    assert runs.add("send", text="") == 3
    assert runs.head() == 3

    first, second, third = runs.events()
    assert [first.seq, second.seq, third.seq] == [1, 2, 3]
    assert first.tool == "@user" and first.args == {} and first.labels == {"user"}
    assert second.args == args and second.effect == "require_approval"
    assert second.tool_call_id == "call-7" and second.source_ids == ("ssh-keys", "inbox")
    assert second.labels == frozenset({"a", "secret", "untrusted"})
    assert second.text == "line 1\nIBAN DE89 3704"
    assert (
        second.at == at and second.at.tzinfo is not None and second.at.utcoffset() == timedelta(0)
    )
    assert third.text == "" and third.effect == "allow" and third.tool_call_id is None

    # The engine's cache extends incrementally: only newer events.
    assert [e.seq for e in runs.events(after=1)] == [2, 3]
    assert runs.events(after=3) == ()
    runs.add("x")
    assert [e.tool for e in runs.events(after=3)] == ["x"]


def test_runs_never_mix_across_tenants_or_ids(runs: Runs) -> None:
    for tenant in (runs.acme, runs.globex, None, "null"):
        runs.add(f"tool-of-{tenant}", tenant=tenant, text=str(tenant))
    runs.add("other-run", run_id=runs.run + "-2")
    for tenant in (runs.acme, runs.globex, None, "null"):
        (only,) = runs.events(tenant=tenant)
        assert (only.seq, only.tool, only.text) == (1, f"tool-of-{tenant}", str(tenant))
        assert runs.head(tenant=tenant) == 1
    assert [e.tool for e in runs.events(run_id=runs.run + "-2")] == ["other-run"]

    assert runs.store.erase(tenant=runs.globex) == 1
    assert runs.events(tenant=runs.globex) == ()
    assert runs.head(tenant=None) == 1 and runs.head(tenant="null") == 1
    assert len(runs.events()) == 1


def test_a_run_expires_ttl_after_its_last_event_and_starts_afresh(runs: Runs) -> None:
    runs.add("a", at=T0, ttl_s=60)
    runs.add("b", at=T0 + timedelta(seconds=50), ttl_s=60)  # refreshes the expiry to T0+110s
    late = T0 + timedelta(seconds=109)
    assert runs.head(now=late) == 2 and len(runs.events(now=late)) == 2
    gone = T0 + timedelta(seconds=110)
    assert runs.head(now=gone) == 0
    assert runs.events(now=gone) == () and runs.events(now=gone, after=1) == ()

    # The next append starts a fresh run; its numbering goes on (a head is never reused).
    again = T0 + timedelta(seconds=200)
    assert runs.add("c", at=again, ttl_s=60) == 3
    assert [(e.seq, e.tool) for e in runs.events(now=again)] == [(3, "c")]
    assert runs.head(now=again) == 3


def test_purge_deletes_expired_runs_only(runs: Runs) -> None:
    runs.add("old", run_id=runs.run + "-old", at=T0, ttl_s=60)
    runs.add("old", tenant=runs.globex, at=T0, ttl_s=60)
    runs.add("live", at=T0, ttl_s=600)
    later = T0 + timedelta(seconds=120)
    purged = runs.store.purge_expired(now=later)
    if runs.kind == "redis":  # database 11 may hold other test runs' leftovers
        assert purged >= 2
    else:
        assert purged == 2
    assert [e.tool for e in runs.events(now=later)] == ["live"]
    # Gone from the store, not just hidden: even an earlier clock sees nothing.
    assert runs.events(run_id=runs.run + "-old", now=T0) == ()
    assert runs.events(tenant=runs.globex, now=T0) == ()
    assert runs.store.purge_expired(now=later) == 0 or runs.kind == "redis"
    # A purged run starts again at 1.
    assert runs.add("new", run_id=runs.run + "-old", at=later) == 1


def test_erase_one_run_or_every_run_of_a_tenant(runs: Runs) -> None:
    for run in ("a", "b", "c"):
        runs.add("t", run_id=f"{runs.run}-{run}")
    runs.add("t", tenant=runs.globex, run_id=f"{runs.run}-a")
    assert runs.store.erase(tenant=runs.acme, run_id=f"{runs.run}-a") == 1
    assert runs.events(run_id=f"{runs.run}-a") == ()
    assert runs.head(run_id=f"{runs.run}-b") == 1
    assert runs.store.erase(tenant=runs.acme) == 2
    assert runs.events(run_id=f"{runs.run}-b") == () and runs.events(run_id=f"{runs.run}-c") == ()
    assert runs.head(tenant=runs.globex, run_id=f"{runs.run}-a") == 1  # other tenant kept
    assert runs.store.erase(tenant=runs.acme) == 0


def test_at_most_one_mib_of_text_per_run_oldest_blanked_first(runs: Runs) -> None:
    chunk = 400 * 1024
    for i in range(3):
        runs.add(
            f"read-{i}",
            args={"i": i},
            labels=frozenset({"untrusted"}),
            source_ids=("inbox",),
            text=str(i) * chunk,
        )
    events = runs.events()
    assert [len(e.text) for e in events] == [0, chunk, chunk]  # 1.2 MiB: the oldest went
    # ...and says so: flow rules must not read "not in the kept text" as "not observed"
    assert [e.text_lost for e in events] == [True, False, False]
    kept = events[0]
    assert (kept.seq, kept.tool, kept.args, kept.labels, kept.source_ids) == (
        1,
        "read-0",
        {"i": 0},
        frozenset({"untrusted"}),
        ("inbox",),
    )
    runs.add("small", text="x" * 100)  # fits beside the two kept texts
    assert [len(e.text) for e in runs.events()] == [0, chunk, chunk, 100]
    runs.add("empty", text="")  # an output with no text lost none

    # One text over the bound is cut to it, at a character boundary; all older text goes.
    huge = "é" * MAX_RUN_TEXT_BYTES  # 2 MiB of UTF-8
    runs.add("huge", text=huge)
    events = runs.events()
    assert [len(e.text) for e in events[:-1]] == [0, 0, 0, 0, 0]
    assert events[-1].text == "é" * (MAX_RUN_TEXT_BYTES // 2)
    assert sum(len(e.text.encode()) for e in events) <= MAX_RUN_TEXT_BYTES
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e.text_lost for e in events] == [True, True, True, True, False, True]
    # the engine's own cut (RunTracker.observe cuts before the store) is kept as such
    runs.add("cut", text="short", text_lost=True)
    assert runs.events()[-1].text_lost and runs.events()[-1].text == "short"


def test_text_every_store_can_keep(runs: Runs) -> None:
    """NUL (PostgreSQL cannot store it) and lone surrogates become U+FFFD everywhere."""
    runs.add("t", text="a\x00b")
    runs.add("t", text="c\ud800d")
    first, second = runs.events()
    assert first.text == "a\ufffdb"
    assert second.text.startswith("c\ufffd") and second.text.endswith("d")
    assert "\ud800" not in second.text


def test_bad_arguments_are_refused_before_anything_is_written(runs: Runs) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        runs.add("t", at=datetime(2026, 12, 1))
    with pytest.raises(ValueError, match="ttl_s"):
        runs.add("t", ttl_s=0)
    with pytest.raises(ValueError, match="ttl_s"):
        runs.add("t", ttl_s=float("nan"))
    with pytest.raises(ValueError, match="run_id"):
        runs.store.head(runs.acme, "", now=T0)
    assert runs.head() == 0


def test_threads_append_gap_free(runs: Runs) -> None:
    seqs: dict[str, int] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(20):
                name = f"w{worker}-{i}"
                seq = runs.add("t", args={"name": name}, text=name)
                with lock:
                    seqs[name] = seq
        except BaseException as exc:  # reported below
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert errors == []
    _assert_gap_free(runs, seqs)


def test_processes_append_gap_free(runs: Runs, tmp_path: Path) -> None:
    worker = Path(__file__).with_name("run_store_worker.py")
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), runs.url, runs.acme, runs.run, f"p{i}", "2", "15", str(go), str(tmp_path / f"ready{i}")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]  # fmt: skip
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline, "workers did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.05)
    go.touch()  # both processes append at once
    seqs: dict[str, int] = {}
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        seqs.update(json.loads(out))
    assert len(seqs) == 60
    _assert_gap_free(runs, seqs, now=datetime.now(UTC))


def _assert_gap_free(runs: Runs, seqs: dict[str, int], *, now: datetime = T0) -> None:
    """Every append got its own seq, 1..N without a gap, and the stored event at each seq
    is the one that append wrote (nothing lost, nothing reordered)."""
    assert sorted(seqs.values()) == list(range(1, len(seqs) + 1))
    events = runs.events(now=now)
    assert [e.seq for e in events] == list(range(1, len(seqs) + 1))
    assert {e.args["name"]: e.seq for e in events} == seqs
    assert all(e.text == e.args["name"] for e in events)
    assert runs.head(now=now) == len(seqs)


# --------------------------------------------------------------------------- opening


def test_open_run_store_picks_url_then_env_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_RUNS_URL, raising=False)
    monkeypatch.setenv("VETO_DB", str(tmp_path / "audit.db"))
    explicit = open_run_store(f"sqlite:///{tmp_path / 'explicit.db'}", default="nosuch://x")
    assert isinstance(explicit, SQLiteRunStore) and (tmp_path / "explicit.db").exists()
    explicit.close()
    fallback = open_run_store(default=f"sqlite:///{tmp_path / 'default.db'}")
    assert (tmp_path / "default.db").exists()
    fallback.close()
    audit_default = open_run_store()  # the audit trail's file
    assert (tmp_path / "audit.db").exists()
    audit_default.close()
    monkeypatch.setenv(ENV_RUNS_URL, f"sqlite:///{tmp_path / 'env.db'}")
    from_env = open_run_store(default=f"sqlite:///{tmp_path / 'default2.db'}")
    assert (tmp_path / "env.db").exists() and not (tmp_path / "default2.db").exists()
    from_env.close()


def test_open_run_store_failures_are_unavailable(tmp_path: Path) -> None:
    with pytest.raises(RunStoreUnavailable, match="no run store for URL scheme 'ftp'"):
        open_run_store("ftp://example.com/x")
    with pytest.raises(RunStoreUnavailable, match=r"run store \(Redis\) unreachable"):
        open_run_store("redis://127.0.0.1:1/0")
    with pytest.raises(RunStoreUnavailable, match=r"run store \(PostgreSQL\) unreachable"):
        open_run_store("postgresql://postgres@127.0.0.1:1/test")
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(RunStoreUnavailable, match="run store"):
        open_run_store(f"sqlite:///{tmp_path / 'dir.db'}")


def test_a_version_1_database_gains_text_lost(tmp_path: Path) -> None:
    """Runs written before ``text_lost`` existed read as not lost; new blanking marks."""
    import sqlite3

    from veto_core.runs.backends import MIGRATIONS
    from veto_core.storage import migrate_sqlite

    path = tmp_path / "v1.db"
    con = sqlite3.connect(path, isolation_level=None)
    migrate_sqlite(con, component="runs", migrations=MIGRATIONS, too_new=RuntimeError, target=1)
    con.execute("INSERT INTO veto_runs VALUES ('\"t\"', 'r', 1, 9223372036854775807, 5)")
    con.execute(
        "INSERT INTO veto_run_events VALUES ('\"t\"', 'r', 1, 'read', '{}', 'allow', NULL, "
        "'[\"untrusted\"]', '[]', 'hello', 5, 0)"
    )
    con.close()
    store = open_run_store(f"sqlite:///{path}")
    try:
        (old,) = store.load("t", "r", now=T0)
        assert old.text == "hello" and old.text_lost is False
        store.append("t", "r", RunEvent(tool="big", text="x" * MAX_RUN_TEXT_BYTES, at=T0),
                     ttl_s=60, now=T0)  # fmt: skip
        old, big = store.load("t", "r", now=T0)
        assert old.text == "" and old.text_lost and not big.text_lost
    finally:
        store.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path / 'v.db'}"
    open_run_store(url).close()
    con = sqlite3.connect(tmp_path / "v.db")
    con.execute("UPDATE veto_schema SET version = 99 WHERE component = 'runs'")
    con.commit()
    con.close()
    with pytest.raises(RunStoreUnavailable, match="schema version 99 is newer"):
        open_run_store(url)


def test_the_run_store_shares_the_audit_file(tmp_path: Path) -> None:
    """Run state sits next to the audit trail and approvals in one SQLite file."""
    from veto_core.audit.log import open_audit

    url = f"sqlite:///{tmp_path / 'veto.db'}"
    open_audit(url).close()
    store = open_run_store(default=url)
    store.append("t", "r", RunEvent(tool="x", at=T0), ttl_s=TTL, now=T0)
    store.close()
    reopened = open_audit(url)
    reopened.close()
    again = open_run_store(url)
    assert again.head("t", "r", now=T0) == 1
    again.close()


# --------------------------------------------------------------------------- faults


def _event(n: int) -> RunEvent:
    return RunEvent(tool="t", args={"n": n}, text=f"out {n}", at=T0)


def _down_then_up(store: RunStore, proxy: TcpProxy, run: str) -> None:
    """While the store is down every method fails closed with RunStoreUnavailable; when
    it returns the same store object serves again and nothing was appended twice."""
    assert store.append("acme", run, _event(1), ttl_s=TTL, now=T0) == 1
    proxy.down()
    for attempt in (
        lambda: store.append("acme", run, _event(2), ttl_s=TTL, now=T0),
        lambda: store.load("acme", run, now=T0),
        lambda: store.head("acme", run, now=T0),
        lambda: store.purge_expired(now=T0),
        lambda: store.erase(tenant="acme", run_id="nothing"),
    ):
        with pytest.raises(RunStoreUnavailable):
            attempt()
    proxy.up()
    assert store.append("acme", run, _event(3), ttl_s=TTL, now=T0) == 2
    assert [(e.seq, e.args["n"]) for e in store.load("acme", run, now=T0)] == [(1, 1), (2, 3)]
    assert store.head("acme", run, now=T0) == 2


def test_postgres_down_fails_closed_then_resumes(pg_url: str) -> None:
    with TcpProxy(5432) as proxy:
        store = PostgresRunStore(_via(pg_url, proxy))
        try:
            _down_then_up(store, proxy, "r")
        finally:
            store.close()


def test_postgres_session_ended_while_idle_costs_nothing(pg_url: str) -> None:
    url, name = _tagged(pg_url)
    store = PostgresRunStore(url)
    try:
        for n in range(1, 4):
            _terminate(pg_url, name)  # a server restart while the store sat idle
            assert store.append("acme", "r", _event(n), ttl_s=TTL, now=T0) == n
        _terminate(pg_url, name)
        assert store.head("acme", "r", now=T0) == 3
        _terminate(pg_url, name)
        assert [e.seq for e in store.load("acme", "r", now=T0)] == [1, 2, 3]
    finally:
        store.close()


def test_redis_down_fails_closed_then_resumes() -> None:
    _redis_up()
    run = f"fault-{secrets.token_hex(4)}"
    with TcpProxy(6379) as proxy:
        store = RedisRunStore(REDIS_URL.replace("6379", str(proxy.port)))
        try:
            _down_then_up(store, proxy, run)
        finally:
            store.erase(tenant="acme", run_id=run)
            store.close()


def test_redis_lost_reply_appends_once() -> None:
    """The append ran on the server but its answer was lost: the store repeats it with
    the same token, which the script recognises, so the event is stored once."""
    _redis_up()
    run = f"fault-{secrets.token_hex(4)}"
    with TcpProxy(6379) as proxy:
        store = RedisRunStore(REDIS_URL.replace("6379", str(proxy.port)))
        try:
            assert store.append("acme", run, _event(1), ttl_s=TTL, now=T0) == 1
            proxy.lose_next_reply()
            assert store.append("acme", run, _event(2), ttl_s=TTL, now=T0) == 2
            assert store.append("acme", run, _event(3), ttl_s=TTL, now=T0) == 3
            assert [e.args["n"] for e in store.load("acme", run, now=T0)] == [1, 2, 3]
        finally:
            store.erase(tenant="acme", run_id=run)
            store.close()


# --------------------------------------------------------------------------- maintenance


def test_veto_audit_purge_also_purges_expired_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from veto_core.audit.cli import audit_cli
    from veto_core.audit.log import open_audit

    monkeypatch.delenv(ENV_RUNS_URL, raising=False)
    db = tmp_path / "veto.db"
    open_audit(f"sqlite:///{db}").close()
    store = open_run_store(f"sqlite:///{db}")
    now = datetime.now(UTC)
    store.append("acme", "old", RunEvent(tool="t", at=T0), ttl_s=60, now=now - timedelta(hours=2))
    store.append("acme", "live", RunEvent(tool="t", at=T0), ttl_s=TTL, now=now)
    result = CliRunner().invoke(audit_cli, ["purge", "--db", str(db), "--retention-days", "30"])
    assert result.exit_code == 0, result.output
    assert "expired runs: deleted 1" in result.output
    assert store.load("acme", "old", now=now - timedelta(hours=2)) == ()
    assert store.head("acme", "live", now=now) == 1
    store.close()

    # A run store that cannot be reached fails the command (exit 2), naming it.
    monkeypatch.setenv(ENV_RUNS_URL, "redis://127.0.0.1:1/0")
    result = CliRunner().invoke(audit_cli, ["purge", "--db", str(db), "--retention-days", "30"])
    assert result.exit_code == 2 and "run store" in result.output, result.output
