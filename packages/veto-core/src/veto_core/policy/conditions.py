"""Compile an `if` condition tree into closures over an ``EvalContext``.

Closures return a bool or raise ``EvalError``; composite nodes are three-valued
(DESIGN.md 2.1): ``any`` is true if a branch is true even when another errs,
``all`` is false if a branch is false, ``not`` of an error is an error.
"""

from __future__ import annotations

import contextvars
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import Problem, did_you_mean, format_path
from .operators import (
    BUILTIN_OPERATORS,
    NULL_ACCEPTING_OPERATORS,
    EvalError,
    OperandError,
    Operator,
    Predicate,
    check_size,
)

if TYPE_CHECKING:
    from ..model import ToolCall

__all__ = [
    "NO_RUN_ID",
    "TAINTED_BY",
    "CompiledCondition",
    "ConditionCompiler",
    "EvalContext",
    "Leaf",
    "RunLookup",
]

Loc = tuple[str | int, ...]
Fn = Callable[["EvalContext"], bool]

ROOTS = ("args", "context", "principal", "tool", "env", "tenant", "now", "item", "run")
RUN_FIELDS = ("labels", "calls")
#: The flow operator (DESIGN.md 2.7): it reads the run, not only the value.
TAINTED_BY = "tainted_by"
DEFAULT_MIN_LENGTH = 4
NO_RUN_ID = "the call has no run_id, so its run (run.*, tainted_by) cannot be read"
#: ``(call, tenant) -> RunState`` for the call's run; raises EvalError when it cannot.
RunLookup = Callable[["ToolCall", "str | None"], Any]
#: The run a `tainted_by` leaf's value chain compares against (set by the leaf).
_TAINT_RUN: contextvars.ContextVar[Any] = contextvars.ContextVar("veto_taint_run")
PRINCIPAL_FIELDS = ("agent", "roles", "tenant", "user", "session")
#: Memoized leaf outcomes: strings up to this length, this many per leaf.
MEMO_CHARS = 256
MEMO_ENTRIES = 1024
_BIG = 1 << 63  # ints memoized (exact type int only: 1, 1.0 and True differ in messages)
# Our own path grammar (linear, no nested repetition): the stdlib engine, whose calls
# cost a tenth of the RE2 binding's on these short strings (a load parses every path).
_PATH_SEGMENT = re.compile(r"\.([^.\[\]]+)|\[(\*|all|[0-9]+)\]")


#: Operators people write from other languages, and the name Veto uses for each.
_SYMBOLS = {
    "<": "less_than",
    "<=": "less_or_equal",
    ">": "greater_than",
    ">=": "greater_or_equal",
    "=": "equals",
    "==": "equals",
    "!=": "not_equals",
    "eq": "equals",
    "ne": "not_equals",
    "lt": "less_than",
    "le": "less_or_equal",
    "lte": "less_or_equal",
    "gt": "greater_than",
    "ge": "greater_or_equal",
    "gte": "greater_or_equal",
}


def read_run(call: ToolCall, tenant: str | None, run_fn: RunLookup | None) -> Any:
    """The call's `RunState`; EvalError when the call has no run_id or its run cannot
    be read (fail closed: DESIGN.md 2.7). `EvalContext.run` and compiled deciders."""
    run_id = call.run_id
    if not isinstance(run_id, str) or not run_id:
        raise EvalError(NO_RUN_ID)
    if run_fn is None:
        raise EvalError("no run store is available to this decision, so run state cannot be read")
    return run_fn(call, tenant)


class EvalContext:
    """What a condition sees for one call. Expensive parts (roles, clock) are lazy.

    Built once per decision on the hot path, so it sets as few slots as it can:
    ``_roles`` and ``item`` stay unset until needed.
    """

    __slots__ = ("_roles", "_run", "call", "env", "item", "services", "tenant")
    _roles: tuple[str, ...]
    item: Any

    def __init__(
        self,
        call: ToolCall,
        env: str | None,
        tenant: str | None,
        roles_fn: Callable[[tuple[str, ...]], frozenset[str]],
        now_fn: Callable[[], datetime],
        run_fn: RunLookup | None = None,
    ) -> None:
        self.call = call
        self.env = env
        self.tenant = tenant
        self.services = (roles_fn, now_fn, run_fn)
        self._run: Any = None

    @property
    def run(self) -> Any:
        """The call's `RunState` (read once per decision); EvalError when the call has
        no run_id or its run cannot be read (fail closed: DESIGN.md 2.7)."""
        if self._run is not None:
            return self._run
        self._run = read_run(self.call, self.tenant, self.services[2])
        return self._run

    @property
    def roles(self) -> tuple[str, ...]:
        try:
            return self._roles
        except AttributeError:
            self._roles = tuple(sorted(self.services[0](self.call.principal.roles)))
            return self._roles

    def now_fn(self) -> datetime:
        return self.services[1]()

    def with_item(self, item: Any) -> EvalContext:
        child = EvalContext(self.call, self.env, self.tenant, *self.services)
        child.item = item
        child._run = self._run
        return child


