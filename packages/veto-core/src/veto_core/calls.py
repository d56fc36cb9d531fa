"""Tool calls from plain data (JSON lines, policy test files, HTTP): strict, clear errors."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .model import Principal, ToolCall

__all__ = ["CallFormatError", "call_from_mapping", "call_to_mapping", "observation_from_mapping"]

_CALL_KEYS = (
    "tool",
    "args",
    "principal",
    "env",
    "tenant",
    "context",
    "now",
    "run_id",
    "tool_call_id",
    "framework",
)
_PRINCIPAL_KEYS = ("agent", "roles", "tenant", "user", "session")


class CallFormatError(ValueError):
    """A call description that cannot be turned into a ToolCall."""


def _opt_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise CallFormatError(f"{where}{key}: expected a string, got {type(value).__name__}")
    return value


def call_from_mapping(data: Any) -> ToolCall:
    """``{"tool", "args", "principal": {...}, "env", "tenant", "context", "now"}`` -> ToolCall."""
    if not isinstance(data, Mapping):
        raise CallFormatError(
            f"expected a JSON object describing a call, got {type(data).__name__}"
        )
    unknown = [k for k in data if k not in _CALL_KEYS]
    if unknown:
        raise CallFormatError(f"unknown key '{unknown[0]}' (expected {', '.join(_CALL_KEYS)})")
    tool = data.get("tool")
    if not isinstance(tool, str) or not tool:
        raise CallFormatError("tool: expected a non-empty string")
    args = data.get("args", {})
    if not isinstance(args, Mapping):
        raise CallFormatError(f"args: expected an object, got {type(args).__name__}")
    context = data.get("context", {})
    if not isinstance(context, Mapping):
        raise CallFormatError(f"context: expected an object, got {type(context).__name__}")
    raw_principal = data.get("principal", {}) or {}
    if not isinstance(raw_principal, Mapping):
        raise CallFormatError("principal: expected an object")
    unknown = [k for k in raw_principal if k not in _PRINCIPAL_KEYS]
    if unknown:
        raise CallFormatError(
            f"principal.{unknown[0]}: unknown key (expected {', '.join(_PRINCIPAL_KEYS)})"
        )
    roles = raw_principal.get("roles", ())
    if isinstance(roles, str):
        roles = (roles,)
    if not isinstance(roles, list | tuple) or not all(isinstance(r, str) for r in roles):
        raise CallFormatError("principal.roles: expected a list of strings")
    principal = Principal(
        agent=_opt_str(raw_principal, "agent", "principal."),
        roles=tuple(roles),
        tenant=_opt_str(raw_principal, "tenant", "principal."),
        user=_opt_str(raw_principal, "user", "principal."),
        session=_opt_str(raw_principal, "session", "principal."),
    )
    now = None
    raw_now = data.get("now")
    if raw_now is not None:
        if not isinstance(raw_now, str):
            raise CallFormatError("now: expected an ISO-8601 time string")
        try:
            now = datetime.fromisoformat(raw_now.replace("Z", "+00:00"))
        except ValueError:
            raise CallFormatError(f"now: {raw_now!r} is not an ISO-8601 time") from None
        if now.tzinfo is None:
            raise CallFormatError(
                "now: the time needs a timezone offset (e.g. 2026-11-26T09:00:00Z)"
            )
    return ToolCall(
        tool=tool,
        args=dict(args),
        principal=principal,
        env=_opt_str(data, "env", ""),
        tenant=_opt_str(data, "tenant", ""),
        context=dict(context),
        run_id=_opt_str(data, "run_id", ""),
        tool_call_id=_opt_str(data, "tool_call_id", ""),
        framework=_opt_str(data, "framework", ""),
        now=now,
    )


def call_to_mapping(call: ToolCall) -> dict[str, Any]:
    p = call.principal
    principal = {
        k: v
        for k, v in (
            ("agent", p.agent),
            ("roles", list(p.roles)),
            ("tenant", p.tenant),
            ("user", p.user),
            ("session", p.session),
        )
        if v
    }
    out: dict[str, Any] = {"tool": call.tool, "args": dict(call.args), "principal": principal}
    for key in ("env", "tenant", "run_id", "tool_call_id", "framework"):
        value = getattr(call, key)
        if value is not None:
            out[key] = value
    if call.context:
        out["context"] = dict(call.context)
    if call.now is not None:
        out["now"] = call.now.isoformat()
    return out


def observation_from_mapping(data: Any) -> tuple[ToolCall, Any]:
    """``{"observe": {call..., "run_id", "output"}}`` -> (the call, its output)."""
    if not isinstance(data, Mapping):
        raise CallFormatError(f"expected a JSON object, got {type(data).__name__}")
    extra = [k for k in data if k != "observe"]
    if extra:
        raise CallFormatError(
            f"unknown key '{extra[0]}' next to 'observe' (an observe line has only 'observe')"
        )
    body = data.get("observe")
    if not isinstance(body, Mapping):
        raise CallFormatError(
            'observe: expected an object {"tool", "args", "principal", "env", "tenant", '
            f'"run_id", "output"}}, got {type(body).__name__}'
        )
    if "output" not in body:
        raise CallFormatError("observe.output: required (null for a call that returned nothing)")
    if not isinstance(body.get("run_id"), str) or not body.get("run_id"):
        raise CallFormatError("observe.run_id: required (a non-empty string naming the run)")
    fields = {k: v for k, v in body.items() if k != "output"}
    try:
        call = call_from_mapping(fields)
    except CallFormatError as exc:
        message = str(exc)
        sep = "." if message.split(" ", 1)[0].endswith(":") else ": "
        raise CallFormatError(f"observe{sep}{message}") from None
    return call, body["output"]
