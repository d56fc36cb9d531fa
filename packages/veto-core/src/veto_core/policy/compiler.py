"""Compile a loaded policy once: tool-name index, pre-resolved scopes, condition closures."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..identity import IdentityError, canonical_identity
from ..model import ApprovalRequirement, ApprovalSpec, Effect
from .conditions import CompiledCondition, ConditionCompiler, EvalContext, Leaf
from .durations import DEFAULT_RUN_TTL, parse_duration
from .errors import PolicyError, Problem, did_you_mean
from .gcpause import gc_paused
from .loader import LoadedPolicy, RuleSource
from .operators import BUILTIN_OPERATORS, EvalError, OperandError, Operator, compile_glob

if TYPE_CHECKING:  # validated policies are records, not pydantic models (records.py)
    from .schema import ApprovalModel, RuleModel

__all__ = [
    "CompiledLimit",
    "CompiledPolicy",
    "CompiledRule",
    "CompiledSource",
    "compile_policy",
    "normalize_tool_name",
]

_GLOB_CHARS = frozenset("*?[")
_CACHE_LIMIT = 65_536


def normalize_tool_name(name: str) -> str:
    """Canonical tool name: Unicode NFC (ASCII names are already normal)."""
    return name if name.isascii() else unicodedata.normalize("NFC", name)


@dataclass(frozen=True, kw_only=True, slots=True)
class CompiledRule:
    id: str
    effect: Effect
    otherwise: Effect | None
    tools: tuple[str, ...]
    envs: frozenset[str] | None
    tenants: frozenset[str] | None
    roles: frozenset[str] | None
    agents: frozenset[str] | None
    condition: CompiledCondition | None
    reason: str
    approval: ApprovalSpec | None
    file: str
    source: RuleSource  # where it was written (`line` is found from it when asked)
    model: RuleModel
    shadow: bool  # mode: shadow: evaluated and recorded, never enforced
    reasons: tuple[str, ...]  # (f"{reason} [{id}]",), precomputed for the hot path

    @property
    def leaves(self) -> tuple[Leaf, ...]:
        return self.condition.leaves if self.condition else ()

    @property
    def line(self) -> int | None:
        """The line the rule starts on (positions are found on first use: yamlsrc)."""
        return self.source.doc.locate(("rules", self.source.index))[0]


@dataclass(frozen=True, kw_only=True, slots=True)
class CompiledSource:
    """A `sources` entry (DESIGN.md 2.7): the labels a matching call's output gives."""

    id: str
    tools: tuple[str, ...]
    condition: CompiledCondition | None
    labels: frozenset[str]

    def matches_tool(self, tool: str) -> bool:
        """Exact names, or globs, which never match a pseudo-tool (``@user``)."""
        return any(
            t == tool
            or (
                not tool.startswith("@")
                and not _GLOB_CHARS.isdisjoint(t)
                and compile_glob(t).search(tool) is not None
            )
            for t in self.tools
        )