class _Missing(Exception):
    pass


_MISSING = _Missing()


def _root_getter(root: str, sub: str | None) -> Callable[[EvalContext], Any]:
    """Returns a getter; raises _Missing for an absent value."""
    if root == "args":
        return lambda ctx: ctx.call.args
    if root == "context":
        return lambda ctx: ctx.call.context
    if root == "item":
        return _item
    if root == "run":
        return _run_fields
    if root == "tool":
        return _tool_name
    if root == "env":
        return _env
    if root == "tenant":
        return _tenant
    if root == "now":

        def now(ctx: EvalContext) -> Any:
            return ctx.call.now if ctx.call.now is not None else ctx.now_fn()

        return now
    if root == "principal":
        if sub == "roles":
            return lambda ctx: ctx.roles
        if sub == "tenant":
            return _tenant  # the call's effective tenant
        assert sub is not None

        def principal_field(ctx: EvalContext) -> Any:
            value = getattr(ctx.call.principal, sub)
            if value is None:
                raise _MISSING
            return value

        return principal_field
    raise AssertionError(root)


def _item(ctx: EvalContext) -> Any:
    try:
        return ctx.item
    except AttributeError:  # outside a quantifier (`veto explain` shows leaves on their own)
        raise _MISSING from None


def _run_fields(ctx: EvalContext) -> Any:
    return ctx.run.fields


def _tool_name(ctx: EvalContext) -> Any:
    """`tool.name` is the canonical name (NFC), as tool patterns see it (DESIGN.md 2.3)."""
    tool = ctx.call.tool
    if isinstance(tool, str) and not tool.isascii():
        return unicodedata.normalize("NFC", tool)
    return tool


def _env(ctx: EvalContext) -> Any:
    if ctx.env is None:
        raise _MISSING
    return ctx.env


def _tenant(ctx: EvalContext) -> Any:
    if ctx.tenant is None:
        raise _MISSING
    return ctx.tenant


@dataclass(frozen=True, kw_only=True, slots=True)
class Leaf:
    """One `{field, operator}` leaf, kept for `veto explain` traces."""

    loc: Loc
    field: str
    operator: str
    operand: Any
    fn: Fn
    value: Callable[[EvalContext], Any]
    #: tainted_by only: (labels, min_length)
    taint: tuple[frozenset[str], int] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CompiledCondition:
    fn: Fn
    leaves: tuple[Leaf, ...]
    fields: tuple[str, ...]


