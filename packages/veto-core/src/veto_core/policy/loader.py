"""Read policy files: YAML -> validated models -> `extends` merged -> canonical revision."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import records
from .cache import cached_validation
from .collect import defer, salvage
from .durations import parse_duration
from .errors import PolicyError, Problem, did_you_mean, format_path
from .gcpause import gc_paused
from .yamlsrc import SourceDoc, read_yaml_file, read_yaml_text

if TYPE_CHECKING:  # pydantic is imported only to validate a file (see records.py)
    from pydantic import BaseModel, ValidationError

    from .schema import PolicyModel

__all__ = [
    "LoadedPolicy",
    "RuleSource",
    "bundle_tenants",
    "canonical_json",
    "labels_unsafe_to_add",
    "lists_unsafe_to_narrow",
    "load_bundle",
    "load_policy_file",
    "load_policy_text",
]

Loc = tuple[str | int, ...]

_PERMISSIVENESS = {"deny": 0, "require_approval": 1, "allow": 2}


@dataclass(frozen=True, kw_only=True, slots=True)
class RuleSource:
    """Where a rule was written: its document and index there (for error positions)."""

    doc: SourceDoc
    index: int


@dataclass(frozen=True, kw_only=True)
class LoadedPolicy:
    """A validated policy with `extends` applied, before compilation. ``model`` and the
    models in it are :class:`~veto_core.policy.records.Record` values (typed as the
    schema's models: their fields, without pydantic's methods)."""

    model: PolicyModel
    rule_sources: tuple[RuleSource, ...]
    limit_sources: tuple[RuleSource, ...]
    list_sources: Mapping[str, SourceDoc]
    source_sources: tuple[RuleSource, ...]
    role_sources: Mapping[str, SourceDoc]
    root: SourceDoc
    files: tuple[Path, ...]
    canonical: str
    revision: str


def canonical_json(value: Any) -> str:
    """The one serialization used for hashing: sorted keys, no whitespace, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _model_for(loc: Loc) -> type[BaseModel] | None:
    """The model that validates the mapping at ``loc`` (for 'expected one of' lists)."""
    from .schema import (
        ApprovalModel,
        AuditModel,
        PolicyModel,
        RoleModel,
        RuleModel,
        SourceModel,
        WhenModel,
    )

    match loc:
        case ():
            return PolicyModel
        case ("rules", int()):
            return RuleModel
        case ("rules", int(), "when"):
            return WhenModel
        case ("rules", int(), "approval"):
            return ApprovalModel
        case ("sources", int()):
            return SourceModel
        case ("roles", str()):
            return RoleModel
        case ("audit",):
            return AuditModel
    return None