class CompiledPolicy:
    """Immutable once built (its caches only memoize pure functions of their keys)."""

    def __init__(
        self,
        *,
        loaded: LoadedPolicy,
        rules: tuple[CompiledRule, ...],
        role_parents: Mapping[str, frozenset[str]],
        operators: Mapping[str, Operator],
        shadow_as_enforced: bool = False,
        limits: tuple[CompiledLimit, ...] = (),
        sources: tuple[CompiledSource, ...] = (),
        used_labels: frozenset[str] = frozenset(),
        uses_runs: bool = False,
    ) -> None:
        model = loaded.model
        self.loaded = loaded
        self.name = model.name
        self.revision = loaded.revision
        self.default = Effect(model.default)
        self.default_reasons = (f"no rule matched; the policy default is {model.default}",)
        self.rules = tuple(sorted(rules, key=lambda r: r.id))
        self.rules_by_id = {r.id: r for r in self.rules}
        self.redact = tuple(model.redact)
        self.audit_mode = model.audit.mode
        self.retention_days = model.audit.retention_days
        self.operators = operators
        self.requires_env = any(r.envs is not None for r in self.rules)
        self.requires_tenant = any(r.tenants is not None for r in self.rules)
        self.needs_scope = self.requires_env or self.requires_tenant
        self._role_parents = role_parents
        #: Flow (DESIGN.md 2.7): sources, how long runs live, what rules read of them.
        self.sources = sources
        self.run_ttl_s = parse_duration(model.run_ttl or DEFAULT_RUN_TTL)
        self.used_labels = used_labels
        self.uses_runs = uses_runs
        self._sources_cache: dict[str, tuple[CompiledSource, ...]] = {}
        self.limits = limits
        self._limits_cache: dict[str, tuple[CompiledLimit, ...]] = {}
        #: mode: shadow on the policy: decisions are recorded but never enforced.
        self.enforced = model.mode == "enforce"
        #: Rules in mode: shadow are left out of the index and decided in `shadow_view`,
        #: a twin policy that enforces them, so a decision can say what they would change.
        has_shadow_rules = any(r.shadow for r in self.rules)
        self.shadow_view: CompiledPolicy | None = None
        if has_shadow_rules and not shadow_as_enforced:
            self.shadow_view = CompiledPolicy(
                loaded=loaded,
                rules=rules,
                role_parents=role_parents,
                operators=operators,
                shadow_as_enforced=True,
                sources=sources,
                used_labels=used_labels,
                uses_runs=uses_runs,
            )
        exact: dict[str, list[CompiledRule]] = {}
        globs: list[tuple[Any, CompiledRule]] = []
        for rule in self.rules:
            if rule.shadow and not shadow_as_enforced:
                continue
            for pattern in rule.tools:
                if _GLOB_CHARS.isdisjoint(pattern):
                    exact.setdefault(pattern, []).append(rule)
                else:
                    globs.append((compile_glob(pattern), rule))
        self._exact = {name: tuple(rs) for name, rs in exact.items()}
        self._globs = tuple(globs)
        # tool name -> candidate rules (exact + matching globs), sorted by id, deduplicated.
        self.candidates_cache: dict[str, tuple[CompiledRule, ...]] = {}
        self.roles_cache: dict[tuple[str, ...], frozenset[str]] = {}
        #: tool name -> its compiled decider (veto_core.decision), built on first use.
        self.deciders: dict[str, Any] = {}

    def candidates(self, tool: str) -> tuple[CompiledRule, ...]:
        found = {r.id: r for r in self._exact.get(tool, ())}
        for regex, rule in self._globs:
            if rule.id not in found and regex.search(tool) is not None:
                found[rule.id] = rule
        result = tuple(found[k] for k in sorted(found))
        if len(self.candidates_cache) >= _CACHE_LIMIT:
            self.candidates_cache.clear()
        self.candidates_cache[tool] = result
        return result

    def sources_for(self, tool: str) -> tuple[CompiledSource, ...]:
        """The sources whose `tools` name ``tool`` (their `if` is still to be checked)."""
        found = self._sources_cache.get(tool)
        if found is None:
            found = tuple(s for s in self.sources if s.matches_tool(tool))
            if len(self._sources_cache) >= _CACHE_LIMIT:
                self._sources_cache.clear()
            self._sources_cache[tool] = found
        return found

    def limits_for(self, tool: str) -> tuple[CompiledLimit, ...]:
        found = self._limits_cache.get(tool)
        if found is None:
            found = tuple(limit for limit in self.limits if limit.matches_tool(tool))
            if len(self._limits_cache) >= _CACHE_LIMIT:
                self._limits_cache.clear()
            self._limits_cache[tool] = found
        return found

    def effective_roles(self, roles: tuple[str, ...]) -> frozenset[str]:
        """A principal's roles plus every role they inherit from (transitively)."""
        cached = self.roles_cache.get(roles)
        if cached is not None:
            return cached
        out: set[str] = set()
        stack = list(roles)
        while stack:
            role = stack.pop()
            if role in out:
                continue
            out.add(role)
            stack.extend(self._role_parents.get(role, ()))
        result = frozenset(out)
        if len(self.roles_cache) >= _CACHE_LIMIT:
            self.roles_cache.clear()
        self.roles_cache[roles] = result
        return result