class ConditionCompiler:
    """Checks and compiles conditions; problems are collected with their source location."""

    def __init__(
        self,
        *,
        operators: Mapping[str, Operator],
        lists: Mapping[str, Sequence[Any]],
        problem: Callable[[Loc, str, bool], Problem],
    ) -> None:
        self.operators = operators
        self.lists = lists
        self._problem = problem
        self.problems: list[Problem] = []
        self.used_lists: set[str] = set()
        #: labels named by `tainted_by` or compared with `run.labels` (for lint)
        self.used_labels: set[str] = set()
        #: a condition compiled so far reads the run (run.* or tainted_by)
        self.uses_run = False
        self._leaves: list[Leaf] = []
        self._fields: list[str] = []

    def fail(self, loc: Loc, message: str, *, key: bool = False) -> Fn:
        self.problems.append(self._problem(loc, message, key))
        return _never

    def compile(self, data: Any, loc: Loc) -> CompiledCondition:
        self._leaves = []
        self._fields = []
        fn = self._node(data, loc, in_item=False)
        return CompiledCondition(fn=fn, leaves=tuple(self._leaves), fields=tuple(self._fields))

    # --- tree -------------------------------------------------------------------------

    def _node(self, data: Any, loc: Loc, *, in_item: bool) -> Fn:
        if not isinstance(data, Mapping) or not data:
            return self.fail(
                loc,
                "expected a condition: {all: [...]}, {any: [...]}, {not: ...}, "
                "{for_all: PATH, if: ...}, {for_any: PATH, if: ...} or {field: PATH, OPERATOR: VALUE}",
            )
        keys = set(data)
        for combinator in ("all", "any"):
            if combinator in keys:
                if keys != {combinator}:
                    extra = sorted(k for k in keys if k != combinator)[0]
                    return self.fail(
                        (*loc, extra),
                        f"unexpected key '{extra}' next to '{combinator}' (wrap them in a list)",
                        key=True,
                    )
                items = data[combinator]
                if not isinstance(items, list) or not items:
                    return self.fail((*loc, combinator), "expected a non-empty list of conditions")
                fns = [
                    self._node(item, (*loc, combinator, i), in_item=in_item)
                    for i, item in enumerate(items)
                ]
                return _all(fns) if combinator == "all" else _any(fns)
        if "not" in keys:
            if keys != {"not"}:
                extra = sorted(k for k in keys if k != "not")[0]
                return self.fail((*loc, extra), f"unexpected key '{extra}' next to 'not'", key=True)
            inner = self._node(data["not"], (*loc, "not"), in_item=in_item)

            def negation(ctx: EvalContext) -> bool:
                return not inner(ctx)

            negation.negates = inner  # type: ignore[attr-defined]  # read by compiled deciders
            return negation
        for quantifier in ("for_all", "for_any"):
            if quantifier in keys:
                return self._quantifier(quantifier, data, loc, in_item=in_item)
        if "field" in keys:
            return self._leaf(data, loc, in_item=in_item)
        first = sorted(str(k) for k in keys)[0]
        if first in self.operators:
            return self.fail(loc, f"operator '{first}' needs a 'field' to apply to")
        hint = did_you_mean(first, ["all", "any", "not", "for_all", "for_any", "field"])
        return self.fail((*loc, first), f"unknown condition key '{first}'{hint}", key=True)

    def _quantifier(
        self, quantifier: str, data: Mapping[str, Any], loc: Loc, *, in_item: bool
    ) -> Fn:
        extra = sorted(set(data) - {quantifier, "if"})
        if extra:
            return self.fail(
                (*loc, extra[0]),
                f"unexpected key '{extra[0]}' in {quantifier} (expected '{quantifier}' and 'if')",
                key=True,
            )
        if "if" not in data:
            return self.fail(loc, f"{quantifier} needs an 'if' condition over 'item'")
        path = data[quantifier]
        getter = self._path(path, (*loc, quantifier), in_item=in_item, allow_quantifiers=False)
        inner = self._node(data["if"], (*loc, "if"), in_item=True)
        if getter is None:
            return _never
        text = str(path)
        every = quantifier == "for_all"

        def quantified(ctx: EvalContext) -> bool:
            try:
                items = getter(ctx)
            except _Missing:
                raise EvalError(f"{text} is missing") from None
            if not isinstance(items, list | tuple):
                raise EvalError(f"{text} is not a list")
            if every and not items:
                raise EvalError(f"{text} is empty (for_all over an empty list is an error)")
            err: EvalError | None = None
            for item in items:
                try:
                    ok = inner(ctx.with_item(item))
                except EvalError as exc:
                    err = exc
                    continue
                if ok != every:
                    return not every
            if err is not None:
                raise err
            return every

        return quantified

    # --- leaves -----------------------------------------------------------------------

    def _leaf(self, data: Mapping[str, Any], loc: Loc, *, in_item: bool) -> Fn:
        field_path = data["field"]
        ignore_case = data.get("ignore_case", False)
        ops = [k for k in data if k not in ("field", "ignore_case", "min_length")]
        if not isinstance(ignore_case, bool):
            return self.fail((*loc, "ignore_case"), "expected true or false")
        if ops == [TAINTED_BY]:
            return self._taint_leaf(data, loc, in_item=in_item)
        if "min_length" in data:
            return self.fail(
                (*loc, "min_length"), "'min_length' only applies to 'tainted_by'", key=True
            )
        unknown = [k for k in ops if k not in self.operators and k != TAINTED_BY]
        if unknown:
            return self._unknown_operator(loc, str(unknown[0]))
        if not ops:
            return self.fail(
                loc,
                "condition has a field but no operator (expected one of equals, in, matches, greater_than, ...; see `veto schema`)",
            )
        if len(ops) > 1:
            return self.fail(
                (*loc, ops[1]),
                f"a condition takes exactly one operator, got '{ops[0]}' and '{ops[1]}' (combine them with all: [...])",
                key=True,
            )
        op_name = ops[0]
        if ignore_case and op_name in NUMERIC_LIKE:
            return self.fail(
                (*loc, "ignore_case"), f"ignore_case does not apply to '{op_name}'", key=True
            )
        if TAINTED_BY in ops:
            other = ops[1] if ops[0] == TAINTED_BY else ops[0]
            return self.fail(
                (*loc, other),
                f"a condition takes exactly one operator, got '{TAINTED_BY}' and '{other}' (combine them with all: [...])",
                key=True,
            )
        getter = self._path(field_path, (*loc, "field"), in_item=in_item, allow_quantifiers=True)
        if op_name in ("contains", "equals", "in") and field_path == "run.labels":
            operand = data[op_name]
            if isinstance(operand, str):
                self.used_labels.add(operand)
            elif isinstance(operand, list):
                self.used_labels.update(x for x in operand if isinstance(x, str))
        operand_loc = (*loc, op_name)
        predicate = self._operand(
            op_name, data[op_name], operand_loc, ignore_case=ignore_case, in_item=in_item
        )
        if getter is None or predicate is None:
            return _never
        text = str(field_path)
        self._fields.append(text)
        segments = _split(text)
        # Built-in operators are pure functions of (operand, value); plugins may not be.
        pure = self.operators[op_name] is BUILTIN_OPERATORS.get(op_name)
        fn = _build_leaf(text, segments, getter, predicate, op_name, pure=pure)
        if pure and op_name == "contains" and text == "run.labels":
            fn = _labels_leaf(fn, data[op_name], ignore_case=ignore_case)
        self._leaves.append(
            Leaf(
                loc=loc,
                field=text,
                operator=op_name,
                operand=data[op_name],
                fn=fn,
                value=_value_getter(text, segments, getter),
            )
        )
        return fn

    def _taint_leaf(self, data: Mapping[str, Any], loc: Loc, *, in_item: bool) -> Fn:
        """`{field: PATH, tainted_by: LABEL | [LABELS], min_length?: N}` (DESIGN.md 2.7):
        true if a leaf of the value occurs in one observed output carrying a label."""
        operand = data[TAINTED_BY]
        labels = [operand] if isinstance(operand, str) else operand
        if (
            not isinstance(labels, list)
            or not labels
            or not all(isinstance(x, str) and x for x in labels)
        ):
            return self.fail(
                (*loc, TAINTED_BY),
                "expected a label or a non-empty list of labels (labels that `sources` give)",
            )
        min_length = data.get("min_length", DEFAULT_MIN_LENGTH)
        if type(min_length) is not int or min_length < 1:
            return self.fail(
                (*loc, "min_length"), "expected a whole number of characters, at least 1"
            )
        if data.get("ignore_case"):
            return self.fail(
                (*loc, "ignore_case"),
                "tainted_by always compares case-insensitively (NFKC, casefold); drop ignore_case",
                key=True,
            )
        field_path = data["field"]
        getter = self._path(field_path, (*loc, "field"), in_item=in_item, allow_quantifiers=True)
        if getter is None:
            return _never
        self.uses_run = True
        self.used_labels.update(labels)
        text = str(field_path)
        self._fields.append(text)
        segments = _split(text)
        wanted = frozenset(labels)

        def tainted(v: Any) -> bool:
            if v is None:
                raise EvalError(f"{text} is null")
            try:
                if isinstance(v, str):
                    check_size(v)
                return bool(_TAINT_RUN.get().tainted(v, wanted, min_length))
            except EvalError as exc:
                raise EvalError(*(f"{text}: {m}" for m in exc.messages)) from None
            except Exception as exc:  # lost text, no text, a deep structure: fail closed
                raise _taint_error(text, exc) from None

        chain = _step_chain(text, segments, tainted, on_missing=None)
        head = text.split(".", 1)[0]
        if head in ("args", "context") and len(segments) == 1 and segments[0][0] == "key":
            name = segments[0][1]
            from_args = head == "args"
            missing = f"{text} is missing"

            def taint_on_run(call: ToolCall, run: Any) -> bool:
                """`args.x tainted_by ...`, the common leaf, in one frame (compiled
                deciders call it with the call and its run: no EvalContext to build)."""
                try:
                    v = (call.args if from_args else call.context)[name]
                except KeyError:
                    raise EvalError(missing) from None
                except Exception as exc:
                    raise EvalError(f"{text}: {type(exc).__name__}: {exc}") from None
                if type(v) is str and len(v) <= 16384:  # 64 KiB is at least 16 Ki characters
                    try:
                        return bool(run.tainted_text(v, wanted, min_length))
                    except Exception as exc:  # its lost text: unknown (fail closed)
                        raise _taint_error(text, exc) from None
                token = _TAINT_RUN.set(run)
                try:
                    return tainted(v)
                finally:
                    _TAINT_RUN.reset(token)

            def taint_field(ctx: EvalContext) -> bool:
                return taint_on_run(ctx.call, ctx.run)

            taint_field.on_run = taint_on_run  # type: ignore[attr-defined]
            self._leaves.append(
                Leaf(
                    loc=loc, field=text, operator=TAINTED_BY, operand=operand, fn=taint_field,
                    value=_value_getter(text, segments, getter), taint=(wanted, min_length),
                )
            )  # fmt: skip
            return taint_field

        def taint_leaf(ctx: EvalContext) -> bool:
            run = ctx.run
            try:
                root = getter(ctx)
            except _Missing:
                raise EvalError(f"{text} is missing") from None
            token = _TAINT_RUN.set(run)
            try:
                return chain(root)
            finally:
                _TAINT_RUN.reset(token)

        self._leaves.append(
            Leaf(
                loc=loc, field=text, operator=TAINTED_BY, operand=operand, fn=taint_leaf,
                value=_value_getter(text, segments, getter), taint=(wanted, min_length),
            )
        )  # fmt: skip
        return taint_leaf

    def _unknown_operator(self, loc: Loc, bad: str) -> Fn:
        # The message names the leaf by its `field`, the position is the bad key's.
        line_loc = (*loc, bad)
        hint = (
            f" (did you mean '{_SYMBOLS[bad]}'?)"
            if _SYMBOLS.get(bad) in self.operators
            else did_you_mean(bad, self.operators)
        )
        names = ", ".join(sorted({*self.operators, TAINTED_BY}))
        problem = self._problem(
            line_loc, f"unknown operator '{bad}'{hint}; the operators are: {names}", True
        )
        self.problems.append(
            Problem(
                file=problem.file,
                line=problem.line,
                column=problem.column,
                path=format_path((*loc, "field")),
                message=problem.message,
            )
        )
        return _never

    def _operand(
        self, op_name: str, operand: Any, loc: Loc, *, ignore_case: bool, in_item: bool
    ) -> Callable[[EvalContext], Predicate] | None:
        """Returns a function ctx -> predicate (constant unless the operand is a field)."""
        compile_op = self.operators[op_name]
        if op_name == "exists" and not isinstance(operand, bool):
            # `exists` is decided by the leaf itself from a constant; a {field:}/{list:}
            # operand has no meaning here (and must not reach the leaf builder).
            self.fail(loc, "expected true or false")
            return None
        if isinstance(operand, Mapping) and set(operand) == {"list"}:
            name = operand["list"]
            if not isinstance(name, str) or name not in self.lists:
                self.fail(
                    (*loc, "list"),
                    f"unknown list '{name}'{did_you_mean(str(name), self.lists)}"
                    + ("" if self.lists else " (the policy defines no lists)"),
                )
                return None
            self.used_lists.add(name)
            operand = list(self.lists[name])
        elif isinstance(operand, Mapping) and set(operand) == {"field"}:
            getter = self._path(
                operand["field"], (*loc, "field"), in_item=in_item, allow_quantifiers=False
            )
            if getter is None:
                return None
            other = str(operand["field"])

            def dynamic(ctx: EvalContext) -> Predicate:
                try:
                    # `getter` walks the whole path (`context.limit`, not just `context`).
                    value = getter(ctx)
                except _Missing:
                    raise EvalError(f"{other} is missing") from None
                if isinstance(value, str):
                    try:
                        check_size(value)
                    except EvalError as exc:
                        raise EvalError(f"{other}: {exc}") from None
                try:
                    return compile_op(value, ignore_case=ignore_case)
                except OperandError as exc:
                    raise EvalError(f"{other}: {exc}") from None
                except Exception as exc:  # a plugin operator that crashed: fail closed
                    raise EvalError(
                        f"{other}: operator '{op_name}' rejected its operand: {exc}"
                    ) from None

            return dynamic
        try:
            predicate = compile_op(operand, ignore_case=ignore_case)
        except OperandError as exc:
            self.fail(loc, str(exc))
            return None
        except Exception as exc:  # a plugin operator that crashes on its operand
            self.fail(loc, f"operator '{op_name}' rejected its operand: {exc}")
            return None
        return lambda ctx: predicate

    def path_getter(self, path: Any, loc: Loc) -> Callable[[EvalContext], Any] | None:
        """A checked getter for a plain field path (no [*]/[all]) outside conditions,
        e.g. a limit's `per` and `sum`; it raises EvalError when the value is missing."""
        getter = self._path(path, loc, in_item=False, allow_quantifiers=False)
        if getter is None:
            return None
        text = str(path)

        def value(ctx: EvalContext) -> Any:
            try:
                return getter(ctx)
            except _Missing:
                raise EvalError(f"{text} is missing") from None

        return value

    def _path(
        self, path: Any, loc: Loc, *, in_item: bool, allow_quantifiers: bool
    ) -> Callable[[EvalContext], Any] | None:
        if not isinstance(path, str) or not path:
            self.fail(loc, "expected a field path like 'args.amount'")
            return None
        head, _, rest = path.partition(".")
        bracket = head.find("[")
        if bracket != -1:
            head, rest = head[:bracket], path[bracket:]
        else:
            rest = "." + rest if rest else ""
        if head not in ROOTS:
            self.fail(
                loc,
                f"unknown field root '{head}' in '{path}' (expected one of {', '.join(ROOTS)}){did_you_mean(head, ROOTS)}",
            )
            return None
        if head == "item" and not in_item:
            self.fail(loc, f"'{path}': 'item' is only defined inside for_all / for_any")
            return None
        if head == "run":
            field = rest[1:].split(".", 1)[0].split("[", 1)[0] if rest.startswith(".") else ""
            if field not in RUN_FIELDS:
                self.fail(
                    loc,
                    f"'{path}': expected run.labels or run.calls{did_you_mean(field, RUN_FIELDS)}",
                )
                return None
            self.uses_run = True
        pos = 0
        segs: list[str] = []
        while pos < len(rest):
            m = _PATH_SEGMENT.match(rest, pos)
            if m is None:
                self.fail(
                    loc,
                    f"invalid field path '{path}' at '{rest[pos:]}' (expected .name, [*], [all] or [N])",
                )
                return None
            segs.append(m.group(0))
            pos = m.end()
        sub: str | None = None
        if head == "principal":
            if not segs or not segs[0].startswith("."):
                self.fail(loc, f"'{path}': expected principal.{{{', '.join(PRINCIPAL_FIELDS)}}}")
                return None
            sub = segs[0][1:]
            if sub not in PRINCIPAL_FIELDS:
                self.fail(
                    loc,
                    f"unknown principal field '{sub}' (expected one of {', '.join(PRINCIPAL_FIELDS)}){did_you_mean(sub, PRINCIPAL_FIELDS)}",
                )
                return None
            if sub != "roles" and len(segs) > 1:
                self.fail(loc, f"'{path}': principal.{sub} is a string and has no sub-fields")
                return None
        if head == "tool" and segs != [".name"]:
            self.fail(loc, f"'{path}': the only tool field is tool.name")
            return None
        if head in ("env", "tenant", "now") and segs:
            self.fail(loc, f"'{path}': {head} has no sub-fields")
            return None
        if head in ("args", "context") and not segs and not in_item:
            self.fail(loc, f"'{path}': name a field, e.g. {head}.name")
            return None
        if not allow_quantifiers:
            if any(s in ("[*]", "[all]") for s in segs):
                self.fail(loc, f"'{path}': [*] and [all] are not allowed here")
                return None
            return _walking_getter(_root_getter(head, sub), _split(path))
        return _root_getter(head, sub)


