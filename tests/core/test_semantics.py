"""Decision semantics (DESIGN.md 2.1 composite logic, 2.2, 2.3, 2.4 roles, 3 reload)."""

from __future__ import annotations

import hashlib
import json
import threading
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import FIXED_NOW, call, evaluate, make_veto

from veto_core import (
    ApprovalRequirement,
    ApprovalSpec,
    Effect,
    PolicyError,
    Principal,
    ToolCall,
    Veto,
)

ALLOW, DENY, APPROVE = Effect.ALLOW, Effect.DENY, Effect.REQUIRE_APPROVAL


def rule(id: str, effect: str, tools: Any = ("t",), **more: Any) -> dict[str, Any]:
    """A rule; one that can require approval names an approver (DESIGN.md 2.8)."""
    if "require_approval" in (effect, more.get("otherwise")) and "approval" not in more:
        more["approval"] = {"approvers": ["role:ops"]}
    return {"id": id, "effect": effect, "tools": list(tools), **more}


# --- errors in each rule effect ---------------------------------------------------------

# (condition, args, context) that cannot be evaluated, and the error text it yields.
ERRORS: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], str]] = [
    (
        "missing-field",
        {"field": "args.amount", "greater_than": 100},
        {},
        {},
        "args.amount is missing",
    ),
    (
        "missing-parent",
        {"field": "args.order.amount", "greater_than": 100},
        {},
        {},
        "args.order is missing",
    ),
    (
        "wrong-type",
        {"field": "args.amount", "greater_than": 100},
        {"amount": "lots"},
        {},
        "args.amount: the string 'lots' is not a number",
    ),
    (
        "not-an-object",
        {"field": "args.order.amount", "greater_than": 100},
        {"order": 5},
        {},
        "args.order is not an object (it is int), so args.order.amount does not exist",
    ),
    (
        "bad-regex-from-field",
        {"field": "args.q", "matches": {"field": "context.pattern"}},
        {"q": "x"},
        {"pattern": "a(?!b)"},
        "context.pattern: invalid regular expression 'a(?!b)' (RE2 syntax)",
    ),
    ("null", {"field": "args.to", "ends_with": ".com"}, {"to": None}, {}, "args.to is null"),
    (
        "all-over-empty",
        {"field": "args.items[all].sku", "equals": "A"},
        {"items": []},
        {},
        "args.items[all] over an empty list is an error",
    ),
    (
        "all-over-missing",
        {"field": "args.items[all].sku", "equals": "A"},
        {},
        {},
        "args.items is missing",
    ),
    (
        "for-all-over-empty",
        {"for_all": "args.items", "if": {"field": "item.qty", "greater_than": 0}},
        {"items": []},
        {},
        "args.items is empty (for_all over an empty list is an error)",
    ),
    (
        "not-a-list",
        {"field": "args.items[*].sku", "equals": "A"},
        {"items": "A"},
        {},
        "args.items is not a list",
    ),
    (
        "no-env",
        {"field": "env", "equals": "prod"},
        {},
        {},
        "env is missing",
    ),
]


@pytest.mark.parametrize(
    ("cond", "args", "context", "message"),
    [e[1:] for e in ERRORS],
    ids=[e[0] for e in ERRORS],
)
class TestErrorsFailClosed:
    def test_in_a_deny_rule_an_error_is_a_match(
        self, cond: dict[str, Any], args: dict[str, Any], context: dict[str, Any], message: str
    ) -> None:
        veto = make_veto([rule("r", "deny", **{"if": cond})], default="allow")
        d = veto.decide(call(args=args, context=context))
        assert d.effect is DENY
        assert d.rule_ids == ("r",) and d.deciding_rule_ids == ("r",)
        assert len(d.errors) == 1 and d.errors[0].startswith(f"rule 'r': {message}")
        assert d.reasons == (
            "denied by policy [r] (its condition could not be evaluated; failing closed)",
        )

    def test_in_an_approval_rule_an_error_is_a_match(
        self, cond: dict[str, Any], args: dict[str, Any], context: dict[str, Any], message: str
    ) -> None:
        veto = make_veto(
            [rule("r", "require_approval", **{"if": cond, "approval": {"approvers": ["role:x"]}})],
            default="allow",
        )
        d = veto.decide(call(args=args, context=context))
        assert d.effect is APPROVE
        assert d.deciding_rule_ids == ("r",)
        assert d.approval == ApprovalSpec(
            requirements=(ApprovalRequirement(rule_id="r", approvers=("role:x",)),)
        )
        assert len(d.errors) == 1 and d.errors[0].startswith(f"rule 'r': {message}")

    def test_in_an_allow_rule_an_error_is_no_match(
        self, cond: dict[str, Any], args: dict[str, Any], context: dict[str, Any], message: str
    ) -> None:
        veto = make_veto([rule("r", "allow", **{"if": cond})], default="deny")
        d = veto.decide(call(args=args, context=context))
        assert d.effect is DENY
        assert d.rule_ids == () and d.deciding_rule_ids == ()
        assert d.reasons == ("no rule matched; the policy default is deny",)
        # The error is still reported on the decision.
        assert len(d.errors) == 1 and d.errors[0].startswith(f"rule 'r': {message}")

    def test_in_an_allow_rule_with_default_allow_another_allow_still_wins(
        self, cond: dict[str, Any], args: dict[str, Any], context: dict[str, Any], message: str
    ) -> None:
        veto = make_veto([rule("r", "allow", **{"if": cond}), rule("plain", "allow")])
        d = veto.decide(call(args=args, context=context))
        assert d.effect is ALLOW
        assert d.deciding_rule_ids == ("plain",)
        assert d.errors[0].startswith("rule 'r': ")

    def test_in_an_allow_rule_with_otherwise_deny_it_denies(
        self, cond: dict[str, Any], args: dict[str, Any], context: dict[str, Any], message: str
    ) -> None:
        veto = make_veto([rule("r", "allow", **{"if": cond, "otherwise": "deny"})], default="allow")
        d = veto.decide(call(args=args, context=context))
        assert d.effect is DENY
        assert d.deciding_rule_ids == ("r",)
        assert "failing closed" in d.reasons[0]


