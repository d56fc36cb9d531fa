"""Every load problem at once, for `veto lint` (issue 16 item 9).

Loading stops at the first phase that fails (schema, then `extends` merging with its
duplicate ids, then compilation with unknown roles, lists and fields), which is right
for the engine: a policy with any error never loads. An author fixing a file wants
all of them in one run, so `collect_load_problems` loads in *collecting* mode: schema
errors are recorded and each invalid entry is replaced by a harmless stand-in (an
invalid rule or limit by one that matches nothing, an invalid list by an empty one,
an invalid role by an empty role, an invalid setting by its default), so the later
phases can still check everything else. Problems the stand-ins themselves cause are
dropped. The result is only a list of problems: nothing loaded this way is ever used
to decide (fail closed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import PolicyError, Problem

if TYPE_CHECKING:
    from pydantic import ValidationError

    from .schema import PolicyModel
    from .yamlsrc import SourceDoc

__all__ = ["Collector", "collect_load_problems", "defer", "salvage"]


@dataclass
class Collector:
    problems: list[Problem] = field(default_factory=list)
    stand_ins: set[tuple[str, str]] = field(default_factory=set)  # (file, "rules[3]")

    def caused_by_stand_in(self, problem: Problem) -> bool:
        return any(
            problem.file == file and (problem.path == path or problem.path.startswith((path + ".", path + "[")))
            for file, path in self.stand_ins
        )  # fmt: skip


_ACTIVE: ContextVar[Collector | None] = ContextVar("veto_policy_collector", default=None)


@contextmanager
def _collecting() -> Iterator[Collector]:
    collector = Collector()
    token = _ACTIVE.set(collector)
    try:
        yield collector
    finally:
        _ACTIVE.reset(token)


def defer(problems: list[Problem]) -> None:
    """Raise ``problems`` (the normal, all-or-nothing load) or, in collecting mode,
    record them and let the load go on."""
    collector = _ACTIVE.get()
    if collector is None:
        raise PolicyError(problems)
    collector.problems.extend(problems)


_REQUIRED: dict[str, Any] = {"version": 1, "name": "invalid"}


def _stand_in(kind: str, index: int) -> dict[str, Any]:
    name = f"veto-stand-in-{kind}-{index}"
    if kind == "rules":
        return {"id": name, "effect": "deny", "tools": [name]}
    return {"id": name, "tools": [name], "window": "1h", "count": True, "max": 1}


def _list_references(node: Any, path: str, names: set[str]) -> Iterator[str]:
    """Paths of the ``{list: NAME}`` operands under ``node`` that name one of ``names``."""
    if isinstance(node, dict):
        if node.get("list") in names:
            yield path
        for key, value in node.items():
            yield from _list_references(value, f"{path}.{key}", names)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _list_references(value, f"{path}[{i}]", names)


def salvage(doc: SourceDoc, exc: ValidationError, problems: list[Problem]) -> PolicyModel | None:
    """In collecting mode: record ``problems`` and return the policy with every invalid
    entry replaced by a stand-in; None (raise as usual) when not collecting or when
    nothing sensible is left."""
    from pydantic import ValidationError as _ValidationError

    from .schema import PolicyModel

    collector = _ACTIVE.get()
    if collector is None or not isinstance(doc.data, dict):
        return None
    data: dict[str, Any] = dict(doc.data)
    bad_lists: set[str] = set()
    for error in exc.errors():
        loc = error["loc"]
        if not loc:
            return None
        head = str(loc[0])
        inner = loc[1] if len(loc) > 1 else None
        value = data.get(head)
        if head in ("rules", "limits") and isinstance(inner, int) and isinstance(value, list):
            data[head] = [*value[:inner], _stand_in(head, inner), *value[inner + 1 :]]
            collector.stand_ins.add((doc.file, f"{head}[{inner}]"))
        elif head in ("lists", "roles") and isinstance(inner, str) and isinstance(value, dict):
            data[head] = {**value, inner: [] if head == "lists" else {}}
            if head == "lists":
                bad_lists.add(inner)
        elif head in _REQUIRED:
            data[head] = _REQUIRED[head]
        else:
            data.pop(head, None)  # an unknown key, or a setting back to its default
    for i, rule in enumerate(data.get("rules") or ()):
        # An operand naming an invalid (now empty) list: its errors are the list's.
        for where in _list_references(rule, f"rules[{i}]", bad_lists):
            collector.stand_ins.add((doc.file, where))
    try:
        model = PolicyModel.model_validate(data)
    except _ValidationError:
        return None
    collector.problems.extend(problems)
    return model


def collect_load_problems(path: str | Path, tenant: str | None = None) -> list[Problem]:
    """Every problem loading and compiling the policy (file or bundle) would report,
    across all phases; [] when it loads."""
    from .compiler import compile_policy
    from .loader import load_bundle, load_policy_file

    raised: tuple[Problem, ...] = ()
    with _collecting() as collector:
        try:
            loaded = load_bundle(path, tenant) if Path(path).is_dir() else load_policy_file(path)
            compile_policy(loaded)
        except PolicyError as exc:
            raised = exc.problems
    found = [*collector.problems, *(p for p in raised if not collector.caused_by_stand_in(p))]
    return list(PolicyError(list(dict.fromkeys(found))).problems)  # deduplicated, sorted
