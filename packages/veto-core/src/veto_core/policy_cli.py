"""`veto policy history | show | diff`: policy revisions from the store, files and git.

A revision is named by a hash prefix (from the audit store, where every revision
that decided anything is kept), by a policy file or bundle directory, or by
``GITREF:path`` (``HEAD~3:policies/support-agent.yaml``), read with ``git show``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import click
import yaml

from .policy.diff import diff_policies
from .policy.errors import PolicyError
from .policy.loader import LoadedPolicy, load_bundle, load_policy_file

__all__ = ["policy_cli", "resolve_revision"]

_DB_HELP = "Store with the revisions (default: $VETO_DB or ~/.veto/veto.db)."


def _open(db: str | None) -> Any:
    from .audit import AuditError, open_audit

    try:
        return open_audit(db)
    except AuditError as exc:
        raise click.ClickException(str(exc)) from None


def _load_path(path: Path, tenant: str | None) -> LoadedPolicy:
    return load_bundle(path, tenant) if path.is_dir() else load_policy_file(path)


def _git_show(ref: str, path: str) -> str:
    proc = subprocess.run(
        ["git", "show", f"{ref}:{path}"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise click.ClickException(f"git show {ref}:{path}: {proc.stderr.strip()}")
    return proc.stdout


def _load_git(ref: str, path: str, tenant: str | None) -> LoadedPolicy:
    """Materialize a policy and every file it extends at ``ref`` in a temp dir, then load."""
    with tempfile.TemporaryDirectory(prefix="veto-git-") as tmp:
        root = Path(tmp)
        pending = [PurePosixPath(path)]
        seen: set[PurePosixPath] = set()
        while pending:
            rel = pending.pop()
            if rel in seen:
                continue
            seen.add(rel)
            text = _git_show(ref, str(rel))
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError:
                continue  # the loader reports it properly
            extends = data.get("extends", []) if isinstance(data, dict) else []
            for ref_path in [extends] if isinstance(extends, str) else extends:
                if isinstance(ref_path, str):
                    pending.append(
                        PurePosixPath(os.path.normpath(os.path.join(rel.parent, ref_path)))
                    )
        return _load_path(root / path, tenant)


def resolve_revision(
    spec: str, *, db: str | None, tenant: str | None = None
) -> tuple[str, dict[str, Any], str]:
    """-> (revision, canonical policy dict, where it came from)."""
    path = Path(spec)
    try:
        if path.exists():
            loaded = _load_path(path, tenant)
            return loaded.revision, json.loads(loaded.canonical), str(path)
        if ":" in spec and not spec.startswith(("sqlite:", "postgresql:")):
            ref, _, rel = spec.partition(":")
            loaded = _load_git(ref, rel, tenant)
            return loaded.revision, json.loads(loaded.canonical), f"git {ref}:{rel}"
    except PolicyError as exc:
        raise click.ClickException(f"{spec} does not load:\n{exc}") from None
    prefix = spec.lower()
    if len(prefix) < 6 or any(c not in "0123456789abcdef" for c in prefix):
        raise click.ClickException(
            f"{spec!r} is neither a file, GITREF:path, nor a revision hash prefix (6+ hex digits)"
        )
    with _open(db) as audit:
        matches = [r for r in audit.policy_revisions() if r.revision.startswith(prefix)]
    if not matches:
        raise click.ClickException(
            f"no stored revision starts with {spec!r} (see `veto policy history`)"
        )
    if len(matches) > 1:
        raise click.ClickException(
            f"{spec!r} is ambiguous: {', '.join(m.revision[:12] for m in matches)}"
        )
    rev = matches[0]
    return rev.revision, json.loads(rev.content), f"store ({rev.source})"


@click.group("policy")
def policy_cli() -> None:
    """Policy revisions: every revision that decided a call is kept in the store.

    Exit codes: 0 ok, 1 (diff) the revisions differ, 2 usage or store error.
    """


@policy_cli.command("history")
@click.option("--db", default=None, metavar="URL", help=_DB_HELP)
@click.option("--json", "as_json", is_flag=True)
def history(db: str | None, as_json: bool) -> None:
    """List stored revisions, oldest first."""
    with _open(db) as audit:
        revisions = sorted(audit.policy_revisions(), key=lambda r: r.first_seen)
    for r in revisions:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "revision": r.revision,
                        "name": r.name,
                        "source": r.source,
                        "first_seen": r.first_seen.isoformat(),
                    }
                )
            )
        else:
            click.echo(f"{r.revision[:12]}  {r.first_seen:%Y-%m-%d %H:%M:%S}  {r.name}  {r.source}")
    if not revisions and not as_json:
        click.echo("no policy revision has decided anything yet")


@policy_cli.command("show")
@click.argument("revision")
@click.option("--db", default=None, metavar="URL", help=_DB_HELP)
@click.option("--tenant", default=None, help="Tenant overlay, for a bundle directory.")
@click.option(
    "--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True
)
def show(revision: str, db: str | None, tenant: str | None, fmt: str) -> None:
    """Print a revision's exact content (after `extends`). Writing it back to a policy
    file reproduces the same revision: that is how to roll back."""
    rev, content, _ = resolve_revision(revision, db=db, tenant=tenant)
    if fmt == "json":
        click.echo(json.dumps(content, indent=2, ensure_ascii=False, sort_keys=True))
    else:
        click.echo(f"# veto policy revision {rev}")
        click.echo(yaml.safe_dump(content, sort_keys=False, allow_unicode=True).rstrip())


@policy_cli.command("diff")
@click.argument("before")
@click.argument("after")
@click.option("--db", default=None, metavar="URL", help=_DB_HELP)
@click.option("--tenant", default=None, help="Tenant overlay, for bundle directories.")
@click.option("--json", "as_json", is_flag=True)
def diff(before: str, after: str, db: str | None, tenant: str | None, as_json: bool) -> None:
    """Semantic diff of two revisions: rules added/removed/changed, lists, settings.
    Each side is a revision prefix, a file/bundle path, or GITREF:path."""
    b_rev, b, _ = resolve_revision(before, db=db, tenant=tenant)
    a_rev, a, _ = resolve_revision(after, db=db, tenant=tenant)
    result = diff_policies(b, a, before_revision=b_rev, after_revision=a_rev)
    click.echo(
        json.dumps(result.to_dict(), indent=2, ensure_ascii=False) if as_json else result.render()
    )
    raise SystemExit(0 if result.empty else 1)
