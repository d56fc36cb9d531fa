"""`veto replay`: re-decide recorded calls under another policy and report every change.

The safe way to ship a policy edit: run the new policy against what agents actually
did and read what it would have changed before anything is enforced.

Stateful limits (DESIGN.md 2.5) are replayed too: calls are re-decided in time order
against in-memory counters that each call the new policy allows spends, exactly as
`authorize` would have, so an unchanged policy reproduces every recorded decision.
The real counters are never touched. Records older than ``report_since`` (the
limits' longest window before it) only warm the counters up.
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .audit import REDACTED, AuditRecord
from .engine import Veto
from .limits import LimitStore, Spend
from .model import ToolCall

__all__ = [
    "DECISION_OUTCOMES",
    "MemoryLimitStore",
    "ReplayChange",
    "ReplayReport",
    "replay",
    "warmup_window",
]

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


def warmup_window(veto: Veto) -> _dt.timedelta:
    """How far before ``--since`` records still count towards the policy's limits."""
    return _dt.timedelta(seconds=max((lim.window_s for lim in veto.policy.limits), default=0))


def replay(
    records: Iterable[AuditRecord], veto: Veto, *, report_since: _dt.datetime | None = None
) -> ReplayReport:
    """Decide each recorded call (oldest first) again with ``veto``, its clock set to the
    record's time and its limits counted in memory; records before ``report_since``
    only advance the counters."""
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
            continue
        if _has_redaction(record.args):
            skipped["arguments redacted"] += 0 if warmup else 1
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
        decision = veto.decide_counted(call, counters)
        if warmup:
            continue
        replayed += 1
        after = decision.effect.value
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
                reasons=decision.reasons,
            )
        )
    return ReplayReport(
        replayed=replayed,
        unchanged=unchanged,
        changes=tuple(changes),
        skipped={why: n for why, n in skipped.items() if n},
    )
