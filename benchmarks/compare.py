"""Side by side: this engine, Cedar, Casbin, a compiled CEL and the published `veto` 0.15.2.

One command, one run, engines interleaved:

    uv run python benchmarks/compare.py            # 10 / 100 / 1,000 / 10,000 rules
    uv run python benchmarks/compare.py --json     # the same figures as JSON

The policy and the calls are the realistic mix of `benchmarks/bench_engine.py`
(`make_policy`, `make_calls`). Every rule is translated, through one small
intermediate form, into each engine's own language; a rule an engine cannot
express is reported with the reason, and the timed policy ("common") is the
rules every engine can express. Veto is also timed on the full mix.

Before any timing, every engine decides every call and must give the same effect
(allow / deny / require_approval) as Veto on the common policy: a difference
aborts the run with a diff. Then the calls are cut into batches and the engines
take turns, one batch each, rotating who goes first, so machine drift hits all.

Each engine runs in its own worker process (the others in venvs this script
creates under ~/.cache/veto-compare with `uv venv` + `uv pip install`, never in
the workspace lock), talking JSON lines over a pipe; timing happens inside the
worker: perf_counter_ns around one decision on a request already in the engine's
native form (timer included), plus mapping its answer to an effect. "load" is the
engine's own parse/compile of the translated policy text (Veto: `Veto.from_yaml`).
An engine whose packages cannot be installed is skipped, and the output says so.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("VETO_COMPARE_CACHE", Path.home() / ".cache" / "veto-compare"))

# Engine name -> (venv name, pinned packages, import-name/distribution for the version).
# "veto" is this workspace's engine and runs on the workspace interpreter.
ENGINES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "veto": ("", (), "veto-core"),
    "cedar": ("engines", ("cedarpy==4.12.2",), "cedarpy"),
    "casbin": ("engines", ("pycasbin==2.8.0",), "pycasbin"),
    "cel": ("engines", ("common-expression-language==0.10.0",), "common-expression-language"),
    "veto-0.15.2": ("veto-0.15.2", ("veto==0.15.2",), "veto"),
}
LABELS = {
    "veto": "Veto (this repo)",
    "veto-full": "Veto (this repo), full mix",
    "cedar": "Cedar (cedarpy)",
    "casbin": "Casbin (pycasbin)",
    "cel": "CEL (common-expression-language)",
    "veto-0.15.2": "published veto 0.15.2",
}
EFFECTS = ("allow", "deny", "require_approval")
PROBE = 20  # calls timed to estimate an engine's speed, and the fewest calls it is given


# --------------------------------------------------------------------------------------
# The intermediate form: each Veto rule becomes one or two "simple rules" whose condition
# is two-valued. Veto's three-valued errors (2.1-2.2) are made explicit: a deny or approval
# rule matches when its field is missing ("true or error"), an allow rule needs every field
# present ("true and no error"), and `otherwise` becomes a mirrored rule on "not true".
# Expressions: ("and", [e...]) ("or", [e...]) ("not", e) ("present", field)
#              ("le"|"gt", field, number) ("in", field, [str...]) ("prefix", field, str)
# Fields: ("args", name) or ("user",). Scopes: roles (names), env (names) or None.
# --------------------------------------------------------------------------------------


class Unsupported(Exception):
    """A rule this engine (or this script's translation) cannot express."""


@dataclass(frozen=True, kw_only=True)
class Simple:
    rule_id: str
    effect: str
    tools: tuple[str, ...]
    roles: tuple[str, ...] | None
    env: tuple[str, ...] | None
    cond: Any  # an expression, or None for "always"


_LEAF_OPS = {"less_or_equal": "le", "greater_than": "gt", "in": "in", "starts_with": "prefix"}


def _field(path: str) -> tuple[str, ...]:
    if path.startswith("args.") and path.count(".") == 1:
        return ("args", path[5:])
    if path == "principal.user":
        return ("user",)
    raise Unsupported(f"field {path!r} is not translated")


def _leaf(cond: dict[str, Any]) -> tuple[Any, ...]:
    ops = [k for k in cond if k != "field"]
    if len(ops) != 1 or ops[0] not in _LEAF_OPS:
        raise Unsupported(f"operator {ops} is not translated (no equivalent in every engine)")
    op = ops[0]
    operand = cond[op]
    field = _field(cond["field"])
    kind = _LEAF_OPS[op]
    if kind in ("le", "gt") and not (isinstance(operand, int | float) and math.isfinite(operand)):
        raise Unsupported(f"{op} with a non-numeric operand")
    if kind == "in" and not all(isinstance(v, str) for v in operand):
        raise Unsupported("in with non-string values")
    if kind == "prefix" and not isinstance(operand, str):
        raise Unsupported("starts_with with a list operand")
    return (kind, field, operand)


def _true(cond: dict[str, Any]) -> Any:
    """Definitely true (no error)."""
    if "all" in cond:
        return ("and", [_true(c) for c in cond["all"]])
    if "any" in cond or "not" in cond:
        raise Unsupported("any/not are not translated")
    leaf = _leaf(cond)
    return ("and", [("present", leaf[1]), leaf])


def _true_or_error(cond: dict[str, Any]) -> Any:
    if "all" in cond:
        return ("and", [_true_or_error(c) for c in cond["all"]])
    if "any" in cond or "not" in cond:
        raise Unsupported("any/not are not translated")
    leaf = _leaf(cond)
    return ("or", [("not", ("present", leaf[1])), leaf])


def to_simple(rule: dict[str, Any]) -> list[Simple]:
    """Translate one policy rule; raises Unsupported for what the translation does not cover."""
    when = rule.get("when") or {}
    unknown = set(when) - {"role", "env"}
    if unknown:
        raise Unsupported(f"scope {sorted(unknown)} is not translated")
    for tool in rule["tools"]:
        if "*" in tool[:-1] or "?" in tool or "[" in tool:
            raise Unsupported(f"tool glob {tool!r} (only a trailing '*' is translated)")
    base = {
        "rule_id": rule["id"],
        "tools": tuple(rule["tools"]),
        "roles": tuple(when["role"]) if "role" in when else None,
        "env": tuple(when["env"]) if "env" in when else None,
    }
    effect = rule["effect"]
    cond = rule.get("if")
    if cond is None:
        return [Simple(effect=effect, cond=None, **base)]
    out = [
        Simple(
            effect=effect, cond=_true(cond) if effect == "allow" else _true_or_error(cond), **base
        )
    ]
    if "otherwise" in rule:
        out.append(Simple(effect=rule["otherwise"], cond=("not", _true(cond)), **base))
    return out


def _nnf(expr: Any, negate: bool = False) -> Any:
    """Push negations down to the leaves."""
    op = expr[0]
    if op == "not":
        return _nnf(expr[1], not negate)
    if op in ("and", "or"):
        flip = {"and": "or", "or": "and"}[op] if negate else op
        return (flip, [_nnf(e, negate) for e in expr[1]])
    return ("not", expr) if negate else expr


def _dnf(expr: Any) -> list[list[Any]]:
    """Disjunctive normal form of an NNF expression: a list of conjunctions of literals."""
    op = expr[0]
    if op == "or":
        return [c for e in expr[1] for c in _dnf(e)]
    if op == "and":
        groups: list[list[Any]] = [[]]
        for e in expr[1]:
            groups = [g + h for g in groups for h in _dnf(e)]
        return groups
    return [[expr]]


def role_closure(roles: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    """role -> itself and every role it inherits (transitively)."""
    out: dict[str, set[str]] = {}

    def visit(name: str) -> set[str]:
        if name not in out:
            out[name] = {name}
            for parent in (roles.get(name) or {}).get("inherits", []):
                out[name] |= visit(parent)
        return out[name]

    for name in roles:
        visit(name)
    return out


# --------------------------------------------------------------------------------------
# Calls: one neutral JSON form, converted per engine (outside the timed region).
# --------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """Veto compares numbers and numeric strings as numbers (2.1); booleans are not numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _typed_args(args: dict[str, Any], numeric: set[str]) -> dict[str, Any]:
    out = dict(args)
    for name in numeric & set(args):
        number = _number(args[name])
        if number is not None:
            out[name] = number
    return out


def _leaves(e: Any) -> Iterable[tuple[Any, ...]]:
    if e is None:
        return
    if e[0] in ("and", "or"):
        for x in e[1]:
            yield from _leaves(x)
    elif e[0] == "not":
        yield from _leaves(e[1])
    else:
        yield e


def _numeric_fields(simples: Iterable[Simple]) -> set[str]:
    return {e[1][1] for s in simples for e in _leaves(s.cond) if e[0] in ("le", "gt")}


def _arg_fields(simples: Iterable[Simple]) -> set[str]:
    return {e[1][1] for s in simples for e in _leaves(s.cond) if e[1][0] == "args"}


# --------------------------------------------------------------------------------------
# Engines (each runs inside its worker). An engine: translate(policy, principals) -> native
# text/data (untimed), load(native) (timed), request(call) (untimed), decide(request).
# --------------------------------------------------------------------------------------


class Engine:
    name = ""

    def __init__(self, policy: dict[str, Any]) -> None:
        self.policy = policy
        self.default = policy.get("default", "deny")
        self.closure = role_closure(policy.get("roles") or {})
        self.simples: list[Simple] = []
        self.unsupported: dict[str, str] = {}
        for rule in policy["rules"]:
            try:
                simples = to_simple(rule)
                for s in simples:
                    self.check(s)
                self.simples.extend(simples)
            except Unsupported as exc:
                self.unsupported[rule["id"]] = str(exc)
        self.numeric = _numeric_fields(self.simples)

    def check(self, simple: Simple) -> None:
        """Raise Unsupported if this engine cannot express the simple rule."""

    @staticmethod
    def warm_import() -> None:
        """Import the engine's modules, so the first load time is not an import time."""

    def effective_roles(self, roles: Iterable[str]) -> list[str]:
        out: set[str] = set()
        for r in roles:
            out |= self.closure.get(r, {r})
        return sorted(out)

    def translate(self) -> Any:
        raise NotImplementedError

    def load(self, native: Any) -> None:
        raise NotImplementedError

    def request(self, call: dict[str, Any]) -> Any:
        raise NotImplementedError

    def decider(self) -> Callable[[Any], str]:
        raise NotImplementedError


class VetoEngine(Engine):
    """The reference: it reads the policy itself, so nothing is unsupported."""

    name = "veto"

    @staticmethod
    def warm_import() -> None:
        import yaml  # noqa: F401

        import veto_core  # noqa: F401

    def __init__(self, policy: dict[str, Any]) -> None:
        self.policy = policy
        self.unsupported = {}

    def translate(self) -> Any:
        import yaml

        policy = {k: v for k, v in self.policy.items() if k != "_principals"}
        return yaml.safe_dump(policy, sort_keys=False)

    def load(self, native: Any) -> None:
        from veto_core import Veto

        self.veto = Veto.from_yaml(native, file="compare.yaml")

    def request(self, call: dict[str, Any]) -> Any:
        from veto_core import Principal, ToolCall

        p = call["principal"]
        return ToolCall(
            tool=call["tool"],
            args=call["args"],
            principal=Principal(agent=p["agent"], roles=tuple(p["roles"]), user=p["user"]),
            env=call["env"],
        )

    def decider(self) -> Callable[[Any], str]:
        decide = self.veto.decide
        return lambda call: decide(call).effect.value


def _cedar_str(s: str) -> str:
    return json.dumps(s)


class CedarEngine(Engine):
    """Permit for allow, forbid for deny and require_approval; the effect is read back from
    which policies decided (Cedar's diagnostics name them, `policyN` in text order)."""

    name = "cedar"

    @staticmethod
    def warm_import() -> None:
        import cedarpy  # noqa: F401

    def expr(self, e: Any) -> str:
        op = e[0]
        if op in ("and", "or"):
            joiner = " && " if op == "and" else " || "
            return "(" + joiner.join(self.expr(x) for x in e[1]) + ")"
        if op == "not":
            return f"!{self.expr(e[1])}"
        field = e[1]
        ref = "context.user" if field == ("user",) else f"context.args.{field[1]}"
        if op == "present":
            return "(context has user)" if field == ("user",) else f"(context.args has {field[1]})"
        if op in ("le", "gt"):
            method = "lessThanOrEqual" if op == "le" else "greaterThan"
            return f"{ref}.{method}(decimal({_cedar_str(f'{float(e[2]):.4f}')}))"
        if op == "in":
            return f"[{', '.join(_cedar_str(v) for v in e[2])}].contains({ref})"
        if op == "prefix":
            pattern = e[2].replace("*", "\\*") + "*"
            return f"{ref} like {_cedar_str(pattern)}"
        raise Unsupported(op)

    def translate(self) -> Any:
        text = []
        self.kinds: list[str] = []
        for s in self.simples:
            if s.effect not in EFFECTS:
                raise Unsupported(s.effect)
            # Idiomatic Cedar: one exact tool and one role go in the policy's scope (which
            # Cedar checks before the `when` clause); anything else is a condition.
            conds = []
            principal, resource = "principal", "resource"
            if s.roles is not None and len(s.roles) == 1:
                principal = f"principal in Role::{_cedar_str(s.roles[0])}"
            elif s.roles is not None:
                conds.append(
                    "(" + " || ".join(f"principal in Role::{_cedar_str(r)}" for r in s.roles) + ")"
                )
            if len(s.tools) == 1 and not s.tools[0].endswith("*"):
                resource = f"resource == Tool::{_cedar_str(s.tools[0])}"
            else:
                tool_conds = [
                    f"context.tool {'like' if t.endswith('*') else '=='} {_cedar_str(t)}"
                    for t in s.tools
                ]
                conds.insert(0, "(" + " || ".join(tool_conds) + ")")
            if s.env is not None:
                conds.append(f"[{', '.join(_cedar_str(v) for v in s.env)}].contains(context.env)")
            if s.cond is not None:
                conds.append(self.expr(s.cond))
            head = "permit" if s.effect == "allow" else "forbid"
            when = f" when {{ {' && '.join(conds)} }}" if conds else ""
            text.append(f"{head}({principal}, action, {resource}){when};")
            self.kinds.append(s.effect)
        users: dict[str, list[str]] = {}
        for p in self.policy.get("_principals", []):
            users[p["user"]] = p["roles"]
        ents = [
            {
                "uid": {"type": "User", "id": u},
                "attrs": {},
                "parents": [{"type": "Role", "id": r} for r in roles],
            }
            for u, roles in users.items()
        ] + [
            {
                "uid": {"type": "Role", "id": r},
                "attrs": {},
                "parents": [
                    {"type": "Role", "id": x}
                    for x in (self.policy.get("roles", {}).get(r) or {}).get("inherits", [])
                ],
            }
            for r in self.policy.get("roles", {})
        ]
        return {"policies": "\n".join(text), "entities": json.dumps(ents)}

    def load(self, native: Any) -> None:
        import cedarpy

        self.cedarpy = cedarpy
        self.policyset = cedarpy.PolicySet.from_str(native["policies"])
        self.entities = cedarpy.Entities.from_json_str(native["entities"])
        self.index = {f"policy{i}": k for i, k in enumerate(self.kinds)}

    def request(self, call: dict[str, Any]) -> Any:
        args = {}
        for k, v in call["args"].items():
            number = _number(v) if k in self.numeric else None
            args[k] = (
                {"__extn": {"fn": "decimal", "arg": f"{number:.4f}"}} if number is not None else v
            )
        context = {"tool": call["tool"], "env": call["env"], "user": call["principal"]["user"]}
        context["args"] = args
        return {
            "principal": {"type": "User", "id": call["principal"]["user"]},
            "action": 'Action::"call"',
            "resource": {"type": "Tool", "id": call["tool"]},
            "context": context,
        }

    def decider(self) -> Callable[[Any], str]:
        is_authorized = self.cedarpy.is_authorized
        allow = self.cedarpy.Decision.Allow
        ps, ents, index, default = self.policyset, self.entities, self.index, self.default

        def decide(req: Any) -> str:
            result = is_authorized(req, ps, ents)
            if result.decision == allow:
                return "allow"
            kinds = {index[r] for r in result.diagnostics.reasons}
            if result.diagnostics.errors:
                raise RuntimeError(f"cedar evaluation errors: {result.diagnostics.errors}")
            if "deny" in kinds:
                return "deny"
            if "require_approval" in kinds:
                return "require_approval"
            return default

        return decide


CASBIN_MODEL = """
[request_definition]
r = sub, obj
[policy_definition]
p = role, obj, cond, eft, kind
[role_definition]
g = _, _
[policy_effect]
e = priority(p.eft) || deny
[matchers]
m = keyMatch(r.obj, p.obj) && (p.role == "" || g(r.sub.user, p.role)) && eval(p.cond)
"""


class _Subject:
    """Casbin's request subject: every field a rule reads is an attribute (None when absent)."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


class CasbinEngine(Engine):
    """`priority(p.eft) || deny`: the first matching policy line decides, so lines are ordered
    deny, then require_approval (eft=deny, kind=require_approval), then allow."""

    name = "casbin"

    @staticmethod
    def warm_import() -> None:
        import casbin  # noqa: F401

    def expr(self, e: Any) -> str:
        op = e[0]
        if op in ("and", "or"):
            return "(" + f" {op} ".join(self.expr(x) for x in e[1]) + ")"
        if op == "not":
            return f"(not {self.expr(e[1])})"
        ref = "r.sub.user" if e[1] == ("user",) else f"r.sub.a_{e[1][1]}"
        if op == "present":
            return f"({ref} != None)"
        if op == "le":
            return f"({ref} <= {float(e[2])!r})"
        if op == "gt":
            return f"({ref} > {float(e[2])!r})"
        if op == "in":
            return f"({ref} in ({', '.join(repr(v) for v in e[2])},))"
        if op == "prefix":
            return f"{ref}.startswith({e[2]!r})"
        raise Unsupported(op)

    def translate(self) -> Any:
        lines: list[list[str]] = []
        order = {"deny": 0, "require_approval": 1, "allow": 2}
        for s in sorted(self.simples, key=lambda s: order[s.effect]):
            parts = []
            if s.env is not None:
                parts.append(f"(r.sub.env in ({', '.join(repr(v) for v in s.env)},))")
            if s.cond is not None:
                parts.append(self.expr(s.cond))
            cond = " and ".join(parts) or "True"
            eft = "allow" if s.effect == "allow" else "deny"
            for role in s.roles or ("",):
                for tool in s.tools:
                    lines.append([role, tool, cond, eft, s.effect])
        groups = [
            [p["user"], r] for p in self.policy.get("_principals", []) for r in p["roles"]
        ] + [
            [r, parent]
            for r, spec in (self.policy.get("roles") or {}).items()
            for parent in (spec or {}).get("inherits", [])
        ]
        self.fields = sorted(_arg_fields(self.simples))
        return {"lines": lines, "groups": groups}

    def load(self, native: Any) -> None:
        import casbin

        model = casbin.model.Model()
        model.load_model_from_text(CASBIN_MODEL)
        self.enforcer = casbin.Enforcer(model)
        if native["lines"]:
            self.enforcer.add_policies(native["lines"])
        if native["groups"]:
            self.enforcer.add_grouping_policies(native["groups"])

    def request(self, call: dict[str, Any]) -> Any:
        args = _typed_args(call["args"], self.numeric)
        attrs = {f"a_{k}": args.get(k) for k in self.fields}
        attrs.update({f"a_{k}": v for k, v in args.items()})
        return (
            _Subject(user=call["principal"]["user"], env=call["env"], **attrs),
            call["tool"],
        )

    def decider(self) -> Callable[[Any], str]:
        enforce_ex = self.enforcer.enforce_ex
        default = self.default

        def decide(req: Any) -> str:
            ok, line = enforce_ex(*req)
            if ok:
                return "allow"
            return line[4] if line else default

        return decide


class CelEngine(Engine):
    """Each rule's condition compiled once to a CEL program; rules indexed by exact tool name
    (trailing-'*' globs checked by prefix); Veto's combination (deny > approval > allow >
    default) around them. The engine loop is this script's; the expressions are CEL's."""

    name = "cel"

    @staticmethod
    def warm_import() -> None:
        import cel  # noqa: F401

    def expr(self, e: Any) -> str:
        op = e[0]
        if op in ("and", "or"):
            joiner = " && " if op == "and" else " || "
            return "(" + joiner.join(self.expr(x) for x in e[1]) + ")"
        if op == "not":
            return f"!{self.expr(e[1])}"
        ref = "principal.user" if e[1] == ("user",) else f"args.{e[1][1]}"
        if op == "present":
            return f"has({ref})"
        if op in ("le", "gt"):
            return f"({ref} {'<=' if op == 'le' else '>'} {float(e[2])!r})"
        if op == "in":
            return f"({ref} in [{', '.join(json.dumps(v) for v in e[2])}])"
        if op == "prefix":
            return f"{ref}.startsWith({json.dumps(e[2])})"
        raise Unsupported(op)

    def translate(self) -> Any:
        out = []
        for s in self.simples:
            parts = []
            if s.roles is not None:
                parts.append(
                    "(" + " || ".join(f"{json.dumps(r)} in principal.roles" for r in s.roles) + ")"
                )
            if s.env is not None:
                parts.append(f"(env in [{', '.join(json.dumps(v) for v in s.env)}])")
            if s.cond is not None:
                parts.append(self.expr(s.cond))
            out.append([s.effect, list(s.tools), " && ".join(parts) or "true"])
        return out

    def load(self, native: Any) -> None:
        import cel

        rank = {"deny": 0, "require_approval": 1, "allow": 2}
        by_tool: dict[str, list[tuple[int, Any]]] = {}
        globs: list[tuple[str, int, Any]] = []
        for effect, tools, source in native:
            program = cel.compile(source)
            for t in tools:
                if t.endswith("*"):
                    globs.append((t[:-1], rank[effect], program))
                else:
                    by_tool.setdefault(t, []).append((rank[effect], program))
        self.by_tool = by_tool
        self.globs = globs

    def request(self, call: dict[str, Any]) -> Any:
        return (
            call["tool"],
            {
                "args": _typed_args(call["args"], self.numeric),
                "principal": {
                    "user": call["principal"]["user"],
                    "roles": self.effective_roles(call["principal"]["roles"]),
                },
                "env": call["env"],
            },
        )

    def decider(self) -> Callable[[Any], str]:
        cache: dict[str, list[tuple[int, Any]]] = {}
        by_tool, globs, default = self.by_tool, self.globs, self.default
        names = ("deny", "require_approval", "allow")

        def rules_for(tool: str) -> list[tuple[int, Any]]:
            rules = cache.get(tool)
            if rules is None:
                rules = list(by_tool.get(tool, []))
                rules += [(rank, p) for prefix, rank, p in globs if tool.startswith(prefix)]
                rules.sort(key=lambda r: r[0])
                cache[tool] = rules
            return rules

        def decide(req: Any) -> str:
            tool, ctx = req
            for rank, program in rules_for(tool):
                if program.execute(ctx):
                    return names[rank]  # sorted by rank: the first match is the strongest
            return default

        return decide


class PublishedVetoEngine(Engine):
    """The published `veto` 0.15.2: first matching rule wins (block/require_approval return at
    once, allow is remembered), no match allows. Rules are ordered block, require_approval,
    allow; a trailing-'*' glob becomes a global rule on `tool_name starts_with`; a result
    that names no rule is this policy's `default`; Veto's missing-field semantics are written
    out (`equals: null`) since 0.15.2 reads a missing field as "no match"."""

    name = "veto-0.15.2"

    @staticmethod
    def warm_import() -> None:
        import veto  # noqa: F401

    def check(self, simple: Simple) -> None:
        if simple.env is not None:
            raise Unsupported("env scope: 0.15.2 has no environment input")

    def literal(self, e: Any) -> list[list[dict[str, Any]]]:
        """One literal -> groups (OR of ANDs) of 0.15.2 conditions."""
        neg = e[0] == "not"
        atom = e[1] if neg else e
        field = "user_id" if atom[1] == ("user",) else f"arguments.{atom[1][1]}"
        op = atom[0]
        if op == "present":
            return [
                [{"field": field, "operator": "equals" if neg else "not_equals", "value": None}]
            ]
        if op == "le":
            if neg:
                return [[{"field": field, "operator": "greater_than", "value": atom[2]}]]
            return [
                [{"field": field, "operator": "less_than", "value": atom[2]}],
                [{"field": field, "operator": "equals", "value": atom[2]}],
            ]
        if op == "gt":
            if neg:
                return self.literal(("le", atom[1], atom[2]))
            return [[{"field": field, "operator": "greater_than", "value": atom[2]}]]
        if op == "in":
            return [
                [{"field": field, "operator": "not_in" if neg else "in", "value": list(atom[2])}]
            ]
        if op == "prefix" and not neg:
            return [[{"field": field, "operator": "starts_with", "value": atom[2]}]]
        raise Unsupported(f"{'not ' if neg else ''}{op} has no 0.15.2 operator")

    def groups(self, cond: Any) -> list[list[dict[str, Any]]]:
        out: list[list[dict[str, Any]]] = []
        for conj in _dnf(_nnf(cond)):
            partial: list[list[dict[str, Any]]] = [[]]
            for lit in conj:
                partial = [g + h for g in partial for h in self.literal(lit)]
            out.extend(partial)
        return out

    def translate(self) -> Any:
        rules = []
        order = {"deny": 0, "require_approval": 1, "allow": 2}
        action = {"deny": "block", "require_approval": "require_approval", "allow": "allow"}
        for n, s in enumerate(sorted(self.simples, key=lambda s: order[s.effect])):
            groups = self.groups(s.cond) if s.cond is not None else [[]]
            extra = []
            if s.roles is not None:
                holders = sorted(r for r, c in self.closure.items() if c & set(s.roles))
                extra.append({"field": "role", "operator": "in", "value": holders})
            exact = [t for t in s.tools if not t.endswith("*")]
            for t in s.tools:
                if t.endswith("*"):
                    tool_cond = {"field": "tool_name", "operator": "starts_with", "value": t[:-1]}
                    rules.append(
                        {
                            "id": f"{s.rule_id}#{n}{t}",
                            "name": s.rule_id,
                            "action": action[s.effect],
                            "condition_groups": [g + extra + [tool_cond] for g in groups],
                        }
                    )
            if exact:
                rules.append(
                    {
                        "id": f"{s.rule_id}#{n}",
                        "name": s.rule_id,
                        "action": action[s.effect],
                        "tools": exact,
                        "condition_groups": [g + extra for g in groups],
                    }
                )
        return rules

    def load(self, native: Any) -> None:
        import veto

        self.veto = veto.Veto.from_rules(rules=native, mode="strict", log_level="silent")

    def request(self, call: dict[str, Any]) -> Any:
        roles = call["principal"]["roles"]
        if len(roles) != 1:
            raise Unsupported("0.15.2 takes one role per call")
        return (call["tool"], call["args"], call["principal"]["user"], roles[0])

    def decider(self) -> Callable[[Any], str]:
        guard = self.veto.guard
        default = self.default

        def decide(req: Any) -> str:
            tool, args, user, role = req
            coro = guard(tool, args, user_id=user, role=role)
            try:
                coro.send(None)  # local rules never suspend; drive the coroutine without a loop
            except StopIteration as done:
                result = done.value
            else:
                coro.close()
                raise RuntimeError("veto 0.15.2 guard() suspended")
            if result.decision == "allow" and result.rule_id is None:
                return default  # no rule matched: the policy's default
            return str(result.decision)

        return decide


ENGINE_CLASSES: dict[str, type[Engine]] = {
    "veto": VetoEngine,
    "cedar": CedarEngine,
    "casbin": CasbinEngine,
    "cel": CelEngine,
    "veto-0.15.2": PublishedVetoEngine,
}


# --------------------------------------------------------------------------------------
# Worker: JSON lines on stdin/stdout.
# --------------------------------------------------------------------------------------


def time_batch(decide: Callable[[Any], str], requests: list[Any]) -> list[int]:
    clock = time.perf_counter_ns
    out = []
    gc.disable()
    try:
        for req in requests:
            t0 = clock()
            decide(req)
            out.append(clock() - t0)
    finally:
        gc.enable()
    return out


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def worker(kind: str) -> int:
    """Serve one engine: 'unsupported', 'load', 'decide', 'time' commands."""
    out = sys.stdout
    sys.stdout = sys.stderr  # keep library prints off the protocol pipe
    instances: dict[str, tuple[Engine, list[Any], Callable[[Any], str]]] = {}
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg["cmd"]
        try:
            if cmd == "hello":
                ENGINE_CLASSES[kind].warm_import()
                reply: Any = {
                    "version": _version(ENGINES[kind][2]),
                    "python": platform.python_version(),
                }
            elif cmd == "unsupported":
                reply = ENGINE_CLASSES[kind](msg["policy"]).unsupported
            elif cmd == "load":
                engine = ENGINE_CLASSES[kind](msg["policy"])
                if engine.unsupported and msg.get("strict", True):
                    raise Unsupported(f"rules not expressible: {engine.unsupported}")
                native = engine.translate()
                gc.collect()
                t0 = time.perf_counter()
                engine.load(native)
                load_ms = (time.perf_counter() - t0) * 1000
                requests = [engine.request(c) for c in msg["calls"]]
                instances[msg["key"]] = (engine, requests, engine.decider())
                reply = {"load_ms": load_ms}
            elif cmd == "decide":
                _, requests, decide = instances[msg["key"]]
                reply = [decide(r) for r in requests[: msg["stop"]]]
            elif cmd == "probe":  # mean ns per decision over the first few calls
                _, requests, decide = instances[msg["key"]]
                probe = requests[: msg["stop"]]
                reply = sum(time_batch(decide, probe)) / max(1, len(probe))
            elif cmd == "time":
                _, requests, decide = instances[msg["key"]]
                reply = time_batch(decide, requests[msg["start"] : msg["stop"]])
            elif cmd == "drop":
                instances.pop(msg["key"], None)
                gc.collect()
                reply = None
            else:
                raise ValueError(f"unknown command {cmd!r}")
            out.write(json.dumps({"ok": reply}) + "\n")
        except Exception as exc:  # reported to the parent, which aborts
            out.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        out.flush()
    return 0


class Worker:
    def __init__(self, kind: str, python: str) -> None:
        self.kind = kind
        env = {**os.environ, "PYTHONPATH": str(HERE), "VETO_LOG": "silent"}
        self.proc = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "--worker", kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def call(self, **msg: Any) -> Any:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.kind} worker exited (code {self.proc.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.kind}: {reply['error']}")
        return reply["ok"]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


# --------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------


def engine_python(kind: str, log: Callable[[str], None]) -> str | None:
    """The interpreter for an engine, installing its venv on first use; None if impossible."""
    venv, _, _ = ENGINES[kind]
    if not venv:
        return sys.executable
    path = CACHE / venv
    python = path / "bin" / "python"
    stamp = path / ".packages"
    wanted = sorted({p for k, (v, pk, _) in ENGINES.items() if v == venv for p in pk})
    if python.exists() and stamp.exists() and stamp.read_text().split() == wanted:
        return str(python)
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    try:
        subprocess.run(
            ["uv", "venv", "-q", "--clear", "--python", sys.executable, str(path)],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        subprocess.run(
            ["uv", "pip", "install", "-q", "--python", str(python), *wanted],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        log(
            f"skipped {kind}: cannot install {' '.join(wanted)}: {detail.strip().splitlines()[-1:]}"
        )
        return None
    stamp.write_text("\n".join(wanted))
    return str(python)


def neutral_calls(calls: Iterable[Any]) -> list[dict[str, Any]]:
    return [
        {
            "tool": c.tool,
            "args": dict(c.args),
            "principal": {
                "agent": c.principal.agent,
                "roles": list(c.principal.roles),
                "user": c.principal.user,
            },
            "env": c.env,
        }
        for c in calls
    ]


def check_equivalence(
    reference: list[str], others: dict[str, list[str]], calls: list[dict[str, Any]], limit: int = 10
) -> list[str]:
    """Lines describing every call where an engine's effect differs from the reference's
    (an engine may have decided only the first calls: a prefix of the reference's)."""
    diff = []
    for name, effects in others.items():
        if not 0 < len(effects) <= len(reference):
            diff.append(f"{name}: {len(effects)} decisions for {len(reference)} calls")
            continue
        bad = [i for i, (a, b) in enumerate(zip(reference, effects, strict=False)) if a != b]
        for i in bad[:limit]:
            diff.append(
                f"{name} call #{i}: veto={reference[i]} {name}={effects[i]} {json.dumps(calls[i])}"
            )
        if len(bad) > limit:
            diff.append(f"{name}: {len(bad) - limit} more differences")
    return diff


def percentile(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(len(sorted_ns) * q))] / 1000


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    from bench_engine import make_calls, make_policy

    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    kinds = [k for k in ENGINES if k in args.engines.split(",")]
    if "veto" not in kinds:
        raise SystemExit("the comparison needs the 'veto' engine (the reference)")
    workers: dict[str, Worker] = {}
    skipped: dict[str, str] = {}
    versions: dict[str, str] = {}
    notes: list[str] = []
    try:
        for k in kinds:
            python = engine_python(k, notes.append)
            if python is None:
                skipped[k] = "not installable"
                continue
            workers[k] = Worker(k, python)
            versions[k] = workers[k].call(cmd="hello")["version"]
        result: dict[str, Any] = {
            "python": platform.python_version(),
            "load_average_before": _load(),
            "calls": args.calls,
            "batches": args.batches,
            "versions": versions,
            "skipped": skipped,
            "notes": notes,
            "sizes": {},
        }
        # One throwaway load per engine first: one-time costs (imports, first compiles) are
        # not a load time.
        warm = make_policy(10)
        warm["_principals"] = []
        for w in workers.values():
            w.call(cmd="load", key="warm-up", policy=warm, calls=[], strict=False)
            w.call(cmd="drop", key="warm-up")
        for size in (int(s) for s in args.sizes.split(",")):
            policy = make_policy(size)
            calls = neutral_calls(make_calls(policy, args.calls))
            principals = {c["principal"]["user"]: c["principal"]["roles"] for c in calls}
            policy["_principals"] = [{"user": u, "roles": r} for u, r in sorted(principals.items())]
            unsupported = {k: w.call(cmd="unsupported", policy=policy) for k, w in workers.items()}
            dropped = set().union(*unsupported.values())
            common = {**policy, "rules": [r for r in policy["rules"] if r["id"] not in dropped]}
            full = {k: v for k, v in policy.items() if k != "_principals"}
            common_clean = {k: v for k, v in common.items() if k != "_principals"}
            runs = {k: k for k in workers} | {"veto-full": "veto"}
            loads: dict[str, float] = {}
            for key, k in runs.items():
                pol = full if key == "veto-full" else (common_clean if k == "veto" else common)
                loads[key] = workers[k].call(
                    cmd="load", key=f"{key}-{size}", policy=pol, calls=calls
                )["load_ms"]
            # A slow engine gets the first n calls that fit --budget seconds per pass.
            n: dict[str, int] = {}
            for key, k in runs.items():
                mean_ns = workers[k].call(cmd="probe", key=f"{key}-{size}", stop=PROBE)
                fit = int(args.budget * 1e9 / max(mean_ns, 1.0))
                n[key] = (
                    args.calls if key in ("veto", "veto-full") else min(args.calls, max(PROBE, fit))
                )
            decisions = {
                key: workers[k].call(cmd="decide", key=f"{key}-{size}", stop=n[key])
                for key, k in runs.items()
            }
            diff = check_equivalence(
                decisions["veto"],
                {k: v for k, v in decisions.items() if k not in ("veto", "veto-full")},
                calls,
            )
            if diff:
                raise SystemExit(
                    f"engines disagree at {size} rules (common policy, {len(common['rules'])} rules):\n"
                    + "\n".join(diff)
                )
            timings: dict[str, list[int]] = {key: [] for key in runs}
            order = list(runs)
            for b in range(args.batches):
                rotated = order[b % len(order) :] + order[: b % len(order)]
                for key in rotated:
                    start, stop = n[key] * b // args.batches, n[key] * (b + 1) // args.batches
                    if stop > start:
                        timings[key] += workers[runs[key]].call(
                            cmd="time", key=f"{key}-{size}", start=start, stop=stop
                        )
            for key, k in runs.items():
                workers[k].call(cmd="drop", key=f"{key}-{size}")
            mix: dict[str, int] = {e: 0 for e in EFFECTS}
            for e in decisions["veto"]:
                mix[e] += 1
            row: dict[str, Any] = {
                "rules_full": len(policy["rules"]),
                "rules_common": len(common["rules"]),
                "unsupported": {k: v for k, v in unsupported.items() if v},
                "effects_common": mix,
                "engines": {},
            }
            for key, ns in timings.items():
                ns.sort()
                row["engines"][key] = {
                    "p50_us": percentile(ns, 0.5),
                    "p99_us": percentile(ns, 0.99),
                    "load_ms": loads[key],
                    "calls": n[key],
                }
            result["sizes"][size] = row
            log(f"{size:,} rules done (load average {_load()})")
        result["load_average_after"] = _load()
        return result
    finally:
        for w in workers.values():
            w.close()


def _why(reason: str) -> str:
    return reason.split(" (")[0].split(":")[0]


CEDAR_ERRORS = "https://cedarland.blog/design/why-ignore-errors/content.html"
CEDAR_AUTHZ = "https://cedar-policy.github.io/cedar-spec/docs/Cedar/Thm/Authorization.html"
CASBIN_ABAC = "https://casbin.org/docs/abac/"
CASBIN_EFFECT = "https://casbin.org/docs/priority-model/"
CASBIN_DOMAINS = "https://casbin.org/docs/rbac-with-domains/"
CEL_LANGDEF = "https://github.com/google/cel-spec/blob/master/doc/langdef.md"
OLD = "https://github.com/PlawIO/veto/blob/main/packages/sdk-python"
OLD_CONDITIONS = f"{OLD}/veto/rules/condition_evaluator.py"
OLD_PYPI = "https://pypi.org/project/veto/0.15.2/"
TESTS = "tests/core"
THIS = "benchmarks/compare.py (checked by tests/test_compare_smoke.py)"

# Feature -> one cell per engine (veto, cedar, casbin, cel, veto-0.15.2): (text, evidence).
# Evidence is a test in this repo or a link to the other project's own docs or source.
FEATURES: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "Conditions on tool arguments",
        [
            ("yes, 24 operators (one reads the run)", f"{TESTS}/test_operators.py"),
            ("yes (context record)", CEDAR_AUTHZ),
            ("yes (ABAC `eval`)", CASBIN_ABAC),
            ("yes (expressions)", CEL_LANGDEF),
            ("yes, 14 operators, case-insensitive", OLD_CONDITIONS),
        ],
    ),
    (
        "A missing or malformed field in a deny rule blocks the call",
        [
            ("yes (three-valued, errors listed)", f"{TESTS}/test_semantics.py"),
            ("no: a policy that errors is ignored", CEDAR_ERRORS),
            ("pycasbin raises AttributeDoesNotExist (observed); the caller decides", CASBIN_ABAC),
            ("errors are values; the embedder decides", f"{CEL_LANGDEF}#runtime-errors"),
            ("no: a missing field is no match", OLD_CONDITIONS),
        ],
    ),
    (
        "require_approval (approvers, quorum, timeout)",
        [
            ("yes", f"{TESTS}/approvals/test_lifecycle.py"),
            ("no: Allow / Deny", CEDAR_AUTHZ),
            ("no: allow / deny effects", CASBIN_EFFECT),
            ("no: an expression's value only", CEL_LANGDEF),
            ("an action; approval by callback or its cloud", OLD_PYPI),
        ],
    ),
    (
        "Durable, tamper-evident audit trail",
        [
            ("yes (signed hash chain, verify)", f"{TESTS}/audit/test_audit_attacks.py"),
            ("no: a decision and diagnostics", CEDAR_AUTHZ),
            ("not in the authorization model", CASBIN_ABAC),
            ("no", CEL_LANGDEF),
            ("in-memory history; hash-chain helper", f"{OLD}/tests/test_audit_chain.py"),
        ],
    ),
    (
        "Tenants",
        [
            ("yes (overlays that cannot widen)", f"{TESTS}/test_bundles.py"),
            ("by modelling entities", CEDAR_AUTHZ),
            ("yes (RBAC with domains)", CASBIN_DOMAINS),
            ("no", CEL_LANGDEF),
            ("no tenant input", OLD_PYPI),
        ],
    ),
    (
        "Role inheritance",
        [
            ("yes", f"{TESTS}/test_semantics.py"),
            ("yes (`principal in Role`)", THIS),
            ("yes (role hierarchy `g`)", THIS),
            ("no: roles computed by the caller", THIS),
            ("no: one role string per call", THIS),
        ],
    ),
    (
        "Order-independent decisions",
        [
            ("yes (deny > approval > allow)", f"{TESTS}/test_semantics.py"),
            ("yes (forbid overrides permit)", CEDAR_AUTHZ),
            ("per model; `priority` is first match", CASBIN_EFFECT),
            ("n/a (the embedder combines)", CEL_LANGDEF),
            ("no: first matching block/approval wins", f"{OLD}/veto/core/veto.py"),
        ],
    ),
    (
        "Flow rules (earlier calls and data in the run)",
        [
            (
                "yes: `sources`, `tainted_by`, `run.labels`, `run.calls` across adapters",
                f"{TESTS}/runs/test_flow_semantics.py",
            ),
            ("no", CEDAR_AUTHZ),
            ("no", CASBIN_ABAC),
            ("no", CEL_LANGDEF),
            ("sequence constraints on call history", f"{OLD}/tests/test_sequence_constraints.py"),
        ],
    ),
]