def _role_graph(loaded: LoadedPolicy) -> tuple[dict[str, frozenset[str]], list[Problem]]:
    problems: list[Problem] = []
    roles = loaded.model.roles
    parents: dict[str, frozenset[str]] = {}
    for name, role in roles.items():
        doc = loaded.role_sources.get(name, loaded.root)
        for i, parent in enumerate(role.inherits):
            if parent not in roles:
                problems.append(
                    doc.problem(
                        ("roles", name, "inherits", i),
                        f"unknown role '{parent}'{did_you_mean(parent, roles)}",
                    )
                )
        parents[name] = frozenset(p for p in role.inherits if p in roles)
    # Cycle check (a role inheriting from itself, directly or not).
    for start in roles:
        stack, seen = [start], set()
        while stack:
            node = stack.pop()
            for parent in parents.get(node, ()):
                if parent == start:
                    doc = loaded.role_sources.get(start, loaded.root)
                    problems.append(
                        doc.problem(
                            ("roles", start, "inherits"),
                            f"role '{start}' inherits from itself (cycle)",
                        )
                    )
                    stack = []
                    break
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
    return parents, problems


@gc_paused
def compile_policy(
    loaded: LoadedPolicy, *, operators: Mapping[str, Operator] | None = None
) -> CompiledPolicy:
    """Check references and compile every rule; raises PolicyError listing all problems."""
    ops: dict[str, Operator] = dict(BUILTIN_OPERATORS)
    if operators:
        ops.update(operators)
    model = loaded.model
    role_parents, problems = _role_graph(loaded)
    # Roles a scope may name: declared ones; a role scope on an undeclared role is a typo.
    rules: list[CompiledRule] = []
    conditions: dict[str, CompiledCondition] = {}
    used_labels: set[str] = set()
    uses_runs = False
    # Rules often repeat a condition: compile each distinct one once (same text, same
    # policy: same lists and operators, so the same function).
    condition_key = json.JSONEncoder(sort_keys=True, default=repr).encode
    for rule, source in zip(model.rules, loaded.rule_sources, strict=True):
        doc = source.doc
        base: tuple[str | int, ...] = ("rules", source.index)
        tools = _tool_patterns(rule.tools, doc, base, problems)
        when = rule.when
        if when and when.role:
            for i, role in enumerate(when.role):
                if role not in model.roles:
                    hint = did_you_mean(role, model.roles) or (
                        " (declare it under roles:)" if not model.roles else ""
                    )
                    problems.append(
                        doc.problem((*base, "when", "role", i), f"unknown role '{role}'{hint}")
                    )
        condition = None
        if rule.if_ is not None:
            text = condition_key(rule.if_)
            condition = conditions.get(text)
            if condition is None:
                compiler = ConditionCompiler(
                    operators=ops, lists=model.lists, problem=_problems_in(doc)
                )
                condition = compiler.compile(rule.if_, (*base, "if"))
                if compiler.problems:
                    problems.extend(compiler.problems)
                else:
                    conditions[text] = condition
                used_labels.update(compiler.used_labels)
                uses_runs = uses_runs or compiler.uses_run
        effect = Effect(rule.effect)
        if (
            rule.approval is not None
            and effect is not Effect.REQUIRE_APPROVAL
            and rule.otherwise != "require_approval"
        ):
            problems.append(
                doc.problem(
                    (*base, "approval"),
                    f"'approval' only applies to require_approval rules; this rule's effect is '{rule.effect}'",
                    key=True,
                )
            )
        if rule.otherwise is not None and rule.if_ is None:
            problems.append(
                doc.problem(
                    (*base, "otherwise"),
                    "'otherwise' needs an 'if' condition to be the alternative of",
                    key=True,
                )
            )
        if rule.otherwise is not None and rule.otherwise == rule.effect:
            problems.append(
                doc.problem(
                    (*base, "otherwise"),
                    f"'otherwise: {rule.otherwise}' is the rule's own effect; drop 'if' instead",
                    key=True,
                )
            )
        approval = None
        if effect is Effect.REQUIRE_APPROVAL or rule.otherwise == "require_approval":
            approval = _approval_spec(rule.id, rule.approval, doc, base, problems)
        reason = rule.reason or _DEFAULT_REASONS[rule.effect]
        rules.append(
            CompiledRule(
                id=rule.id,
                effect=effect,
                otherwise=Effect(rule.otherwise) if rule.otherwise else None,
                tools=tuple(tools),
                envs=frozenset(when.env) if when and when.env else None,
                tenants=frozenset(when.tenant) if when and when.tenant else None,
                roles=frozenset(when.role) if when and when.role else None,
                agents=frozenset(when.agent) if when and when.agent else None,
                condition=condition,
                reason=reason,
                reasons=(f"{reason} [{rule.id}]",),
                approval=approval,
                file=doc.file,
                source=source,
                model=rule,
                shadow=rule.mode == "shadow",
            )
        )
    if model.default == "require_approval":
        problems.append(
            loaded.root.problem(
                ("default",),
                "'default: require_approval' names no approvers (a policy default cannot); "
                "use 'default: deny' and a require_approval rule with "
                "'approval: {approvers: [...]}' for the calls that need people",
            )
        )
    limits = _compile_limits(loaded, ops, {r.id for r in rules}, problems)
    sources = _compile_sources(loaded, ops, problems)
    if problems:
        raise PolicyError(problems)
    return CompiledPolicy(
        loaded=loaded, rules=tuple(rules), role_parents=role_parents, operators=ops, limits=limits,
        sources=sources, used_labels=frozenset(used_labels), uses_runs=uses_runs,
    )  # fmt: skip


