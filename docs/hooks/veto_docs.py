"""MkDocs hook: the reference pages are generated from the code, so they cannot drift.

``<!-- generated: operators -->`` becomes the operator reference, rendered from
``veto_core.policy.operator_docs`` (the same text ``veto schema`` carries) and the operator
registry (which operators honour ``ignore_case``, which accept ``null``);
``<!-- generated: cli -->`` becomes the CLI reference, walked from the click group that
``veto`` runs; ``<!-- generated: compare-features -->`` becomes the feature table of
``benchmarks/compare.py`` (its ``feature_table()``). ``tests/test_docs.py`` imports the same
functions.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import click

OPERATORS_MARKER = "<!-- generated: operators -->"
CLI_MARKER = "<!-- generated: cli -->"
FEATURES_MARKER = "<!-- generated: compare-features -->"


def _flow(value: Any) -> str:
    """A value as YAML flow style (JSON is YAML 1.2)."""
    return json.dumps(value, ensure_ascii=False)


def _leaf_yaml(leaf: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in leaf.items()) + "}"


def render_operators() -> str:
    from veto_core.policy.operator_docs import MISSING, OPERATOR_DOCS, RUN_OPERATORS
    from veto_core.policy.operators import (
        ALWAYS_CASE_INSENSITIVE,
        BUILTIN_OPERATORS,
        CASE_INSENSITIVE_OPERATORS,
        NULL_ACCEPTING_OPERATORS,
    )
    from veto_core.policy.schema import CONDITION_OPERATORS

    missing = set(CONDITION_OPERATORS) ^ set(OPERATOR_DOCS)
    unregistered = set(CONDITION_OPERATORS) ^ (set(BUILTIN_OPERATORS) | RUN_OPERATORS)
    if missing or unregistered:
        raise RuntimeError(
            f"operator reference out of date: undocumented {sorted(missing)}, "
            f"not in the registry {sorted(unregistered)}"
        )
    out = [
        "| operator | true when |",
        "|---|---|",
        *(f"| [`{op}`](#{op}) | {OPERATOR_DOCS[op].summary} |" for op in CONDITION_OPERATORS),
        "",
    ]
    for op in CONDITION_OPERATORS:
        doc = OPERATOR_DOCS[op]
        if op in ALWAYS_CASE_INSENSITIVE:
            case = "always case-insensitive (`ignore_case` is accepted and changes nothing)"
        elif op in CASE_INSENSITIVE_OPERATORS:
            case = "`ignore_case: true` makes it case-insensitive"
        else:
            case = "`ignore_case` does not apply"
        null = (
            "defined on `null`"
            if op in NULL_ACCEPTING_OPERATORS
            else "`null` is an error (fails closed)"
        )
        out += [
            f"### `{op}` {{#{op}}}",
            "",
            doc.details,
            "",
            f"Case: {case}. Null: {null}. A missing field is "
            + ("`false`, never an error." if op == "exists" else "an error."),
            "",
            "```yaml",
            f"if: {_leaf_yaml(doc.example)}",
            "```",
            "",
            "| value at `" + str(doc.example["field"]) + "` | outcome | |",
            "|---|---|---|",
        ]
        for c in doc.cases:
            shown = "*(absent)*" if c.value == MISSING else f"`{_flow(c.value)}`"
            out.append(f"| {shown} | **{c.outcome}** | {c.note} |")
        out.append("")
    out.append(
        "*Generated from `veto_core.policy.operator_docs` and the operator registry; every row "
        "above is evaluated through the engine by `tests/test_docs.py`.*"
    )
    return "\n".join(out)


def _walk(cmd: click.Command, ctx: click.Context, path: list[str]) -> list[str]:
    out: list[str] = []
    name = " ".join(path)
    usage = " ".join(cmd.collect_usage_pieces(ctx))
    out += [f"### `{name}`", ""]
    # click keeps the docstring as written: dedent it (an indented line is Markdown code),
    # drop what follows \f and click's \b no-rewrap markers.
    help_text = inspect.cleandoc((cmd.help or "").split("\f")[0])
    help_lines = [line for line in help_text.splitlines() if line.strip() != "\b"]
    if help_text:
        out += [*help_lines, ""]
    out += ["```text", f"Usage: {name} {usage}".rstrip(), "```", ""]
    rows = []
    for param in cmd.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or param.name == "help":
            continue
        flags, text = record
        rows.append(f"| `{flags}` | {text.replace('|', '&#124;').replace(chr(10), ' ')} |")
    if rows:
        out += ["| option | |", "|---|---|", *rows, ""]
    if isinstance(cmd, click.Group):
        for sub in cmd.list_commands(ctx):
            child = cmd.get_command(ctx, sub)
            if child is None or child.hidden:
                continue
            sub_ctx = click.Context(child, info_name=sub, parent=ctx, **child.context_settings)
            out += _walk(child, sub_ctx, [*path, sub])
    return out


def render_cli() -> str:
    from veto_core.cli import main

    ctx = click.Context(main, info_name="veto", **main.context_settings)
    return "\n".join(
        [
            *_walk(main, ctx, ["veto"]),
            "*Generated from the click commands (`veto_core.cli`) at build time.*",
        ]
    )


def _compare_module() -> Any:
    """``benchmarks/compare.py``, imported by path (it is a script, not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "veto_compare_bench"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "compare.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up while defined
    spec.loader.exec_module(module)
    return module


def compare_features() -> list[str]:
    """The feature names of the comparison's feature table."""
    return [feature for feature, _ in _compare_module().FEATURES]


def render_compare_features() -> str:
    table: str = _compare_module().feature_table()
    return table + "\n\n*Generated from `FEATURES` in `benchmarks/compare.py` at build time.*"


def on_page_markdown(markdown: str, **_: Any) -> str:
    if OPERATORS_MARKER in markdown:
        markdown = markdown.replace(OPERATORS_MARKER, render_operators())
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, render_cli())
    if FEATURES_MARKER in markdown:
        markdown = markdown.replace(FEATURES_MARKER, render_compare_features())
    return markdown