def _walking_getter(
    root: Callable[[EvalContext], Any], segments: list[tuple[str, str]]
) -> Callable[[EvalContext], Any]:
    """The value at a path without [*]/[all]; raises _Missing when any step is absent."""
    if not segments:
        return root

    def walk(ctx: EvalContext) -> Any:
        v = root(ctx)
        for kind, name in segments:
            if kind == "key":
                if not isinstance(v, Mapping) or name not in v:
                    raise _MISSING
                v = v[name]
            else:
                if not isinstance(v, list | tuple) or int(name) >= len(v):
                    raise _MISSING
                v = v[int(name)]
        return v

    return walk


NUMERIC_LIKE = frozenset(
    {"greater_than", "greater_or_equal", "less_than", "less_or_equal", "between",
     "length_greater_than", "length_less_than", "exists", "time_between", "weekday_in"}
)  # fmt: skip


def _never(ctx: EvalContext) -> bool:
    raise EvalError("condition failed to compile")


def _all(fns: list[Fn]) -> Fn:
    if len(fns) == 1:
        return fns[0]

    def all_of(ctx: EvalContext) -> bool:
        err: EvalError | None = None
        for fn in fns:
            try:
                if not fn(ctx):
                    return False
            except EvalError as exc:
                err = exc if err is None else EvalError(*err.messages, *exc.messages)
        if err is not None:
            raise err
        return True

    all_of.parts = tuple(fns)  # type: ignore[attr-defined]  # read by compiled deciders
    return all_of


