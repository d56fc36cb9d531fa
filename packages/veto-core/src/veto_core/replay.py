"""`veto replay`: re-decide recorded calls under another policy and report every change.

The safe way to ship a policy edit: run the new policy against what agents actually
did and read what it would have changed before anything is enforced.

Stateful limits (DESIGN.md 2.5) are replayed too: calls are re-decided in time order
against in-memory counters that each call the new policy allows spends, exactly as
`authorize` would have, so an unchanged policy reproduces every recorded decision.
The real counters are never touched. Records older than ``report_since`` (the
limits' longest window before it) only warm the counters up.

Runs (DESIGN.md 2.7) are replayed in order too: the audit trail has no outputs, so
the run history comes from the run store (``history``: the events `observe` wrote,
with their labels, text, seq and tool_call_id). Each record of a run is re-decided
with the events that run had at that point: an event is given to the run before a
record when it belongs to an earlier record of the run (same tool_call_id; without
one, the earliest earlier record with the same tool and arguments), or when it was
written before the record was decided and is not the record's own. When a run's
history is not in the store (expired after ``run_ttl``, erased, never observed, or
the store is unreachable), a decision that reads the run is reported as a change
to ``unknown`` with the reason — never as unchanged.
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .audit import REDACTED, AuditRecord
from .audit.record import DEFAULT_TENANT
from .engine import Veto
from .limits import LimitStore, Spend
from .model import ToolCall
from .runs.memory import MemoryRunStore
from .runs.store import RunEvent, RunStore, RunStoreUnavailable

__all__ = [
    "DECISION_OUTCOMES",
    "UNKNOWN",
    "MemoryLimitStore",
    "ReplayChange",
    "ReplayReport",
    "ReplayRunStore",
    "replay",
    "warmup_window",
]

#: The "after" of a record whose decision needs run history replay does not have.
UNKNOWN = "unknown"
_NO_HISTORY = "run history not available for replay"
#: Outcomes of decision records (approval lifecycle events and the like are not replayed).
DECISION_OUTCOMES = frozenset({"allowed", "denied", "pending_approval"})


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplayChange:
    record_id: str
    tenant: str
    tool: str
    tool_call_id: str | None
    before: str
    after: str
    before_rules: tuple[str, ...]
    after_rules: tuple[str, ...]
    reasons: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ReplayReport:
    replayed: int
    unchanged: int
    changes: tuple[ReplayChange, ...]
    skipped: dict[str, int] = field(default_factory=dict)  # why -> count (erased, redacted)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def groups(self) -> list[tuple[tuple[str, str, str], int]]:
        """(before effect, after effect, deciding rules now) -> count, most common first."""
        counter = Counter(
            (c.before, c.after, ", ".join(c.after_rules) or "(default)") for c in self.changes
        )
        return counter.most_common()

    def to_dict(self) -> dict[str, Any]:
        return {
            "replayed": self.replayed,
            "unchanged": self.unchanged,
            "changed": len(self.changes),
            "skipped": self.skipped,
            "groups": [{"before": b, "after": a, "rules": r, "count": n} for (b, a, r), n in self.groups()],
            "changes": [
                {
                    "record_id": c.record_id, "tenant": c.tenant, "tool": c.tool, "tool_call_id": c.tool_call_id,
                    "before": c.before, "after": c.after,
                    "before_rules": list(c.before_rules), "after_rules": list(c.after_rules), "reasons": list(c.reasons),
                }
                for c in self.changes
            ],
        }  # fmt: skip


def _recorded_effect(record: AuditRecord) -> str | None:
    if record.outcome in DECISION_OUTCOMES or record.outcome.startswith("shadow-"):
        return record.effect
    return None


def _has_redaction(value: Any) -> bool:
    if value == REDACTED:
        return True
    if isinstance(value, dict):
        return any(_has_redaction(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_redaction(v) for v in value)
    return False


class MemoryLimitStore(LimitStore):
    """Counters in memory, with the SQLite store's window semantics (an event counts
    while ``ts > now - window``): what replay spends instead of the real store."""

    def __init__(self) -> None:
        self._events: dict[str, list[tuple[float, float, str]]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str, t: float, window_s: float) -> list[tuple[float, float, str]]:
        events = [e for e in self._events.get(key, ()) if e[0] > t - window_s]
        self._events[key] = events
        return events

    def try_spend(
        self, key: str, amount: float, maximum: float, window_s: float, *, now: float | None = None
    ) -> Spend:
        t = time.time() if now is None else now
        with self._lock:
            events = self._live(key, t, window_s)
            current = sum(a for _, a, _ in events)
            if current + amount > maximum:
                return Spend(ok=False, total=current, token=None)
            token = uuid.uuid4().hex
            events.append((t, amount, token))
            return Spend(ok=True, total=current + amount, token=token)

    def refund(self, key: str, token: str) -> None:
        with self._lock:
            self._events[key] = [e for e in self._events.get(key, ()) if e[2] != token]

    def total(self, key: str, window_s: float, *, now: float | None = None) -> float:
        t = time.time() if now is None else now
        with self._lock:
            return sum(a for _, a, _ in self._live(key, t, window_s))


class ReplayRunStore(MemoryRunStore):
    """The run store of the Veto that replays: runs rebuilt in memory, event by event,
    as replay reaches each record; a run whose history is missing cannot be read
    (deciding fails closed with the reason, and replay reports the record as unknown)."""

    def __init__(self) -> None:
        super().__init__()
        self.unavailable: dict[tuple[str | None, str], str] = {}

    def load(
        self, tenant: str | None, run_id: str, *, now: _dt.datetime, after_seq: int = 0
    ) -> tuple[RunEvent, ...]:
        why = self.unavailable.get((tenant, run_id))
        if why is not None:
            raise RunStoreUnavailable(f"{_NO_HISTORY}: {why}")
        return super().load(tenant, run_id, now=now, after_seq=after_seq)


@dataclass(kw_only=True, slots=True)
class _Ran:
    """A replayed record of a run that ran (allowed or approved), not yet matched to
    its observation."""

    tool: str
    args: Any
    tool_call_id: str | None


@dataclass(kw_only=True, slots=True)
class _RunReplay:
    events: list[RunEvent]
    next: int = 0
    ran: list[_Ran] = field(default_factory=list)


def _claim(ran: list[_Ran], event: RunEvent) -> bool:
    """Remove and report the earlier record ``event`` observed, if any."""
    for i, r in enumerate(ran):
        if event.tool != r.tool:
            continue
        if event.tool_call_id is not None and r.tool_call_id is not None:
            if event.tool_call_id != r.tool_call_id:
                continue
        elif r.args is not None and dict(event.args) != r.args:
            continue
        del ran[i]
        return True
    return False


def _own(event: RunEvent, record: AuditRecord) -> bool:
    """``event`` may be the observation of ``record`` itself (it ran after it)."""
    if event.tool != record.tool:
        return False
    if event.tool_call_id is not None and record.tool_call_id is not None:
        return event.tool_call_id == record.tool_call_id
    return record.args is None or dict(event.args) == record.args


class _Runs:
    """Feeds each run's recorded history to the replaying Veto's `ReplayRunStore`."""

    def __init__(self, veto: Veto, history: RunStore | Callable[[], RunStore] | None) -> None:
        self._veto = veto
        self._history = history
        self._runs: dict[tuple[str, str], _RunReplay] = {}
        self._store: ReplayRunStore | None = None
        self._opened: RunStore | None = None

    def close(self) -> None:
        """Close the recorded run store if replay opened it."""
        if self._opened is not None:
            self._opened.close()
            self._opened = None

    def _replay_store(self) -> ReplayRunStore:
        if self._store is None:
            store = self._veto.run_store
            if not isinstance(store, ReplayRunStore):
                raise TypeError("replaying runs needs a Veto built with run_store=ReplayRunStore()")
            self._store = store
        return self._store

    def _load(self, tenant: str, run_id: str) -> list[RunEvent] | str:
        if self._history is None:
            return "no run store was given to replay"
        now = _dt.datetime.now(_dt.UTC)
        try:
            if not isinstance(self._history, RunStore):  # opened on first use
                self._history = self._opened = self._history()
            events = self._history.load(tenant, run_id, now=now)
            if not events and tenant == DEFAULT_TENANT:  # recorded without a tenant
                events = self._history.load(None, run_id, now=now)
        except Exception as exc:
            return f"the run store cannot be read: {type(exc).__name__}: {exc}"
        if not events:
            return "no events in the run store (expired after run_ttl, erased, or never observed)"
        return list(events)

    def before(self, record: AuditRecord, call: ToolCall) -> None:
        """Give the record's run every event it had when the record was decided."""
        run_id = record.run_id
        if not run_id or not self._veto.policy.uses_runs:
            return
        key = (record.tenant, run_id)
        run = self._runs.get(key)
        store = self._replay_store()
        if run is None:
            loaded = self._load(record.tenant, run_id)
            if isinstance(loaded, str):
                store.unavailable[key] = loaded
                loaded = []
            run = self._runs[key] = _RunReplay(events=loaded)
        fed = False
        while run.next < len(run.events):
            event = run.events[run.next]
            if event.at >= record.ts and _own(event, record):
                break
            if not _claim(run.ran, event):
                if event.tool.startswith("@"):
                    if event.at > record.ts:
                        break
                elif event.at >= record.ts:
                    break  # a later record's observation
            store.append(record.tenant, run_id, event, ttl_s=_FOREVER, now=record.ts)
            run.next += 1
            fed = True
        if fed:
            self._veto._refresh_run(call)

    def after(self, record: AuditRecord, before: str) -> None:
        """Remember a record that ran, so its observation is given to the run next."""
        if record.run_id and before in ("allow", "require_approval"):
            run = self._runs.get((record.tenant, record.run_id))
            if run is not None:
                args = dict(record.args) if record.args is not None else None
                if args is not None and _has_redaction(args):
                    args = None
                run.ran.append(_Ran(tool=record.tool, args=args, tool_call_id=record.tool_call_id))


