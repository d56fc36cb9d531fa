"""`veto lint` counts a list named in a source's `if` as used (DESIGN.md 2.6, 2.7)."""

from __future__ import annotations

from veto_core import Veto
from veto_core.policy.lint import lint_policy

POLICY = """
version: 1
name: l
lists:
  secret_paths: ["*/.ssh/*"]
  unused: [x]
sources:
  - id: keys
    tools: [read_file]
    if: {field: args.path, glob: {list: secret_paths}}
    labels: [secret]
rules:
  - id: no-exfil
    effect: deny
    tools: [send_email]
    if: {field: run.labels, contains: secret}
"""


def test_a_list_used_only_by_a_source_is_not_reported_unused() -> None:
    findings = lint_policy(Veto.from_yaml(POLICY).policy)
    unused = {f.message for f in findings if f.code == "unused-list"}
    assert unused == {"list 'unused' is never referenced"}
