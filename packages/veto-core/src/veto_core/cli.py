"""`veto`: the command line. Exit codes are part of the interface (see each `--help`)."""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from . import __version__

if TYPE_CHECKING:
    from rich.console import Console

    from .engine import Explanation, Veto
    from .model import Decision, ToolCall
    from .runs.store import RunStore

# Heavy modules (pydantic, rich, the audit store, the server extra...) are imported
# inside the commands that need them: `veto --help`, `check`, `lint` and
# `approvals list` start in well under 0.2 s (DESIGN.md 8, benchmarks/bench_startup.py).

__all__ = ["main"]

_EXIT_BY_EFFECT = {"allow": 0, "deny": 1, "require_approval": 3}
_EFFECT_STYLE = {"allow": "green", "deny": "red", "require_approval": "yellow"}

#: Subcommands living in other modules: name -> ("module:attribute", short help).
#: The short help is what `veto --help` shows without importing the module
#: (tests/core/test_cli_startup.py checks it matches the command's own).
_LAZY: dict[str, tuple[str, str]] = {
    "approvals": (
        "veto_core.approvals.cli:approvals_cli",
        "Approval requests: list, show, approve, deny, cancel.",
    ),
    "audit": (
        "veto_core.audit.cli:audit_cli",
        "Query, export and verify the tamper-evident audit trail.",
    ),
    "channels": (
        "veto_core.channels_cli:channels_cli",
        "Approval channels (Slack, email): check their settings.",
    ),
    "mcp": (
        "veto_core.mcp.cli:mcp_cli",
        "Govern MCP servers: one policy for every MCP client.",
    ),
    "plugins": (
        "veto_core.plugins_cli:plugins_cmd",
        "List loaded plugins: built-ins and ``veto`` entry points, with the hooks each...",
    ),
    "policy": (
        "veto_core.policy_cli:policy_cli",
        "Policy revisions: every revision that decided a call is kept in the store.",
    ),
    "serve": (
        "veto_core.server.cli:serve_command",
        "Run the dashboard and JSON API (approvals, audit, policies, explain).",
    ),
    "users": (
        "veto_core.server.cli:users_cli",
        "Dashboard users: roles viewer / approver / admin per tenant, API tokens.",
    ),
}


class _LazyGroup(click.Group):
    """A group whose subcommands from other modules are imported only when run."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in _LAZY:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = _LAZY[cmd_name][0].partition(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        self.commands[cmd_name] = command
        return command

    def command_summary(self, cmd_name: str) -> str:
        if cmd_name in _LAZY and cmd_name not in self.commands:
            return _LAZY[cmd_name][1]
        return self.commands[cmd_name].get_short_help_str(limit=300)

    def invoke(self, ctx: click.Context) -> Any:
        """One exit-code convention for every command (DESIGN.md 8): an error is 2.
        click's own ClickException exits 1, which `veto` reserves for "deny / check
        failed"; a Veto error that escapes a command is an error too, never a crash."""
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            if exc.exit_code == 1:
                exc.exit_code = 2  # type: ignore[misc]  # click declares it a ClassVar
            raise
        except Exception as exc:
            if not type(exc).__module__.startswith("veto_core."):
                raise
            click.echo(f"error: {exc}", err=True)
            raise SystemExit(2) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [
            (name, self.command_summary(name))
            for name in self.list_commands(ctx)
            if not (name in self.commands and self.commands[name].hidden)
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _console() -> Console:
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        # Piped output (CI logs, `| less`) gets a readable width instead of rich's 80.
        console = Console(highlight=False, soft_wrap=False, width=140)
    return console


def _from_file(
    path: str,
    env: str | None = None,
    tenant: str | None = None,
    *,
    db: str | None = None,
    run_store: RunStore | None = None,
) -> Veto:
    """``Veto.from_file`` with the user's validated-policy cache (policy/cache.py): a
    file validated before is not validated again, and pydantic is not even imported."""
    from .engine import Veto
    from .policy.cache import PolicyCache, using

    with using(PolicyCache.from_env()), _policy_models_without_pydantic_plugins():
        return Veto.from_file(path, env=env, tenant=tenant, db=db, run_store=run_store)


#: pydantic's switch for its plugins (pydantic/plugin/_loader.py): "__all__" turns them off.
_PYDANTIC_PLUGINS_ENV = "PYDANTIC_DISABLE_PLUGINS"


@contextmanager
def _policy_models_without_pydantic_plugins() -> Iterator[None]:
    """Build and run veto's policy models without pydantic plugins, unless the user
    set ``PYDANTIC_DISABLE_PLUGINS`` themselves (their setting is never changed).

    Building the first model makes pydantic look for plugins in the entry points of
    every installed distribution: 20-50 ms of a first ``veto check`` or ``veto lint``
    (a policy not in the validated-policy cache), for plugins that would only observe
    veto's own validation of its policy file. pydantic reads the variable each time a
    model is built and remembers nothing while it is set, so once it is removed again
    models built later in the process (the user's own, in a long-running command)
    still get their plugins, and child processes never see it."""
    if _PYDANTIC_PLUGINS_ENV in os.environ:
        yield
        return
    os.environ[_PYDANTIC_PLUGINS_ENV] = "__all__"
    try:
        yield
    finally:
        os.environ.pop(_PYDANTIC_PLUGINS_ENV, None)


def _load(
    path: str,
    env: str | None = None,
    tenant: str | None = None,
    *,
    db: str | None = None,
    run_store: RunStore | None = None,
) -> Veto:
    """Load a policy or exit 2 with the loader's file:line:col messages."""
    from .policy.errors import PolicyError

    try:
        return _from_file(path, env=env, tenant=tenant, db=db, run_store=run_store)
    except PolicyError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(2) from None


def _policy_argument(fn: Any) -> Any:
    """The policy as the first positional argument or as ``-p/--policy`` (DESIGN.md 8);
    the command receives it as ``policy`` (None when neither was given)."""

    @functools.wraps(fn)
    def command(*, policy_arg: str | None, policy_opt: str | None, **kwargs: Any) -> Any:
        if policy_arg and policy_opt and policy_arg != policy_opt:
            raise click.UsageError(
                f"two policies given: {policy_arg} and -p {policy_opt}; pass one"
            )
        return fn(policy=policy_arg or policy_opt, **kwargs)

    command = click.option(
        "--policy", "-p", "policy_opt", type=click.Path(), help="Policy file or bundle."
    )(command)
    return click.argument("policy_arg", metavar="[POLICY]", required=False, type=click.Path())(
        command
    )


def _require_policy(policy: str | None) -> str:
    if not policy:
        raise click.UsageError("missing the policy: veto COMMAND POLICY ... (or -p POLICY)")
    return policy


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="veto")
def main() -> None:
    """Veto: decide whether an AI agent's tool call may run (allow / deny /
    require_approval), from one YAML policy.

    The policy is the first argument of every command that reads one (-p POLICY works
    too). Exit codes shared by every command: 0 ok / allow, 1 deny or a check failed
    (lint warnings, failing tests, a broken chain, a replay that changes decisions),
    2 usage or policy error (bad flag, missing file, unknown or ambiguous id, a vote
    the approval refuses), 3 require_approval.
    """


