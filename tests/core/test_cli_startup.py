"""`veto` starts fast (DESIGN.md 8): the common commands do not import heavy modules.

An import-set test instead of a timing test: which modules a command loads is
deterministic, while wall time on a shared CI machine is not. The times are
measured by ``benchmarks/bench_startup.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "policies" / "demo.yaml"

#: Never needed to print help, decide a call, lint a policy or list approvals.
HEAVY = (
    "fastapi",
    "starlette",
    "uvicorn",
    "jinja2",
    "httpx",
    "psycopg",
    "redis",
    "slack_sdk",
    "cryptography",
    "bcrypt",
    "mcp",
    "jsonschema",
    "opentelemetry",
    "smtplib",
    "urllib.request",  # only a webhook witness posts or reads checkpoints
    "http.client",
    "ssl",
    "veto_core.server",
    "veto_core.approvals.channels",  # opening a store needs the sinks, not the channels
)
#: Only commands that read a policy need the policy language's machinery.
POLICY_ONLY = ("pydantic", "yaml", "re2", "idna")
#: Only commands that open a store need the plugin system (stores are plugins).
STORE_ONLY = ("pluggy", "sqlite3")
#: Deciding or linting once never watches the policy files, nor writes an audit record;
#: validating a policy (these runs start with an empty policy cache) does not need the
#: operator reference that `veto schema` puts in the JSON Schema, nor a decision the
#: rule-by-rule explanation `veto explain` prints.
NOT_ON_CHECK = (
    "veto_core.policy.watch",
    "veto_core.audit.record",
    "veto_core.policy.operator_docs",
    "veto_core.decision.explain",
)
#: The WHATWG URL parser loads only for a policy with URL, e-mail or IP operators.
URL_ONLY = ("ada_url",)

#: A policy with conditions but no URL, e-mail, IP or time operator.
PLAIN_POLICY = """\
version: 1
name: plain
rules:
  - id: no-secrets
    effect: deny
    tools: [send_email]
    if: {field: args.body, matches: '(?i)password'}
  - id: read
    effect: allow
    tools: [read_file]
    if: {field: args.path, starts_with: /srv/}
"""

#: Host operators whose patterns are plain DNS names: compiling them needs no URL parser
#: (deciding a call with a URL or an address in it does).
HOSTS_POLICY = """\
version: 1
name: hosts
lists:
  company: [example.com, "*.Example.ORG."]
rules:
  - id: fetch
    effect: allow
    tools: [fetch]
    if: {field: args.url, url_host_in: [api.example.com, "*.cdn.example"]}
  - id: mail
    effect: allow
    tools: [send_email]
    if: {field: args.to, email_domain_in: {list: company}}
"""

_PROBE = """
import atexit, json, sys
def _dump():
    with open(sys.argv[1], "w") as fh:
        json.dump(sorted(sys.modules), fh)
