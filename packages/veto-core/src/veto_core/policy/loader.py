"""Read policy files: YAML -> validated models -> `extends` merged -> canonical revision."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import PolicyError, Problem, did_you_mean, format_path
from .schema import (
    ApprovalModel,
    AuditModel,
    PolicyModel,
    RoleModel,
    RuleModel,
    WhenModel,
)
from .yamlsrc import SourceDoc, read_yaml_file, read_yaml_text

__all__ = ["LoadedPolicy", "RuleSource", "canonical_json", "load_policy_file", "load_policy_text"]

Loc = tuple[str | int, ...]

_PERMISSIVENESS = {"deny": 0, "require_approval": 1, "allow": 2}


@dataclass(frozen=True, kw_only=True, slots=True)
class RuleSource:
    """Where a rule was written: its document and index there (for error positions)."""

    doc: SourceDoc
    index: int


@dataclass(frozen=True, kw_only=True)
class LoadedPolicy:
    """A validated policy with `extends` applied, before compilation."""

    model: PolicyModel
    rule_sources: tuple[RuleSource, ...]
    list_sources: Mapping[str, SourceDoc]
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
    match loc:
        case ():
            return PolicyModel
        case ("rules", int()):
            return RuleModel
        case ("rules", int(), "when"):
            return WhenModel
        case ("rules", int(), "approval"):
            return ApprovalModel
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
    try:
        return PolicyModel.model_validate(doc.data)
    except ValidationError as exc:
        raise PolicyError(validation_problems(doc, exc)) from None


@dataclass
class _Merged:
    model: PolicyModel
    rule_sources: list[RuleSource]
    list_sources: dict[str, SourceDoc]
    role_sources: dict[str, SourceDoc]
    files: list[Path]
    rule_ids: dict[str, tuple[SourceDoc, int]]


def _merge(base: _Merged, child: PolicyModel, doc: SourceDoc) -> _Merged:
    """Apply ``child`` on top of ``base``: rules add up; lists may only narrow; roles,
    default and audit mode may never widen what the base allows."""
    problems: list[Problem] = []
    bm = base.model
    rule_ids = dict(base.rule_ids)
    for i, rule in enumerate(child.rules):
        if rule.id in rule_ids:
            first_doc, first_i = rule_ids[rule.id]
            line = first_doc.locate(("rules", first_i, "id"))[0]
            problems.append(
                doc.problem(
                    ("rules", i, "id"),
                    f"duplicate rule id '{rule.id}' (already defined in {first_doc.file}:{line})",
                )
            )
        else:
            rule_ids[rule.id] = (doc, i)
    lists = dict(bm.lists)
    list_sources = dict(base.list_sources)
    guarded_lists = _lists_in_restrictive_rules(bm)
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
                    doc.problem(
                        ("lists", name),
                        f"list '{name}' is used by a deny or require_approval rule of the base policy; narrowing it would widen what is allowed",
                    )
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
    if problems:
        raise PolicyError(problems)
    retention = child.audit.retention_days or bm.audit.retention_days
    model = PolicyModel.model_construct(
        version=child.version,
        name=child.name,
        description=child.description,
        default=child.default,
        extends=[],
        lists=lists,
        roles=roles,
        rules=[*bm.rules, *child.rules],
        redact=list(dict.fromkeys([*bm.redact, *child.redact])),
        audit=AuditModel(mode=child.audit.mode, retention_days=retention),
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
    )


def _lists_in_restrictive_rules(model: PolicyModel) -> set[str]:
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            if set(node) == {"list"} and isinstance(node["list"], str):
                names.add(node["list"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for rule in model.rules:
        if rule.effect != "allow" or rule.otherwise:
            walk(rule.if_)
    return names


def _load(doc: SourceDoc, stack: tuple[Path, ...]) -> _Merged:
    model = _validate(doc)
    empty = PolicyModel.model_construct(
        version=1, name=model.name, description=None, default="allow", extends=[], lists={}, roles={}, rules=[],
        redact=[], audit=AuditModel(mode="best_effort"), tests=None,
    )  # fmt: skip
    merged = _Merged(
        model=empty, rule_sources=[], list_sources={}, role_sources={}, files=[], rule_ids={}
    )
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
    for name, values in base.model.lists.items():
        if name in acc.model.lists and acc.model.lists[name] != values:
            problems.append(
                base.list_sources[name].problem(
                    ("lists", name),
                    f"list '{name}' is defined differently by two extended policies",
                )
            )
    if problems:
        raise PolicyError(problems)
    a, b = acc.model, base.model
    model = PolicyModel.model_construct(
        version=1,
        name=b.name,
        description=None,
        default=min(a.default, b.default, key=_PERMISSIVENESS.__getitem__)
        if acc.files
        else b.default,
        extends=[],
        lists={**a.lists, **b.lists},
        roles={**a.roles, **b.roles},
        rules=[*a.rules, *b.rules],
        redact=list(dict.fromkeys([*a.redact, *b.redact])),
        audit=b.audit
        if not acc.files
        else AuditModel(
            mode="required" if "required" in (a.audit.mode, b.audit.mode) else "best_effort"
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
    )


def _finish(merged: _Merged, root: SourceDoc) -> LoadedPolicy:
    dumped = merged.model.model_dump(mode="json", by_alias=True, exclude={"extends", "tests"})
    try:
        canonical = canonical_json(dumped)
    except ValueError:
        raise PolicyError(
            [root.problem((), "policy contains NaN or Infinity, which cannot be compared")]
        ) from None
    return LoadedPolicy(
        model=merged.model,
        rule_sources=tuple(merged.rule_sources),
        list_sources=merged.list_sources,
        role_sources=merged.role_sources,
        root=root,
        files=tuple(merged.files),
        canonical=canonical,
        revision=hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
    )


def load_policy_file(path: str | Path) -> LoadedPolicy:
    doc = read_yaml_file(path)
    return _finish(_load(doc, (Path(path).resolve(),)), doc)


def load_policy_text(
    text: str, *, file: str = "<policy>", base_dir: str | Path | None = None
) -> LoadedPolicy:
    doc = read_yaml_text(text, file=file, path=(Path(base_dir) / file) if base_dir else None)
    return _finish(_load(doc, ()), doc)
