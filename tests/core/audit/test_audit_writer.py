"""The store's writer: batches across threads and asyncio tasks, every caller waits for
the commit holding its record, errors reach every waiter; the durability setting; the
canonical JSON the hot path writes through orjson."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veto_core.audit import AuditLog, AuditUnavailable, open_audit
from veto_core.audit import sqlite as sqlite_mod
from veto_core.audit.pending import PendingRecord
from veto_core.audit.record import SealedRecord, canonical_plain, plain_args_json
from veto_core.config import AuditConfig, ConfigError, load_config
from veto_core.model import Decision, Effect, Principal, ToolCall

DECISION = Decision(
    effect=Effect.ALLOW,
    rule_ids=("r",),
    deciding_rule_ids=("r",),
    reasons=("ok",),
    errors=(),
    policy_name="p",
    policy_revision="0" * 64,
)


def _call(i: int, tenant: str = "acme") -> ToolCall:
    return ToolCall(
        tool="pay",
        args={"i": i, "amount": 12.5, "password": "pw"},
        principal=Principal(agent="a", user=f"u{i % 3}"),
        tenant=tenant,
    )


def _batches(log: AuditLog) -> list[int]:
    """Record the size of every batch the sink commits."""
    sizes: list[int] = []
    append = log.sink.append

    def counting(batch: Sequence[PendingRecord]) -> list[SealedRecord]:
        sizes.append(len(batch))
        return append(batch)

    log._writer._commit = counting  # the writer calls this per batch
    return sizes


def test_threads_and_tasks_share_commits_and_every_record_is_stored(tmp_path: Path) -> None:
    log = open_audit(str(tmp_path / "w.db"))
    sizes = _batches(log)
    ids: list[str] = []
    lock = threading.Lock()

    def thread_work(t: int) -> None:
        for i in range(40):
            rec = log.record_decision(_call(i, ("acme", "beta")[t % 2]), DECISION, env="prod")
            with lock:
                ids.append(rec.id)

    async def tasks() -> list[str]:
        async def one(i: int) -> str:
            rec = await log.arecord_decision(
                _call(i, ("acme", "beta")[i % 2]), DECISION, redact=("args.password",)
            )
            return rec.id

        return list(await asyncio.gather(*(one(i) for i in range(64))))

    threads = [threading.Thread(target=thread_work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    async_ids = asyncio.run(tasks())
    for t in threads:
        t.join()
    stored = {r.id for r in log.iter_records(limit=None)}
    assert set(ids) | set(async_ids) <= stored
    assert len(stored) == 8 * 40 + 64
    assert sum(sizes) == len(stored) and max(sizes) > 1  # commits were shared
    assert log.verify().ok
    redacted = [r for r in log.iter_records(limit=None) if r.id in set(async_ids)]
    assert all(r.args is not None and r.args["password"] == "[REDACTED]" for r in redacted)
    log.close()


def test_a_failed_commit_fails_every_waiter_of_its_batch(tmp_path: Path) -> None:
    log = open_audit(str(tmp_path / "f.db"))
    release = threading.Event()

    def failing(batch: Sequence[PendingRecord]) -> list[SealedRecord]:
        release.wait(5)  # let callers pile up into one batch
        raise AuditUnavailable("disk full")

    log._writer._commit = failing
    errors: list[BaseException] = []

    def work() -> None:
        try:
            log.record_decision(_call(1), DECISION)
        except BaseException as exc:
            errors.append(exc)

    async def tasks() -> list[BaseException | None]:
        async def one() -> BaseException | None:
            try:
                await log.arecord_decision(_call(2), DECISION)
            except BaseException as exc:
                return exc
            return None

        futs = [asyncio.create_task(one()) for _ in range(5)]
        await asyncio.sleep(0.05)
        release.set()
        return list(await asyncio.gather(*futs))

    threads = [threading.Thread(target=work) for _ in range(5)]
    for t in threads:
        t.start()
    async_errors = asyncio.run(tasks())
    for t in threads:
        t.join(10)
    assert len(errors) == 5 and all(isinstance(e, AuditUnavailable) for e in errors)
    assert all(isinstance(e, AuditUnavailable) and "disk full" in str(e) for e in async_errors)
    assert log.query() == []
    log.sink.close()


def test_a_wrong_number_of_results_is_an_error(tmp_path: Path) -> None:
    log = open_audit(str(tmp_path / "n.db"))
    log._writer._commit = lambda batch: []
    with pytest.raises(AuditUnavailable, match="wrong number"):
        log.record_decision(_call(1), DECISION)
    log.sink.close()


def test_records_after_close_are_refused(tmp_path: Path) -> None:
    log = open_audit(str(tmp_path / "c.db"))
    log.record_decision(_call(1), DECISION)
    log.close()
    with pytest.raises(AuditUnavailable, match="closed"):
        log.record_decision(_call(2), DECISION)
    with pytest.raises(AuditUnavailable, match="closed"):
        asyncio.run(log.arecord_decision(_call(3), DECISION))


def test_a_cancelled_task_still_has_its_record_committed(tmp_path: Path) -> None:
    log = open_audit(str(tmp_path / "x.db"))
    gate = threading.Event()
    append = log.sink.append

    def slow(batch: Sequence[PendingRecord]) -> list[SealedRecord]:
        gate.wait(5)
        return append(batch)

    log._writer._commit = slow

    async def main() -> None:
        task = asyncio.create_task(log.arecord_decision(_call(7), DECISION))
        await asyncio.sleep(0.05)
        task.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    log._writer.close()  # waits for the batch in flight
    assert [r.args["i"] for r in log.query() if r.args] == [7]
    log.close()


def test_batches_beyond_one_statement_are_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_mod, "_ROWS_PER_INSERT", 3)
    log = open_audit(str(tmp_path / "s.db"))
    gate = threading.Event()
    append = log.sink.append
    sizes: list[int] = []

    def held(batch: Sequence[PendingRecord]) -> list[SealedRecord]:
        gate.wait(5)
        sizes.append(len(batch))
        return append(batch)

    log._writer._commit = held

    async def main() -> None:
        futs = [asyncio.create_task(log.arecord_decision(_call(i), DECISION)) for i in range(11)]
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(*futs)

    asyncio.run(main())
    assert max(sizes) > 3
    assert sorted(r.seq for r in log.query(limit=None)) == list(range(1, 12))
    assert log.verify().ok
    log.close()


# -- durability ---------------------------------------------------------------------


@pytest.mark.parametrize(("durability", "level"), [("fsync", 2), ("os", 1)])
def test_sqlite_durability_setting(tmp_path: Path, durability: str, level: int) -> None:
    log = open_audit(str(tmp_path / "d.db"), config=AuditConfig(durability=durability))
    con: sqlite3.Connection = log.sink._writer  # type: ignore[attr-defined]
    assert con.execute("PRAGMA synchronous").fetchone()[0] == level  # FULL=2, NORMAL=1
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    log.record_decision(_call(1), DECISION)
    log.close()


@pytest.mark.parametrize(("durability", "setting"), [("fsync", "on"), ("os", "off")])
def test_postgres_durability_setting(pg_url: str, durability: str, setting: str) -> None:
    log = open_audit(pg_url, config=AuditConfig(durability=durability))
    con: Any = log.sink._writer  # type: ignore[attr-defined]
    assert con.execute("SHOW synchronous_commit").fetchone()[0] == setting
    assert log.record_decision(_call(1), DECISION).seq == 1
    log.close()


def test_durability_in_veto_toml_and_environment(tmp_path: Path) -> None:
    toml = tmp_path / "veto.toml"
    toml.write_text('[audit]\ndurability = "os"\n')
    assert load_config(toml, env={}).audit.durability == "os"
    assert load_config(toml, env={"VETO_AUDIT_DURABILITY": "fsync"}).audit.durability == "fsync"
    assert AuditConfig().durability == "fsync"  # the default
    toml.write_text('[audit]\ndurability = "sometimes"\n')
    with pytest.raises(ConfigError, match=r"audit\.durability must be one of fsync, os"):
        load_config(toml, env={})


# -- canonical JSON -----------------------------------------------------------------

_keys = st.text().filter(lambda k: not k.startswith("$"))  # "$" keys are tagged (DESIGN 7)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)
_STDLIB = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_keys, _json, max_size=5))
def test_fast_canonical_json_is_byte_identical_to_the_json_encoder(args: dict[str, Any]) -> None:
    """Old chains and approval digests stay valid: the hot path writes the same bytes."""
    expected = _STDLIB.encode(args)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in expected):
        return  # lone surrogates cannot be stored either way (not UTF-8)
    assert plain_args_json(args)[1] == expected
    assert canonical_plain(args) == expected


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_float_keeps_its_canonical_spelling(x: float) -> None:
    assert canonical_plain({"x": x}) == _STDLIB.encode({"x": x})


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["password", "PassWord", "api_token", "tok", "a.b", "x", "ß", "K"])
        | st.text(max_size=6),
        st.integers(),
        max_size=6,
    ),
    st.lists(
        st.sampled_from(
            [
                "args.password",
                "args.*token*",
                "args.?",
                "args.[ab]*",
                "args.k",
                "args.SS",
                "args.a.b",
            ]
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_top_level_redaction_matches_the_general_walk(
    args: dict[str, int], patterns: list[str]
) -> None:
    """The one-regex fast path for ``args.<glob>`` patterns redacts what the general
    pattern walk redacts."""
    from veto_core.audit.record import _redact, compile_redactions, redact_plain

    pats = compile_redactions(patterns)
    assert redact_plain(args, tuple(patterns)) == _redact(args, pats, [(p, 0) for p in pats])


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(_keys, _json, max_size=5),
    st.lists(st.sampled_from(["args.password", "args.*a*", "*b*", "args.x.y", "args.l[*].k"])),
)
def test_redacted_args_are_written_with_the_args_encoder_kind(
    args: dict[str, Any], patterns: list[str]
) -> None:
    """The hot path encodes the redacted copy with the kind found for the args (no second
    walk): the stored text is still the canonical JSON of the stored value."""
    from veto_core.audit.record import encode_plain, plain_args_kind, redact_plain

    if any(0xD800 <= ord(c) <= 0xDFFF for c in _STDLIB.encode(args)):
        return  # lone surrogates cannot be stored either way (not UTF-8)
    plain, text, kind = plain_args_kind(args)
    assert text == _STDLIB.encode(args)
    stored = redact_plain(plain, tuple(patterns))
    assert encode_plain(stored, kind) == _STDLIB.encode(stored)


# -- the writer's wait for a full batch ---------------------------------------------------


class _GatedCommits:
    """A commit function that records batch sizes and holds the first commit until
    :attr:`gate` is set (so callers pile up behind it)."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.started = threading.Event()  # the first commit holds its batch
        self.gate = threading.Event()

    def __call__(self, batch: Sequence[int]) -> list[int]:
        if not self.sizes:
            self.started.set()
            assert self.gate.wait(120), "the test never opened the gate"
        self.sizes.append(len(batch))
        return list(batch)


