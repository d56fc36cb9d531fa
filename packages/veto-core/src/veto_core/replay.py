"""`veto replay`: re-decide recorded calls under another policy and report every change.

The safe way to ship a policy edit: run the new policy against what agents actually
did and read what it would have changed before anything is enforced.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .audit import REDACTED, AuditRecord
from .engine import Veto
from .model import ToolCall

__all__ = ["DECISION_OUTCOMES", "ReplayChange", "ReplayReport", "replay"]

#: Outcomes of decision records (approval lifecycle events and the like are not replayed).
DECISION_OUTCOMES = frozenset({"allowed", "denied", "pending_approval"})


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplayChange:
    record_id: str
    tenant: str
    tool: str
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
                    "record_id": c.record_id, "tenant": c.tenant, "tool": c.tool, "before": c.before, "after": c.after,
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


def replay(records: Iterable[AuditRecord], veto: Veto) -> ReplayReport:
    """Decide each recorded call again with ``veto`` (its clock set to the record's time)."""
    changes: list[ReplayChange] = []
    skipped: Counter[str] = Counter()
    replayed = unchanged = 0
    for record in records:
        before = _recorded_effect(record)
        if before is None:
            continue
        if record.args is None:
            skipped["arguments erased"] += 1
            continue
        if _has_redaction(record.args):
            skipped["arguments redacted"] += 1
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
        decision = veto.decide(call)
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
                before=before,
                after=after,
                before_rules=record.rule_ids,
                after_rules=decision.deciding_rule_ids,
                reasons=decision.reasons,
            )
        )
    return ReplayReport(
        replayed=replayed, unchanged=unchanged, changes=tuple(changes), skipped=dict(skipped)
    )