def test_every_error_of_every_rule_is_listed() -> None:
    veto = make_veto(
        [
            rule("a", "deny", **{"if": {"field": "args.x", "greater_than": 1}}),
            rule("b", "allow", **{"if": {"field": "args.y", "equals": 1}}),
            rule("c", "require_approval", **{"if": {"field": "args.z", "matches": "q"}}),
        ]
    )
    d = veto.decide(call(args={"z": 5}))
    assert d.effect is DENY
    assert d.rule_ids == ("a", "c")
    assert d.deciding_rule_ids == ("a",)
    assert d.errors == (
        "rule 'a': args.x is missing",
        "rule 'b': args.y is missing",
        "rule 'c': args.z: expected a string, got a int",
    )


# --- otherwise ---------------------------------------------------------------------------


def test_otherwise_applies_when_the_condition_is_false() -> None:
    veto = make_veto(
        [
            rule(
                "small-refunds",
                "allow",
                ("refund",),
                **{
                    "if": {"field": "args.amount", "less_or_equal": 100},
                    "otherwise": "require_approval",
                    "approval": {"approvers": ["role:finance"], "timeout": "30m"},
                    "reason": "Refunds over 100 need finance",
                },
            )
        ]
    )
    small = veto.decide(call("refund", {"amount": 50}))
    assert small.effect is ALLOW and small.approval is None
    assert small.reasons == ("Refunds over 100 need finance [small-refunds]",)
    big = veto.decide(call("refund", {"amount": 500}))
    assert big.effect is APPROVE
    assert big.deciding_rule_ids == ("small-refunds",)
    assert big.approval == ApprovalSpec(
        requirements=(ApprovalRequirement(rule_id="small-refunds", approvers=("role:finance",)),),
        timeout_s=1800.0,
    )
    assert big.reasons == (
        "Refunds over 100 need finance [small-refunds] (condition not met; otherwise require_approval)",
    )
    # Out of scope (another tool): otherwise does not apply.
    assert veto.decide(call("other", {"amount": 500})).deciding_rule_ids == ()


def test_otherwise_on_a_deny_rule() -> None:
    veto = make_veto(
        [
            rule(
                "r",
                "deny",
                **{"if": {"field": "args.x", "equals": "bad"}, "otherwise": "require_approval"},
            )
        ],
        default="allow",
    )
    assert veto.decide(call(args={"x": "bad"})).effect is DENY
    assert veto.decide(call(args={"x": "fine"})).effect is APPROVE
    assert veto.decide(call(args={})).effect is DENY  # error: the deny matches


def test_otherwise_does_not_apply_out_of_scope() -> None:
    veto = make_veto(
        [
            rule(
                "r",
                "allow",
                **{
                    "if": {"field": "args.x", "equals": 1},
                    "otherwise": "deny",
                    "when": {"agent": ["bot"]},
                },
            )
        ],
        default="allow",
    )
    assert veto.decide(call(args={"x": 2}, agent="bot")).effect is DENY
    d = veto.decide(call(args={"x": 2}, agent="other"))
    assert d.effect is ALLOW and d.rule_ids == ()


# --- three-valued logic ------------------------------------------------------------------

T = {"field": "args.t", "equals": 1}  # true
F = {"field": "args.f", "equals": 1}  # false
E = {"field": "args.missing", "equals": 1}  # error
ARGS = {"t": 1, "f": 0}


@pytest.mark.parametrize(
    ("cond", "expect"),
    [
        ({"any": [E, T]}, "true"),
        ({"any": [T, E]}, "true"),
        ({"any": [E, F]}, "error"),
        ({"any": [F, F]}, "false"),
        ({"all": [E, F]}, "false"),
        ({"all": [F, E]}, "false"),
        ({"all": [E, T]}, "error"),
        ({"all": [T, T]}, "true"),
        ({"not": E}, "error"),
        ({"not": T}, "false"),
        ({"not": F}, "true"),
        ({"not": {"not": E}}, "error"),
        ({"not": {"any": [E, T]}}, "false"),
        ({"not": {"all": [E, F]}}, "true"),
        ({"any": [{"all": [E, T]}, {"not": F}]}, "true"),
        ({"all": [{"any": [E, F]}, T]}, "error"),
        ({"any": [T]}, "true"),
        ({"all": [E]}, "error"),
    ],
)
def test_three_valued_composites(cond: dict[str, Any], expect: str) -> None:
    assert evaluate(cond, ARGS) == expect


