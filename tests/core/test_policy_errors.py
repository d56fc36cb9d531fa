"""Malformed policies: every broken file in ``malformed/`` fails to load with an exact message.

Messages read ``FILE:LINE:COL PATH: MESSAGE``; ``FILE`` is the path as the caller spelled
it (here relative to the repository root), and files reached through ``extends`` are
named relative to it too, so the expected texts below are stable on any checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from veto_core import PolicyError, Veto
from veto_core.policy.operators import BUILTIN_OPERATORS

HERE = Path(__file__).resolve().parent
MALFORMED = HERE / "malformed"

# File name -> exact str(PolicyError); ``{dir}`` is the corpus directory as given to the loader.
EXPECTED: dict[str, str] = {
    "approval_on_allow.yaml": "{dir}/approval_on_allow.yaml:7:5 rules[0].approval: 'approval' only applies to require_approval rules; this rule's effect is 'allow'",
    "bad_cidr.yaml": "{dir}/bad_cidr.yaml:7:38 rules[0].if.ip_in_cidr: invalid CIDR '300.1.0.0/16': '300.1.0.0/16' does not appear to be an IPv4 or IPv6 network",
    "bad_duration.yaml": "{dir}/bad_duration.yaml:7:54 rules[0].approval.timeout: expected a duration like '30s', '15m', '2h' or '1d', got '30 minutes'",
    "bad_effect.yaml": "{dir}/bad_effect.yaml:5:13 rules[0].effect: expected 'allow', 'deny' or 'require_approval', got 'denny' (did you mean 'deny'?)",
    "bad_host_pattern.yaml": "{dir}/bad_host_pattern.yaml:7:40 rules[0].if.url_host_in: invalid host pattern '*.example.*': expected 'example.com' or '*.example.com'",
    "bad_quorum.yaml": "{dir}/bad_quorum.yaml:7:24 rules[0].approval.quorum: input should be greater than or equal to 1",
    "bad_rule_id.yaml": "{dir}/bad_rule_id.yaml:4:9 rules[0].id: invalid rule id '-starts with dash': use letters, digits, '_', '-', '.', ':' and start with a letter or digit",
    "bad_timezone.yaml": "{dir}/bad_timezone.yaml:7:36 rules[0].if.time_between: unknown timezone 'Europe/Pariss' (expected an IANA name like 'Europe/Paris')",
    "between_low_gt_high.yaml": "{dir}/between_low_gt_high.yaml:7:34 rules[0].if.between: low bound 10 is greater than high bound 1",
    "default_widening.yaml": "{dir}/default_widening.yaml:4:10 default: default 'allow' would widen the base policy's default 'deny'",
    "duplicate_key.yaml": "{dir}/duplicate_key.yaml:7:5 rules[0].effect: duplicate key 'effect' (first defined at line 5)",
    "duplicate_rule_id.yaml": "{dir}/duplicate_rule_id.yaml:7:9 rules[1].id: duplicate rule id 'same' (already defined in {dir}/duplicate_rule_id.yaml:4)",
    "duplicate_rule_id_across_bases.yaml": "{dir}/bases/other.yaml:4:9 rules[0].id: duplicate rule id 'base-deny' (also in {dir}/bases/base.yaml)",
    "duplicate_rule_id_across_files.yaml": "{dir}/duplicate_rule_id_across_files.yaml:5:9 rules[0].id: duplicate rule id 'base-deny' (already defined in {dir}/bases/base.yaml:7)",
    "empty.yaml": "{dir}/empty.yaml:1:1: file is empty; expected a policy mapping",
    "empty_tools.yaml": "{dir}/empty_tools.yaml:6:12 rules[0].tools: must not be empty",
    "exists_field_operand.yaml": "{dir}/exists_field_operand.yaml:7:33 rules[0].if.exists: expected true or false",
    "extends_cycle.yaml": "{dir}/extends_cycle_b.yaml:4:5 extends[0]: extends cycle: extends_cycle.yaml -> extends_cycle_b.yaml -> extends_cycle.yaml",
    "extends_cycle_b.yaml": "{dir}/extends_cycle.yaml:3:11 extends[0]: extends cycle: extends_cycle_b.yaml -> extends_cycle.yaml -> extends_cycle_b.yaml",
    "extends_missing.yaml": "{dir}/extends_missing.yaml:3:11 extends[0]: extended policy './no_such_base.yaml' not found (looked for {dir}/no_such_base.yaml)",
    "ignore_case_numeric.yaml": "{dir}/ignore_case_numeric.yaml:7:42 rules[0].if.ignore_case: ignore_case does not apply to 'greater_than'",
    "invalid_glob_operand.yaml": "{dir}/invalid_glob_operand.yaml:7:34 rules[0].if.glob: invalid glob 'report-]x': ']' at position 7 has no opening '['",
    "invalid_regex.yaml": "{dir}/invalid_regex.yaml:7:34 rules[0].if.matches: invalid regular expression '(unclosed' (RE2 syntax): missing ): (unclosed",
    "invalid_tool_glob.yaml": "{dir}/invalid_tool_glob.yaml:6:13 rules[0].tools[0]: invalid glob 'crm.[abc': '[' at position 4 is never closed",
    "invalid_yaml.yaml": "{dir}/invalid_yaml.yaml:7:1: invalid YAML: expected ',' or ']', but got '<stream end>'",
    "item_outside_quantifier.yaml": "{dir}/item_outside_quantifier.yaml:7:17 rules[0].if.field: 'item.sku': 'item' is only defined inside for_all / for_any",
    "leaf_without_operator.yaml": "{dir}/leaf_without_operator.yaml:8:7 rules[0].if: condition has a field but no operator (expected one of equals, in, matches, greater_than, ...; see `veto schema`)",
    "list_widening.yaml": "{dir}/list_widening.yaml:5:20 lists.company_domains: list 'company_domains' is defined by the base policy and may only be narrowed; 'evil.example' is not in it",
    "missing_effect.yaml": "{dir}/missing_effect.yaml:4:5 rules[0].effect: missing required key 'effect'",
    "missing_name.yaml": "{dir}/missing_name.yaml:1:1 name: missing required key 'name'",
    "missing_rule_id.yaml": "{dir}/missing_rule_id.yaml:4:5 rules[0].id: missing required key 'id'",
    "missing_tools.yaml": "{dir}/missing_tools.yaml:4:5 rules[0].tools: missing required key 'tools'",
    "missing_version.yaml": "{dir}/missing_version.yaml:1:1 version: missing required key 'version'",
    "nan_operand.yaml": "{dir}/nan_operand.yaml:7:39 rules[0].if.greater_than: expected a number: nan is not a finite number",
    "not_a_mapping.yaml": "{dir}/not_a_mapping.yaml:1:1: expected a policy mapping (version, name, rules, ...), got a list",
    "not_utf8.yaml": "{dir}/not_utf8.yaml: file is not UTF-8 (invalid continuation byte at byte 20)",
    "otherwise_same_effect.yaml": "{dir}/otherwise_same_effect.yaml:8:5 rules[0].otherwise: 'otherwise: deny' is the rule's own effect; drop 'if' instead",
    "otherwise_without_if.yaml": "{dir}/otherwise_without_if.yaml:7:5 rules[0].otherwise: 'otherwise' needs an 'if' condition to be the alternative of",
    "relative_path_within.yaml": "{dir}/relative_path_within.yaml:7:41 rules[0].if.path_within: 'srv/data' is not an absolute path",
    "role_cycle.yaml": "{dir}/role_cycle.yaml:4:17 roles.a.inherits: role 'a' inherits from itself (cycle)\n{dir}/role_cycle.yaml:5:17 roles.b.inherits: role 'b' inherits from itself (cycle)",
    "role_redefined.yaml": "{dir}/role_redefined.yaml:5:12 roles.support: role 'support' is defined by the base policy and cannot be redefined",
    "two_operators.yaml": "{dir}/two_operators.yaml:10:7 rules[0].if.less_than: a condition takes exactly one operator, got 'greater_than' and 'less_than' (combine them with all: [...])",
    "unknown_condition_key.yaml": "{dir}/unknown_condition_key.yaml:8:7 rules[0].if.every: unknown condition key 'every'",
    "unknown_field_root.yaml": "{dir}/unknown_field_root.yaml:7:17 rules[0].if.field: unknown field root 'arguments' in 'arguments.amount' (expected one of args, context, principal, tool, env, tenant, now, item, run) (did you mean 'args'?)",
    "unknown_list.yaml": "{dir}/unknown_list.yaml:9:56 rules[0].if.not.email_domain_in.list: unknown list 'company_domain' (did you mean 'company_domains'?)",
    "unknown_operator.yaml": "{dir}/unknown_operator.yaml:8:9 rules[0].if.field: unknown operator 'greter_than' (did you mean 'greater_than'?); the operators are: {operators}",
    "unknown_principal_field.yaml": "{dir}/unknown_principal_field.yaml:7:17 rules[0].if.field: unknown principal field 'usr' (expected one of agent, roles, tenant, user, session) (did you mean 'user'?)",
    "unknown_role_in_inherits.yaml": "{dir}/unknown_role_in_inherits.yaml:5:29 roles.support-lead.inherits[0]: unknown role 'supprt' (did you mean 'support'?)",
    "unknown_role_in_when.yaml": "{dir}/unknown_role_in_when.yaml:9:19 rules[0].when.role[0]: unknown role 'suport' (did you mean 'support'?)",
    "unknown_rule_key.yaml": "{dir}/unknown_rule_key.yaml:7:5 rules[0].reasn: unknown key 'reasn' (did you mean 'reason'?); expected one of: id, effect, tools, when, if, otherwise, approval, reason, description, mode",
    "unknown_top_level_key.yaml": "{dir}/unknown_top_level_key.yaml:3:1 rulez: unknown key 'rulez' (did you mean 'rules'?); expected one of: version, name, description, default, mode, extends, lists, roles, rules, limits, sources, run_ttl, redact, audit, tests",
    "unknown_weekday.yaml": "{dir}/unknown_weekday.yaml:7:34 rules[0].if.weekday_in: unknown weekday 'tues' (expected mon, tue, wed, thu, fri, sat, sun)",
    "unquoted_flow_path.yaml": "{dir}/unquoted_flow_path.yaml:7:27: invalid YAML: expected ',' or '}', but got '[' (a path containing '[' must be quoted in flow style: \"args.items[*].sku\")",
    "wrong_version.yaml": "{dir}/wrong_version.yaml:1:10 version: expected 1, got 2",
}


@pytest.fixture
def corpus_dir(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The corpus directory relative to the repository root, with the root as cwd."""
    root = Path(request.config.rootpath)
    monkeypatch.chdir(root)
    return os.path.relpath(MALFORMED, root).replace(os.sep, "/")


