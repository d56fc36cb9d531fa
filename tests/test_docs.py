"""The docs site builds (``mkdocs build --strict``) and every code block in it runs.

Each page (and the README) runs in a temporary directory holding copies of ``policies/`` and
``examples/``, with ``HOME`` there (so ``~/.veto`` is fresh) and the workspace's ``veto`` on
``PATH``; a page's blocks run in order and share that directory:

- ``python``: run as a script. A block that is only ``--8<-- "examples/x.py"`` (a snippet the
  site includes) runs that example file.
- ``bash``: run with ``set -euo pipefail``; ``uv run CMD`` runs CMD, any other ``uv`` command
  fails. A line ending in ``# exit N`` must exit with N (``veto check`` exits 1 on deny, 3 on
  require_approval).
- ``yaml``: a block whose first line is ``# file: PATH`` is written to PATH. A policy is linted
  (``veto lint`` must not exit 2) unless its first line says ``(does not load)``, and then it
  must not load; a tests file (``policy:`` and ``tests:``) is run with ``veto test``.
- ``toml`` is loaded as ``veto.toml`` (``load_config``; written to PATH with ``# file:``);
  ``json`` is parsed.

A block opts out only with ``<!-- not-run: REASON -->`` before it (counted in the summary).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from docs_blocks import CODE_LANGS, DOCS, OUTPUT_LANGS, REPO, Block, blocks, inventory, pages
from veto_core import Decision, Effect, Principal, ToolCall, Veto
from veto_core.config import load_config
from veto_core.policy.operator_docs import (
    MISSING,
    OPERATOR_DOCS,
    RUN_OPERATORS,
    TAINT_EXAMPLE,
    OperatorCase,
)

sys.path.insert(0, str(DOCS / "hooks"))
import veto_docs  # the mkdocs hook, imported by path as mkdocs does

BIN = Path(sys.executable).parent
_FILE = re.compile(r"^#\s*file:\s*(?P<path>\S+)(?P<rest>.*)$")
_EXIT = re.compile(r"^(?P<cmd>.*?)\s+#\s*exit\s+(?P<code>\d+)\s*$")
_SNIPPET = re.compile(r'^--8<--\s+"(?P<path>[^"]+)"\s*$')


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VETO_")}
    env.update(
        HOME=str(home),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        COLUMNS="120",
        NO_MKDOCS_2_WARNING="1",
        CREWAI_DISABLE_TELEMETRY="true",
        OTEL_SDK_DISABLED="true",
        CREWAI_TRACING_ENABLED="false",
    )
    return env


def _run(argv: list[str], cwd: Path, block: Block, timeout: float = 240) -> str:
    proc = subprocess.run(
        argv, cwd=cwd, env=_env(cwd / "home"), capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, (
        f"{block.where}: {block.lang} block exited {proc.returncode}\n"
        f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    )
    return proc.stdout


def _bash_script(block: Block) -> str:
    out = [
        "set -euo pipefail",
        'uv() { if [ "${1:-}" = run ]; then shift; "$@"; '
        'else echo "docs tests run only `uv run ...`, not: uv $*" >&2; return 97; fi; }',
    ]
    for offset, line in enumerate(block.text.splitlines(), start=1):
        m = _EXIT.match(line)
        if not m:
            out.append(line)
            continue
        code, where = m.group("code"), f"{block.where}+{offset}"
        out += [
            "set +e",
            m.group("cmd"),
            "rc=$?",
            "set -e",
            f'if [ "$rc" -ne {code} ]; then echo "{where}: expected exit {code}, got $rc" >&2; exit 99; fi',
        ]
    return "\n".join(out) + "\n"


def _run_yaml(block: Block, cwd: Path) -> None:
    first = block.text.splitlines()[0] if block.text.strip() else ""
    m = _FILE.match(first)
    data = yaml.safe_load(block.text)
    assert isinstance(data, dict), f"{block.where}: a YAML block must be a mapping"
    if m is None:
        assert "rules" in data, (
            f"{block.where}: a YAML block must be a policy or start with `# file: PATH`"
        )
        Veto.from_yaml(block.text)
        return
    path = cwd / m.group("path")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(block.text, encoding="utf-8")
    if "tests" in data and "policy" in data:
        _run([str(BIN / "veto"), "test", str(path)], cwd, block)
    elif "(does not load)" in m.group("rest"):
        with pytest.raises(Exception, match=str(path.name)):
            Veto.from_file(path)
    elif "version" in data:
        proc = subprocess.run(
            [str(BIN / "veto"), "lint", str(path)],
            cwd=cwd,
            env=_env(cwd / "home"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode in (0, 1), f"{block.where}: {proc.stdout}{proc.stderr}"


def _run_block(block: Block, cwd: Path) -> None:
    if block.lang == "python":
        snippet = _SNIPPET.match(block.text.strip())
        if snippet:
            _run([sys.executable, snippet.group("path")], cwd, block)
        else:
            script = cwd / f"_docs_block_{block.line}.py"
            script.write_text(block.text, encoding="utf-8")
            _run([sys.executable, script.name], cwd, block)
    elif block.lang == "bash":
        _run(["bash", "-c", _bash_script(block)], cwd, block)
    elif block.lang == "yaml":
        _run_yaml(block, cwd)
    elif block.lang == "toml":
        m = _FILE.match(block.text.splitlines()[0])
        path = cwd / (m.group("path") if m else f"_docs_block_{block.line}.toml")
        path.write_text(block.text, encoding="utf-8")
        load_config(path, env={})  # the settings Veto reads, validated as Veto validates them
    elif block.lang == "json":
        json.loads(block.text)
    else:  # pragma: no cover - the inventory test refuses other languages
        raise AssertionError(f"{block.where}: no runner for {block.lang!r}")


def _page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


@pytest.mark.parametrize("page", pages(), ids=_page_id)
def test_every_code_block_of_the_page_runs(page: Path, tmp_path: Path) -> None:
    for name in ("policies", "examples"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "home").mkdir()
    for block in blocks(page):
        if block.lang in CODE_LANGS and not block.not_run:
            _run_block(block, tmp_path)


def test_every_block_is_code_that_runs_output_or_a_visible_opt_out() -> None:
    problems = []
    for page in pages():
        for block in blocks(page):
            if block.lang not in CODE_LANGS | OUTPUT_LANGS:
                problems.append(
                    f"{block.where}: fence language {block.lang!r} (expected one of "
                    f"{sorted(CODE_LANGS | OUTPUT_LANGS)})"
                )
    assert not problems, "\n".join(problems)
    ran, skipped = inventory()
    assert ran >= 30, f"only {ran} code blocks run"
    # Opting out is a visible, counted decision: raise this only with a reason in the page.
    assert len(skipped) <= 7, "\n".join(f"{b.where}: {b.not_run}" for b in skipped)


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=REPO,
        env=_env(Path(os.environ.get("HOME", str(tmp_path)))),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    operators = (tmp_path / "site" / "policy" / "operators" / "index.html").read_text()
    cli = (tmp_path / "site" / "cli" / "index.html").read_text()
    for op in OPERATOR_DOCS:
        assert f'id="{op}"' in operators, op
    for command in ("veto mcp proxy", "veto audit evidence", "veto approvals approve"):
        assert command in cli, command
    assert (tmp_path / "site" / "img" / "docs-home.png").stat().st_size > 10_000
    assert (tmp_path / "site" / "img" / "trace.png").stat().st_size > 10_000
    # The comparison's feature table is rendered from benchmarks/compare.py, row for row.
    comparison = (tmp_path / "site" / "comparison" / "index.html").read_text()
    for feature in veto_docs.compare_features():
        assert html.escape(feature, quote=False) in comparison, feature


# --- the operator reference's rows are the engine's behaviour -------------------------------


def _decide(leaf: dict[str, Any], case: OperatorCase) -> Decision:
    policy = {
        "version": 1,
        "name": "operator-doc",
        "default": "allow",
        "rules": [{"id": "probe", "effect": "deny", "tools": ["t"], "if": leaf}],
    }
    field = str(leaf["field"])
    present = case.value != MISSING
    if RUN_OPERATORS & leaf.keys():  # decided in a run that observed the example output
        from veto_core import MemoryRunStore

        policy["sources"] = [TAINT_EXAMPLE["source"]]
        veto = Veto.from_yaml(json.dumps(policy), run_store=MemoryRunStore())
        who = Principal(agent="a")
        seen = ToolCall(tool=str(TAINT_EXAMPLE["tool"]), principal=who, run_id="r")
        veto.observe(seen, TAINT_EXAMPLE["output"])
        key = field.partition(".")[2]
        args = {key: case.value} if present else {}
        return veto.decide(ToolCall(tool="t", args=args, principal=who, run_id="r"))
    veto = Veto.from_yaml(json.dumps(policy))
    if field == "now":
        return veto.decide(ToolCall(tool="t", now=datetime.fromisoformat(case.value)))
    root, _, key = field.partition(".")
    data = {key: case.value} if present else {}
    kwargs: dict[str, Any] = {"args": data} if root == "args" else {"context": data}
    return veto.decide(ToolCall(tool="t", principal=Principal(agent="a"), **kwargs))


@pytest.mark.parametrize(
    ("op", "case"),
    [(op, c) for op, doc in OPERATOR_DOCS.items() for c in doc.cases],
    ids=lambda v: v if isinstance(v, str) else repr(v.value)[:40],
)
def test_documented_operator_case_is_what_the_engine_decides(op: str, case: OperatorCase) -> None:
    decision = _decide(OPERATOR_DOCS[op].example, case)
    got = "false" if decision.effect is Effect.ALLOW else "error" if decision.errors else "true"
    assert got == case.outcome, (op, case, decision.errors)


def test_operator_reference_covers_the_registry_and_the_schema() -> None:
    from veto_core.policy.operators import BUILTIN_OPERATORS
    from veto_core.policy.schema import CONDITION_OPERATORS, policy_json_schema

    assert set(OPERATOR_DOCS) == set(CONDITION_OPERATORS)
    assert set(CONDITION_OPERATORS) == set(BUILTIN_OPERATORS) | RUN_OPERATORS
    rendered = veto_docs.render_operators()
    leaf = policy_json_schema()["$defs"]["Condition"]["oneOf"][-1]["properties"]
    for op, doc in OPERATOR_DOCS.items():
        assert doc.summary in leaf[op]["description"]  # what `veto schema` prints
        assert f"### `{op}`" in rendered and doc.summary in rendered


def test_cli_reference_lists_every_command() -> None:
    import click

    from veto_core.cli import main

    rendered = veto_docs.render_cli()
    ctx = click.Context(main, info_name="veto")
    for name in main.list_commands(ctx):
        cmd = main.get_command(ctx, name)
        assert cmd is not None
        if not cmd.hidden:
            assert f"### `veto {name}`" in rendered, name