def test_a_guarded_optional_field_is_no_noise() -> None:
    """`all` is false as soon as a branch is false: the error of the other branch is dropped."""
    guarded = {
        "all": [
            {"field": "args.note", "length_greater_than": 10},
            {"field": "args.note", "exists": True},
        ]
    }
    veto = make_veto([rule("r", "deny", **{"if": guarded})], default="allow")
    d = veto.decide(call(args={}))
    assert d.effect is ALLOW and d.errors == ()


def test_errors_from_a_failed_any_are_all_listed() -> None:
    cond = {"any": [{"field": "args.a", "equals": 1}, {"field": "args.b", "greater_than": 1}]}
    veto = make_veto([rule("r", "deny", **{"if": cond})], default="allow")
    d = veto.decide(call(args={"b": "x"}))
    assert d.effect is DENY
    assert d.errors == (
        "rule 'r': args.a is missing",
        "rule 'r': args.b: the string 'x' is not a number",
    )


# --- [*], [all], for_all, for_any --------------------------------------------------------

SKU_ANY = {"field": "args.items[*].sku", "equals": "BANNED"}
SKU_ALL = {"field": "args.items[all].qty", "less_or_equal": 10}


@pytest.mark.parametrize(
    ("cond", "items", "expect"),
    [
        (SKU_ANY, [], "false"),
        (SKU_ANY, [{"sku": "A"}, {"sku": "BANNED"}], "true"),
        (SKU_ANY, [{"sku": "A"}, {"sku": "B"}], "false"),
        (SKU_ANY, [{"nosku": 1}, {"sku": "BANNED"}], "true"),  # a true element wins
        (SKU_ANY, [{"nosku": 1}, {"sku": "A"}], "error"),
        (SKU_ANY, None, "error"),  # missing list
        (SKU_ALL, [], "error"),
        (SKU_ALL, None, "error"),
        (SKU_ALL, [{"qty": 1}, {"qty": "10"}], "true"),
        (SKU_ALL, [{"qty": 1}, {"qty": 11}], "false"),
        (SKU_ALL, [{"qty": 11}, {}], "false"),  # a false element wins
        (SKU_ALL, [{"qty": 1}, {}], "error"),
        ({"field": "args.items[0].sku", "equals": "A"}, [{"sku": "A"}], "true"),
        ({"field": "args.items[1].sku", "equals": "A"}, [{"sku": "A"}], "error"),
        ({"field": "args.items[*]", "equals": 3}, [1, 2, 3], "true"),
        ({"field": "args.items[all]", "greater_than": 0}, [1, 2, 3], "true"),
        ({"field": "args.items", "contains": 2}, [1, 2, 3], "true"),
        (
            {"field": "args.items[*].tags[*]", "equals": "x"},
            [{"tags": ["a"]}, {"tags": ["x"]}],
            "true",
        ),
        ({"field": "args.items[*].tags[*]", "equals": "x"}, [{"tags": []}, {"tags": []}], "false"),
    ],
)
def test_list_paths(cond: dict[str, Any], items: Any, expect: str) -> None:
    args = {} if items is None else {"items": items}
    assert evaluate(cond, args) == expect


FOR_ALL = {
    "for_all": "args.items",
    "if": {
        "all": [
            {"field": "item.qty", "greater_than": 0},
            {"field": "item.sku", "starts_with": "OK-"},
        ]
    },
}
FOR_ANY = {
    "for_any": "args.items",
    "if": {
        "all": [{"field": "item.sku", "equals": "BANNED"}, {"field": "item.qty", "greater_than": 5}]
    },
}