def _any(fns: list[Fn]) -> Fn:
    if len(fns) == 1:
        return fns[0]

    def any_of(ctx: EvalContext) -> bool:
        err: EvalError | None = None
        for fn in fns:
            try:
                if fn(ctx):
                    return True
            except EvalError as exc:
                err = exc if err is None else EvalError(*err.messages, *exc.messages)
        if err is not None:
            raise err
        return False

    any_of.parts = tuple(fns)  # type: ignore[attr-defined]
    return any_of


def _split(path: str) -> list[tuple[str, str]]:
    """'args.items[*].sku' -> [('key','items'), ('any',''), ('key','sku')] after the root.

    `principal.x` and `tool.name` are resolved by the root getter, so they add no segments.
    """
    head = path.split(".", 1)[0].split("[", 1)[0]
    rest = path[len(head) :]
    out: list[tuple[str, str]] = []
    for m in _PATH_SEGMENT.finditer(rest):
        name, index = m.group(1), m.group(2)
        if name is not None:
            out.append(("key", name))
        elif index == "*":
            out.append(("any", ""))
        elif index == "all":
            out.append(("every", ""))
        else:
            out.append(("index", index))
    if head in ("principal", "tool"):
        out = out[1:]
    return out


def _step_chain(
    path: str,
    segments: list[tuple[str, str]],
    final: Callable[[Any], bool],
    on_missing: bool | None,
) -> Callable[[Any], bool]:
    """Builds value -> bool walking the segments; missing values raise EvalError unless
    ``on_missing`` gives the answer (for `exists`)."""
    fn = final
    prefix_texts: list[str] = []
    text = path.split(".", 1)[0].split("[", 1)[0]
    for kind, name in segments:
        prefix_texts.append(text)
        text += (
            f".{name}"
            if kind == "key"
            else (f"[{name}]" if kind == "index" else ("[*]" if kind == "any" else "[all]"))
        )
    for (kind, name), here in zip(reversed(segments), reversed(prefix_texts), strict=True):
        fn = _make_step(kind, name, here, fn, on_missing)
    return fn


