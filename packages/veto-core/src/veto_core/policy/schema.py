"""The policy file format: pydantic models, used only at the edge (loading, JSON Schema).

Conditions (`if`) are kept as plain data here and checked by the condition
compiler, which gives precise, path-addressed messages; the JSON Schema for
them is written out below so editors can still complete and check them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from .durations import DEFAULT_RUN_TTL, parse_duration

__all__ = [
    "CONDITION_OPERATORS",
    "ApprovalModel",
    "AuditModel",
    "LimitModel",
    "PolicyModel",
    "RoleModel",
    "RuleModel",
    "SourceModel",
    "WhenModel",
    "parse_duration",
]

#: Operators built into the condition language (plugins may add more).
CONDITION_OPERATORS: tuple[str, ...] = (
    "equals",
    "not_equals",
    "in",
    "not_in",
    "contains",
    "starts_with",
    "ends_with",
    "matches",
    "glob",
    "greater_than",
    "greater_or_equal",
    "less_than",
    "less_or_equal",
    "between",
    "length_greater_than",
    "length_less_than",
    "exists",
    "path_within",
    "url_host_in",
    "email_domain_in",
    "ip_in_cidr",
    "time_between",
    "weekday_in",
    "tainted_by",
)


_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"


def _condition_json_schema() -> dict[str, Any]:
    # Imported here: only `veto schema` needs the operator docs, not validating a file.
    from .operator_docs import OPERATOR_DOCS

    operand: dict[str, Any] = {
        "description": "A literal, {list: NAME} or {field: PATH}",
    }
    leaf_props: dict[str, Any] = {
        "field": {"type": "string", "description": "args.x, principal.user, context.k, ..."},
        "ignore_case": {"type": "boolean"},
        "min_length": {
            "type": "integer",
            "minimum": 1,
            "description": "tainted_by only: shorter values are never tainted (default 4)",
        },
    }
    for op in CONDITION_OPERATORS:
        # The same text the docs' operator reference is generated from.
        leaf_props[op] = {
            "description": f"{OPERATOR_DOCS[op].summary} Operand: {operand['description']}."
        }
    leaf_props["tainted_by"] = {
        "description": f"{OPERATOR_DOCS['tainted_by'].summary} Operand: a label or labels of `sources`.",
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}, "minItems": 1},
        ],
    }
    ref = {"$ref": "#/$defs/Condition"}
    return {
        "title": "Condition",
        "oneOf": [
            {
                "type": "object",
                "properties": {"all": {"type": "array", "items": ref}},
                "required": ["all"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {"any": {"type": "array", "items": ref}},
                "required": ["any"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {"not": ref},
                "required": ["not"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {"for_all": {"type": "string"}, "if": ref},
                "required": ["for_all", "if"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {"for_any": {"type": "string"}, "if": ref},
                "required": ["for_any", "if"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": leaf_props,
                "required": ["field"],
                "minProperties": 2,
                "additionalProperties": True,
            },
        ],
    }


# pydantic cannot emit a $ref to a definition it does not own; mark the spot and
# swap the marker for the reference in policy_json_schema().
_CONDITION_MARKER = "x-veto-condition"
ConditionData = Annotated[Any, WithJsonSchema({_CONDITION_MARKER: True})]

StrList = Annotated[list[str], Field(min_length=1)]


def _one_or_many(value: Any) -> Any:
    # `env: prod` reads as naturally as `env: [prod]`.
    return [value] if isinstance(value, str) else value


# Empty defaults made by plain functions, not by `list` and `dict`: pydantic reads the
# signature of every default factory, and a builtin's signature is parsed from its text
# by `tokenize`, whose first use compiles a large regular expression (~5 ms of every
# first `veto check`, before the policy cache has the file; bench_startup.py).
def _no_items() -> list[Any]:
    return []


def _no_entries() -> dict[Any, Any]:
    return {}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WhenModel(_Strict):
    """Scopes a rule to environments, tenants, roles and agents (all given must match)."""

    env: StrList | None = None
    tenant: StrList | None = None
    role: StrList | None = None
    agent: StrList | None = None

    _one = field_validator("env", "tenant", "role", "agent", mode="before")(
        classmethod(lambda cls, v: _one_or_many(v))
    )


class ApprovalModel(_Strict):
    approvers: list[str] = Field(
        default_factory=_no_items,
        description='"role:finance", user ids or emails; required: an approval that names '
        "nobody is a policy error (never 'anyone')",
    )
    quorum: int = Field(default=1, ge=1, description="distinct approvers needed")
    timeout: str | float = Field(default="1h", description="e.g. 30s, 15m, 2h, 1d")
    channels: list[str] = Field(default_factory=_no_items)

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v: str | float) -> str | float:
        parse_duration(v)
        return v


class RuleModel(_Strict):
    id: Annotated[str, Field(pattern=_ID, description="unique, stable rule id")]
    effect: Literal["allow", "deny", "require_approval"]
    tools: StrList = Field(description='exact tool names or anchored globs; ["*"] for all')
    when: WhenModel | None = None
    if_: ConditionData | None = Field(default=None, alias="if")
    otherwise: Literal["deny", "require_approval"] | None = None
    approval: ApprovalModel | None = None
    reason: str | None = None
    description: str | None = None
    mode: Literal["enforce", "shadow"] = Field(
        default="enforce",
        description="shadow: decided and recorded, but never changes what happens to the call",
    )

    _one = field_validator("tools", mode="before")(classmethod(lambda cls, v: _one_or_many(v)))


class LimitModel(_Strict):
    """A stateful limit (DESIGN.md 2.5): a count or a sum over a sliding window, per key."""

    id: Annotated[str, Field(pattern=_ID, description="unique among rules and limits")]
    tools: StrList = Field(description="exact tool names or anchored globs")
    per: list[str] = Field(
        default_factory=_no_items,
        description="counter key: field paths such as tenant, principal.user, args.account",
    )
    window: str | float = Field(description="sliding window, e.g. 1h, 24h, 7d")
    sum: str | None = Field(default=None, description="field path to add up, e.g. args.amount")
    count: bool | None = Field(default=None, description="count calls instead of summing a field")
    max: float = Field(ge=0, allow_inf_nan=False, description="the most the window may hold")
    effect: Literal["deny", "require_approval"] = "deny"
    approval: ApprovalModel | None = None
    reason: str | None = None

    _one = field_validator("tools", mode="before")(classmethod(lambda cls, v: _one_or_many(v)))

    @field_validator("window")
    @classmethod
    def _window(cls, v: str | float) -> str | float:
        parse_duration(v)
        return v

    @model_validator(mode="after")
    def _sum_or_count(self) -> LimitModel:
        if (self.sum is None) == (not self.count):
            raise ValueError("a limit needs exactly one of 'sum: FIELD' or 'count: true'")
        return self


class SourceModel(_Strict):
    """Labels a tool's output gives to the run (DESIGN.md 2.7)."""

    id: Annotated[str, Field(pattern=_ID, description="unique source id")]
    tools: StrList = Field(
        description='exact tool names or anchored globs; pseudo-tools ("@user") only by exact name'
    )
    if_: ConditionData | None = Field(
        default=None, alias="if", description="optional condition on the call that produced it"
    )
    labels: Annotated[list[Annotated[str, Field(pattern=_ID)]], Field(min_length=1)]

    _one = field_validator("tools", "labels", mode="before")(
        classmethod(lambda cls, v: _one_or_many(v))
    )