@pytest.mark.parametrize(
    ("cond", "items", "expect"),
    [
        (FOR_ALL, [{"qty": 1, "sku": "OK-1"}, {"qty": 2, "sku": "OK-2"}], "true"),
        (FOR_ALL, [{"qty": 1, "sku": "OK-1"}, {"qty": 0, "sku": "OK-2"}], "false"),
        (FOR_ALL, [{"qty": 1, "sku": "OK-1"}, {"qty": 1}], "error"),
        (FOR_ALL, [{"qty": 0}, {"qty": 1, "sku": "OK-2"}], "false"),  # all(false, error)
        (FOR_ALL, [], "error"),
        (FOR_ALL, None, "error"),
        (FOR_ALL, {"qty": 1}, "error"),  # not a list
        # for_any: the same element must satisfy the whole sub-condition.
        (FOR_ANY, [{"sku": "BANNED", "qty": 1}, {"sku": "A", "qty": 9}], "false"),
        (FOR_ANY, [{"sku": "A", "qty": 9}, {"sku": "BANNED", "qty": 9}], "true"),
        (FOR_ANY, [], "false"),
        (FOR_ANY, None, "error"),
        (FOR_ANY, [{"sku": "BANNED"}, {"sku": "BANNED", "qty": 9}], "true"),
        (FOR_ANY, [{"sku": "BANNED"}], "error"),
        (
            {"for_any": "args.items", "if": {"field": "item", "equals": "x"}},
            ["a", "x"],
            "true",
        ),
        (
            {
                "for_all": "args.items",
                "if": {"for_any": "item.tags", "if": {"field": "item", "equals": "ok"}},
            },
            [{"tags": ["ok", "no"]}, {"tags": ["ok"]}],
            "true",
        ),
        (
            {
                "for_all": "args.items",
                "if": {"for_any": "item.tags", "if": {"field": "item", "equals": "ok"}},
            },
            [{"tags": ["ok"]}, {"tags": ["no"]}],
            "false",
        ),
    ],
)
def test_quantifiers(cond: dict[str, Any], items: Any, expect: str) -> None:
    args = {} if items is None else {"items": items}
    assert evaluate(cond, args) == expect


def test_quantifier_over_a_nested_path_and_item_fields_compared_to_call_fields() -> None:
    cond = {
        "for_any": "args.order.lines",
        "if": {"field": "item.amount", "greater_than": {"field": "context.limit"}},
    }
    assert (
        evaluate(cond, {"order": {"lines": [{"amount": 5}, {"amount": 50}]}}, context={"limit": 10})
        == "true"
    )
    assert evaluate(cond, {"order": {"lines": [{"amount": 5}]}}, context={"limit": 10}) == "false"


# --- precedence and combination ----------------------------------------------------------


@pytest.mark.parametrize(
    ("effects", "expect"),
    [
        (["allow", "require_approval", "deny"], DENY),
        (["allow", "require_approval"], APPROVE),
        (["allow", "deny"], DENY),
        (["allow", "allow"], ALLOW),
        (["require_approval", "deny"], DENY),
        ([], DENY),
    ],
)
def test_precedence(effects: list[str], expect: Effect) -> None:
    rules = [rule(f"r{i}-{e}", e) for i, e in enumerate(effects)]
    d = make_veto(rules).decide(call())
    assert d.effect is expect
    assert d.rule_ids == tuple(sorted(r["id"] for r in rules))
    assert d.deciding_rule_ids == tuple(
        sorted(r["id"] for r in rules if r["effect"] == expect.value)
    )


@pytest.mark.parametrize("default", ["deny", "allow"])
def test_default_applies_when_no_rule_matches(default: str) -> None:
    veto = make_veto([rule("r", "deny", ("other",))], default=default)
    d = veto.decide(call("unknown_tool"))
    assert d.effect is Effect(default)
    assert d.rule_ids == () and d.deciding_rule_ids == () and d.errors == ()
    assert d.reasons == (f"no rule matched; the policy default is {default}",)
    assert d.approval is None


def test_default_require_approval_is_a_policy_error() -> None:
    """A default cannot name approvers, so it could only mean "anyone" (DESIGN.md 2.8)."""
    with pytest.raises(
        PolicyError, match=r"<policy>:3:10 default: 'default: require_approval' names no approvers"
    ):
        Veto.from_yaml("version: 1\nname: p\ndefault: require_approval\n")


def test_default_is_deny_when_unspecified() -> None:
    veto = Veto.from_yaml("version: 1\nname: p\n")
    assert veto.decide(call("anything")).effect is DENY


def test_approval_specs_are_combined() -> None:
    veto = make_veto(
        [
            rule(
                "a",
                "require_approval",
                approval={
                    "approvers": ["role:finance", "alice"],
                    "quorum": 1,
                    "timeout": "2h",
                    "channels": ["slack"],
                },
            ),
            rule(
                "b",
                "require_approval",
                approval={
                    "approvers": ["role:security"],
                    "quorum": 2,
                    "timeout": "30m",
                    "channels": ["email"],
                },
            ),
            rule(
                "c",
                "require_approval",
                approval={"approvers": ["alice"], "quorum": 1, "timeout": "1d"},
            ),
            rule("d", "allow"),
        ]
    )
    d = veto.decide(call())
    assert d.effect is APPROVE
    assert d.deciding_rule_ids == ("a", "b", "c")
    # One requirement per deciding rule, each met on its own (DESIGN.md 2.2 step 3/4).
    assert d.approval == ApprovalSpec(
        requirements=(
            ApprovalRequirement(rule_id="a", approvers=("role:finance", "alice"), quorum=1),
            ApprovalRequirement(rule_id="b", approvers=("role:security",), quorum=2),
            ApprovalRequirement(rule_id="c", approvers=("alice",), quorum=1),
        ),
        timeout_s=1800.0,
        channels=("email", "slack"),
    )
    assert d.to_dict()["approval"]["requirements"][1] == {
        "rule_id": "b",
        "approvers": ["role:security"],
        "quorum": 2,
    }