def _make_step(
    kind: str, name: str, parent: str, nxt: Callable[[Any], bool], on_missing: bool | None
) -> Callable[[Any], bool]:
    if kind == "key":
        full = f"{parent}.{name}"

        def key_step(v: Any) -> bool:
            if type(v) is dict or isinstance(v, Mapping):
                try:
                    x = v[name]
                except KeyError:
                    if on_missing is not None:
                        return on_missing
                    raise EvalError(f"{full} is missing") from None
                return nxt(x)
            if v is None:
                if on_missing is not None:
                    return on_missing
                raise EvalError(f"{parent} is null")
            raise EvalError(
                f"{parent} is not an object (it is {type(v).__name__}), so {full} does not exist"
            )

        return key_step
    if kind == "index":
        idx = int(name)

        def index_step(v: Any) -> bool:
            if not isinstance(v, list | tuple):
                raise EvalError(f"{parent} is not a list")
            if idx >= len(v):
                if on_missing is not None:
                    return on_missing
                raise EvalError(f"{parent}[{idx}] is missing (the list has {len(v)} items)")
            return nxt(v[idx])

        return index_step
    every = kind == "every"

    def list_step(v: Any) -> bool:
        if not isinstance(v, list | tuple):
            raise EvalError(f"{parent} is not a list")
        if every and not v:
            raise EvalError(f"{parent}[all] over an empty list is an error")
        err: EvalError | None = None
        for x in v:
            try:
                ok = nxt(x)
            except EvalError as exc:
                err = exc
                continue
            if ok != every:
                return not every
        if err is not None:
            raise err
        return every

    return list_step


