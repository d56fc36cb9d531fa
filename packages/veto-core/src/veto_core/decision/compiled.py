"""Per-tool compiled deciders: one generated Python function per tool name.

For a tool, the candidate rules are known once the policy is compiled, so their
scope checks are written out inline, a condition shared by several rules is
evaluated once per call, and the outcome of every rule is packed into one integer
(two bits per rule: its condition was true, false, or an error). The Decision is a
pure function of that integer (and of the error messages, when there are any), so
it is built once and shared by every call with the same outcome (DESIGN.md 2.2.4).

Deciders are built lazily, on a tool's first call, and published in the policy's
cache only when complete: a call never sees a half-built decider. They are
checked against `reference.decide_reference` (tests/core/test_compiled_decisions.py).
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Callable
from datetime import datetime
from types import CodeType, FunctionType
from typing import Any

from ..model import Decision, Effect, ToolCall
from ..policy.compiler import CompiledPolicy, CompiledRule
from ..policy.conditions import EvalContext, RunLookup, read_run
from ..policy.operators import EvalError
from .reference import combine, preflight

__all__ = ["ToolDecider", "decide_compiled", "decider_for"]

_ALLOW, _DENY, _APPROVE = Effect.ALLOW, Effect.DENY, Effect.REQUIRE_APPROVAL
_TRUE, _FALSE, _ERROR = 1, 2, 3
_CACHE_LIMIT = 4096  # distinct outcomes (with error texts) kept per tool
_DECIDERS_LIMIT = 65_536  # tools kept per policy
_CODE_LIMIT = 4096  # generated code objects kept, by source text (process-wide)
_CODE: dict[str, CodeType] = {}
#: The globals of every generated decider (what is a tool's own is in its defaults).
_GLOBALS: dict[str, Any] = {}

# conditions.read_run, with its usual case (a run_id, a run store) inline: one frame less
_READ_RUN = (
    "runs(call, tenant) if type(call.run_id) is str and call.run_id and runs is not None"
    " else _read_run(call, tenant, runs)"
)

Decide = Callable[
    [ToolCall, "str | None", "str | None", Callable[[], datetime], "RunLookup | None"], Decision
]


class ToolDecider:
    """The compiled decision procedure of one tool name under one policy."""

    __slots__ = ("cond_of", "decide", "policy", "rules", "source")

    def __init__(self, policy: CompiledPolicy, rules: tuple[CompiledRule, ...]) -> None:
        self.policy = policy
        self.rules = rules
        cache: dict[Any, Decision] = {}
        self.source, values, self.cond_of = _generate(rules)
        values.update(_cache=cache, _build=self._build_for(cache), _roles_of=policy.effective_roles)
        code = _CODE.get(self.source)
        if code is None:
            # Our own generated text (no policy string is ever code). Tools with the
            # same shape of rules share one code object: fewer compiles, and fewer
            # distinct objects for the CPU caches to hold.
            module = compile(self.source, f"<veto decider {len(rules)} rules>", "exec")
            code = next(c for c in module.co_consts if isinstance(c, CodeType))
            if len(_CODE) >= _CODE_LIMIT:
                _CODE.clear()
            _CODE[self.source] = code
        # What is the tool's own (its rules' scopes, conditions, memo tables, outcome
        # cache) is passed as the defaults of trailing parameters: read as locals from
        # one small tuple, where a namespace per tool cost a dict probe per name, each
        # a likely cache miss at 10,000 rules. The globals are shared by every decider.
        defaults = (None, *(values[name] for name in code.co_varnames[5 : code.co_argcount]))
        self.decide: Decide = FunctionType(code, _GLOBALS, "decide", defaults)

    def _build_for(self, cache: dict[Any, Decision]) -> Callable[[Any], Decision]:
        rules = self.rules
        cond_of = self.cond_of
        p = self.policy

        def build(key: Any) -> Decision:
            """The Decision of one outcome: ``key`` is the packed rule states, or
            (states, ((condition, messages), ...)) when conditions erred."""
            outcomes, failed = (key, {}) if type(key) is int else (key[0], dict(key[1]))
            denies: list[CompiledRule] = []
            approvals: list[CompiledRule] = []
            allows: list[CompiledRule] = []
            matched: list[str] = []
            errored: set[str] = set()
            errors: list[str] = []
            for i, rule in enumerate(rules):
                state = (outcomes >> (2 * i)) & 3
                if state == 0:
                    continue
                if state == _TRUE:
                    effect: Effect | None = rule.effect
                elif state == _FALSE:
                    effect = rule.otherwise
                else:
                    errored.add(rule.id)
                    errors.extend(f"rule '{rule.id}': {m}" for m in failed[cond_of[i]])
                    effect = rule.effect if rule.effect is not _ALLOW else rule.otherwise
                if effect is None:
                    continue
                matched.append(rule.id)
                {_DENY: denies, _APPROVE: approvals, _ALLOW: allows}[effect].append(rule)
            decision = combine(p, matched, denies, approvals, allows, tuple(errors), errored)
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[key] = decision
            return decision

        return build


def _merge(default: bool, *outcomes: bool | EvalError) -> bool | EvalError:
    """``default``, or the errors among ``outcomes`` as one (in order), as all_of/any_of."""
    err: EvalError | None = None
    for outcome in outcomes:
        if outcome is not True and outcome is not False:
            err = outcome if err is None else EvalError(*err.messages, *outcome.messages)
    return default if err is None else err


_GLOBALS.update(
    __builtins__=builtins,
    _merge=_merge,
    _EvalContext=EvalContext,
    _EvalError=EvalError,
    _read_run=read_run,
)


def _condition_key(rule: CompiledRule) -> str:
    # Same `if` text in one policy: same lists, operators and paths, so same function.
    return json.dumps(rule.model.if_, sort_keys=True, default=repr)


def _generate(
    rules: tuple[CompiledRule, ...],
) -> tuple[str, dict[str, Any], dict[int, int]]:
    """Python source of ``decide(call, env, tenant, clock)`` for these rules.

    Only names of objects placed in the namespace appear in the text: rule ids,
    scopes and conditions are referenced, never pasted in. Rules without scopes
    are grouped by condition: one evaluation and one mask per distinct condition,
    however many rules share it (a policy's `mcp__*` rules, say).
    """
    ns: dict[str, Any] = {}
    cond_index: dict[str, int] = {}
    cond_of: dict[int, int] = {}  # rule position -> its condition's number
    for j, rule in enumerate(rules):
        if rule.condition is not None:
            k = cond_index.setdefault(_condition_key(rule), len(cond_index))
            cond_of[j] = k
            ns.setdefault(f"_c{k}", rule.condition.fn)
    body: list[str] = []
    evaluated: set[int] = set()  # conditions evaluated on every path to here

    temps = [0]

    def value(fn: Any, target: str, ind: str) -> None:
        """Code setting ``target`` to True, False or the EvalError of ``fn`` (three-valued,
        as conditions.py's closures: `all` false if a part is false, else any error)."""
        inner = getattr(fn, "negates", None)
        if inner is not None:
            value(inner, target, ind)
            body.extend([
                f"{ind}if {target} is True:",
                f"{ind}    {target} = False",
                f"{ind}elif {target} is False:",
                f"{ind}    {target} = True",
            ])  # fmt: skip
            return
        parts = getattr(fn, "parts", None)
        if parts is not None:
            stop = "False" if fn.__name__ == "all_of" else "True"
            names: list[str] = []
            here = ind
            for part in parts:
                temps[0] += 1
                name = f"p{temps[0]}"
                names.append(name)
                value(part, name, here)
                body.extend(
                    [f"{here}if {name} is {stop}:", f"{here}    {target} = {stop}", f"{here}else:"]
                )
                here += "    "
            body.append(
                f"{here}{target} = _merge({'True' if stop == 'False' else 'False'}, {', '.join(names)})"
            )
            return
        temps[0] += 1
        f = f"_x{temps[0]}"
        on_run = getattr(fn, "on_run", None)
        if on_run is not None:
            # A leaf reading only the call and its run (tainted_by, run.labels): no
            # EvalContext; the run is read once per call and shared with ``ctx``.
            ns[f] = on_run
            body.extend([
                f"{ind}try:",
                f"{ind}    if run is None:",
                f"{ind}        run = {_READ_RUN}",
                f"{ind}    {target} = True if {f}(call, run) else False",
                f"{ind}except _EvalError as exc:",
                f"{ind}    {target} = exc",
            ])  # fmt: skip
            return
        on_call = getattr(fn, "on_call", None)
        if on_call is None:
            ns[f] = fn
            body.extend([
                f"{ind}if ctx is None:",
                f"{ind}    ctx = _EvalContext(call, env, tenant, _roles_of, clock, runs)",
                f"{ind}try:",
                f"{ind}    {target} = True if {f}(ctx) else False",
                f"{ind}except _EvalError as exc:",
                f"{ind}    {target} = exc",
            ])  # fmt: skip
            return
        ns[f] = on_call
        if fn.memo is not None:
            # A memoized leaf: a value seen before costs a dict lookup.
            root, name = fn.source
            ns[f"{f}m"], ns[f"{f}f"], ns[f"{f}n"] = fn.memo, fn.memo_float, name
            if root == "principal":
                body.append(f"{ind}v = getattr(principal, {f}n)")
            else:
                body.extend([
                    f"{ind}try:",
                    f"{ind}    v = call.{root}[{f}n]",
                    f"{ind}except Exception:",
                    f"{ind}    v = None",
                ])  # fmt: skip
            body.extend([
                f"{ind}t = type(v)",
                f"{ind}{target} = ({f}f if t is float else {f}m).get(v) if t is str or t is int or t is float else None",
                f"{ind}if {target} is None:",
            ])  # fmt: skip
            ind += "    "
        body.extend([
            f"{ind}try:",
            f"{ind}    {target} = True if {f}(call) else False",
            f"{ind}except _EvalError as exc:",
            f"{ind}    {target} = exc",
        ])  # fmt: skip

    def evaluate(k: int, ind: str) -> None:
        """Set k{k} to True, False or the EvalError of condition k (once per call)."""
        if k in evaluated:
            return
        body.append(f"{ind}if k{k} is None:")
        value(ns[f"_c{k}"], f"k{k}", ind + "    ")
        body.extend([
            f"{ind}    if k{k} is not True and k{k} is not False:",
            f"{ind}        errs = (*errs, ({k}, k{k}.messages))",
        ])  # fmt: skip
        if ind == "    ":
            evaluated.add(k)

    def masks(k: int, true: int, false: int, error: int, ind: str) -> None:
        body.extend([
            f"{ind}if k{k} is True:",
            f"{ind}    key |= {true}",
            f"{ind}elif k{k} is False:",
            f"{ind}    key |= {false}",
            f"{ind}else:",
            f"{ind}    key |= {error}",
        ])  # fmt: skip

    # Unscoped rules: one constant for those without a condition, one mask per condition.
    constant = 0
    grouped: dict[int, list[int]] = {}
    scoped: list[int] = []
    for j, rule in enumerate(rules):
        if (
            rule.envs is None
            and rule.tenants is None
            and rule.roles is None
            and rule.agents is None
        ):
            if rule.condition is None:
                constant |= _TRUE << (2 * j)
            else:
                grouped.setdefault(cond_of[j], []).append(j)
        else:
            scoped.append(j)
    for k, members in grouped.items():
        evaluate(k, "    ")
        masks(
            k,
            sum(_TRUE << (2 * j) for j in members),
            sum(_FALSE << (2 * j) for j in members),
            sum(_ERROR << (2 * j) for j in members),
            "    ",
        )
    for j in scoped:
        rule = rules[j]
        ind = "    "
        checks: list[str] = []
        if rule.envs is not None:
            ns[f"_env{j}"] = rule.envs
            checks.append(f"env in _env{j}")
        if rule.tenants is not None:
            ns[f"_ten{j}"] = rule.tenants
            checks.append(f"tenant in _ten{j}")
        if checks:
            body.append(f"{ind}if {' and '.join(checks)}:")
            ind += "    "
        if rule.roles is not None:
            ns[f"_rol{j}"] = rule.roles
            body.append(f"{ind}if roles is None:")
            body.append(f"{ind}    roles = _roles_of(principal.roles)")
            body.append(f"{ind}if not _rol{j}.isdisjoint(roles):")
            ind += "    "
        if rule.agents is not None:
            ns[f"_agt{j}"] = rule.agents
            body.append(f"{ind}if principal.agent in _agt{j}:")
            ind += "    "
        shift = 2 * j
        if rule.condition is None:
            body.append(f"{ind}key |= {_TRUE << shift}")
        else:
            evaluate(cond_of[j], ind)
            masks(cond_of[j], _TRUE << shift, _FALSE << shift, _ERROR << shift, ind)
    text = "\n".join(body)
    if _READ_RUN in text:  # one run per call, shared by the leaves with and without ctx
        make_ctx = "ctx = _EvalContext(call, env, tenant, _roles_of, clock, runs)"
        if make_ctx in text:
            text = text.replace(make_ctx, f"{make_ctx}; ctx._run = run").replace(
                _READ_RUN, "ctx._run if ctx is not None and ctx._run is not None else " + _READ_RUN
            )
    used = sorted(
        name
        for name in (*ns, "_cache", "_build", "_roles_of")
        if re.search(rf"\b{name}\b", text) or name in ("_cache", "_build")
    )
    lines = [
        f"def decide(call, env, tenant, clock, runs=None, {'=None, '.join(used)}=None):",
        f"    key = {constant}",
        "    errs = ()",
        *(["    ctx = None"] if "ctx" in text else []),
        *(["    run = None"] if "_read_run" in text else []),
        *(["    roles = None"] if "roles" in text else []),
        *(["    principal = call.principal"] if "principal" in text else []),
        *(f"    k{k} = None" for k in range(len(cond_index))),
        *body,
        "    if errs:",
        "        key = (key, errs)",
        "    d = _cache.get(key)",
        "    return d if d is not None else _build(key)",
    ]
    return "\n".join(lines) + "\n", {name: ns[name] for name in used if name in ns}, cond_of


def decider_for(p: CompiledPolicy, tool: str) -> ToolDecider:
    """The decider of ``tool`` (canonical name), built on first use."""
    found: ToolDecider | None = p.deciders.get(tool)
    if found is None:
        found = ToolDecider(p, p.candidates(tool))
        if len(p.deciders) >= _DECIDERS_LIMIT:
            p.deciders.clear()
        p.deciders[tool] = found  # published whole: readers see it complete or not at all
    return found


def decide_compiled(
    p: CompiledPolicy,
    call: ToolCall,
    env: str | None,
    tenant: str | None,
    clock: Callable[[], datetime],
    runs: RunLookup | None = None,
) -> Decision:
    """Decide ``call`` (``env``/``tenant`` already defaulted); same result as the reference.
    ``runs`` gives the call's run state to flow rules (DESIGN.md 2.7)."""
    tool = call.tool
    if type(tool) is str:  # deciders are keyed by canonical names: others miss and go on
        found: ToolDecider | None = p.deciders.get(tool)
        if found is not None and (
            not p.needs_scope
            or (
                (env is not None or not p.requires_env)
                and (tenant is not None or not p.requires_tenant)
            )
        ):
            return found.decide(call, env, tenant, clock, runs)
    checked = preflight(p, call, env, tenant)
    if isinstance(checked, Decision):
        return checked
    return decider_for(p, checked).decide(call, env, tenant, clock, runs)
