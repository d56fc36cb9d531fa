"""Policy tests (`*.tests.yaml`, DESIGN.md 2.6): expectations plus rule coverage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..calls import CallFormatError, call_from_mapping, observation_from_mapping
from ..engine import Veto
from ..model import Decision, Effect, ToolCall
from ..runs.offline import OfflineRuns
from ..runs.tracker import ObservationError
from .errors import PolicyError, Problem
from .loader import validation_problems
from .yamlsrc import read_yaml_file

__all__ = [
    "PolicyTestCase",
    "PolicyTestReport",
    "PolicyTestResult",
    "PolicyTestStep",
    "find_policy_and_tests",
    "load_policy_tests",
    "run_policy_tests",
]


class _CaseModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    call: dict[str, Any]
    expect: Literal["allow", "deny", "require_approval"]
    rule: str | None = None
    steps: list[Any] | None = None


#: The run of a case with ``steps:`` when its calls name none (each case has its own).
DEFAULT_RUN_ID = "test"


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyTestStep:
    """A call (decided; it joins the run when allowed) or an observation of an output
    (``observe``), applied before the case's call, as `veto check --batch` applies lines."""

    call: ToolCall
    observe: bool
    output: Any
    line: int | None


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyTestCase:
    name: str
    call: ToolCall
    expect: Effect
    rule: str | None
    line: int | None
    steps: tuple[PolicyTestStep, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyTestResult:
    case: PolicyTestCase
    decision: Decision
    passed: bool
    message: str


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyTestReport:
    policy_file: str
    tests_file: str
    results: tuple[PolicyTestResult, ...]
    rule_ids: tuple[str, ...]
    uncovered: tuple[str, ...]
    #: sources (2.7) whose labels no test's steps acquired
    source_ids: tuple[str, ...] = ()
    unused_sources: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def coverage(self) -> float:
        if not self.rule_ids:
            return 1.0
        return 1 - len(self.uncovered) / len(self.rule_ids)


def load_policy_tests(path: str | Path) -> tuple[list[PolicyTestCase], str | None]:
    """Returns the cases and the policy path the file names (``policy:``), if any."""
    doc = read_yaml_file(path)
    data = doc.data
    policy_ref: str | None = None
    base: tuple[str | int, ...] = ()
    if isinstance(data, dict):
        extra = sorted(set(data) - {"policy", "tests"})
        if extra:
            raise PolicyError(
                [
                    doc.problem(
                        (extra[0],),
                        f"unknown key '{extra[0]}'; expected 'policy' and 'tests'",
                        key=True,
                    )
                ]
            )
        policy_ref = data.get("policy")
        if policy_ref is not None and not isinstance(policy_ref, str):
            raise PolicyError([doc.problem(("policy",), "expected a path to the policy file")])
        data = data.get("tests")
        base = ("tests",)
    if not isinstance(data, list) or not data:
        raise PolicyError(
            [doc.problem(base, "expected a non-empty list of tests ({name, call, expect, rule?})")]
        )
    cases: list[PolicyTestCase] = []
    problems: list[Problem] = []
    names: set[str] = set()
    for i, raw in enumerate(data):
        loc = (*base, i)
        try:
            model = _CaseModel.model_validate(raw)
        except ValidationError as exc:
            problems.extend(validation_problems(doc, exc, prefix=loc))
            continue
        if model.name in names:
            problems.append(doc.problem((*loc, "name"), f"duplicate test name '{model.name}'"))
        names.add(model.name)
        steps: list[PolicyTestStep] = []
        if model.steps is not None:
            steps, step_problems = _steps(doc, (*loc, "steps"), model.steps)
            problems.extend(step_problems)
        raw_call = _with_run(model.call) if model.steps is not None else model.call
        try:
            call = call_from_mapping(raw_call)
        except CallFormatError as exc:
            problems.append(doc.problem((*loc, "call"), str(exc)))
            continue
        cases.append(
            PolicyTestCase(
                name=model.name,
                call=call,
                expect=Effect(model.expect),
                rule=model.rule,
                line=doc.locate(loc)[0],
                steps=tuple(steps),
            )
        )
    if problems:
        raise PolicyError(problems)
    return cases, policy_ref


def _with_run(data: Any) -> Any:
    """A step's or a stepped case's call without ``run_id`` is in the case's run."""
    if isinstance(data, dict) and data.get("run_id") is None:
        return {**data, "run_id": DEFAULT_RUN_ID}
    return data


def _steps(
    doc: Any, loc: tuple[str | int, ...], raw: list[Any]
) -> tuple[list[PolicyTestStep], list[Problem]]:
    """Parse ``steps:`` (each ``{call: {...}}`` or ``{observe: {call..., output}}``)."""
    steps: list[PolicyTestStep] = []
    problems: list[Problem] = []
    expected = "expected {call: {tool, args, ...}} or {observe: {tool, args, ..., output}}"
    for j, item in enumerate(raw):
        where = (*loc, j)
        if (
            not isinstance(item, dict)
            or len(item) != 1
            or next(iter(item)) not in ("call", "observe")
        ):
            keys = ", ".join(map(str, item)) if isinstance(item, dict) else type(item).__name__
            problems.append(doc.problem(where, f"{expected}; got {keys or 'an empty object'}"))
            continue
        ((kind, body),) = item.items()
        try:
            if kind == "call":
                call, output = call_from_mapping(_with_run(body)), None
            else:
                call, output = observation_from_mapping({"observe": _with_run(body)})
        except CallFormatError as exc:
            problems.append(doc.problem((*where, kind), str(exc)))
            continue
        steps.append(
            PolicyTestStep(
                call=call, observe=kind == "observe", output=output, line=doc.locate(where)[0]
            )
        )
    return steps, problems


def find_policy_and_tests(
    target: str | Path, policy: str | Path | None = None
) -> tuple[Path, Path]:
    """`veto test X`: X is a tests file (policy from --policy, its `policy:` key, or the
    sibling `NAME.yaml` of `NAME.tests.yaml`) or a policy whose `tests:` names its tests."""
    target = Path(target)
    if target.name.endswith((".tests.yaml", ".tests.yml")):
        if policy is not None:
            return Path(policy), target
        _, ref = load_policy_tests(target)
        if ref is not None:
            return target.parent / ref, target
        stem = target.name.rsplit(".tests.", 1)[0]
        for suffix in (".yaml", ".yml"):
            candidate = target.with_name(stem + suffix)
            if candidate.is_file():
                return candidate, target
        raise PolicyError.of_file(
            str(target),
            f"cannot tell which policy these tests are for: add 'policy: ./{stem}.yaml' or pass --policy",
        )
    doc = read_yaml_file(target)
    tests = doc.data.get("tests") if isinstance(doc.data, dict) else None
    if not isinstance(tests, str):
        raise PolicyError(
            [doc.problem((), "this policy has no 'tests:' file; pass the tests file instead")]
        )
    return target, target.parent / tests


def run_policy_tests(
    veto: Veto, cases: list[PolicyTestCase], *, policy_file: str = "", tests_file: str = ""
) -> PolicyTestReport:
    """Decide each case (after its ``steps:``, in a fresh in-memory run per case: ``veto``
    must keep runs in memory, ``Veto(..., run_store=MemoryRunStore())``)."""
    results: list[PolicyTestResult] = []
    exercised: set[str] = set()
    used_sources: set[str] = set()
    known = set(veto.policy.rules_by_id)
    for index, case in enumerate(cases):
        runs = OfflineRuns(veto, namespace=f"{index}\x1f")
        problems: list[str] = []
        for number, step in enumerate(case.steps, start=1):
            where = f"step {number}" + (f" (line {step.line})" if step.line else "")
            if step.observe:
                try:
                    runs.observe(step.call, step.output)
                except ObservationError as exc:
                    problems.append(f"{where}: cannot observe {step.call.tool!r}: {exc}")
            else:
                exercised.update(runs.decide(step.call).rule_ids)
        decision = runs.decide(case.call)
        used_sources.update(runs.source_ids())
        exercised.update(decision.rule_ids)
        if decision.effect is not case.expect:
            problems.append(f"expected {case.expect.value}, got {decision.effect.value}")
        if case.rule is not None:
            if case.rule not in known:
                problems.append(f"rule '{case.rule}' does not exist in the policy")
            elif case.rule not in decision.deciding_rule_ids:
                decided = ", ".join(decision.deciding_rule_ids) or "the default"
                problems.append(f"expected rule '{case.rule}' to decide, but {decided} did")
        if problems and decision.reasons:
            problems.append("reason: " + decision.reason)
        results.append(
            PolicyTestResult(
                case=case, decision=decision, passed=not problems, message="; ".join(problems)
            )
        )
    rule_ids = tuple(r.id for r in veto.policy.rules)
    uncovered = tuple(r for r in rule_ids if r not in exercised)
    source_ids = tuple(s.id for s in veto.policy.sources)
    return PolicyTestReport(
        policy_file=policy_file,
        tests_file=tests_file,
        results=tuple(results),
        rule_ids=rule_ids,
        uncovered=uncovered,
        source_ids=source_ids,
        unused_sources=tuple(s for s in source_ids if s not in used_sources),
    )