def _build_leaf(
    text: str,
    segments: list[tuple[str, str]],
    getter: Callable[[EvalContext], Any],
    predicate_for: Callable[[EvalContext], Predicate],
    op_name: str,
    *,
    pure: bool = False,
) -> Fn:
    is_exists = op_name == "exists"
    accepts_null = op_name in NULL_ACCEPTING_OPERATORS

    def guarded(pred: Predicate) -> Callable[[Any], bool]:
        # Operator errors don't know the field; name it here (no cost unless raised).
        def named(v: Any) -> bool:
            if v is None and not accepts_null:
                raise EvalError(f"{text} is null")
            try:
                if isinstance(v, str):
                    check_size(v)
                return pred(v)
            except EvalError as exc:
                raise EvalError(*(f"{text}: {m}" for m in exc.messages)) from None

        return named

    if is_exists:
        want = predicate_for(None)(None)  # type: ignore[arg-type]  # constant operand
        chain = _step_chain(text, segments, lambda v: want, on_missing=not want)

        def exists_leaf(ctx: EvalContext) -> bool:
            try:
                root = getter(ctx)
            except _Missing:
                return not want
            return chain(root)

        return exists_leaf

    dynamic = predicate_for.__name__ == "dynamic"
    head = text.split(".", 1)[0]
    if (
        not dynamic
        and head in ("args", "context")
        and len(segments) == 1
        and segments[0][0] == "key"
    ):
        return _fast_leaf(
            text,
            head,
            segments[0][1],
            predicate_for(None),  # type: ignore[arg-type]
            accepts_null,
            _wrap(text, op_name),
            pure,
        )
    if not dynamic and text in _PRINCIPAL_STRINGS:
        return _fast_leaf(
            text,
            head,
            text.partition(".")[2],
            predicate_for(None),  # type: ignore[arg-type]
            accepts_null,
            _wrap(text, op_name),
            pure,
        )
    wrap_errors = _wrap(text, op_name)
    # A literal operand compiles its chain once; a {field: ...} operand per evaluation.
    static_chain = (
        None
        if dynamic
        else _step_chain(text, segments, guarded(predicate_for(None)), on_missing=None)  # type: ignore[arg-type]
    )

    def leaf(ctx: EvalContext) -> bool:
        chain = static_chain or _step_chain(
            text, segments, guarded(predicate_for(ctx)), on_missing=None
        )
        try:
            return chain(getter(ctx))
        except _Missing:
            raise EvalError(f"{text} is missing") from None
        except EvalError:
            raise
        except Exception as exc:  # a plugin predicate that crashed: fail closed
            raise wrap_errors(exc) from None

    return leaf


#: Principal fields read as they are (principal.tenant is the call's effective tenant,
#: principal.roles the inherited ones: those take the general path).
_PRINCIPAL_STRINGS = frozenset({"principal.agent", "principal.user", "principal.session"})


def _labels_leaf(general: Fn, operand: Any, *, ignore_case: bool) -> Fn:
    """`run.labels contains LABEL | [LABELS]` (the flow rule "after a secret was read"):
    a set test on the run's labels (every label is a string, so the built-in
    `contains`, ``values_equal`` item by item, is string equality, casefolded with
    ``ignore_case``). Other operands (numbers, ...) keep the ``general`` leaf, which
    the fast one is tested against (tests/core/test_run_labels_leaf.py)."""
    needles = [operand] if isinstance(operand, str) else operand
    if not isinstance(needles, list) or not needles or not all(type(n) is str for n in needles):
        return general
    if ignore_case:
        folded = frozenset(n.casefold() for n in needles)

        def on_run_folded(call: ToolCall, run: Any) -> bool:
            return any(label.casefold() in folded for label in run.labels)

        def labels_contain_folded(ctx: EvalContext) -> bool:
            return on_run_folded(ctx.call, ctx.run)

        labels_contain_folded.on_run = on_run_folded  # type: ignore[attr-defined]
        return labels_contain_folded
    wanted = frozenset(needles)

    def on_run(call: ToolCall, run: Any) -> bool:
        return not wanted.isdisjoint(run.label_set)

    def labels_contain(ctx: EvalContext) -> bool:
        return on_run(ctx.call, ctx.run)

    # Compiled deciders call ``on_run`` with the call and its run (read once per call).
    labels_contain.on_run = on_run  # type: ignore[attr-defined]
    return labels_contain