def test_every_corpus_file_has_an_expected_message() -> None:
    on_disk = {p.name for p in MALFORMED.glob("*.yaml")}
    assert on_disk == set(EXPECTED)
    assert len(on_disk) >= 30


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_policy_fails_with_exact_message(name: str, corpus_dir: str) -> None:
    with pytest.raises(PolicyError) as info:
        Veto.from_file(f"{corpus_dir}/{name}")
    operators = ", ".join(sorted({*BUILTIN_OPERATORS, "tainted_by"}))
    assert str(info.value) == EXPECTED[name].replace("{dir}", corpus_dir).replace(
        "{operators}", operators
    )
    for problem in info.value.problems:
        assert problem.file.startswith(corpus_dir + "/")
        assert problem.message


def test_base_files_of_the_corpus_load_on_their_own(corpus_dir: str) -> None:
    for base in sorted((MALFORMED / "bases").glob("*.yaml")):
        Veto.from_file(f"{corpus_dir}/bases/{base.name}")


# --- messages for policies given as text, and several problems at once ------------------


def test_text_policies_are_named_by_their_label() -> None:
    text = "version: 1\nname: p\nrules:\n  - {id: a, effect: alow, tools: [t]}\n"
    with pytest.raises(PolicyError) as info:
        Veto.from_yaml(text, file="inline.yaml")
    assert str(info.value) == (
        "inline.yaml:4:21 rules[0].effect: expected 'allow', 'deny' or 'require_approval', "
        "got 'alow' (did you mean 'allow'?)"
    )
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.column, problem.path) == (
        "inline.yaml",
        4,
        21,
        "rules[0].effect",
    )