_FOREVER = 1e9  # seconds (31 years): replayed runs do not expire while replaying


def warmup_window(veto: Veto) -> _dt.timedelta:
    """How far before ``--since`` records still count towards the policy's limits."""
    return _dt.timedelta(seconds=max((lim.window_s for lim in veto.policy.limits), default=0))


def replay(
    records: Iterable[AuditRecord],
    veto: Veto,
    *,
    report_since: _dt.datetime | None = None,
    history: RunStore | Callable[[], RunStore] | None = None,
) -> ReplayReport:
    """Decide each recorded call (oldest first) again with ``veto``, its clock set to the
    record's time and its limits counted in memory; records before ``report_since``
    only advance the counters. Calls of runs are decided with the run's history at
    that point, rebuilt from ``history`` (the recorded run store) into ``veto``'s
    run store, which must be a `ReplayRunStore` when the policy reads runs."""
    runs = _Runs(veto, history)
    try:
        return _replay(records, veto, runs, report_since)
    finally:
        runs.close()


def _replay(
    records: Iterable[AuditRecord], veto: Veto, runs: _Runs, report_since: _dt.datetime | None
) -> ReplayReport:
    changes: list[ReplayChange] = []
    skipped: Counter[str] = Counter()
    replayed = unchanged = 0
    counters = MemoryLimitStore()
    for record in records:
        before = _recorded_effect(record)
        if before is None:
            continue
        warmup = report_since is not None and record.ts < report_since
        if record.args is None:
            skipped["arguments erased"] += 0 if warmup else 1
            runs.after(record, before)
            continue
        if _has_redaction(record.args):
            skipped["arguments redacted"] += 0 if warmup else 1
            runs.after(record, before)
            continue
        call = ToolCall(
            tool=record.tool,
            args=dict(record.args),
            principal=record.principal,
            env=record.env,
            tenant=record.tenant,
            run_id=record.run_id,
            tool_call_id=record.tool_call_id,
            framework=record.framework,
            now=record.ts,
        )
        runs.before(record, call)
        decision = veto.decide_counted(call, counters)
        runs.after(record, before)
        if warmup:
            continue
        replayed += 1
        after = decision.effect.value
        reasons = decision.reasons
        missing = [e for e in decision.errors if _NO_HISTORY in e]
        if missing:  # never "unchanged": the run it read is not the one it had
            after, reasons = UNKNOWN, (missing[0], *reasons)
        if after == before:
            unchanged += 1
            continue
        changes.append(
            ReplayChange(
                record_id=record.id,
                tenant=record.tenant,
                tool=record.tool,
                tool_call_id=record.tool_call_id,
                before=before,
                after=after,
                before_rules=record.rule_ids,
                after_rules=decision.deciding_rule_ids,
                reasons=reasons,
            )
        )
    return ReplayReport(
        replayed=replayed,
        unchanged=unchanged,
        changes=tuple(changes),
        skipped={why: n for why, n in skipped.items() if n},
    )