def _taint_error(field: str, exc: Exception) -> EvalError:
    """The error a `tainted_by` leaf reports when its run could not answer."""
    from ..runs.state import TaintUnknown  # runs imports policy: not at module load

    if isinstance(exc, TaintUnknown):
        return EvalError(f"{field}: {exc}")
    return EvalError(f"{field}: tainted_by failed: {type(exc).__name__}: {exc}")


def _fast_leaf(
    text: str,
    root: str,
    name: str,
    pred: Predicate,
    accepts_null: bool,
    wrap_errors: Callable[[Exception], EvalError],
    pure: bool,
) -> Fn:
    """`args.x OP value` / `context.x OP value` / `principal.user OP value`, the most
    common leaves, in one frame.

    With a built-in operator (``pure``) the result is a function of the value alone,
    so the outcome for a short string (the costly case: numeric strings, addresses,
    regexes) is memoized, in a bounded table.
    """
    memo: dict[str | int, bool | EvalError] | None = {} if pure else None
    memo_float: dict[float, bool | EvalError] = {}
    missing = f"{text} is missing"
    null = f"{text} is null"

    from_args = root == "args"
    from_principal = root == "principal"

    def on_call(call: ToolCall) -> bool:
        if from_principal:
            v = getattr(call.principal, name)
            if v is None:
                raise EvalError(missing)
        else:
            try:
                v = (call.args if from_args else call.context)[name]
            except KeyError:
                raise EvalError(missing) from None
            except Exception as exc:
                raise wrap_errors(exc) from None
        t = type(v)
        if memo is None:
            return evaluate(v)
        table: dict[Any, bool | EvalError]
        if (t is str and len(v) <= MEMO_CHARS) or (t is int and -_BIG < v < _BIG):
            table = memo
        elif t is float:
            table = memo_float  # apart: 1 and 1.0 are one dict key, not one value
        else:
            return evaluate(v)
        hit = table.get(v)
        if hit is None:
            try:
                hit = bool(evaluate(v))
            except EvalError as exc:
                hit = exc
            if len(table) >= MEMO_ENTRIES:
                table.clear()
            table[v] = hit
        if hit is True or hit is False:
            return hit
        raise EvalError(*hit.messages)  # a fresh exception: a cached one would grow its traceback

    def evaluate(v: Any) -> bool:
        if v is None and not accepts_null:
            raise EvalError(null)
        try:
            if isinstance(v, str) and len(v) > 16384:  # 64 KiB is at least 16 Ki characters
                check_size(v)
            return pred(v)
        except EvalError as exc:
            raise EvalError(*(f"{text}: {m}" for m in exc.messages)) from None
        except Exception as exc:  # a plugin predicate that crashed: fail closed
            raise wrap_errors(exc) from None

    def fast_leaf(ctx: EvalContext) -> bool:
        return on_call(ctx.call)

    # Compiled deciders call the leaf with the call itself (no EvalContext to build),
    # and read its memo first (veto_core.decision.compiled).
    fast_leaf.on_call = on_call  # type: ignore[attr-defined]
    fast_leaf.memo = memo  # type: ignore[attr-defined]
    fast_leaf.memo_float = memo_float  # type: ignore[attr-defined]
    fast_leaf.source = (root, name)  # type: ignore[attr-defined]
    return fast_leaf


def _wrap(text: str, op_name: str) -> Callable[[Exception], EvalError]:
    def wrap(exc: Exception) -> EvalError:
        return EvalError(f"{text}: operator '{op_name}' failed: {type(exc).__name__}: {exc}")

    return wrap


def _value_getter(
    text: str, segments: list[tuple[str, str]], getter: Callable[[EvalContext], Any]
) -> Callable[[EvalContext], Any]:
    """For explain: the value a leaf looks at (lists for [*]/[all]); raises EvalError."""

    def value(ctx: EvalContext) -> Any:
        try:
            v = getter(ctx)
        except _Missing:
            raise EvalError(f"{text} is missing") from None
        for kind, name in segments:
            if kind == "key":
                if not isinstance(v, Mapping) or name not in v:
                    raise EvalError(f"{text} is missing")
                v = v[name]
            elif kind == "index":
                if not isinstance(v, list | tuple) or int(name) >= len(v):
                    raise EvalError(f"{text} is missing")
                v = v[int(name)]
            else:
                return v
        return v

    return value
