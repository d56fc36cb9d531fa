"""`veto lint`: findings on a policy that loads but probably does not do what its author meant.

Hard mistakes (duplicate ids, unknown lists/roles, unknown fields such as
`principal.emial`, bad regexes) are load errors already; lint adds what is legal
but suspicious: rules that can never take effect, unused lists, a default allow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from ..model import Effect
from . import records
from .compiler import CompiledPolicy, CompiledRule
from .operators import compile_glob

__all__ = ["LintFinding", "lint_policy"]


@dataclass(frozen=True, kw_only=True, slots=True)
class LintFinding:
    severity: Literal["warning", "info"]
    code: str
    rule_id: str | None
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} {self.severity} [{self.code}] {self.message}"


def _scope_covers(outer: frozenset[str] | None, inner: frozenset[str] | None) -> bool:
    """True when every call in scope ``inner`` is also in scope ``outer``."""
    if outer is None:
        return True
    return inner is not None and inner <= outer


def _tools_cover(outer: CompiledRule, inner: CompiledRule) -> bool:
    globs = [compile_glob(t) for t in outer.tools if any(c in t for c in "*?[")]
    for tool in inner.tools:
        if tool in outer.tools:
            continue
        is_glob = any(c in tool for c in "*?[")
        if not is_glob and any(g.search(tool) for g in globs):
            continue
        if "*" in outer.tools:
            continue
        return False
    return True


def _roles_cover(policy: CompiledPolicy, outer: CompiledRule, inner: CompiledRule) -> bool:
    """True when every principal ``inner``'s role scope matches also matches ``outer``'s:
    a rule scoped to ``support`` applies to ``support-lead`` if that role inherits it."""
    if outer.roles is None:
        return True
    if inner.roles is None:
        return False
    return all(policy.effective_roles((role,)) & outer.roles for role in inner.roles)


def _covers(policy: CompiledPolicy, outer: CompiledRule, inner: CompiledRule) -> bool:
    return (
        _tools_cover(outer, inner)
        and _scope_covers(outer.envs, inner.envs)
        and _scope_covers(outer.tenants, inner.tenants)
        and _roles_cover(policy, outer, inner)
        and _scope_covers(outer.agents, inner.agents)
    )


def _never_allows_alone(gate: CompiledRule) -> str | None:
    """Why an allow rule that ``gate`` covers can never allow on its own, or None.

    ``gate`` always applies to the calls it covers when it is unconditional, or when it
    has ``otherwise:`` (its condition false or in error, it still matches with that
    effect): then an allow it covers only ever allows where ``gate`` itself allows."""
    if gate.shadow:
        return None
    if gate.condition is None and gate.effect is Effect.REQUIRE_APPROVAL:
        return f"require_approval rule '{gate.id}' always applies to the same calls"
    if gate.otherwise is None:
        return None
    if gate.effect is Effect.ALLOW:
        return (
            f"rule '{gate.id}' applies to every call it applies to and, whenever its own "
            f"condition does not allow, says {gate.otherwise.value} (otherwise:)"
        )
    return (
        f"rule '{gate.id}' applies to every call it applies to and always says "
        f"{gate.effect.value} or {gate.otherwise.value} (otherwise:)"
    )


def _unconditional(rule: CompiledRule) -> bool:
    return rule.condition is None


def _fingerprint(rule: CompiledRule) -> str:
    m = rule.model
    return json.dumps(
        [
            sorted(rule.tools),
            records.as_dict(m.when) if m.when else None,
            m.if_,
            m.otherwise,
            rule.effect.value,
        ],
        sort_keys=True,
        default=str,
    )


def _list_refs(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        if set(node) == {"list"} and isinstance(node["list"], str):
            out.add(node["list"])
        for value in node.values():
            _list_refs(value, out)
    elif isinstance(node, list):
        for value in node:
            _list_refs(value, out)


def _label_refs(node: Any, out: set[str], labels_field: str = "run.labels") -> None:
    """Labels a condition asks about: `tainted_by` operands, and literals compared
    with `run.labels` (or with ``item`` inside ``for_any``/``for_all: run.labels``)
    (DESIGN.md 2.7)."""
    if isinstance(node, dict):
        operand = node.get("tainted_by")
        if operand is not None:
            out.update([operand] if isinstance(operand, str) else operand)
        if node.get("field") in ("run.labels", labels_field):
            for op in ("contains", "equals", "in", "not_in", "not_equals"):
                value = node.get(op)
                if isinstance(value, str):
                    out.add(value)
                elif isinstance(value, list):
                    out.update(v for v in value if isinstance(v, str))
        over = node.get("for_any", node.get("for_all"))
        if over is not None:  # ``item`` is a label only when quantifying over run.labels
            labels_field = "item" if over == "run.labels" else "run.labels"
        for value in node.values():
            _label_refs(value, out, labels_field)
    elif isinstance(node, list):
        for value in node:
            _label_refs(value, out, labels_field)


def lint_policy(policy: CompiledPolicy) -> list[LintFinding]:
    findings: list[LintFinding] = []
    root = policy.loaded.root.file

    def add(
        severity: Literal["warning", "info"],
        code: str,
        rule: CompiledRule | None,
        message: str,
        line: int | None = None,
        file: str | None = None,
    ) -> None:
        findings.append(
            LintFinding(
                severity=severity,
                code=code,
                rule_id=rule.id if rule else None,
                file=rule.file if rule else (file or root),
                line=rule.line if rule else line,
                message=message,
            )
        )

    denies = [
        r
        for r in policy.rules
        if not r.shadow
        and (
            (r.effect is Effect.DENY and _unconditional(r))
            or (r.effect is Effect.DENY and r.otherwise is Effect.DENY)
        )
    ]
    for rule in policy.rules:
        if rule.effect is Effect.DENY:
            continue
        blocker = next((d for d in denies if d.id != rule.id and _covers(policy, d, rule)), None)
        if blocker is not None:
            add(
                "warning",
                "unreachable",
                rule,
                f"rule '{rule.id}' ({rule.effect.value}) can never take effect: unconditional deny rule '{blocker.id}' covers every call it applies to",
            )
            continue
        if rule.effect is Effect.ALLOW:
            for gate in policy.rules:
                why = _never_allows_alone(gate) if gate.id != rule.id else None
                if why is not None and _covers(policy, gate, rule):
                    add(
                        "warning",
                        "shadowed-allow",
                        rule,
                        f"allow rule '{rule.id}' never allows on its own: {why}",
                    )
                    break
    seen: dict[str, CompiledRule] = {}
    for rule in policy.rules:
        key = _fingerprint(rule)
        if key in seen:
            add(
                "warning",
                "duplicate-rule",
                rule,
                f"rule '{rule.id}' repeats rule '{seen[key].id}' (same tools, scopes, condition and effect)",
            )
        else:
            seen[key] = rule
    used: set[str] = set()
    for rule in policy.rules:
        _list_refs(rule.model.if_, used)
    for source in policy.loaded.model.sources:  # a source's `if` may name lists too (2.7)
        _list_refs(source.if_, used)
    for name in sorted(set(policy.loaded.model.lists) - used):
        add("info", "unused-list", None, f"list '{name}' is never referenced")
    _lint_flow(policy, add)
    tests = policy.loaded.model.tests
    root_doc = policy.loaded.root
    if tests is not None and root_doc.path is not None:
        target = root_doc.path.parent / tests
        if not target.is_file():
            add(
                "warning",
                "missing-tests",
                None,
                f"tests: file '{tests}' does not exist (looked for {target}); `veto test` cannot run",
                line=root_doc.locate(("tests",))[0],
            )
    if policy.default is Effect.ALLOW:
        add(
            "warning",
            "default-allow",
            None,
            "default: allow lets every tool that no rule names run; prefer default: deny",
        )
    for rule in policy.rules:
        if (
            rule.effect is Effect.ALLOW
            and rule.tools == ("*",)
            and rule.condition is None
            and rule.roles is None
            and rule.agents is None
        ):
            add(
                "warning",
                "allow-everything",
                rule,
                f"rule '{rule.id}' allows every tool unconditionally",
            )
    return findings


def _lint_flow(policy: CompiledPolicy, add: Any) -> None:
    """Labels no source gives (a flow rule that can never see them) and sources no
    rule reads (DESIGN.md 2.7)."""
    given = {label for source in policy.sources for label in source.labels}
    used: set[str] = set()
    for rule in policy.rules:
        labels: set[str] = set()
        _label_refs(rule.model.if_, labels)
        used |= labels
        for label in sorted(labels - given):
            add(
                "warning",
                "unknown-label",
                rule,
                f"rule '{rule.id}' asks about label '{label}', which no source gives "
                "(add it to a `sources:` entry, or fix the spelling)",
            )
    reads_calls = policy.uses_runs
    for source, where in zip(policy.sources, policy.loaded.source_sources, strict=True):
        if source.labels & used:
            continue
        add(
            "info",
            "unused-source",
            None,
            f"source '{source.id}' gives labels {sorted(source.labels)} that no rule reads"
            + (" (run.calls still records its calls)" if reads_calls else ""),
            line=where.doc.locate(("sources", where.index))[0],
            file=where.doc.file,
        )
