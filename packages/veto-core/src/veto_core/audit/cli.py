"""``veto audit``: query | export | verify | evidence | erase | purge | checkpoint.

Mounted on the main command by ``main.add_command(audit_cli, "audit")``. Every
subcommand takes ``--db`` (default ``$VETO_DB`` or ``~/.veto/veto.db``).
With ``$VETO_URL`` set, ``query`` and ``export`` ask ``veto serve`` (API token in
``$VETO_TOKEN``) instead of opening the database: the server's tenants and roles apply.
Exit codes: 0 ok, 1 verification failed, 2 usage or store error.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from veto_core.audit.errors import AuditError, AuditStoreMissing
from veto_core.audit.export import EXPORT_FORMATS, build_evidence_pack, export_records
from veto_core.audit.log import AuditLog, default_audit_url, open_audit
from veto_core.audit.record import ts_to_iso
from veto_core.audit.sink import AuditQuery, SinkConfig

__all__ = ["audit_cli", "parse_since"]

F = TypeVar("F", bound=Callable[..., Any])

_REL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str | None, *, now: _dt.datetime | None = None) -> _dt.datetime | None:
    """``1h``, ``24h``, ``7d``, ``90d``, ``30m``, ``2w`` (ago), or an ISO-8601 time (UTC if naive)."""
    if value is None or value == "":
        return None
    m = _REL.match(value)
    if m:
        seconds = float(m.group(1)) * _UNITS[m.group(2).lower()]
        return (now or _dt.datetime.now(_dt.UTC)) - _dt.timedelta(seconds=seconds)
    try:
        ts = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: use 1h, 24h, 7d, ... or an ISO-8601 time") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=_dt.UTC)


def _db_option(f: F) -> F:
    return click.option(
        "--db",
        "db",
        default=None,
        metavar="URL",
        help="Audit store: path, sqlite:///x.db, postgresql://..., jsonl:///x.jsonl "
        "(default: $VETO_DB or ~/.veto/veto.db).",
    )(f)


def _filters(f: F) -> F:
    for opt in reversed(
        [
            click.option("--tenant", default=None, help="Only this tenant."),
            click.option("--since", default=None, help="Start: 1h, 24h, 7d, ... or ISO time."),
            click.option("--until", default=None, help="End (exclusive): same forms as --since."),
            click.option("--tool", default=None),
            click.option("--outcome", default=None, help="allowed, denied, pending_approval, ..."),
            click.option("--effect", default=None, help="allow, deny, require_approval"),
            click.option("--rule", "rule_id", default=None, help="Records a rule id matched."),
            click.option("--agent", default=None),
            click.option("--user", default=None),
            click.option("--run", "run_id", default=None, help="Run id."),
            click.option("--text", default=None, help="Substring of a reason (case-insensitive)."),
            click.option(
                "--shadow",
                is_flag=True,
                help="Only calls that shadow mode would have blocked (outcome shadow-*).",
            ),
        ]
    ):
        f = opt(f)
    return f


def _query(kw: dict[str, Any], **extra: Any) -> AuditQuery:
    return AuditQuery(
        tenant=kw["tenant"],
        since=parse_since(kw["since"]),
        until=parse_since(kw["until"]),
        tool=kw["tool"],
        outcome=kw["outcome"],
        effect=kw["effect"],
        rule_id=kw["rule_id"],
        agent=kw["agent"],
        user=kw["user"],
        run_id=kw["run_id"],
        text=kw["text"],
        shadow=kw["shadow"],
        **extra,
    )


class StoreError(click.ClickException):
    """A store that is missing, unreadable or unwritable: exit 2 (verification failures exit 1)."""

    exit_code = 2


def _remote_params(kw: dict[str, Any]) -> dict[str, Any]:
    """The API's query parameters for the CLI's filters (times as ISO-8601)."""
    since, until = parse_since(kw["since"]), parse_since(kw["until"])
    return {
        "tenant": kw["tenant"], "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None, "tool": kw["tool"],
        "outcome": kw["outcome"], "effect": kw["effect"], "rule": kw["rule_id"],
        "agent": kw["agent"], "user": kw["user"], "run": kw["run_id"], "text": kw["text"],
        "shadow": "true" if kw["shadow"] else None,
    }  # fmt: skip


def _remote() -> Any:
    """A client of ``veto serve`` when ``$VETO_URL`` is set, else None."""
    from veto_core.remote import RemoteError, remote_from_env

    try:
        return remote_from_env()
    except RemoteError as exc:
        raise click.ClickException(str(exc)) from exc


def _remote_records(remote: Any, params: dict[str, Any], limit: int, offset: int) -> list[Any]:
    from veto_core.audit.record import AuditRecord
    from veto_core.remote import RemoteError

    out: list[AuditRecord] = []
    try:
        while len(out) < limit:
            page = remote.audit({**params, "limit": min(1000, limit - len(out)), "offset": offset})
            out.extend(AuditRecord.from_dict(d) for d in page["records"])
            if page.get("next_offset") is None:
                break
            offset = int(page["next_offset"])
    except RemoteError as exc:
        raise click.ClickException(str(exc)) from exc
    return out


def _open(db: str | None, *, create: bool = False) -> AuditLog:
    """Open the store; the read-only commands never create one that is missing."""
    try:
        log = open_audit(db, create=create)
    except AuditStoreMissing as exc:
        raise StoreError(f"{exc} (nothing was created; check --db / $VETO_DB)") from exc
    except AuditError as exc:
        raise StoreError(str(exc)) from exc
    for notice in log.notices:
        click.secho(f"veto: {notice}", err=True, fg="yellow")
    return log


class _AuditGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AuditError as exc:
            raise StoreError(str(exc)) from exc


@click.group("audit", cls=_AuditGroup)
def audit_cli() -> None:
    """Query, export and verify the tamper-evident audit trail."""


@audit_cli.command("query")
@_db_option
@_filters
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--offset", default=0, type=int, help="Skip this many matches (paging).")
@click.option("--oldest-first", is_flag=True, help="Oldest first (default: newest first).")
@click.option("--json", "as_json", is_flag=True, help="One JSON record per line.")
def query_cmd(
    db: str | None, limit: int, offset: int, oldest_first: bool, as_json: bool, **kw: Any
) -> None:
    """Search records by tenant, time, tool, outcome, rule, agent, user, run, text."""
    remote = _remote()
    if remote is not None:
        with remote:
            params = {**_remote_params(kw), "order": "oldest" if oldest_first else "newest"}
            records = _remote_records(remote, params, limit, offset)
        _print_records(records, remote.url, limit, offset, as_json)
        return
    with _open(db) as log:
        q = _query(kw, limit=limit, offset=offset, newest_first=not oldest_first)
        records = list(log.iter_records(q))
        _print_records(records, log.url, limit, offset, as_json)


def _print_records(records: list[Any], where: str, limit: int, offset: int, as_json: bool) -> None:
    if as_json:
        for r in records:
            click.echo(json.dumps(r.to_dict(), ensure_ascii=False, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"audit records ({where})", show_lines=False)
    for col in (
        "time (UTC)",
        "tenant",
        "seq",
        "agent",
        "user",
        "tool",
        "outcome",
        "rules",
        "reasons",
    ):
        table.add_column(col, overflow="fold")
    for r in records:
        table.add_row(
            ts_to_iso(r.ts)[:19].replace("T", " "),
            r.tenant,
            str(r.seq),
            r.principal.agent or "",
            r.principal.user or "",
            r.tool,
            r.outcome,
            ", ".join(r.rule_ids),
            "; ".join(r.reasons),
        )
    Console(width=max(120, Console().width)).print(table)
    more = f" (more: --offset {offset + limit})" if len(records) == limit else ""
    click.echo(f"{len(records)} records{more}")


@audit_cli.command("export")
@_db_option
@_filters
@click.option(
    "--format", "fmt", type=click.Choice(EXPORT_FORMATS), default="jsonl", show_default=True
)
@click.option("--out", "out", default="-", help="Output file (default: stdout).")
@click.option(
    "--limit", default=None, type=click.IntRange(min=0), help="At most this many records."
)
@click.option(
    "--newest-first", is_flag=True, help="Newest first (default: oldest first, as recorded)."
)
def export_cmd(
    db: str | None, fmt: str, out: str, limit: int | None, newest_first: bool, **kw: Any
) -> None:
    """Stream records as JSONL, CSV or OCSF API Activity (class 6003) events."""
    remote = _remote()
    if remote is not None:
        from veto_core.remote import RemoteError

        with remote:
            try:
                chunks = remote.export({**_remote_params(kw), "fmt": fmt})
                if out == "-":
                    for chunk in chunks:
                        sys.stdout.write(chunk)
                    sys.stdout.flush()
                else:
                    with open(out, "w", encoding="utf-8", newline="") as fh:
                        for chunk in chunks:
                            fh.write(chunk)
                    click.echo(f"exported to {out} from {remote.url}", err=True)
            except RemoteError as exc:
                raise click.ClickException(str(exc)) from exc
        return
    with _open(db) as log:
        records = log.iter_records(_query(kw, limit=limit, newest_first=newest_first))
        if out == "-":
            n = export_records(records, fmt, sys.stdout)
        else:
            with open(out, "w", encoding="utf-8", newline="") as fh:
                n = export_records(records, fmt, fh)
            click.echo(f"exported {n} records to {out}", err=True)


@audit_cli.command("verify")
@_db_option
@click.option("--tenant", default=None, help="Only this tenant's chain.")
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    help="Pin the Ed25519 checkpoint key (hex; repeat for several). "
    "Default: [audit] public_key in veto.toml, else the local signing key.",
)
@click.option(
    "--witness",
    "witness_urls",
    multiple=True,
    help="Also check heads held by this witness (file:///path or http(s)://...; repeatable). "
    "Default: [audit] witness in veto.toml.",
)
@click.option("--json", "as_json", is_flag=True)
def verify_cmd(
    db: str | None,
    tenant: str | None,
    public_keys: tuple[str, ...],
    witness_urls: tuple[str, ...],
    as_json: bool,
) -> None:
    """Check every hash chain, checkpoint, witness, tenant and policy text; name the
    first broken record. Exit 1 if anything is broken, 2 if the store is missing."""
    from veto_core.audit.witness import open_witnesses

    with _open(db) as log:
        witnesses = open_witnesses(witness_urls) if witness_urls else None
        if witnesses is not None:
            witnesses = (*log.witnesses, *witnesses)
        report = log.verify(tenant, public_key=public_keys or None, witnesses=witnesses)
    for w in report.warnings:
        click.secho(f"WARNING: {w}", err=True, fg="red", bold=True)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        for t in report.tenants:
            status = "OK" if t.ok else "BROKEN"
            click.echo(
                f"{status:6} tenant {t.tenant}: {t.records} records"
                + (f" (seq {t.first_seq}..{t.last_seq})" if t.records else "")
                + (f", after tombstone at seq {t.anchor_seq}" if t.anchor_seq else "")
            )
            if t.broken is not None:
                click.echo(f"       first broken: {t.broken}")
                if len(t.problems) > 1:
                    click.echo(f"       ({len(t.problems) - 1} more problems; --json lists them)")
        for p in report.problems:
            click.echo(f"BROKEN {p.reason}")
        if not report.tenants and not report.problems:
            click.echo("no records")
    sys.exit(0 if report.ok else 1)


@audit_cli.command("evidence")
@_db_option
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--since", default="90d", show_default=True)
@click.option("--until", default=None)
@click.option("--tenant", default=None)
@click.option("--public-key", default=None, help="Pin the checkpoint key for verification.")
def evidence_cmd(
    db: str | None,
    out: Path,
    since: str,
    until: str | None,
    tenant: str | None,
    public_key: str | None,
) -> None:
    """Build a SOC 2 evidence pack (zip): records, chain verification, policies, approvals."""
    with _open(db) as log:
        res = build_evidence_pack(
            log,
            out,
            since=parse_since(since),
            until=parse_since(until),
            tenant=tenant,
            public_key=public_key,
        )
    click.echo(
        f"wrote {res.path}: {res.records} records, chain {'OK' if res.chain_ok else 'BROKEN'}, "
        f"{res.policy_revisions} policy revisions, {res.approvals} approvals"
    )


@audit_cli.command("erase")
@_db_option
@click.option("--user", required=True, help="The data subject's user id.")
@click.option("--tenant", default=None, help="Only this tenant (default: all).")
@click.option("--json", "as_json", is_flag=True)
def erase_cmd(db: str | None, user: str, tenant: str | None, as_json: bool) -> None:
    """Remove a user's personal data (args, user id) from the audit trail and from the
    approval requests they made (pending ones are cancelled); the chain stays verifiable."""
    # Approvals first: the audit erasure then folds and truncates the shared WAL.
    approvals, aliases = _erase_approvals(db, user, tenant)
    with _open(db) as log:
        results = log.erase_user(user, tenant=tenant, aliases=aliases)
    if as_json:
        click.echo(json.dumps({"audit": [{"tenant": r.tenant, "records": r.records,
                                          "erasure_record_id": r.erasure_record_id} for r in results],
                               "approval_requests": approvals}))  # fmt: skip
        return
    if not results:
        click.echo("no audit records of that user")
    for r in results:
        click.echo(
            f"tenant {r.tenant}: erased {r.records} records (erasure record {r.erasure_record_id})"
        )
    if approvals is not None:
        click.echo(f"approval requests: erased {approvals}")


def _erase_approvals(
    db: str | None, user: str, tenant: str | None
) -> tuple[int | None, frozenset[str]]:
    """Erase the user from the approval store on the same database (None: the store kind
    has no approvals, e.g. JSONL), and return the identities the user table knows the
    person by (user id and e-mail, DESIGN.md 2.8), which the audit erasure matches too."""
    from veto_core.approvals import ApprovalUnavailable, open_approvals

    if SinkConfig.parse(db or default_audit_url()).scheme not in ("sqlite", "postgresql"):
        return None, frozenset()
    try:
        service = open_approvals(db)
    except ApprovalUnavailable as exc:
        raise click.ClickException(f"approval store: {exc}") from None
    try:
        aliases = service.people((user,))
        return service.erase_user(user, tenant=tenant), aliases
    except ApprovalUnavailable as exc:
        raise click.ClickException(f"approval store: {exc}") from None
    finally:
        service.close()


@audit_cli.command("purge")
@_db_option
@click.option("--retention-days", required=True, type=click.IntRange(min=0))
@click.option("--tenant", default=None, help="Only this tenant (default: all).")
@click.option("--json", "as_json", is_flag=True)
def purge_cmd(db: str | None, retention_days: int, tenant: str | None, as_json: bool) -> None:
    """Delete records older than the retention period, leaving a signed tombstone, and
    the run state (DESIGN.md 2.7) of runs that have expired."""
    with _open(db) as log:
        names = [tenant] if tenant else log.tenants()
        results = [log.purge(t, retention_days) for t in names]
    runs = _purge_runs(db)
    if as_json:
        click.echo(json.dumps([{"tenant": r.tenant, "deleted": r.deleted,
                                "through_seq": r.through_seq} for r in results]))  # fmt: skip
        return
    for r in results:
        click.echo(f"tenant {r.tenant}: deleted {r.deleted} records"
                   + (f" (through seq {r.through_seq})" if r.through_seq else ""))  # fmt: skip
    if runs is not None:
        click.echo(f"expired runs: deleted {runs}")


def _purge_runs(db: str | None) -> int | None:
    """Delete expired runs from the run store (``$VETO_RUNS_URL``, else the audit
    database); None when that is a store kind without run state (a JSONL file)."""
    from veto_core.runs import RunStoreUnavailable
    from veto_core.runs.backends import ENV_RUNS_URL, open_run_store

    url = os.environ.get(ENV_RUNS_URL) or db or default_audit_url()
    if SinkConfig.parse(url).scheme not in ("sqlite", "postgresql", "redis", "rediss"):
        return None
    try:
        store = open_run_store(url)
        try:
            return store.purge_expired(now=_dt.datetime.now(_dt.UTC))
        finally:
            store.close()
    except RunStoreUnavailable as exc:
        raise StoreError(f"run store: {exc}") from None


@audit_cli.command("checkpoint")
@_db_option
@click.option("--tenant", default=None)
def checkpoint_cmd(db: str | None, tenant: str | None) -> None:
    """Sign the current head of each chain (Ed25519) so later truncation is detectable."""
    with _open(db) as log:
        cps = log.checkpoint(tenant)
        click.echo(f"public key: {log.public_key()}")
    for cp in cps:
        click.echo(f"tenant {cp.tenant}: signed seq {cp.seq} {cp.hash[:16]}…")