def test_approval_spec_is_dropped_when_a_deny_wins() -> None:
    veto = make_veto(
        [rule("a", "require_approval", approval={"approvers": ["x"]}), rule("b", "deny")]
    )
    d = veto.decide(call())
    assert d.effect is DENY and d.approval is None and d.rule_ids == ("a", "b")


def test_reasons_use_rule_reason_and_id() -> None:
    veto = make_veto([rule("b", "deny", reason="No B"), rule("a", "deny", reason="No A")])
    d = veto.decide(call())
    assert d.reasons == ("No A [a]", "No B [b]")
    assert d.reason == "No A [a]; No B [b]"
    assert d.to_dict()["deciding_rule_ids"] == ["a", "b"]


# --- scopes: env, tenant, role, agent ----------------------------------------------------

ROLES = {
    "support": {},
    "support-lead": {"inherits": ["support"]},
    "head-of-support": {"inherits": ["support-lead"]},
    "finance": {},
}


def test_role_inheritance() -> None:
    veto = make_veto([rule("r", "allow", when={"role": ["support"]})], roles=ROLES)
    for roles, expect in [
        (("support",), ALLOW),
        (("support-lead",), ALLOW),
        (("head-of-support",), ALLOW),  # transitive
        (("finance",), DENY),
        ((), DENY),
        (("undeclared",), DENY),
    ]:
        assert veto.decide(call(roles=roles)).effect is expect, roles


def test_inheritance_does_not_go_downwards() -> None:
    veto = make_veto([rule("r", "allow", when={"role": ["support-lead"]})], roles=ROLES)
    assert veto.decide(call(roles=("support",))).effect is DENY
    assert veto.decide(call(roles=("head-of-support",))).effect is ALLOW


def test_principal_roles_field_sees_effective_roles() -> None:
    veto = make_veto(
        [rule("r", "deny", **{"if": {"field": "principal.roles", "contains": "support"}})],
        default="allow",
        roles=ROLES,
    )
    assert veto.decide(call(roles=("head-of-support",))).effect is DENY
    assert veto.decide(call(roles=("finance",))).effect is ALLOW


def test_env_scope() -> None:
    veto = make_veto([rule("r", "allow", when={"env": ["dev", "staging"]})], env="dev")
    assert veto.decide(call()).effect is ALLOW
    assert veto.decide(call(env="prod")).effect is DENY  # per-call override
    assert veto.decide(call(env="staging")).effect is ALLOW


def test_env_scope_single_string() -> None:
    veto = make_veto([rule("r", "allow", when={"env": "prod"})])
    assert veto.decide(call(env="prod")).effect is ALLOW


def test_tenant_scope_and_fallbacks() -> None:
    veto = make_veto([rule("r", "allow", when={"tenant": ["acme"]})], tenant="globex")
    assert veto.decide(call()).effect is DENY
    assert veto.decide(call(tenant="acme")).effect is ALLOW
    principal = Principal(agent="a", tenant="acme")
    assert veto.decide(ToolCall(tool="t", principal=principal)).effect is ALLOW
    # call.tenant wins over principal.tenant
    assert veto.decide(ToolCall(tool="t", principal=principal, tenant="globex")).effect is DENY


def test_agent_scope() -> None:
    veto = make_veto([rule("r", "allow", when={"agent": ["support-bot"]})])
    assert veto.decide(call(agent="support-bot")).effect is ALLOW
    assert veto.decide(call(agent="other-bot")).effect is DENY
    assert veto.decide(call()).effect is DENY


def test_all_scopes_must_match() -> None:
    veto = make_veto(
        [
            rule(
                "r",
                "allow",
                when={"env": "prod", "tenant": "acme", "role": ["support"], "agent": "bot"},
            )
        ],
        roles=ROLES,
    )
    ok = dict(env="prod", tenant="acme", roles=("support-lead",), agent="bot")
    assert veto.decide(call(**ok)).effect is ALLOW
    for key, bad in [("env", "dev"), ("tenant", "globex"), ("roles", ("finance",)), ("agent", "x")]:
        assert veto.decide(call(**{**ok, key: bad})).effect is DENY, key


@pytest.mark.parametrize(
    ("scope", "missing"), [({"env": ["prod"]}, "environment"), ({"tenant": ["acme"]}, "tenant")]
)
def test_a_scoped_policy_denies_a_call_without_that_scope(
    scope: dict[str, Any], missing: str
) -> None:
    # The scoped rule is a deny for another tool: still, a call with no env/tenant is denied.
    veto = make_veto([rule("scoped", "deny", ("other",), when=scope), rule("open", "allow")])
    d = veto.decide(call("t"))
    assert d.effect is DENY
    assert d.reasons == (f"the policy scopes rules by {missing} and this call has none",)
    assert veto.decide(call("t", env="prod", tenant="acme")).effect is ALLOW


