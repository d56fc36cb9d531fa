"""`veto`: the command line. Exit codes are part of the interface (see each `--help`)."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .approvals.cli import approvals_cli
from .audit.cli import audit_cli
from .calls import CallFormatError, call_from_mapping
from .channels_cli import channels_cli
from .engine import Explanation, Veto
from .model import Decision, Effect, ToolCall
from .plugins_cli import plugins_cmd
from .policy.errors import PolicyError
from .policy.lint import lint_policy
from .policy.schema import policy_json_schema
from .policy.testrunner import find_policy_and_tests, load_policy_tests, run_policy_tests
from .policy_cli import policy_cli

__all__ = ["main"]

_EFFECT_STYLE = {Effect.ALLOW: "green", Effect.DENY: "red", Effect.REQUIRE_APPROVAL: "yellow"}
_EXIT_BY_EFFECT = {Effect.ALLOW: 0, Effect.DENY: 1, Effect.REQUIRE_APPROVAL: 3}


def _console() -> Console:
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        # Piped output (CI logs, `| less`) gets a readable width instead of rich's 80.
        console = Console(highlight=False, soft_wrap=False, width=140)
    return console


def _load(path: str, env: str | None = None, tenant: str | None = None) -> Veto:
    """Load a policy or exit 2 with the loader's file:line:col messages."""
    try:
        return Veto.from_file(path, env=env, tenant=tenant)
    except PolicyError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(2) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="veto")
def main() -> None:
    """Veto: decide whether an AI agent's tool call may run (allow / deny /
    require_approval), from one YAML policy.

    Exit codes shared by every command: 0 success, 2 a policy or usage error.
    """


# --- lint / schema / init --------------------------------------------------------------