def test_every_problem_is_reported_sorted_by_position() -> None:
    text = """\
version: 1
name: many
lists: {tags: [a]}
rules:
  - id: b
    effect: deny
    tools: [t]
    if: {field: args.x, in: {list: tgs}}
  - id: a
    effect: deny
    tools: ["x["]
    if: {field: principal.mail, equals: x}
  - id: c
    effect: allow
    tools: [t]
    if: {field: args.x, matches: "(", ignore_case: true}
"""
    with pytest.raises(PolicyError) as info:
        Veto.from_yaml(text)
    assert str(info.value).splitlines() == [
        "<policy>:8:36 rules[0].if.in.list: unknown list 'tgs' (did you mean 'tags'?)",
        "<policy>:11:13 rules[1].tools[0]: invalid glob 'x[': '[' at position 1 is never closed",
        "<policy>:12:17 rules[1].if.field: unknown principal field 'mail' (expected one of agent, roles, tenant, user, session)",
        "<policy>:16:34 rules[2].if.matches: invalid regular expression '(' (RE2 syntax): missing ): (",
    ]


@pytest.mark.parametrize(
    ("leaf", "message"),
    [
        ("{field: args.x}", "condition has a field but no operator"),
        ("{equals: 1}", "operator 'equals' needs a 'field' to apply to"),
        ("{field: args, equals: 1}", "'args': name a field, e.g. args.name"),
        ("{field: 'args.x[', equals: 1}", "invalid field path 'args.x['"),
        ("{field: tool.id, equals: 1}", "the only tool field is tool.name"),
        ("{field: env.name, equals: 1}", "env has no sub-fields"),
        (
            "{field: principal.user.id, equals: 1}",
            "principal.user is a string and has no sub-fields",
        ),
        ("{field: args.x, equals: {field: 'args.l[*]'}}", "[*] and [all] are not allowed here"),
        (
            "{for_all: 'args.l[*]', if: {field: item, equals: 1}}",
            "[*] and [all] are not allowed here",
        ),
        ("{for_all: args.l}", "for_all needs an 'if' condition over 'item'"),
        ("{all: []}", "expected a non-empty list of conditions"),
        ("{all: [{field: args.x, equals: 1}], any: []}", "unexpected key 'any' next to 'all'"),
        (
            "{not: {field: args.x, equals: 1}, field: args.y}",
            "unexpected key 'field' next to 'not'",
        ),
        ("[]", "expected a condition"),
        ("{field: args.x, equals: 1, ignore_case: yes}", "expected true or false"),
    ],
)
def test_condition_shape_errors(leaf: str, message: str) -> None:
    text = f"version: 1\nname: p\nrules:\n  - id: a\n    effect: deny\n    tools: [t]\n    if: {leaf}\n"
    with pytest.raises(PolicyError) as info:
        Veto.from_yaml(text)
    assert message in str(info.value)
    assert str(info.value).startswith("<policy>:")