def test_env_and_tenant_fields_in_conditions() -> None:
    veto = make_veto(
        [
            rule(
                "r",
                "allow",
                **{
                    "if": {
                        "all": [
                            {"field": "env", "equals": "prod"},
                            {"field": "tenant", "in": ["acme"]},
                        ]
                    }
                },
            )
        ]
    )
    assert veto.decide(call(env="prod", tenant="acme")).effect is ALLOW
    assert veto.decide(call(env="dev", tenant="acme")).effect is DENY
    d = veto.decide(call(env="prod"))
    assert d.effect is DENY and d.errors == ("rule 'r': tenant is missing",)


# --- tool names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "tool", "matches"),
    [
        ("mcp__github__*", "mcp__github__create_issue", True),
        ("mcp__github__*", "xmcp__github__a", False),
        ("mcp__github__*", "mcp__github__", True),
        ("mcp__github__*", "mcp__gitlab__create_issue", False),
        ("crm.*", "crm.contacts.delete", True),
        ("crm.*", "crm", False),
        ("crm.*", "xcrm.a", False),
        ("*", "anything.at/all", True),
        ("*_file", "read_file", True),
        ("*_file", "read_file_now", False),
        ("db.?et", "db.get", True),
        ("db.?et", "db.gget", False),
        ("db.[gs]et", "db.set", True),
        ("db.[gs]et", "db.let", False),
        ("send_email", "send_email", True),
        ("send_email", "send_emails", False),
        ("send_email", "Send_Email", False),
        ("send.email", "send_email", False),
    ],
)
def test_tool_patterns(pattern: str, tool: str, matches: bool) -> None:
    veto = make_veto([rule("r", "allow", (pattern,))])
    assert (veto.decide(call(tool)).effect is ALLOW) is matches


@pytest.mark.parametrize("policy_form", ["NFC", "NFD"])
@pytest.mark.parametrize("call_form", ["NFC", "NFD"])
@pytest.mark.parametrize("name", ["café", "café.*"])
def test_tool_names_are_compared_after_nfc(policy_form: str, call_form: str, name: str) -> None:
    pattern = unicodedata.normalize(policy_form, name)  # type: ignore[arg-type]
    tool = unicodedata.normalize(call_form, "café" if "*" not in name else "café.menu")  # type: ignore[arg-type]
    veto = make_veto([rule("r", "allow", (pattern,))])
    assert veto.decide(call(tool)).effect is ALLOW


def test_unknown_tool_falls_to_default_and_a_missing_tool_is_denied() -> None:
    veto = make_veto([rule("r", "deny", ("x",))], default="allow")
    assert veto.decide(call("y")).effect is ALLOW
    for bad in ("", None, 42):
        d = veto.decide(ToolCall(tool=bad))  # type: ignore[arg-type]
        assert d.effect is DENY and d.reasons == ("tool name is missing",)


def test_tool_name_field() -> None:
    veto = make_veto(
        [rule("r", "deny", ("*",), **{"if": {"field": "tool.name", "starts_with": "mcp__"}})],
        default="allow",
    )
    assert veto.decide(call("mcp__fs__read")).effect is DENY
    assert veto.decide(call("read")).effect is ALLOW


# --- revision ----------------------------------------------------------------------------

POLICY_A = """\
version: 1
name: rev
default: deny
lists:
  domains: [example.com]
rules:
  - id: a
    effect: allow
    tools: [send_email]
    if: {field: args.to, email_domain_in: {list: domains}}
"""

POLICY_A_REFORMATTED = """\
# same policy, other key order, block style, comments
rules:
  - tools:
      - send_email
    if:
      email_domain_in:
        list: domains
      field: args.to
    effect: allow      # the effect
    id: a
lists: {domains: ["example.com"]}
name: "rev"
default: deny
version: 1
"""


def test_revision_is_sha256_of_canonical_json() -> None:
    veto = Veto.from_yaml(POLICY_A)
    assert veto.policy_revision == hashlib.sha256(veto.policy_text.encode()).hexdigest()
    canonical = json.loads(veto.policy_text)
    assert (
        json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        == veto.policy_text
    )
    d = veto.decide(call("send_email", {"to": "a@example.com"}))
    assert d.policy_revision == veto.policy_revision and d.policy_name == "rev"


def test_revision_is_stable_across_formatting_and_key_order() -> None:
    assert (
        Veto.from_yaml(POLICY_A).policy_revision
        == Veto.from_yaml(POLICY_A_REFORMATTED).policy_revision
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("effect: allow", "effect: deny"),
        ("[example.com]", "[example.org]"),
        ("tools: [send_email]", "tools: [send_mail]"),
        ("args.to", "args.cc"),
        ("default: deny", "default: allow"),
        ("name: rev", "name: rev2"),
    ],
)
def test_revision_changes_when_the_policy_changes(old: str, new: str) -> None:
    changed = POLICY_A.replace(old, new)
    assert changed != POLICY_A
    assert Veto.from_yaml(changed).policy_revision != Veto.from_yaml(POLICY_A).policy_revision


# --- extends -----------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


BASE = """\
version: 1
name: base
default: deny
lists:
  domains: [example.com, example.org]
roles:
  support: {}
rules:
  - id: base-no-delete
    effect: deny
    tools: [delete_repo]
  - id: base-mail
    effect: allow
    tools: [send_email]
    if: {field: args.to, email_domain_in: {list: domains}}
"""


