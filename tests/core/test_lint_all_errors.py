"""`veto lint` reports every load error at once (issue 16 item 9): schema errors do
not hide duplicate ids, which do not hide unknown roles and lists."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from veto_core import Veto
from veto_core.cli import main
from veto_core.policy.errors import PolicyError

POLICY = """\
version: 1
name: rounds
lists:
  domains: [example.com]
  bad_list: {not: a list}
roles:
  support: {}
rules:
  - id: broken
    effect: maybe
    tools: [a]
  - id: twice
    effect: allow
    tools: [b]
  - id: twice
    effect: deny
    tools: [c]
  - id: who
    effect: allow
    tools: [d]
    when: {role: [suport]}
  - id: where
    effect: deny
    tools: [e]
    if: {field: args.to, email_domain_in: {list: domainz}}
  - id: uses-bad-list
    effect: deny
    tools: [f]
    if: {field: args.to, email_domain_in: {list: bad_list}}
limits:
  - {id: lim, tools: [g], window: soon, count: true, max: 3}
"""


def test_lint_reports_every_round_of_load_errors_at_once(tmp_path: Path) -> None:
    path = tmp_path / "rounds.yaml"
    path.write_text(POLICY)
    result = CliRunner().invoke(main, ["lint", str(path)])
    assert result.exit_code == 2
    err = result.stderr
    # Round 1: schema errors (every one, with its line).
    assert "rounds.yaml:10:13 rules[0].effect" in err and "maybe" in err
    assert "lists.bad_list" in err
    assert "limits[0].window" in err
    # Round 2: duplicate ids, found although round 1 failed.
    assert "rules[2].id: duplicate rule id 'twice'" in err
    # Round 3: unknown roles and lists, found although rounds 1 and 2 failed.
    assert "suport" in err and "support" in err  # did you mean
    assert "domainz" in err
    # Nothing is reported about the invalid entries' stand-ins (the invalid rule,
    # the invalid list a valid rule names): each problem once, at its real place.
    assert "rules[0]." not in err.replace("rules[0].effect", "")
    assert "rules[5]" not in err and "stand-in" not in err
    assert len(err.strip().splitlines()) == 6, err
    # The engine still refuses the policy (all-or-nothing, fail closed).
    with pytest.raises(PolicyError):
        Veto.from_file(path)


def test_a_policy_that_loads_is_unaffected(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("version: 1\nname: ok\nrules:\n  - {id: a, effect: deny, tools: [x]}\n")
    result = CliRunner().invoke(main, ["lint", str(path)])
    assert result.exit_code == 0, result.output