def _keys_of(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return repr(value)


def validation_problems(doc: SourceDoc, exc: ValidationError, prefix: Loc = ()) -> list[Problem]:
    """pydantic errors -> file:line:col problems with 'expected' wording and did-you-mean."""
    problems: list[Problem] = []
    seen: set[tuple[Loc, str]] = set()
    for err in exc.errors():
        loc: Loc = (*prefix, *err["loc"])
        kind = err["type"]
        given = err.get("input")
        if kind == "extra_forbidden":
            key = str(loc[-1])
            model = _model_for(loc[:-1])
            expected = _keys_of(model) if model else []
            message = f"unknown key '{key}'{did_you_mean(key, expected)}"
            if expected:
                message += f"; expected one of: {', '.join(expected)}"
            problem = doc.problem(loc, message, key=True)
        elif kind == "missing":
            problem = doc.problem(loc[:-1], f"missing required key '{loc[-1]}'")
            problem = Problem(
                file=problem.file,
                line=problem.line,
                column=problem.column,
                path=format_path(loc),
                message=problem.message,
            )
        elif kind in ("literal_error", "enum"):
            expected_text = str(err.get("ctx", {}).get("expected", ""))
            options = [
                o.strip().strip("'")
                for o in expected_text.replace(" or ", ",").split(",")
                if o.strip()
            ]
            hint = did_you_mean(str(given), options) if isinstance(given, str) else ""
            problem = doc.problem(loc, f"expected {expected_text}, got {_describe(given)}{hint}")
        elif kind == "string_pattern_mismatch" and loc[-1] == "id":
            problem = doc.problem(
                loc,
                f"invalid rule id {_describe(given)}: use letters, digits, '_', '-', '.', ':' and start with a letter or digit",
            )
        elif kind == "too_short":
            problem = doc.problem(loc, "must not be empty")
        else:
            msg = str(err["msg"])
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            else:
                msg = msg[0].lower() + msg[1:]
                msg = (
                    f"{msg}, got {_describe(given)}"
                    if kind.endswith("_type") or kind.endswith("_parsing")
                    else msg
                )
            problem = doc.problem(loc, msg)
        if (loc, problem.message) not in seen:
            seen.add((loc, problem.message))
            problems.append(problem)
    return problems


def _validate(doc: SourceDoc) -> PolicyModel:
    if not isinstance(doc.data, dict):
        raise PolicyError(
            [
                doc.problem(
                    (),
                    f"expected a policy mapping (version, name, rules, ...), got {_describe(doc.data)}",
                )
            ]
        )
    model = cached_validation(doc, _validate_model)
    # The records are the policy from here on; the document stays for positions only.
    # (Its data would stay alive as long as the policy: a few containers per rule
    # that every garbage collection walks.)
    doc.data = None
    return model


def _validate_model(doc: SourceDoc) -> tuple[PolicyModel, bool]:
    """pydantic's verdict on ``doc`` as records; True when it is the validated file
    itself (not `veto lint`'s salvaged stand-in), which the policy cache may keep."""
    from pydantic import ValidationError

    from .schema import PolicyModel

    try:
        return records.from_model(PolicyModel.model_validate(doc.data)), True
    except ValidationError as exc:
        problems = validation_problems(doc, exc)
        salvaged = salvage(doc, exc, problems)  # `veto lint` goes on to the later phases
        if salvaged is None:
            raise PolicyError(problems) from None
        return records.from_model(salvaged), False


@dataclass
class _Merged:
    model: PolicyModel
    rule_sources: list[RuleSource]
    list_sources: dict[str, SourceDoc]
    limit_sources: list[RuleSource]
    role_sources: dict[str, SourceDoc]
    files: list[Path]
    rule_ids: dict[str, tuple[SourceDoc, int]]
    source_sources: list[RuleSource]
    source_ids: dict[str, tuple[SourceDoc, int]]


def _unique_ids(
    kind: str,
    key: str,
    items: Sequence[Any],
    seen: Mapping[str, tuple[SourceDoc, int]],
    doc: SourceDoc,
    problems: list[Problem],
) -> dict[str, tuple[SourceDoc, int]]:
    """``seen`` plus the ids of ``items`` (``doc``'s ``key`` list); an id defined
    before is a problem naming where it first was."""
    ids = dict(seen)
    for i, item in enumerate(items):
        if item.id in ids:
            first_doc, first_i = ids[item.id]
            line = first_doc.locate((key, first_i, "id"))[0]
            problems.append(
                doc.problem(
                    (key, i, "id"),
                    f"duplicate {kind} id '{item.id}' (already defined in {first_doc.file}:{line})",
                )
            )
        else:
            ids[item.id] = (doc, i)
    return ids


def _merge(base: _Merged, child: PolicyModel, doc: SourceDoc) -> _Merged:
    """Apply ``child`` on top of ``base``: rules add up; lists may only narrow; roles,
    default and audit mode may never widen what the base allows."""
    problems: list[Problem] = []
    bm = base.model
    rule_ids = _unique_ids("rule", "rules", child.rules, base.rule_ids, doc, problems)
    source_ids = _unique_ids("source", "sources", child.sources, base.source_ids, doc, problems)
    guarded_labels = labels_unsafe_to_add(bm) if child.sources else {}
    for i, source in enumerate(child.sources):
        for label in source.labels:
            why = guarded_labels.get(label) or guarded_labels.get(ANY_LABEL)
            if why:
                problems.append(
                    doc.problem(
                        ("sources", i, "labels"),
                        f"source '{source.id}' gives label '{label}', which {why}",
                    )
                )
    lists = dict(bm.lists)
    list_sources = dict(base.list_sources)
    guarded_lists = lists_unsafe_to_narrow(bm)
    for name, values in child.lists.items():
        if name in bm.lists:
            added = [v for v in values if v not in bm.lists[name]]
            if added:
                problems.append(
                    doc.problem(
                        ("lists", name),
                        f"list '{name}' is defined by the base policy and may only be narrowed; {added[0]!r} is not in it",
                    )
                )
            elif name in guarded_lists and set(values) != set(bm.lists[name]):
                problems.append(
                    doc.problem(("lists", name), f"list '{name}' {guarded_lists[name]}")
                )
        lists[name] = values
        list_sources[name] = doc
    roles = dict(bm.roles)
    role_sources = dict(base.role_sources)
    for name, role in child.roles.items():
        if name in bm.roles and bm.roles[name] != role:
            problems.append(
                doc.problem(
                    ("roles", name),
                    f"role '{name}' is defined by the base policy and cannot be redefined",
                )
            )
        roles[name] = role
        role_sources[name] = doc
    if _PERMISSIVENESS[child.default] > _PERMISSIVENESS[bm.default]:
        problems.append(
            doc.problem(
                ("default",),
                f"default '{child.default}' would widen the base policy's default '{bm.default}'",
            )
        )
    if child.audit.mode == "best_effort" and bm.audit.mode == "required":
        problems.append(
            doc.problem(
                ("audit", "mode"),
                "audit mode 'best_effort' would weaken the base policy's 'required'",
            )
        )
    if child.mode == "shadow" and bm.mode == "enforce":
        problems.append(
            doc.problem(
                ("mode",),
                "mode 'shadow' would let every call through that the base policy enforces",
            )
        )
    if problems:
        defer(problems)
    retention = child.audit.retention_days or bm.audit.retention_days
    model = records.replace(
        child,
        version=child.version,
        name=child.name,
        description=child.description,
        default=child.default,
        mode=child.mode,
        extends=[],
        lists=lists,
        roles=roles,
        rules=[*bm.rules, *child.rules],
        limits=[*bm.limits, *child.limits],
        sources=[*bm.sources, *child.sources],
        run_ttl=_longer_ttl(bm.run_ttl, child.run_ttl),
        redact=list(dict.fromkeys([*bm.redact, *child.redact])),
        audit=records.replace(child.audit, retention_days=retention),
        tests=child.tests,
    )
    return _Merged(
        model=model,
        rule_sources=[
            *base.rule_sources,
            *(RuleSource(doc=doc, index=i) for i in range(len(child.rules))),
        ],
        list_sources=list_sources,
        role_sources=role_sources,
        files=base.files,
        rule_ids=rule_ids,
        limit_sources=[
            *base.limit_sources,
            *(RuleSource(doc=doc, index=i) for i in range(len(child.limits))),
        ],
        source_sources=[
            *base.source_sources,
            *(RuleSource(doc=doc, index=i) for i in range(len(child.sources))),
        ],
        source_ids=source_ids,
    )


def _longer_ttl(a: str | float | None, b: str | float | None) -> str | float | None:
    """Of two `run_ttl`s the longer: a policy built from several files keeps a run's
    history as long as any of them asks (flow rules forget nothing early)."""
    if a is None or b is None:
        return b if a is None else a
    return a if parse_duration(a) >= parse_duration(b) else b


#: Operators whose truth can only grow as a list operand grows ("any of" semantics).
_GROWS_WITH_LIST = frozenset(
    {"in", "contains", "starts_with", "ends_with", "matches", "glob", "url_host_in",
     "email_domain_in", "ip_in_cidr", "path_within"}
)  # fmt: skip
#: Operators whose truth can only shrink as a list operand grows.
_SHRINKS_WITH_LIST = frozenset({"not_in"})


def _walk_leaves(
    model: PolicyModel, visit: Callable[[Mapping[str, Any], bool, bool, str], None]
) -> None:
    """Call ``visit(leaf, positive, restrictive, rule_id)`` for every condition leaf of
    ``model``'s rules: ``positive`` is False under an odd number of ``not``s,
    ``restrictive`` is True in deny and require_approval rules."""

    def walk(node: Any, positive: bool, restrictive: bool, rule_id: str) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, positive, restrictive, rule_id)
            return
        if not isinstance(node, Mapping):
            return
        if "not" in node:
            walk(node["not"], not positive, restrictive, rule_id)
        for key in ("all", "any"):
            if key in node:
                walk(node[key], positive, restrictive, rule_id)
        if "for_all" in node or "for_any" in node:
            walk(node.get("if"), positive, restrictive, rule_id)
        if "field" in node:
            visit(node, positive, restrictive, rule_id)

    for rule in model.rules:
        walk(rule.if_, True, rule.effect != "allow", rule.id)