def test_extends_relative_to_the_extending_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "shared" / "base.yaml", BASE)
    app = write(
        tmp_path / "apps" / "app.yaml",
        """\
version: 1
name: app
extends: [../shared/base.yaml]
lists:
  domains: [example.com]
roles:
  support-lead: {inherits: [support]}
rules:
  - id: app-refunds
    effect: allow
    tools: [refund]
    when: {role: [support]}
""",
    )
    monkeypatch.chdir(tmp_path / "shared")  # cwd must not matter
    veto = Veto.from_file(app)
    assert veto.policy_name == "app"
    assert veto.decide(call("delete_repo")).effect is DENY
    assert veto.decide(call("delete_repo")).deciding_rule_ids == ("base-no-delete",)
    assert veto.decide(call("send_email", {"to": "a@example.com"})).effect is ALLOW
    assert veto.decide(call("send_email", {"to": "a@example.org"})).effect is DENY  # narrowed
    assert veto.decide(call("refund", roles=("support-lead",))).effect is ALLOW
    assert veto.decide(call("unknown")).effect is DENY


def test_extends_may_narrow_the_default(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "version: 1\nname: base\ndefault: allow\n")
    app = write(
        tmp_path / "app.yaml",
        "version: 1\nname: app\nextends: ./base.yaml\ndefault: deny\n",
    )
    assert Veto.from_file(app).decide(call("x")).effect is DENY


