"""One exit-code convention for every `veto` command (DESIGN.md 8): 0 ok / allow,
1 deny or a check failed, 2 usage or policy error, 3 require_approval.

The table below walks every command's paths; a command added without an entry
here fails `test_every_command_is_walked`."""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from veto_core import Principal, ToolCall, Veto
from veto_core.cli import main

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / "policies" / "demo.yaml")

APPROVAL_POLICY = """
version: 1
name: exit-codes
rules:
  - id: pay
    effect: require_approval
    tools: [pay]
    approval: {approvers: ["role:finance"], timeout: 1h}
"""

BROKEN = "version: 1\nname: broken\nrules:\n  - id: r\n    effect: maybe\n    tools: [x]\n"
WARNS = "version: 1\nname: warns\ndefault: allow\nrules:\n  - {id: r, effect: deny, tools: [x]}\n"
FAILING_TESTS = (
    "policy: ./demo.yaml\ntests:\n  - {name: wrong, call: {tool: drop_database}, expect: allow}\n"
)

#: (argv with {placeholders}, expected exit code)
CASES: list[tuple[str, int]] = [
    ("nosuchcommand", 2),
    ("--help", 0),
    # lint
    ("lint {demo}", 0),
    ("lint -p {demo}", 0),
    ("lint", 2),
    ("lint {missing}", 2),
    ("lint {broken}", 2),
    ("lint {warns}", 1),
    # check / explain
    ("check {demo} --tool get_ticket", 0),
    ("check -p {demo} --tool drop_database", 1),
    ("check {demo} --tool issue_refund --args {big} --role support", 3),
    ("check {demo}", 2),
    ("check --tool get_ticket", 2),
    ("check {demo} --tool x --args [1", 2),
    ("check {demo} -p {warns} --tool x", 2),
    ("check {broken} --tool x", 2),
    ("check {missing} --tool x", 2),
    ("check {demo} --batch {missing}", 2),
    ("explain {demo} --tool get_ticket", 0),
    ("explain -p {demo} --tool drop_database", 1),
    ("explain {demo} --tool issue_refund --args {big}", 3),
    ("explain {demo}", 2),
    ("explain {broken} --tool x", 2),
    # test / schema / init
    ("test {demo_tests}", 0),
    ("test {demo}", 0),
    ("test -p {demo}", 0),
    ("test {failing_tests}", 1),
    ("test", 2),
    ("test {missing_tests}", 2),
    ("test {warns}", 2),  # a policy with no tests: file
    ("schema", 0),
    ("init {tmp}/init", 0),
    ("init {tmp}/init", 2),  # would overwrite
    # demo / replay
    ("demo {missing} --db {db}", 2),
    ("demo {broken} --db {db}", 2),
    ("replay {approval} --db {db}", 0),  # the policy that decided: nothing changes
    ("replay {demo} --db {db}", 1),
    ("replay", 2),
    ("replay {missing} --db {db}", 2),
    ("replay {demo} --since yesterday-ish --db {db}", 2),
    ("replay {demo} --db nosuch://x", 2),
    # audit
    ("audit query --db {db}", 0),
    ("audit query --db nosuch://x", 2),
    ("audit query --since soon --db {db}", 2),
    ("audit export --db {db} --limit 1", 0),
    ("audit export --db nosuch://x", 2),
    ("audit verify --db {db}", 0),
    ("audit evidence --db {db}", 2),  # --out is required
    ("audit evidence --db nosuch://x --out {tmp}/e.zip", 2),
    ("audit erase --db {db}", 2),  # --user is required
    ("audit erase --db nosuch://x --user u", 2),
    ("audit purge --db nosuch://x --retention-days 1", 2),
    ("audit purge --db {db} --retention-days -1", 2),
    ("audit checkpoint --db nosuch://x", 2),
    # approvals
    ("approvals list --db {db}", 0),
    ("approvals list --db nosuch://x", 2),
    ("approvals list --state bogus --db {db}", 2),
    ("approvals show {rid} --db {db}", 0),
    ("approvals show 0123456789ab --db {db}", 2),
    ("approvals approve 0123456789ab --as fiona --role finance --admin --db {db}", 2),
    ("approvals approve {rid} --as fiona --admin --db {db}", 2),  # not eligible: refused
    ("approvals approve {rid} --as fiona --role finance --db {db}", 2),  # no credential
    ("approvals approve {rid} --as alice --role finance --admin --db {db}", 2),  # own call
    ("approvals approve {rid} --admin --db {db}", 2),  # who?
    ("approvals deny 0123456789ab --as fiona --role finance --admin --db {db}", 2),
    ("approvals cancel 0123456789ab --as ops --admin --db {db}", 2),
    ("approvals cancel {rid} --as ops --admin --db {db}", 0),
    ("approvals cancel {rid} --as ops --admin --db {db}", 0),  # already cancelled: idempotent
    ("approvals deny {rid} --as fiona --role finance --admin --db {db}", 2),  # no longer pending
    # policy revisions
    ("policy history --db {db}", 0),
    ("policy history --db nosuch://x", 2),
    ("policy show {demo}", 0),
    ("policy show nonsense", 2),
    ("policy diff {demo} {demo}", 0),
    ("policy diff {demo} {warns}", 1),
    ("policy diff {demo} {broken}", 2),
    # server and its users
    ("serve --port notaport", 2),
    ("users list --db {db}", 0),
    ("users list --db nosuch://x", 2),
    ("users remove nobody --db {db}", 2),
    ("users passwd nobody --password-stdin --db {db}", 2),
    ("users token nobody --db {db}", 2),
    ("users tokens nobody --db {db}", 2),
    ("users revoke-token nobody tok --db {db}", 2),
    ("users admin-key --db {db}", 0),
    ("users admin-key --add nonsense --db {db}", 2),
    ("users add shorty --password-stdin --db {db}", 2),  # password too short
    # mcp proxy (a usage or policy error never starts the upstream)
    ("mcp proxy {missing} --name gh -- true", 2),
    ("mcp proxy {broken} --name gh -- true", 2),
    ("mcp proxy {demo} -- true", 2),  # --name is required
    # plugins / channels
    ("plugins", 0),
    ("plugins --bogus", 2),
    ("channels test slack", 2),  # not configured
    ("channels test email --config {tmp}/absent.toml", 2),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("exit")
    for name, text in (("broken", BROKEN), ("warns", WARNS), ("approval", APPROVAL_POLICY)):
        (tmp / f"{name}.yaml").write_text(text)
    shutil.copy(DEMO, tmp / "demo.yaml")
    (tmp / "failing.tests.yaml").write_text(FAILING_TESTS)
    db = str(tmp / "veto.db")
    veto = Veto.from_file(tmp / "approval.yaml", env="prod", tenant="acme", db=db)
    auth = veto.authorize(
        ToolCall(
            tool="pay",
            args={"amount": 1},
            principal=Principal(agent="bot", user="alice"),
            run_id="r",
            tool_call_id="c",
        )
    )
    assert auth.approval is not None
    veto.close()
    return {
        "tmp": str(tmp),
        "db": db,
        "rid": auth.approval.id,
        "demo": DEMO,
        "demo_tests": str(REPO / "policies" / "demo.tests.yaml"),
        "failing_tests": str(tmp / "failing.tests.yaml"),
        "missing": str(tmp / "missing.yaml"),
        "missing_tests": str(tmp / "missing.tests.yaml"),
        "broken": str(tmp / "broken.yaml"),
        "warns": str(tmp / "warns.yaml"),
        "approval": str(tmp / "approval.yaml"),
        "big": '{"amount":450}',
    }


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("VETO_DB", "VETO_USER", "VETO_ROLES", "VETO_SLACK_BOT_TOKEN", "VETO_SMTP_URL",
                "VETO_URL", "VETO_TOKEN", "VETO_CONFIG"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VETO_DISABLE_PLUGINS", "1")


def test_exit_codes_follow_one_convention(world: dict[str, str]) -> None:
    wrong = []
    for template, expected in CASES:
        argv = [part.format(**world) for part in template.split(" ")]
        result = CliRunner().invoke(main, argv, input="short\n")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            wrong.append(f"veto {template}: raised {result.exception!r}")
        elif result.exit_code != expected:
            wrong.append(
                f"veto {template}: exit {result.exit_code}, expected {expected}: "
                f"{(result.stderr or result.stdout).strip()[-300:]}"
            )
    assert wrong == [], "\n".join(wrong)


def _leaves(group: click.Group, ctx: click.Context, prefix: str = "") -> list[str]:
    out = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            out += _leaves(command, ctx, f"{prefix}{name} ")
        else:
            out.append(f"{prefix}{name}")
    return out


def test_every_command_is_walked() -> None:
    ctx = click.Context(main, info_name="veto")
    walked = {template for template, _ in CASES}
    missing = [
        leaf for leaf in _leaves(main, ctx)
        if not any(t == leaf or t.startswith(leaf + " ") for t in walked)
    ]  # fmt: skip
    assert missing == []