def _compile_sources(
    loaded: LoadedPolicy, ops: Mapping[str, Operator], problems: list[Problem]
) -> tuple[CompiledSource, ...]:
    model = loaded.model
    out: list[CompiledSource] = []
    for source, where in zip(model.sources, loaded.source_sources, strict=True):
        doc = where.doc
        base: tuple[str | int, ...] = ("sources", where.index)

        tools = _tool_patterns(source.tools, doc, base, problems)
        for i, pattern in enumerate(tools):
            if pattern.startswith("@") and not _GLOB_CHARS.isdisjoint(pattern):
                problems.append(
                    doc.problem(
                        (*base, "tools", i),
                        f"'{pattern}': pseudo-tools (names starting with '@') are named exactly, never by a glob",
                    )
                )
        condition = None
        if source.if_ is not None:
            compiler = ConditionCompiler(
                operators=ops, lists=model.lists, problem=_problems_in(doc)
            )
            condition = compiler.compile(source.if_, (*base, "if"))
            problems.extend(compiler.problems)
        out.append(
            CompiledSource(
                id=source.id, tools=tools, condition=condition, labels=frozenset(source.labels)
            )
        )
    return tuple(out)


def _approval_spec(
    owner: str,
    spec: ApprovalModel | None,
    doc: Any,
    base: tuple[str | int, ...],
    problems: list[Problem],
) -> ApprovalSpec:
    """The requirement of one approval rule or limit (DESIGN.md 2.8): it must name
    approvers, each a valid identity, and a quorum they can reach. An approval that
    names nobody is a policy error, never "anyone but the requester"."""
    if spec is None or not spec.approvers:
        where = (*base, "approval", "approvers") if spec is not None else (*base, "effect")
        problems.append(
            doc.problem(
                where,
                f"'{owner}' can require approval but names no approvers; add "
                "'approval: {approvers: [\"role:NAME\", USER, ...]}' (an approval "
                "nobody is named for is never open to anyone)",
            )
        )
        return ApprovalSpec(
            requirements=(ApprovalRequirement(rule_id=owner, approvers=(), quorum=1),),
            timeout_s=parse_duration(spec.timeout) if spec else 3600.0,
            channels=tuple(spec.channels) if spec else (),
        )
    users: set[str] = set()
    has_roles = False
    for i, entry in enumerate(spec.approvers):
        kind, _, name = (
            entry.partition(":") if entry.startswith(("role:", "user:")) else ("user", ":", entry)
        )
        try:
            who = canonical_identity(name, what=f"approver {kind} name")
        except IdentityError as exc:
            problems.append(doc.problem((*base, "approval", "approvers", i), str(exc)))
            continue
        if kind == "role":
            has_roles = True
        else:
            users.add(who)
    if not has_roles and users and spec.quorum > len(users):
        problems.append(
            doc.problem(
                (*base, "approval", "quorum"),
                f"quorum {spec.quorum} can never be met: only {len(users)} distinct "
                "approver(s) are named",
            )
        )
    return ApprovalSpec(
        requirements=(
            ApprovalRequirement(rule_id=owner, approvers=tuple(spec.approvers), quorum=spec.quorum),
        ),
        timeout_s=parse_duration(spec.timeout),
        channels=tuple(spec.channels),
    )