atexit.register(_dump)
from veto_core.cli import main
main(sys.argv[2:], prog_name="veto")
"""


def _modules(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> set[str]:
    out = tmp_path / "modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(out), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", **(env or {})},
    )
    assert proc.returncode in (0, 1, 3), proc.stderr
    return set(json.loads(out.read_text()))


#: What listing approval requests does not need while none must be expired: the audit
#: log (opened on demand) and the entry-point scan of the plugins it would load.
READ_ONLY = ("importlib.metadata", "veto_core.audit.log", "veto_core.plugins")


@pytest.mark.parametrize(
    ("args", "forbidden"),
    [
        (("--help",), HEAVY + POLICY_ONLY + STORE_ONLY + ("rich",)),
        (("--version",), HEAVY + POLICY_ONLY + STORE_ONLY + ("rich",)),
        (("check", str(POLICY), "--tool", "read_file", "--json"), (*HEAVY, *NOT_ON_CHECK, "rich")),
        (("check", "-p", str(POLICY), "--tool", "read_file"), (*HEAVY, *NOT_ON_CHECK, "rich")),
        (("lint", str(POLICY)), (*HEAVY, *NOT_ON_CHECK, "rich")),
        (
            ("check", "{plain}", "--tool", "read_file", "--json"),
            (*HEAVY, *NOT_ON_CHECK, *URL_ONLY, "rich"),
        ),
        (("lint", "{plain}"), (*HEAVY, *NOT_ON_CHECK, *URL_ONLY, "rich")),
        (
            ("check", "{hosts}", "--tool", "read_file", "--json"),
            (*HEAVY, *NOT_ON_CHECK, *URL_ONLY, "rich"),
        ),
        (("lint", "{hosts}"), (*HEAVY, *NOT_ON_CHECK, *URL_ONLY, "rich")),
        # Nothing to tabulate (an empty list, or JSON lines): no rich. Nothing to record:
        # no audit log, so no plugin discovery (importlib.metadata).
        (("approvals", "list", "--db", "{db}"), (*HEAVY, *POLICY_ONLY, *READ_ONLY, "rich")),
        (
            ("approvals", "list", "--db", "{db}", "--json"),
            (*HEAVY, *POLICY_ONLY, *READ_ONLY, "rich"),
        ),
        (("approvals", "--help"), HEAVY + POLICY_ONLY + ("pluggy",)),
    ],
)
def test_common_commands_do_not_import_heavy_modules(
    tmp_path: Path, args: tuple[str, ...], forbidden: tuple[str, ...]
) -> None:
    db = str(tmp_path / "veto.db")
    plain = tmp_path / "plain.yaml"
    plain.write_text(PLAIN_POLICY)
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(HOSTS_POLICY)
    loaded = _modules(
        tmp_path,
        *(
            a.replace("{db}", db).replace("{plain}", str(plain)).replace("{hosts}", str(hosts))
            for a in args
        ),
    )
    assert "veto_core" in loaded and "click" in loaded  # the probe really ran the command
    heavy = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden))
    assert heavy == []


#: What validating a policy costs, and a policy validated before does not need
#: (policy/cache.py): pydantic, and the package-metadata scan its plugin loader makes.
VALIDATION_ONLY = ("pydantic", "pydantic_core", "annotated_types", "importlib.metadata", "email")


@pytest.mark.parametrize(
    "args",
    [
        ("check", "{policy}", "--tool", "read_file", "--json"),
        ("lint", "{policy}"),
        ("check", "{extending}", "--tool", "send_email"),  # extends base.yaml
    ],
)
def test_a_policy_validated_before_is_checked_without_pydantic(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    argv = [
        a.replace("{policy}", str(POLICY)).replace(
            "{extending}", str(REPO / "policies" / "support-agent.yaml")
        )
        for a in args
    ]
    first = _modules(tmp_path, *argv)
    assert "pydantic" in first  # validated (and cached) on the first run
    again = _modules(tmp_path, *argv)
    assert "veto_core.policy.compiler" in again  # it really loaded and compiled
    assert (
        sorted(m for m in again if any(m == f or m.startswith(f + ".") for f in VALIDATION_ONLY))
        == []
    )
    off = _modules(tmp_path, *argv, env={"VETO_POLICY_CACHE": "off"})
    assert "pydantic" in off


def test_lazily_listed_commands_show_their_real_help() -> None:
    """`veto --help` lists subcommands without importing them: the summary it shows
    must be the one the command itself declares."""
    from veto_core.cli import main

    ctx = click.Context(main, info_name="veto")
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        assert command is not None, name
        assert main.command_summary(name) == command.get_short_help_str(limit=300), name
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in ("approvals", "audit", "serve", "users", "policy", "check", "lint", "replay"):
        assert name in result.stdout


def test_public_api_still_imports_eagerly_by_name() -> None:
    """Lazy package exports keep `from veto_core import X` and `dir()` working."""
    import veto_core
    import veto_core.approvals
    import veto_core.audit
    import veto_core.policy

    for package in (veto_core, veto_core.audit, veto_core.approvals, veto_core.policy):
        for name in package.__all__:
            assert getattr(package, name) is not None, (package.__name__, name)
            assert name in dir(package)
        with pytest.raises(AttributeError):
            package.no_such_name  # noqa: B018


@pytest.mark.parametrize(
    ("state", "expected"),
    [("pending", "no pending approval requests"), ("all", "no approval requests")],
)
def test_empty_approvals_list_prints_what_rich_printed(
    tmp_path: Path, state: str, expected: str
) -> None:
    """The empty list is printed without rich: the same line rich's console printed."""
    import io

    from rich.console import Console

    from veto_core.cli import main

    result = CliRunner().invoke(
        main, ["approvals", "list", "--state", state, "--db", str(tmp_path / "veto.db")]
    )
    assert result.exit_code == 0, result.output
    rendered = io.StringIO()
    Console(file=rendered, highlight=False, soft_wrap=False, width=140).print(expected)
    assert result.stdout == rendered.getvalue() == expected + "\n"


_PLUGIN_PROBE = """
import importlib.metadata, json, os, sys
scans = []
_distributions = importlib.metadata.distributions
def counted(*args, **kwargs):
    scans.append(1)
    return _distributions(*args, **kwargs)
importlib.metadata.distributions = counted
from veto_core.cli import main
try:
    main(sys.argv[2:], prog_name="veto", standalone_mode=False)
except SystemExit:
    pass
during = len(scans)
import pydantic
class UserModel(pydantic.BaseModel):  # the user's own model, built after the command
    x: int
with open(sys.argv[1], "w") as fh:
    json.dump({"during": during, "after": len(scans) - during,
               "env": os.environ.get("PYDANTIC_DISABLE_PLUGINS")}, fh)
"""


@pytest.mark.parametrize("args", [("check", "{policy}", "--tool", "read_file"), ("lint", "{bad}")])
@pytest.mark.parametrize("user_setting", [None, "", "some_plugin"])
def test_policy_models_are_built_without_scanning_for_pydantic_plugins(
    tmp_path: Path, args: tuple[str, ...], user_setting: str | None
) -> None:
    """pydantic's plugin loader scans every installed distribution the first time a
    model is built (20-50 ms of a first `veto check`): the command turns plugins off
    for its own policy models only when the user has not set PYDANTIC_DISABLE_PLUGINS,
    and takes the setting away again, so a model built later still gets plugins."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: bad\nrules:\n  - id: r\n    effect: maybe\n    tools: [t]\n")
    out = tmp_path / "scans.json"
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "VETO_POLICY_CACHE": "off"}
    if user_setting is not None:
        env["PYDANTIC_DISABLE_PLUGINS"] = user_setting
    argv = [a.replace("{policy}", str(POLICY)).replace("{bad}", str(bad)) for a in args]
    proc = subprocess.run(
        [sys.executable, "-c", _PLUGIN_PROBE, str(out), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    if args[0] == "lint":
        assert "effect" in proc.stdout + proc.stderr  # it really validated, and failed
    seen = json.loads(out.read_text())
    assert seen["env"] == user_setting  # never left set, never changed
    if user_setting is None:
        assert seen == {"during": 0, "after": 1, "env": None}
    else:  # the user's explicit setting holds: these name no plugin, so pydantic scans
        assert seen["during"] == 1