def lists_unsafe_to_narrow(model: PolicyModel) -> dict[str, str]:
    """Lists whose narrowing could let more calls through, with why (for messages).

    Narrowing a list makes a condition that uses it positively ("in", "contains", ...)
    true less often. That is safe in an allow rule (fewer allows) but widens in a deny
    or require_approval rule (fewer blocks); under a ``not`` or ``not_in`` it is the
    reverse. A list used by an operator that is neither (``equals`` compares the whole
    list) may not be redefined at all.
    """
    unsafe: dict[str, str] = {}

    def visit(node: Mapping[str, Any], positive: bool, restrictive: bool, rule_id: str) -> None:
        for op, operand in node.items():
            if not (isinstance(operand, Mapping) and set(operand) == {"list"}):
                continue
            name = str(operand["list"])
            if op in _GROWS_WITH_LIST:
                grows_truth: bool | None = positive
            elif op in _SHRINKS_WITH_LIST:
                grows_truth = not positive
            else:
                grows_truth = None
            if grows_truth is None:
                unsafe.setdefault(
                    name,
                    f"is compared as a whole by rule '{rule_id}' of the base policy ('{op}'); it cannot be redefined",
                )
            elif grows_truth and restrictive:
                unsafe.setdefault(
                    name,
                    "is used by a deny or require_approval rule of the base policy; narrowing it would widen what is allowed",
                )
            elif not grows_truth and not restrictive:
                unsafe.setdefault(
                    name,
                    f"is used negated by allow rule '{rule_id}' of the base policy; narrowing it would widen what is allowed",
                )

    _walk_leaves(model, visit)
    return unsafe