def _submit_all(writer: Any, items: Sequence[int]) -> list[threading.Thread]:
    threads = [threading.Thread(target=writer.submit, args=(i,)) for i in items]
    for t in threads:
        t.start()
    return threads


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        threading.Event().wait(0.001)


def _two_queued_behind_an_inline_commit(writer: Any, commits: _GatedCommits) -> None:
    """Batch sizes [1, 2]: the writer's last batch had two callers, so it now lingers."""
    first = _submit_all(writer, [0])
    # Wait for the commit itself, not for the writer to leave idle: under load the
    # writer thread can start after the next two callers queued, and take all three.
    _until(commits.started.is_set, "the first commit started")
    queued = _submit_all(writer, [1, 2])
    _until(lambda: len(writer._queue) == 2, "two callers queued behind it")
    commits.gate.set()
    for t in first + queued:
        t.join(60)
    assert commits.sizes == [1, 2]


def test_a_lingering_writer_is_woken_by_the_caller_that_completes_its_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from veto_core.audit import writer as writer_mod

    monkeypatch.setattr(writer_mod, "_LINGER_S", 30.0)  # only a wake-up ends it in time
    commits = _GatedCommits()
    writer = writer_mod.AuditWriter(commits)
    _two_queued_behind_an_inline_commit(writer, commits)
    start = time.monotonic()
    for t in _submit_all(writer, [3, 4]):
        t.join(10)
    assert time.monotonic() - start < 10  # woken by the second caller, not by the timeout
    assert commits.sizes == [1, 2, 2]
    writer.close()


def test_a_lingering_writer_commits_what_arrived_when_its_wait_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from veto_core.audit import writer as writer_mod

    monkeypatch.setattr(writer_mod, "_LINGER_S", 0.2)
    commits = _GatedCommits()
    writer = writer_mod.AuditWriter(commits)
    _two_queued_behind_an_inline_commit(writer, commits)
    assert writer.submit(3) == 3  # alone: committed once the wait timed out
    assert commits.sizes == [1, 2, 1]
    assert writer._enough.locked() and writer._want == 0  # ready for the next wait
    writer.close()
