"""Semantic diff of two policy revisions: rules added / removed / changed, list and
setting changes. Works on canonical policy JSON (what a revision hashes), so the
same function serves stored revisions, files and git paths."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PolicyDiff", "RuleChange", "diff_policies"]


@dataclass(frozen=True, kw_only=True, slots=True)
class RuleChange:
    rule_id: str
    fields: tuple[str, ...]  # which keys differ: effect, tools, when, if, ...
    before: dict[str, Any]
    after: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class PolicyDiff:
    before_revision: str
    after_revision: str
    rules_added: tuple[dict[str, Any], ...] = ()
    rules_removed: tuple[dict[str, Any], ...] = ()
    rules_changed: tuple[RuleChange, ...] = ()
    lists_changed: dict[str, dict[str, list[Any]]] = field(
        default_factory=dict
    )  # name -> {added, removed}
    settings_changed: dict[str, tuple[Any, Any]] = field(
        default_factory=dict
    )  # key -> (before, after)

    @property
    def empty(self) -> bool:
        return not (
            self.rules_added
            or self.rules_removed
            or self.rules_changed
            or self.lists_changed
            or self.settings_changed
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "before": self.before_revision,
            "after": self.after_revision,
            "rules_added": list(self.rules_added),
            "rules_removed": list(self.rules_removed),
            "rules_changed": [
                {"id": c.rule_id, "fields": list(c.fields), "before": c.before, "after": c.after}
                for c in self.rules_changed
            ],
            "lists_changed": self.lists_changed,
            "settings_changed": {
                k: {"before": b, "after": a} for k, (b, a) in self.settings_changed.items()
            },
        }

    def render(self) -> str:
        """Human-readable summary, one change a line (+ added, - removed, ~ changed)."""
        lines = [f"policy {self.before_revision[:12]} -> {self.after_revision[:12]}"]
        if self.empty:
            lines.append("  no semantic changes")
        for key, (before, after) in self.settings_changed.items():
            lines.append(f"  ~ {key}: {_short(before)} -> {_short(after)}")
        for name, change in self.lists_changed.items():
            parts = [f"+{_short(v)}" for v in change.get("added", [])] + [
                f"-{_short(v)}" for v in change.get("removed", [])
            ]
            lines.append(f"  ~ list {name}: {' '.join(parts)}")
        for rule in self.rules_added:
            lines.append(f"  + rule {rule['id']} ({rule['effect']} {', '.join(rule['tools'])})")
        for rule in self.rules_removed:
            lines.append(f"  - rule {rule['id']} ({rule['effect']} {', '.join(rule['tools'])})")
        for c in self.rules_changed:
            lines.append(f"  ~ rule {c.rule_id}:")
            for key in c.fields:
                lines.append(
                    f"      {key}: {_short(c.before.get(key))} -> {_short(c.after.get(key))}"
                )
        return "\n".join(lines)


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 120 else text[:117] + "..."


_SETTINGS = ("name", "default", "redact", "audit", "description", "version")


def diff_policies(
    before: dict[str, Any],
    after: dict[str, Any],
    *,
    before_revision: str = "",
    after_revision: str = "",
) -> PolicyDiff:
    """``before``/``after`` are canonical policy dicts (``json.loads(LoadedPolicy.canonical)``)."""
    b_rules = {r["id"]: r for r in before.get("rules", [])}
    a_rules = {r["id"]: r for r in after.get("rules", [])}
    added = tuple(a_rules[k] for k in sorted(a_rules.keys() - b_rules.keys()))
    removed = tuple(b_rules[k] for k in sorted(b_rules.keys() - a_rules.keys()))
    changed = []
    for rule_id in sorted(a_rules.keys() & b_rules.keys()):
        b, a = b_rules[rule_id], a_rules[rule_id]
        keys = tuple(sorted(k for k in b.keys() | a.keys() if b.get(k) != a.get(k)))
        if keys:
            changed.append(RuleChange(rule_id=rule_id, fields=keys, before=b, after=a))
    lists: dict[str, dict[str, list[Any]]] = {}
    b_lists, a_lists = before.get("lists", {}), after.get("lists", {})
    for name in sorted(b_lists.keys() | a_lists.keys()):
        old, new = b_lists.get(name, []), a_lists.get(name, [])
        plus = [v for v in new if v not in old]
        minus = [v for v in old if v not in new]
        if plus or minus or (name in b_lists) != (name in a_lists):
            lists[name] = {"added": plus, "removed": minus}
    settings = {
        k: (before.get(k), after.get(k)) for k in _SETTINGS if before.get(k) != after.get(k)
    }
    if before.get("roles") != after.get("roles"):
        settings["roles"] = (before.get("roles"), after.get("roles"))
    return PolicyDiff(
        before_revision=before_revision,
        after_revision=after_revision,
        rules_added=added,
        rules_removed=removed,
        rules_changed=tuple(changed),
        lists_changed=lists,
        settings_changed=settings,
    )