#: In `labels_unsafe_to_add`: every label (a rule compares `run.labels` as a whole).
ANY_LABEL = "*"


def labels_unsafe_to_add(model: PolicyModel) -> dict[str, str]:
    """Labels that a new source (from an extending file or a tenant overlay) may not give,
    with why: giving a label more often makes ``tainted_by`` it, and ``run.labels``
    containing it, true more often. That only narrows a deny or require_approval rule
    that uses it positively, but widens an allow rule (``tainted_by: user`` is "the
    person named it") or a negated use in a deny rule. `ANY_LABEL` means every label."""
    unsafe: dict[str, str] = {}

    def visit(node: Mapping[str, Any], positive: bool, restrictive: bool, rule_id: str) -> None:
        labels: list[str] = []
        grows_truth: bool | None = positive
        if "tainted_by" in node:
            operand = node["tainted_by"]
            labels = [operand] if isinstance(operand, str) else [str(x) for x in operand or ()]
        elif node.get("field") == "run.labels":
            for op, operand in node.items():
                if op in ("field", "ignore_case"):
                    continue
                if op in ("contains", "in") and not isinstance(operand, Mapping):
                    labels = [operand] if isinstance(operand, str) else [str(x) for x in operand]
                elif op == "not_in" or op == "exists":
                    continue  # not_in over the field's list is not used on labels; exists never changes
                else:
                    labels, grows_truth = [ANY_LABEL], None
        if grows_truth is None:
            why = f"is compared as a whole by rule '{rule_id}' of the base policy; no source may be added"
        elif grows_truth and not restrictive:
            why = f"makes allow rule '{rule_id}' of the base policy match more calls"
        elif not grows_truth and restrictive:
            why = f"is used negated by rule '{rule_id}' of the base policy; giving it more often would widen what is allowed"
        else:
            return
        for label in labels:
            unsafe.setdefault(label, why)

    _walk_leaves(model, visit)
    return unsafe