def _tool_patterns(
    patterns: list[str], doc: Any, base: tuple[str | int, ...], problems: list[Problem]
) -> tuple[str, ...]:
    """NFC-normalized tool names and checked globs of a rule or limit."""
    tools: list[str] = []
    for i, pattern in enumerate(patterns):
        pattern = normalize_tool_name(pattern)
        if not pattern.strip():
            problems.append(doc.problem((*base, "tools", i), "tool name must not be empty"))
            continue
        if not _GLOB_CHARS.isdisjoint(pattern):
            try:
                compile_glob(pattern)
            except OperandError as exc:
                problems.append(doc.problem((*base, "tools", i), str(exc)))
                continue
        tools.append(pattern)
    return tuple(tools)


@dataclass(frozen=True, kw_only=True, slots=True)
class CompiledLimit:
    """A stateful limit: `per` and `amount` read the call like condition fields do."""

    id: str
    tools: tuple[str, ...]
    per: tuple[tuple[str, Callable[[EvalContext], Any]], ...]
    amount: tuple[str, Callable[[EvalContext], Any]] | None  # None: count calls
    window_s: float
    window: str
    maximum: float
    effect: Effect
    reason: str
    approval: ApprovalSpec | None

    def matches_tool(self, tool: str) -> bool:
        return any(
            t == tool or (not _GLOB_CHARS.isdisjoint(t) and compile_glob(t).search(tool))
            for t in self.tools
        )


#: Limit key paths that name a person: keyed by canonical identity (DESIGN.md 2.8), so
#: ``Bob`` and ``bob `` share one budget and a hidden character fails closed.
IDENTITY_PATHS = frozenset({"principal.user", "principal.agent"})


def _identity_key(getter: Callable[[EvalContext], Any]) -> Callable[[EvalContext], Any]:
    def key(ctx: EvalContext) -> Any:
        value = getter(ctx)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            raise EvalError(f"an identity must be a string, got {type(value).__name__}")
        try:
            return canonical_identity(value)
        except IdentityError as exc:
            raise EvalError(str(exc)) from None

    return key


def _compile_limits(
    loaded: LoadedPolicy, ops: Mapping[str, Operator], rule_ids: set[str], problems: list[Problem]
) -> tuple[CompiledLimit, ...]:
    model = loaded.model
    out: list[CompiledLimit] = []
    seen: set[str] = set()
    for limit, source in zip(model.limits, loaded.limit_sources, strict=True):
        doc = source.doc
        base: tuple[str | int, ...] = ("limits", source.index)

        if limit.id in rule_ids or limit.id in seen:
            problems.append(
                doc.problem(
                    (*base, "id"),
                    f"duplicate id '{limit.id}' (rules and limits share one id space)",
                )
            )
        seen.add(limit.id)
        paths = ConditionCompiler(operators=ops, lists=model.lists, problem=_problems_in(doc))
        tools = _tool_patterns(limit.tools, doc, base, problems)
        per = []
        for i, path in enumerate(limit.per):
            getter = paths.path_getter(path, (*base, "per", i))
            if getter is not None:
                per.append((path, _identity_key(getter) if path in IDENTITY_PATHS else getter))
        amount = None
        if limit.sum is not None:
            getter = paths.path_getter(limit.sum, (*base, "sum"))
            if getter is not None:
                amount = (limit.sum, getter)
        problems.extend(paths.problems)
        approval = None
        if limit.effect == "require_approval":
            approval = _approval_spec(limit.id, limit.approval, doc, base, problems)
        elif limit.approval is not None:
            problems.append(
                doc.problem(
                    (*base, "approval"),
                    "'approval' only applies to a limit whose effect is require_approval",
                    key=True,
                )
            )
        window = str(limit.window)
        out.append(
            CompiledLimit(
                id=limit.id, tools=tools, per=tuple(per), amount=amount, window_s=parse_duration(limit.window),
                window=window, maximum=limit.max, effect=Effect(limit.effect),
                reason=limit.reason or f"limit '{limit.id}' reached", approval=approval,
            )
        )  # fmt: skip
    return tuple(out)


_DEFAULT_REASONS = {
    "allow": "allowed by policy",
    "deny": "denied by policy",
    "require_approval": "requires approval by policy",
}


def _problems_in(doc: Any) -> Callable[[tuple[str | int, ...], str, bool], Problem]:
    """A condition compiler's way to place a problem in ``doc``."""

    def problem(loc: tuple[str | int, ...], message: str, key: bool) -> Problem:
        result: Problem = doc.problem(loc, message, key=key)
        return result

    return problem