# --- lint / schema / init --------------------------------------------------------------


@main.command()
@_policy_argument
@click.option("--json", "as_json", is_flag=True, help="One JSON object per finding.")
def lint(policy: str | None, as_json: bool) -> None:
    """Check POLICY: load errors (file:line:col) and suspicious rules.

    Exit codes: 0 no warnings, 1 warnings found, 2 the policy does not load.
    """
    from .policy.errors import PolicyError
    from .policy.lint import lint_policy

    policy = _require_policy(policy)
    try:
        veto = _from_file(policy)
    except PolicyError as exc:
        from .policy.collect import collect_load_problems

        # Every round of load errors at once (schema, duplicate ids, references).
        with _policy_models_without_pydantic_plugins():
            problems = collect_load_problems(policy)
        for problem in problems or exc.problems:
            click.echo(str(problem), err=True)
        raise SystemExit(2) from None
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
    from .policy.schema import policy_json_schema

    click.echo(json.dumps(policy_json_schema(), indent=2))


_STARTER_POLICY = """\
# A starter Veto policy. Reference: docs/policy/language.md (the docs site's "Policy language").
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
    from .calls import CallFormatError, call_from_mapping

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
    """One line per input line, in order: a decision per call line, ``{"observed": true}``
    per observe line (runs kept in memory: `OfflineRuns`), ``{"error": ...}`` per
    malformed or refused line. Returns (lines, errors)."""
    lines = errors = 0
    from .calls import CallFormatError, call_from_mapping, observation_from_mapping
    from .runs.offline import OfflineRuns
    from .runs.tracker import ObservationError

    runs = OfflineRuns(veto)
    dumps = json.dumps
    write = out.write
    decide = runs.decide
    for number, raw in enumerate(source, start=1):
        if not raw.strip():
            continue
        lines += 1
        try:
            data = json.loads(raw)
            if isinstance(data, dict) and "observe" in data:
                observed, output = observation_from_mapping(data)
                runs.observe(observed, output)
                write('{"observed": true}\n')
                continue
            call = call_from_mapping(data)
        except json.JSONDecodeError as exc:
            errors += 1
            write(
                dumps({"error": f"line {number}: invalid JSON: {exc.msg} at column {exc.colno}"})
                + "\n"
            )
            continue
        except (CallFormatError, ObservationError) as exc:
            errors += 1
            write(dumps({"error": f"line {number}: {exc}"}, ensure_ascii=False) + "\n")
            continue
        except (ValueError, RecursionError) as exc:  # a 5,000-digit number, nesting too deep
            errors += 1
            write(dumps({"error": f"line {number}: invalid JSON: {exc}"}) + "\n")
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
@_policy_argument
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
    policy: str | None,
    call_flags: dict[str, Any],
    batch: IO[str] | None,
    output: IO[str],
    as_json: bool,
) -> None:
    """Decide one call given by flags, or every call of a JSON-lines --batch.

    A batch line is {"tool", "args", "principal": {...}, "env", "tenant", "context", "now"?,
    "run_id"?}; each yields one line {"effect", "rule_ids", "deciding_rule_ids", "reasons",
    "errors"}, in order; a malformed line yields {"error": "..."} and the rest go on. A line
    {"observe": {call..., "run_id", "output"}} records a call's output in the batch's
    in-memory run and yields {"observed": true}; allowed calls join their run as if they ran.

    Exit codes (single call): 0 allow, 1 deny, 3 require_approval, 2 policy/usage error.
    Batch: 0 when every line was processed (malformed lines included), 2 policy error.
    """
    if batch is not None:
        from .runs.memory import MemoryRunStore

        veto = _load(_require_policy(policy), env=None, tenant=None, run_store=MemoryRunStore())
        lines, errors = run_batch(veto, batch, output)
        output.flush()
        click.echo(f"{lines} calls, {errors} malformed", err=True)
        raise SystemExit(0)
    veto = _load(_require_policy(policy), env=None, tenant=None)
    decision = veto.decide(_call_from_flags(call_flags))
    if as_json:
        click.echo(json.dumps(_decision_json(decision), ensure_ascii=False))
    else:
        # click.style, not rich: `veto check` is the command scripts call in loops.
        effect = decision.effect.value
        rules = ", ".join(decision.deciding_rule_ids) or "(default)"
        click.echo(f"{click.style(effect, fg=_EFFECT_STYLE[effect], bold=True)}  {rules}")
        for reason in decision.reasons:
            click.echo(f"  reason: {reason}")
        for error in decision.errors:
            click.echo(f"  {click.style('error', fg='red')}: {error}")
    raise SystemExit(_EXIT_BY_EFFECT[decision.effect.value])


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
        "run": {
            "labels": list(ex.run_labels) if ex.run_labels is not None else None,
            "error": ex.run_error,
            "taint": [
                {
                    "rule": t.rule_id, "field": t.field, "labels": list(t.labels),
                    "outputs": [
                        {"seq": m.seq, "tool": m.tool, "tool_call_id": m.tool_call_id,
                         "labels": sorted(m.labels), "value": m.value, "excerpt": m.excerpt}
                        for m in t.matches
                    ],
                }
                for t in ex.taint
            ],
        },
    }  # fmt: skip


@main.command()
@_policy_argument
@_call_options
@click.option("--json", "as_json", is_flag=True, help="Print the trace as JSON.")
@click.option(
    "--run-id",
    default=None,
    metavar="RUN",
    help="Decide the call in this run: flow rules read its history (labels, calls, tainted values).",
)
@click.option(
    "--db",
    default=None,
    metavar="URL",
    help="Where runs are stored (default: $VETO_RUNS_URL, else $VETO_DB or ~/.veto/veto.db).",
)
def explain(
    policy: str | None,
    call_flags: dict[str, Any],
    as_json: bool,
    run_id: str | None,
    db: str | None,
) -> None:
    """Show every rule considered for one call, why it matched or not, and the result.

    With --run-id, also the run's labels and, for each tainted value, the observed
    output that tainted it. Exit codes as for `veto check`.
    """
    from dataclasses import replace

    veto = _load(_require_policy(policy), db=db)
    call = _call_from_flags(call_flags)
    if run_id is not None:
        call = replace(call, run_id=run_id)
    ex = veto.explain(call)
    if as_json:
        click.echo(json.dumps(_explanation_json(ex), ensure_ascii=False, indent=2))
        raise SystemExit(_EXIT_BY_EFFECT[ex.decision.effect.value])
    from rich.markup import escape
    from rich.table import Table

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
        f"decision: [bold {_EFFECT_STYLE[d.effect.value]}]{d.effect.value}[/]  deciding: {', '.join(d.deciding_rule_ids) or '(default)'}"
    )
    for reason in d.reasons:
        console.print(f"  reason: {escape(reason)}")
    if run_id is not None:
        if ex.run_error is not None:
            console.print(f"run {escape(run_id)}: [red]{escape(ex.run_error)}[/]")
        else:
            console.print(f"run {escape(run_id)}: labels {list(ex.run_labels or ())}")
        for taint in ex.taint:
            for m in taint.matches:
                console.print(
                    f"  tainted: {escape(taint.field)} {escape(repr(m.value))} [{escape(taint.rule_id)}] "
                    f"from output #{m.seq} of {escape(m.tool)}"
                    f"{' (call ' + escape(m.tool_call_id) + ')' if m.tool_call_id else ''} "
                    f"labels {sorted(m.labels)}: {escape(m.excerpt)!r}"
                )
    veto.close()
    raise SystemExit(_EXIT_BY_EFFECT[d.effect.value])


# --- test ------------------------------------------------------------------------------


@main.command("test")
@click.argument("target", required=False, type=click.Path(dir_okay=False))
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
def test_command(
    target: str | None, policy: str | None, as_json: bool, min_coverage: float
) -> None:
    """Run policy tests: TARGET is a NAME.tests.yaml file (or a policy with `tests:`,
    given as TARGET or as -p POLICY).

    Prints a table and the rule coverage (rules no test exercised) and, for flow
    policies, the sources no test's `steps:` observed. A case's `steps:` (calls and
    `observe:` outputs) run before its call, in a fresh in-memory run.
    Exit codes: 0 all pass, 1 a test failed (or coverage below --min-coverage), 2 a policy or tests-file error.
    """
    from rich.markup import escape
    from rich.table import Table

    from .policy.errors import PolicyError
    from .policy.testrunner import find_policy_and_tests, load_policy_tests, run_policy_tests

    if target is None:
        # `veto test -p policy.yaml`: the policy names its tests file.
        target, policy = _require_policy(policy), None
    try:
        policy_path, tests_path = find_policy_and_tests(target, policy)
        cases, _ = load_policy_tests(tests_path)
    except PolicyError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(2) from None
    from .runs.memory import MemoryRunStore

    veto = _load(str(policy_path), run_store=MemoryRunStore())
    report = run_policy_tests(veto, cases, policy_file=str(policy_path), tests_file=str(tests_path))
    coverage = report.coverage * 100
    ok = report.passed and coverage >= min_coverage
    if as_json:
        click.echo(
            json.dumps(
                {
                    "policy": report.policy_file, "tests": report.tests_file, "passed": report.passed, "coverage": round(coverage, 2),
                    "uncovered_rules": list(report.uncovered), "unused_sources": list(report.unused_sources),
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
    if report.source_ids:
        used = len(report.source_ids) - len(report.unused_sources)
        console.print(
            f"source coverage: {used}/{len(report.source_ids)} sources gave labels in steps"
        )
        if report.unused_sources:
            console.print(f"[yellow]never observed[/]: {', '.join(report.unused_sources)}")
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
@_policy_argument
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

    # POLICY (or -p) defaults to policies/demo.yaml.
    path = Path(policy) if policy else _demo_policy_path()
    veto = _load(str(path), env="prod", tenant="acme")
    veto.db = db
    try:
        run_demo(veto, path, _console())
    finally:
        veto.close()


def _open_runs(db: str | None) -> RunStore:
    """The run store next to the audit store at ``db`` ($VETO_RUNS_URL when set)."""
    from .runs.backends import open_run_store

    return open_run_store(None, default=db)


@main.command()
@_policy_argument
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
def replay(
    policy: str | None, since: str, tenant: str | None, db: str | None, as_json: bool
) -> None:
    """Re-decide recorded calls under a new policy and report every decision that would change.

    POLICY is the new policy (file or bundle).
    Exit codes: 0 nothing would change, 1 some decisions would change, 2 usage, policy or store error.
    """
    from .audit import AuditError, open_audit
    from .audit.cli import parse_since
    from .replay import UNKNOWN, ReplayRunStore, warmup_window
    from .replay import replay as run_replay

    policy = _require_policy(policy)
    veto = _load(policy, run_store=ReplayRunStore())
    start = parse_since(since)
    try:
        with open_audit(db) as audit:
            # Calls within the limits' window before --since count towards them.
            records = audit.iter_records(
                since=start - warmup_window(veto) if start else None,
                tenant=tenant,
                newest_first=False,
            )
            report = run_replay(records, veto, report_since=start, history=lambda: _open_runs(db))
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
        unknown = [c for c in report.changes if c.after == UNKNOWN]
        if unknown:
            click.echo(
                f"  {len(unknown)} calls of runs whose history is not in the run store could not be re-decided (unknown): {unknown[0].reasons[0]}"
            )
        for change in report.changes[:20]:
            click.echo(
                f"    {change.record_id}  {change.tenant}  {change.tool}: {change.before} -> {change.after}"
            )
        if len(report.changes) > 20:
            click.echo(f"    ... {len(report.changes) - 20} more (--json lists all)")
    raise SystemExit(1 if report.changed else 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
