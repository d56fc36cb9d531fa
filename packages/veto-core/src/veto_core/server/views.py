"""Pure helpers behind the pages and the API: filters, record views, diffs, explain."""

from __future__ import annotations

import datetime as _dt
import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from veto_core.audit.record import AuditRecord, ts_to_iso
from veto_core.audit.sink import AuditQuery, PolicyRevision
from veto_core.policy.diff import PolicyDiff

__all__ = [
    "FILTER_FIELDS",
    "DiffLine",
    "explain_call",
    "parse_time",
    "policy_diff",
    "pretty_policy",
    "query_from_params",
    "record_view",
]

FILTER_FIELDS = (
    "since",
    "until",
    "tool",
    "outcome",
    "effect",
    "rule",
    "agent",
    "user",
    "run",
    "text",
)

_REL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class FilterError(ValueError):
    """A filter value that does not parse (HTTP 400 / a message on the page)."""


def parse_time(value: str | None, *, now: _dt.datetime | None = None) -> _dt.datetime | None:
    """``1h``, ``24h``, ``7d``, ``30m``, ``2w`` (ago), or an ISO-8601 time (UTC if naive)."""
    if value is None or value.strip() == "":
        return None
    m = _REL.match(value)
    if m:
        seconds = float(m.group(1)) * _UNITS[m.group(2).lower()]
        try:
            return (now or _dt.datetime.now(_dt.UTC)) - _dt.timedelta(seconds=seconds)
        except OverflowError:
            raise FilterError(f"{value!r} is too far back") from None
    try:
        ts = _dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"{value!r}: use 1h, 24h, 7d, ... or an ISO-8601 time") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=_dt.UTC)


def _opt(params: Mapping[str, Any], key: str) -> str | None:
    v = params.get(key)
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def query_from_params(
    tenant: str,
    params: Mapping[str, Any],
    *,
    limit: int | None = None,
    offset: int = 0,
    newest_first: bool = True,
) -> AuditQuery:
    """An audit query for ``tenant`` (always set: the caller's tenant) from filter params."""
    return AuditQuery(
        tenant=tenant,
        since=parse_time(_opt(params, "since")),
        until=parse_time(_opt(params, "until")),
        tool=_opt(params, "tool"),
        outcome=_opt(params, "outcome"),
        effect=_opt(params, "effect"),
        rule_id=_opt(params, "rule"),
        agent=_opt(params, "agent"),
        user=_opt(params, "user"),
        run_id=_opt(params, "run"),
        text=_opt(params, "text"),
        shadow=str(params.get("shadow") or "").lower() in ("1", "true", "yes"),
        limit=limit,
        offset=offset,
        newest_first=newest_first,
    )


def record_view(r: AuditRecord) -> dict[str, Any]:
    d = r.to_dict()
    d["ts_display"] = r.ts.strftime("%Y-%m-%d %H:%M:%S")
    d["args_pretty"] = "null (erased)" if r.args is None else _pretty(r.args)
    return d


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def pretty_policy(rev: PolicyRevision) -> str:
    """The revision's canonical JSON, indented (what the diff compares)."""
    try:
        return _pretty(json.loads(rev.content))
    except ValueError:
        return rev.content


@dataclass(frozen=True, slots=True)
class DiffLine:
    kind: str  # "add" | "del" | "ctx" | "hunk" | "head"
    text: str


def policy_diff(a: PolicyRevision, b: PolicyRevision) -> tuple[list[DiffLine], list[str]]:
    """(unified diff lines of the indented canonical JSON, semantic summary of rule changes)."""
    left, right = pretty_policy(a).splitlines(), pretty_policy(b).splitlines()
    lines: list[DiffLine] = []
    for line in difflib.unified_diff(
        left, right, fromfile=a.revision[:12], tofile=b.revision[:12], lineterm="", n=3
    ):
        if line.startswith(("---", "+++")):
            lines.append(DiffLine("head", line))
        elif line.startswith("@@"):
            lines.append(DiffLine("hunk", line))
        elif line.startswith("+"):
            lines.append(DiffLine("add", line))
        elif line.startswith("-"):
            lines.append(DiffLine("del", line))
        else:
            lines.append(DiffLine("ctx", line))
    return lines, _semantic(a, b)


def _semantic(a: PolicyRevision, b: PolicyRevision) -> list[str]:
    """One line per semantic change (``veto policy diff``'s summary)."""
    d = semantic_diff(a, b)
    if d is None:
        return []
    return [line[2:] for line in d.render().splitlines()[1:]]


def semantic_diff(a: PolicyRevision, b: PolicyRevision) -> PolicyDiff | None:
    from veto_core.policy.diff import diff_policies

    try:
        pa, pb = json.loads(a.content), json.loads(b.content)
        if not isinstance(pa, dict) or not isinstance(pb, dict):
            return None
        return diff_policies(pa, pb, before_revision=a.revision, after_revision=b.revision)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def explain_call(content: str, call_data: Any, tenant: str) -> dict[str, Any]:
    """Decide ``call_data`` (a call mapping) under a stored revision, forced to ``tenant``.

    Raises ``CallFormatError`` / ``PolicyError`` for bad input.
    """
    from veto_core.calls import CallFormatError, call_from_mapping
    from veto_core.engine import Veto

    if not isinstance(call_data, Mapping):
        raise CallFormatError("expected a JSON object describing a call")
    data = dict(call_data)
    data["tenant"] = tenant  # a user explains calls of their own tenant only
    call = call_from_mapping(data)
    veto = Veto.from_yaml(content, file="<revision>", tenant=tenant)
    ex = veto.explain(call)
    return {
        "decision": ex.decision.to_dict(),
        "tool": ex.tool,
        "env": ex.env,
        "tenant": ex.tenant,
        "roles": list(ex.roles),
        "rules": [
            {
                "rule_id": t.rule_id,
                "effect": t.effect.value,
                "tool_matched": t.tool_matched,
                "scope": t.scope,
                "condition": t.condition,
                "leaves": [{"leaf": a, "outcome": b} for a, b in t.leaves],
                "errors": list(t.errors),
                "result": None if t.result is None else t.result.value,
            }
            for t in ex.rules
        ],
    }


def iso(ts: _dt.datetime | None) -> str | None:
    return None if ts is None else ts_to_iso(ts)