def _load(doc: SourceDoc, stack: tuple[Path, ...]) -> _Merged:
    model = _validate(doc)
    empty = records.replace(
        model, version=1, name=model.name, description=None, default="allow", extends=[], lists={}, roles={},
        rules=[], redact=[], audit=records.replace(model.audit, mode="best_effort", retention_days=None),
        tests=None, mode="shadow", limits=[], sources=[], run_ttl=None,
    )  # fmt: skip
    merged = _Merged(
        model=empty, rule_sources=[], list_sources={}, role_sources={}, files=[], rule_ids={},
        limit_sources=[], source_sources=[], source_ids={},
    )  # fmt: skip
    for i, ref in enumerate(model.extends):
        base_dir = doc.path.parent if doc.path else Path.cwd()
        target = (base_dir / ref).resolve()
        label = _extended_label(doc, ref, target)
        if target in stack:
            chain = " -> ".join(p.name for p in (*stack, target))
            raise PolicyError([doc.problem(("extends", i), f"extends cycle: {chain}")])
        if not target.is_file():
            raise PolicyError(
                [
                    doc.problem(
                        ("extends", i), f"extended policy '{ref}' not found (looked for {label})"
                    )
                ]
            )
        base = _load(read_yaml_file(target, label=label), (*stack, target))
        merged = _combine(merged, base)
    merged = _merge(merged, model, doc)
    if doc.path:
        merged.files.append(doc.path.resolve())
    return merged


def _extended_label(doc: SourceDoc, ref: str, target: Path) -> str:
    """How messages name an extended file: spelled like the file that extends it
    (``policies/base.yaml`` when ``policies/app.yaml`` says ``./base.yaml``), so error
    positions read the same whatever the absolute location of the checkout."""
    if os.path.isabs(ref):
        return os.path.normpath(ref)
    if doc.path is not None and Path(doc.file) == doc.path:
        return os.path.normpath(os.path.join(os.path.dirname(doc.file), ref))
    return str(target)


def _combine(acc: _Merged, base: _Merged) -> _Merged:
    """Two `extends` bases side by side: their union (each already validated on its own)."""
    problems: list[Problem] = []
    rule_ids = dict(acc.rule_ids)
    for rid, (rdoc, ri) in base.rule_ids.items():
        if rid in rule_ids:
            problems.append(
                rdoc.problem(
                    ("rules", ri, "id"),
                    f"duplicate rule id '{rid}' (also in {rule_ids[rid][0].file})",
                )
            )
        rule_ids[rid] = (rdoc, ri)
    source_ids = dict(acc.source_ids)
    for sid, (sdoc, si) in base.source_ids.items():
        if sid in source_ids:
            problems.append(
                sdoc.problem(
                    ("sources", si, "id"),
                    f"duplicate source id '{sid}' (also in {source_ids[sid][0].file})",
                )
            )
        source_ids[sid] = (sdoc, si)
    for name, values in base.model.lists.items():
        if name in acc.model.lists and acc.model.lists[name] != values:
            problems.append(
                base.list_sources[name].problem(
                    ("lists", name),
                    f"list '{name}' is defined differently by two extended policies",
                )
            )
    if problems:
        defer(problems)
    a, b = acc.model, base.model
    model = records.replace(
        b,
        version=1,
        name=b.name,
        description=None,
        default=min(a.default, b.default, key=_PERMISSIVENESS.__getitem__)
        if acc.files
        else b.default,
        mode=b.mode
        if not acc.files
        else ("enforce" if "enforce" in (a.mode, b.mode) else "shadow"),
        extends=[],
        lists={**a.lists, **b.lists},
        roles={**a.roles, **b.roles},
        rules=[*a.rules, *b.rules],
        limits=[*a.limits, *b.limits],
        sources=[*a.sources, *b.sources],
        run_ttl=_longer_ttl(a.run_ttl, b.run_ttl),
        redact=list(dict.fromkeys([*a.redact, *b.redact])),
        audit=b.audit
        if not acc.files
        else records.replace(
            b.audit,
            mode="required" if "required" in (a.audit.mode, b.audit.mode) else "best_effort",
            retention_days=None,
        ),
        tests=None,
    )
    return _Merged(
        model=model,
        rule_sources=[*acc.rule_sources, *base.rule_sources],
        list_sources={**acc.list_sources, **base.list_sources},
        role_sources={**acc.role_sources, **base.role_sources},
        files=[*acc.files, *base.files],
        rule_ids=rule_ids,
        limit_sources=[*acc.limit_sources, *base.limit_sources],
        source_sources=[*acc.source_sources, *base.source_sources],
        source_ids=source_ids,
    )