def feature_table() -> str:
    engines = ["veto", "cedar", "casbin", "cel", "veto-0.15.2"]
    lines = [
        "| feature | " + " | ".join(LABELS[e] for e in engines) + " |",
        "|---|" + "---|" * len(engines),
    ]
    for feature, cells in FEATURES:
        rendered = [
            f"{text} ([source]({ev}))" if ev.startswith("http") else f"{text} (`{ev}`)"
            for text, ev in cells
        ]
        lines.append(f"| {feature} | " + " | ".join(rendered) + " |")
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    lines = []
    vers = ", ".join(f"{ENGINES[k][2]} {v}" for k, v in result["versions"].items())
    lines.append(
        f"Python {result['python']}; {vers}. {result['calls']:,} calls per size, "
        f"{result['batches']} interleaved batches; load average (1/5/15 min) "
        f"{result['load_average_before']} before, {result.get('load_average_after', '?')} after."
    )
    for k, why in result["skipped"].items():
        lines.append(f"Skipped {LABELS[k]}: {why}.")
    lines.extend(result["notes"])
    sizes = result["sizes"]
    lines.append("")
    keys = ["veto-full", *[k for k in ENGINES if k in next(iter(sizes.values()))["engines"]]]
    header = (
        "| engine | " + " | ".join(f"{int(s):,} rules p50 / p99 µs (load ms)" for s in sizes) + " |"
    )
    lines.append(header)
    lines.append("|---|" + "---:|" * len(sizes))
    for key in keys:
        cells = []
        for row in sizes.values():
            e = row["engines"][key]
            few = "" if e["calls"] == result["calls"] else f" [{e['calls']:,} calls]"
            cells.append(f"{e['p50_us']:.1f} / {e['p99_us']:.1f} ({e['load_ms']:,.1f}){few}")
        lines.append(f"| {LABELS[key]} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Rows other than the full mix use the common policy: "
        + "; ".join(
            f"{int(s):,} → {row['rules_common']:,} rules (calls decided "
            + ", ".join(f"{n} {e}" for e, n in row["effects_common"].items())
            + ")"
            for s, row in sizes.items()
        )
        + ". Every engine decided every call exactly as Veto before timing."
    )
    last = list(sizes.values())[-1]
    for k, reasons in last["unsupported"].items():
        counts: dict[str, int] = {}
        for r in reasons.values():
            counts[_why(r)] = counts.get(_why(r), 0) + 1
        lines.append(
            f"- {LABELS[k]} cannot express {len(reasons):,} of {last['rules_full']:,} rules: "
            + "; ".join(f"{n} x {why}" for why, n in sorted(counts.items()))
        )
    lines.append("")
    lines.append(feature_table())
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=5000, help="calls per size (default 5000)")
    parser.add_argument("--batches", type=int, default=10, help="interleaved batches per size")
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument(
        "--budget",
        type=float,
        default=20.0,
        help="seconds per engine per size for one pass; a slower engine decides only the "
        "first calls that fit (shown in the table)",
    )
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    result = run(args)
    print(json.dumps(result, indent=2) if args.json else markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