class RoleModel(_Strict):
    inherits: list[str] = Field(default_factory=_no_items)
    description: str | None = None


class AuditModel(_Strict):
    mode: Literal["required", "best_effort"] = Field(
        default="required",
        description="required: a call is denied when its audit record cannot be written",
    )
    retention_days: int | None = Field(default=None, ge=1)


ListValue = str | int | float | bool


class PolicyModel(_Strict):
    version: Literal[1]
    name: Annotated[str, Field(min_length=1)]
    description: str | None = None
    default: Literal["allow", "deny", "require_approval"] = "deny"
    mode: Literal["enforce", "shadow"] = Field(
        default="enforce",
        description="shadow: every decision is recorded but every call goes through (roll-out)",
    )
    extends: list[str] = Field(default_factory=_no_items)
    lists: dict[str, list[ListValue]] = Field(default_factory=_no_entries)
    roles: dict[str, RoleModel] = Field(default_factory=_no_entries)
    rules: list[RuleModel] = Field(default_factory=_no_items)
    limits: list[LimitModel] = Field(default_factory=_no_items)
    sources: list[SourceModel] = Field(
        default_factory=_no_items, description="labels that tools' outputs give to the run (2.7)"
    )
    run_ttl: str | float | None = Field(
        default=None,
        description=f"how long a run's state is kept after its last event (default {DEFAULT_RUN_TTL})",
    )
    redact: list[str] = Field(
        default_factory=_no_items,
        description='argument paths masked before storage: "args.password"',
    )
    audit: AuditModel = Field(default_factory=AuditModel)
    tests: str | None = None

    _one = field_validator("extends", mode="before")(classmethod(lambda cls, v: _one_or_many(v)))

    @field_validator("run_ttl")
    @classmethod
    def _run_ttl(cls, v: str | float | None) -> str | float | None:
        if v is not None:
            parse_duration(v)
        return v


def policy_json_schema() -> dict[str, Any]:
    schema: dict[str, Any] = _swap_condition_markers(PolicyModel.model_json_schema(by_alias=True))
    schema.setdefault("$defs", {})["Condition"] = _condition_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Veto policy"
    return schema


def _swap_condition_markers(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get(_CONDITION_MARKER):
            return {"$ref": "#/$defs/Condition"}
        return {k: _swap_condition_markers(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_swap_condition_markers(v) for v in node]
    return node