def _finish(merged: _Merged, root: SourceDoc) -> LoadedPolicy:
    dumped = records.json_form(merged.model, exclude=frozenset({"extends", "tests"}))
    try:
        canonical = canonical_json(dumped)
    except ValueError:
        raise PolicyError(
            [root.problem((), "policy contains NaN or Infinity, which cannot be compared")]
        ) from None
    return LoadedPolicy(
        model=merged.model,
        rule_sources=tuple(merged.rule_sources),
        limit_sources=tuple(merged.limit_sources),
        source_sources=tuple(merged.source_sources),
        list_sources=merged.list_sources,
        role_sources=merged.role_sources,
        root=root,
        files=tuple(merged.files),
        canonical=canonical,
        revision=hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
    )


@gc_paused
def load_policy_file(path: str | Path) -> LoadedPolicy:
    doc = read_yaml_file(path)
    return _finish(_load(doc, (Path(path).resolve(),)), doc)


@gc_paused
def load_policy_text(
    text: str, *, file: str = "<policy>", base_dir: str | Path | None = None
) -> LoadedPolicy:
    doc = read_yaml_text(text, file=file, path=(Path(base_dir) / file) if base_dir else None)
    return _finish(_load(doc, ()), doc)


# --- bundles: base.yaml + tenants/<tenant>.yaml ---------------------------------------

TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


def _overlay_problems(model: PolicyModel, doc: SourceDoc) -> list[Problem]:
    """What an overlay may not do, beyond what `extends` already refuses (DESIGN.md 2.4)."""
    problems: list[Problem] = []
    if model.extends:
        problems.append(
            doc.problem(
                ("extends",),
                "an overlay has no extends of its own: it applies on top of base.yaml",
                key=True,
            )
        )
    for i, rule in enumerate(model.rules):
        if rule.effect == "allow":
            problems.append(
                doc.problem(
                    ("rules", i, "effect"),
                    f"rule '{rule.id}': an overlay may only add deny or require_approval rules, never allow",
                )
            )
    if model.roles:
        problems.append(
            doc.problem(
                ("roles",),
                "an overlay may not define roles (a role could inherit what the base grants)",
                key=True,
            )
        )
    return problems


def bundle_tenants(directory: str | Path) -> list[str]:
    """Tenants that have an overlay in the bundle."""
    tenants_dir = Path(directory) / "tenants"
    if not tenants_dir.is_dir():
        return []
    return sorted(p.stem for p in tenants_dir.glob("*.yaml") if TENANT_NAME.match(p.stem))


@gc_paused
def load_bundle(directory: str | Path, tenant: str | None) -> LoadedPolicy:
    """A policy bundle: ``base.yaml`` plus, for ``tenant``, ``tenants/<tenant>.yaml`` on top.

    An overlay may add deny / require_approval rules and narrow lists; anything that
    would widen the base (an allow rule, a wider default, a list grown or narrowed
    where that lets more through, a role) is a load error. A tenant with no overlay
    is decided by ``base.yaml`` alone.
    """
    root = Path(directory)
    base_path = root / "base.yaml"
    if not base_path.is_file():
        raise PolicyError.of_file(
            str(root),
            "a policy bundle is a directory with base.yaml (and tenants/<tenant>.yaml overlays); base.yaml not found",
        )
    base_doc = read_yaml_file(base_path, label=os.path.join(str(directory), "base.yaml"))
    merged = _load(base_doc, (base_path.resolve(),))
    if tenant is None:
        return _finish(merged, base_doc)
    if not TENANT_NAME.match(tenant):
        raise PolicyError.of_file(
            str(root),
            f"invalid tenant name {tenant!r} (letters, digits, '_', '-', '.', '@'; at most 128)",
        )
    overlay_path = root / "tenants" / f"{tenant}.yaml"
    if not overlay_path.is_file():
        return _finish(merged, base_doc)
    doc = read_yaml_file(
        overlay_path, label=os.path.join(str(directory), "tenants", f"{tenant}.yaml")
    )
    model = _validate(doc)
    problems = _overlay_problems(model, doc)
    if problems:
        defer(problems)
    merged = _merge(merged, model, doc)
    merged.files.append(overlay_path.resolve())
    return _finish(merged, doc)