def test_an_extending_file_cannot_turn_a_base_deny_into_allow(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", BASE)
    app = write(
        tmp_path / "app.yaml",
        "version: 1\nname: app\nextends: [./base.yaml]\nrules:\n"
        "  - {id: app-delete, effect: allow, tools: [delete_repo]}\n",
    )
    d = Veto.from_file(app).decide(call("delete_repo"))
    assert d.effect is DENY and d.rule_ids == ("app-delete", "base-no-delete")


def test_narrowing_a_list_a_deny_rule_uses_is_refused(tmp_path: Path) -> None:
    write(
        tmp_path / "base.yaml",
        "version: 1\nname: base\nlists: {blocked: [a, b]}\nrules:\n"
        "  - {id: block, effect: deny, tools: [t], if: {field: args.x, in: {list: blocked}}}\n",
    )
    app = write(
        tmp_path / "app.yaml",
        "version: 1\nname: app\nextends: [./base.yaml]\nlists: {blocked: [a]}\n",
    )
    with pytest.raises(PolicyError, match="narrowing it would widen what is allowed"):
        Veto.from_file(app)


def test_revision_covers_the_extended_policy(tmp_path: Path) -> None:
    base = write(tmp_path / "base.yaml", BASE)
    app = write(tmp_path / "app.yaml", "version: 1\nname: app\nextends: [./base.yaml]\n")
    before = Veto.from_file(app).policy_revision
    write(base, BASE.replace("tools: [delete_repo]", "tools: [delete_repo, drop_db]"))
    assert Veto.from_file(app).policy_revision != before


def test_diamond_extends_is_not_a_cycle(tmp_path: Path) -> None:
    write(
        tmp_path / "root.yaml",
        "version: 1\nname: root\nrules:\n  - {id: root-deny, effect: deny, tools: [x]}\n",
    )
    write(tmp_path / "left.yaml", "version: 1\nname: left\nextends: [./root.yaml]\n")
    write(tmp_path / "right.yaml", "version: 1\nname: right\nextends: [./other.yaml]\n")
    write(
        tmp_path / "other.yaml",
        "version: 1\nname: other\nrules:\n  - {id: other-deny, effect: deny, tools: [y]}\n",
    )
    app = write(
        tmp_path / "app.yaml", "version: 1\nname: app\nextends: [./left.yaml, ./right.yaml]\n"
    )
    veto = Veto.from_file(app)
    assert veto.decide(call("x")).deciding_rule_ids == ("root-deny",)
    assert veto.decide(call("y")).deciding_rule_ids == ("other-deny",)


# --- reload ------------------------------------------------------------------------------


def versioned_policy(n: int) -> str:
    """Policy n: every rule and the name carry n, so a torn read would show mixed values."""
    effect = "allow" if n % 2 == 0 else "deny"
    return (
        f"version: 1\nname: gen-{n}\ndefault: deny\nrules:\n"
        f"  - {{id: r-{n}, effect: {effect}, tools: [t], reason: 'gen {n}'}}\n"
        f"  - {{id: s-{n}, effect: {effect}, tools: ['t*']}}\n"
    )


def test_reload_swaps_atomically_under_concurrent_decisions(tmp_path: Path) -> None:
    path = write(tmp_path / "p.yaml", versioned_policy(0))
    veto = Veto.from_file(path)
    stop = threading.Event()
    seen: list[tuple[str, ...]] = []
    bad: list[Any] = []

    def decide_loop() -> None:
        while not stop.is_set():
            d = veto.decide(call("t"))
            n = d.policy_name.removeprefix("gen-")
            expect_effect = ALLOW if int(n) % 2 == 0 else DENY
            if (
                d.effect is not expect_effect
                or d.deciding_rule_ids != (f"r-{n}", f"s-{n}")
                or d.reasons[0] != f"gen {n} [r-{n}]"
            ):
                bad.append(d)
            seen.append((d.policy_name, d.policy_revision))

    threads = [threading.Thread(target=decide_loop) for _ in range(3)]
    for th in threads:
        th.start()
    revisions = {}
    try:
        for n in range(1, 101):
            write(path, versioned_policy(n))
            revisions[f"gen-{n}"] = veto.reload()
    finally:
        stop.set()
        for th in threads:
            th.join()
    assert not bad
    assert len(seen) > 100
    revisions["gen-0"] = Veto.from_yaml(versioned_policy(0)).policy_revision
    # Every decision names a (name, revision) pair of one whole policy.
    assert all(revisions[name] == rev for name, rev in seen)
    assert veto.policy_name == "gen-100"


def test_a_broken_edit_keeps_the_old_policy(tmp_path: Path) -> None:
    path = write(tmp_path / "p.yaml", versioned_policy(0))
    veto = Veto.from_file(path)
    before = veto.policy_revision
    write(path, versioned_policy(1).replace("effect: deny", "effect: dney"))
    with pytest.raises(PolicyError, match="got 'dney'"):
        veto.reload()
    assert veto.policy_revision == before
    assert veto.decide(call("t")).effect is ALLOW
    path.unlink()
    with pytest.raises(PolicyError, match="cannot read file"):
        veto.reload()
    assert veto.decide(call("t")).effect is ALLOW
    write(path, versioned_policy(1))
    assert veto.reload() != before
    assert veto.decide(call("t")).effect is DENY


def test_reload_needs_a_file() -> None:
    with pytest.raises(RuntimeError):
        Veto.from_yaml(versioned_policy(0)).reload()


# --- explain -----------------------------------------------------------------------------


def test_explain_lists_every_rule_and_why() -> None:
    veto = make_veto(
        [
            rule(
                "big",
                "require_approval",
                ("refund",),
                **{"if": {"field": "args.amount", "greater_than": 100}},
            ),
            rule(
                "small",
                "allow",
                ("refund",),
                **{"if": {"field": "args.amount", "less_or_equal": 100}},
            ),
            rule(
                "cur", "deny", ("refund",), **{"if": {"field": "args.currency", "not_in": ["EUR"]}}
            ),
            rule("prod-only", "deny", ("refund",), when={"env": ["prod"]}),
            rule("other-tool", "deny", ("delete",)),
            rule("plain", "allow", ("refund",)),
        ],
        env="dev",
    )
    ex = veto.explain(call("refund", {"amount": "250"}, roles=()))
    assert ex.decision.effect is DENY
    assert ex.tool == "refund" and ex.env == "dev" and ex.tenant is None and ex.roles == ()
    by_id = {t.rule_id: t for t in ex.rules}
    assert [t.rule_id for t in ex.rules] == sorted(by_id)
    assert by_id["big"].condition == "true" and by_id["big"].result is APPROVE
    assert by_id["big"].leaves == (("args.amount greater_than 100", "true (value '250')"),)
    assert by_id["small"].condition == "false" and by_id["small"].result is None
    assert by_id["cur"].condition == "error" and by_id["cur"].result is DENY
    assert by_id["cur"].errors == ("args.currency is missing",)
    assert by_id["cur"].leaves == (
        ("args.currency not_in ['EUR']", "error: args.currency is missing"),
    )
    assert by_id["prod-only"].condition == "skipped"
    assert by_id["prod-only"].scope == "env 'dev' not in ['prod']"
    assert by_id["other-tool"].tool_matched is False and by_id["other-tool"].condition == "skipped"
    assert by_id["plain"].condition == "none" and by_id["plain"].result is ALLOW
    assert by_id["plain"].file == "<policy>" and isinstance(by_id["plain"].line, int)


def test_explain_agrees_with_decide() -> None:
    veto = make_veto(
        [
            rule("a", "deny", **{"if": {"field": "args.n", "greater_than": 5}}),
            rule(
                "b",
                "allow",
                **{"if": {"field": "args.n", "less_than": 10}, "otherwise": "require_approval"},
            ),
        ]
    )
    for n in (1, 7, 20, "x", None):
        c = call(args={} if n is None else {"n": n}, now=FIXED_NOW)
        d = veto.decide(c)
        ex = veto.explain(c)
        assert ex.decision.effect is d.effect
        contributed = {t.rule_id for t in ex.rules if t.result is not None}
        assert contributed == set(d.rule_ids)


def test_tool_name_field_is_the_canonical_nfc_name() -> None:
    nfc = unicodedata.normalize("NFC", "café")
    nfd = unicodedata.normalize("NFD", "café")
    veto = make_veto(
        [rule("r", "deny", ("*",), **{"if": {"field": "tool.name", "equals": nfc}})],
        default="allow",
    )
    assert veto.decide(call(nfd)).effect is DENY
    assert veto.decide(call(nfc)).effect is DENY