@main.command()
@click.argument("policy", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per finding.")
def lint(policy: str, as_json: bool) -> None:
    """Check POLICY: load errors (file:line:col) and suspicious rules.

    Exit codes: 0 no warnings, 1 warnings found, 2 the policy does not load.
    """
    veto = _load(policy)
    findings = lint_policy(veto.policy)
    if as_json:
        for f in findings:
            click.echo(
                json.dumps(
                    {
                        "severity": f.severity,
                        "code": f.code,
                        "rule_id": f.rule_id,
                        "file": f.file,
                        "line": f.line,
                        "message": f.message,
                    }
                )
            )
    else:
        for f in findings:
            click.echo(str(f))
        rules = len(veto.policy.rules)
        click.echo(
            f"{policy}: {rules} rules, revision {veto.policy_revision[:12]}, {len(findings)} finding(s)"
        )
    raise SystemExit(1 if any(f.severity == "warning" for f in findings) else 0)


@main.command()
def schema() -> None:
    """Print the JSON Schema of the policy file (for editors and CI validation)."""
    click.echo(json.dumps(policy_json_schema(), indent=2))


_STARTER_POLICY = """\
# A starter Veto policy. Reference: the README's "Policy language" section.
version: 1
name: {name}
default: deny                 # a tool that no rule names never runs
tests: ./{name}.tests.yaml

lists:
  company_domains: [example.com]

roles:
  agent: {{}}

rules:
  - id: reads
    effect: allow
    tools: [search, "read_*"]
    reason: Read-only tools are allowed

  - id: mail-internal
    effect: allow
    tools: [send_email]
    when: {{role: [agent]}}
    if: {{field: args.to, email_domain_in: {{list: company_domains}}}}
    otherwise: require_approval
    approval: {{approvers: ["role:admin"], timeout: 15m}}
    reason: Mail outside the company needs a human
"""

_STARTER_TESTS = """\
# `veto test {name}.tests.yaml`
policy: ./{name}.yaml
tests:
  - name: reads are allowed
    call: {{tool: read_file, args: {{path: /tmp/x}}}}
    expect: allow
    rule: reads
  - name: internal mail is allowed
    call: {{tool: send_email, args: {{to: a@example.com}}, principal: {{roles: [agent]}}}}
    expect: allow
    rule: mail-internal
  - name: external mail waits for a human
    call: {{tool: send_email, args: {{to: a@elsewhere.net}}, principal: {{roles: [agent]}}}}
    expect: require_approval
    rule: mail-internal
  - name: anything else is denied
    call: {{tool: delete_everything}}
    expect: deny
"""


@main.command()
@click.argument("directory", type=click.Path(file_okay=False), default=".")
@click.option("--name", default="policy", show_default=True, help="Base name of the files.")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def init(directory: str, name: str, force: bool) -> None:
    """Write a starter policy NAME.yaml and its tests NAME.tests.yaml into DIRECTORY."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    files = {
        target / f"{name}.yaml": _STARTER_POLICY.format(name=name),
        target / f"{name}.tests.yaml": _STARTER_TESTS.format(name=name),
    }
    existing = [str(p) for p in files if p.exists()]
    if existing and not force:
        click.echo(f"refusing to overwrite {', '.join(existing)} (use --force)", err=True)
        raise SystemExit(2)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
        click.echo(f"wrote {path}")
    click.echo(f"next: veto test {target / (name + '.tests.yaml')}")


# --- check / explain -------------------------------------------------------------------


_CALL_FLAGS = (
    "tool",
    "args_json",
    "agent",
    "roles",
    "user",
    "env",
    "tenant",
    "context_json",
    "now",
)


def _call_options(fn: Any) -> Any:
    """The flags that describe one call, handed to the command as ``call_flags``."""

    @functools.wraps(fn)
    def command(**kwargs: Any) -> Any:
        flags = {name: kwargs.pop(name) for name in _CALL_FLAGS}
        return fn(call_flags=flags, **kwargs)

    for option in reversed(
        [
            click.option("--tool", help="Tool name."),
            click.option(
                "--args",
                "args_json",
                default="{}",
                show_default=True,
                help="Arguments as a JSON object.",
            ),
            click.option("--agent", help="principal.agent"),
            click.option("--role", "roles", multiple=True, help="principal.roles (repeatable)."),
            click.option("--user", help="principal.user"),
            click.option("--env", help="Environment (dev/staging/prod)."),
            click.option("--tenant", help="Tenant."),
            click.option(
                "--context", "context_json", default="{}", help="Context values as a JSON object."
            ),
            click.option("--now", help="ISO-8601 time overriding the clock."),
        ]
    ):
        command = option(command)
    return command


def _call_from_flags(flags: dict[str, Any]) -> ToolCall:
    tool, args_json, agent, roles, user, env, tenant, context_json, now = (
        flags[k] for k in _CALL_FLAGS
    )
    if not tool:
        raise click.UsageError("--tool is required (or use --batch)")
    try:
        args = json.loads(args_json)
        context = json.loads(context_json)
    except json.JSONDecodeError as exc:
        raise click.UsageError(f"--args/--context must be JSON objects: {exc}") from None
    data: dict[str, Any] = {
        "tool": tool,
        "args": args,
        "context": context,
        "principal": {"agent": agent, "roles": list(roles), "user": user},
    }
    for key, value in (("env", env), ("tenant", tenant), ("now", now)):
        if value is not None:
            data[key] = value
    try:
        return call_from_mapping(data)
    except CallFormatError as exc:
        raise click.UsageError(str(exc)) from None


def _decision_json(decision: Decision) -> dict[str, Any]:
    return {
        "effect": decision.effect.value,
        "rule_ids": list(decision.rule_ids),
        "deciding_rule_ids": list(decision.deciding_rule_ids),
        "reasons": list(decision.reasons),
        "errors": list(decision.errors),
    }


def _batch_lines(stream: IO[str]) -> Iterator[str]:
    yield from stream


def run_batch(veto: Veto, source: IO[str], out: IO[str]) -> tuple[int, int]:
    """One decision line per input line, in order; a malformed line gets {"error": ...}.
    Returns (lines, errors)."""
    lines = errors = 0
    dumps = json.dumps
    write = out.write
    decide = veto.decide
    for number, raw in enumerate(source, start=1):
        if not raw.strip():
            continue
        lines += 1
        try:
            call = call_from_mapping(json.loads(raw))
        except json.JSONDecodeError as exc:
            errors += 1
            write(
                dumps({"error": f"line {number}: invalid JSON: {exc.msg} at column {exc.colno}"})
                + "\n"
            )
            continue
        except CallFormatError as exc:
            errors += 1
            write(dumps({"error": f"line {number}: {exc}"}) + "\n")
            continue
        d = decide(call)
        write(
            dumps(
                {
                    "effect": d.effect.value,
                    "rule_ids": d.rule_ids,
                    "deciding_rule_ids": d.deciding_rule_ids,
                    "reasons": d.reasons,
                    "errors": d.errors,
                },
                ensure_ascii=False,
            )
            + "\n"
        )
    return lines, errors


@main.command()
@click.option("--policy", "-p", "policy", required=True, type=click.Path(), help="Policy file.")
@_call_options
@click.option(
    "--batch",
    type=click.File("r", encoding="utf-8"),
    help="JSON-lines file of calls ('-' for stdin).",
)
@click.option(
    "--output",
    "-o",
    type=click.File("w", encoding="utf-8"),
    default="-",
    help="Where batch decisions go.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
def check(
    policy: str,
    call_flags: dict[str, Any],
    batch: IO[str] | None,
    output: IO[str],
    as_json: bool,
) -> None:
    """Decide one call given by flags, or every call of a JSON-lines --batch.

    A batch line is {"tool", "args", "principal": {...}, "env", "tenant", "context", "now"?};
    each yields one line {"effect", "rule_ids", "deciding_rule_ids", "reasons", "errors"},
    in order; a malformed line yields {"error": "..."} and the rest go on.

    Exit codes (single call): 0 allow, 1 deny, 3 require_approval, 2 policy/usage error.
    Batch: 0 when every line was processed (malformed lines included), 2 policy error.
    """
    veto = _load(policy, env=None, tenant=None)
    if batch is not None:
        lines, errors = run_batch(veto, batch, output)
        output.flush()
        click.echo(f"{lines} calls, {errors} malformed", err=True)
        raise SystemExit(0)
    decision = veto.decide(_call_from_flags(call_flags))
    if as_json:
        click.echo(json.dumps(_decision_json(decision), ensure_ascii=False))
    else:
        console = _console()
        console.print(
            f"[bold {_EFFECT_STYLE[decision.effect]}]{decision.effect.value}[/]  {', '.join(decision.deciding_rule_ids) or '(default)'}"
        )
        for reason in decision.reasons:
            console.print(f"  reason: {escape(reason)}")
        for error in decision.errors:
            console.print(f"  [red]error[/]: {escape(error)}")
    raise SystemExit(_EXIT_BY_EFFECT[decision.effect])


def _explanation_json(ex: Explanation) -> dict[str, Any]:
    return {
        "decision": _decision_json(ex.decision),
        "tool": ex.tool,
        "env": ex.env,
        "tenant": ex.tenant,
        "roles": list(ex.roles),
        "rules": [
            {
                "id": t.rule_id, "effect": t.effect.value, "file": t.file, "line": t.line, "tool_matched": t.tool_matched,
                "scope": t.scope, "condition": t.condition, "leaves": [list(x) for x in t.leaves], "errors": list(t.errors),
                "result": t.result.value if t.result else None,
            }
            for t in ex.rules
        ],
    }  # fmt: skip


@main.command()
@click.option("--policy", "-p", "policy", required=True, type=click.Path(), help="Policy file.")
@_call_options
@click.option("--json", "as_json", is_flag=True, help="Print the trace as JSON.")
def explain(
    policy: str,
    call_flags: dict[str, Any],
    as_json: bool,
) -> None:
    """Show every rule considered for one call, why it matched or not, and the result.

    Exit codes as for `veto check`.
    """
    veto = _load(policy)
    ex = veto.explain(_call_from_flags(call_flags))
    if as_json:
        click.echo(json.dumps(_explanation_json(ex), ensure_ascii=False, indent=2))
        raise SystemExit(_EXIT_BY_EFFECT[ex.decision.effect])
    console = _console()
    console.print(
        f"call: [bold]{ex.tool}[/]  env={ex.env}  tenant={ex.tenant}  roles={list(ex.roles)}"
    )
    table = Table(show_lines=False)
    for column in ("rule", "effect", "where", "applies?", "condition", "contributes"):
        table.add_column(column)
    for t in ex.rules:
        if not t.tool_matched:
            applies = "no: tool"
        elif t.scope:
            applies = f"no: {t.scope}"
        else:
            applies = "yes"
        detail = t.condition
        for desc, outcome in t.leaves:
            detail += f"\n  {escape(desc)} -> {escape(outcome)}"
        for err in t.errors:
            detail += f"\n  [red]{escape(err)}[/]"
        table.add_row(
            t.rule_id,
            t.effect.value,
            f"{Path(t.file).name}:{t.line}",
            escape(applies),
            detail,
            t.result.value if t.result else "-",
        )
    console.print(table)
    d = ex.decision
    console.print(
        f"decision: [bold {_EFFECT_STYLE[d.effect]}]{d.effect.value}[/]  deciding: {', '.join(d.deciding_rule_ids) or '(default)'}"
    )
    for reason in d.reasons:
        console.print(f"  reason: {escape(reason)}")
    raise SystemExit(_EXIT_BY_EFFECT[d.effect])


# --- test ------------------------------------------------------------------------------


@main.command("test")
@click.argument("target", type=click.Path(dir_okay=False))
@click.option(
    "--policy",
    "-p",
    "policy",
    type=click.Path(),
    help="Policy to test (default: from the tests file).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.option(
    "--min-coverage",
    type=click.FloatRange(0, 100),
    default=0.0,
    help="Fail (exit 1) below this rule coverage %.",
)
def test_command(target: str, policy: str | None, as_json: bool, min_coverage: float) -> None:
    """Run policy tests: TARGET is a NAME.tests.yaml file (or a policy with `tests:`).

    Prints a table and the rule coverage (rules no test exercised).
    Exit codes: 0 all pass, 1 a test failed (or coverage below --min-coverage), 2 a policy or tests-file error.
    """
    try:
        policy_path, tests_path = find_policy_and_tests(target, policy)
        cases, _ = load_policy_tests(tests_path)
    except PolicyError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(2) from None
    veto = _load(str(policy_path))
    report = run_policy_tests(veto, cases, policy_file=str(policy_path), tests_file=str(tests_path))
    coverage = report.coverage * 100
    ok = report.passed and coverage >= min_coverage
    if as_json:
        click.echo(
            json.dumps(
                {
                    "policy": report.policy_file, "tests": report.tests_file, "passed": report.passed, "coverage": round(coverage, 2),
                    "uncovered_rules": list(report.uncovered),
                    "results": [
                        {"name": r.case.name, "passed": r.passed, "expected": r.case.expect.value, "got": r.decision.effect.value, "rules": list(r.decision.deciding_rule_ids), "message": r.message}
                        for r in report.results
                    ],
                },
                indent=2,
            )
        )  # fmt: skip
        raise SystemExit(0 if ok else 1)
    console = _console()
    table = Table(title=f"{tests_path} against {policy_path}")
    for column in ("", "test", "expected", "got", "deciding rules", "detail"):
        table.add_column(column)
    for r in report.results:
        mark = "[green]PASS[/]" if r.passed else "[red]FAIL[/]"
        table.add_row(
            mark,
            escape(r.case.name),
            r.case.expect.value,
            r.decision.effect.value,
            ", ".join(r.decision.deciding_rule_ids) or "(default)",
            escape(r.message),
        )
    console.print(table)
    passed = sum(r.passed for r in report.results)
    console.print(f"{passed} passed, {len(report.results) - passed} failed")
    console.print(
        f"rule coverage: {coverage:.0f}% ({len(report.rule_ids) - len(report.uncovered)}/{len(report.rule_ids)} rules exercised)"
    )
    if report.uncovered:
        console.print(f"[yellow]never exercised[/]: {', '.join(report.uncovered)}")
    raise SystemExit(0 if ok else 1)


# --- demo ------------------------------------------------------------------------------


def _demo_policy_path() -> Path:
    """policies/demo.yaml from the working tree, else the copy shipped in the package."""
    candidates = [
        Path.cwd() / "policies" / "demo.yaml",
        Path(__file__).resolve().parents[4] / "policies" / "demo.yaml",
        Path(__file__).with_name("demo.yaml"),
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise click.ClickException("cannot find policies/demo.yaml; pass --policy")


@main.command()
@click.option(
    "--policy",
    "-p",
    "policy",
    type=click.Path(dir_okay=False),
    help="Policy to play (default: policies/demo.yaml).",
)
@click.option(
    "--db",
    default=None,
    metavar="URL",
    help="Where the decisions are recorded (default: $VETO_DB or ~/.veto/veto.db).",
)
def demo(policy: str | None, db: str | None) -> None:
    """Play a scripted support-agent session against the demo policy, record every
    decision in the audit trail, and show each decision with its rule and reason."""
    from .demo import run_demo

    path = Path(policy) if policy else _demo_policy_path()
    veto = _load(str(path), env="prod", tenant="acme")
    veto.db = db
    try:
        run_demo(veto, path, _console())
    finally:
        veto.close()


main.add_command(audit_cli, "audit")
main.add_command(approvals_cli, "approvals")
main.add_command(plugins_cmd, "plugins")
main.add_command(channels_cli, "channels")
main.add_command(policy_cli, "policy")

# --- serve / users (veto_core.server.cli; the [server] extra is imported only when run) ---
from .server.cli import serve_command, users_cli  # noqa: E402

main.add_command(serve_command, "serve")
main.add_command(users_cli, "users")

# --- mcp proxy (veto_core.mcp.cli; the [mcp] extra is imported only when run) ---
from .mcp.cli import mcp_cli  # noqa: E402

main.add_command(mcp_cli, "mcp")


@main.command()
@click.option(
    "--policy",
    "-p",
    "policy",
    required=True,
    type=click.Path(exists=True),
    help="The new policy (file or bundle).",
)
@click.option(
    "--since",
    default="7d",
    show_default=True,
    help="How far back: 1h, 24h, 7d, ... or an ISO time.",
)
@click.option("--tenant", default=None, help="Only this tenant's records.")
@click.option(
    "--db", default=None, metavar="URL", help="Audit store (default: $VETO_DB or ~/.veto/veto.db)."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report (for CI).")
def replay(policy: str, since: str, tenant: str | None, db: str | None, as_json: bool) -> None:
    """Re-decide recorded calls under a new policy and report every decision that would change.

    Exit codes: 0 nothing would change, 1 some decisions would change, 2 usage, policy or store error.
    """
    from .audit import AuditError, open_audit
    from .audit.cli import parse_since
    from .replay import replay as run_replay

    veto = _load(policy)
    try:
        with open_audit(db) as audit:
            records = audit.iter_records(
                since=parse_since(since), tenant=tenant, newest_first=False
            )
            report = run_replay(records, veto)
    except AuditError as exc:
        click.echo(f"audit store: {exc}", err=True)
        raise SystemExit(2) from None
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(
            f"replayed {report.replayed} recorded calls under {policy} ({veto.policy_revision[:12]}): {len(report.changes)} would change, {report.unchanged} unchanged"
        )
        for why, count in sorted(report.skipped.items()):
            click.echo(f"  skipped {count}: {why}")
        for (before, after, rules), count in report.groups():
            click.echo(f"  {count:6d}  {before} -> {after}  by {rules}")
        for change in report.changes[:20]:
            click.echo(
                f"    {change.record_id}  {change.tenant}  {change.tool}: {change.before} -> {change.after}"
            )
        if len(report.changes) > 20:
            click.echo(f"    ... {len(report.changes) - 20} more (--json lists all)")
    raise SystemExit(1 if report.changed else 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
