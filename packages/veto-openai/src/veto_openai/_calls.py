"""From the OpenAI Agents SDK's view of a tool call to a Veto ``ToolCall``: names, who,
where, which run.

:class:`VetoContext` and :class:`ToolNames` are the ones all adapters share
(:mod:`veto_core.adapters`). Put a ``VetoContext`` in the SDK run context:
``Runner.run(agent, input, context={"veto": {...}})`` (a plain mapping survives
``RunState.to_json()``, so a resumed run in another process decides with the same
principal and run id), a context object with a ``veto`` attribute, or a ``VetoContext``
as the whole context. Fields left ``None`` keep the values given to ``guard_agent`` /
``guard_tools``. Tools from an agent's ``mcp_servers`` are named with
``ToolNames.mcp(server name, tool)``, hosted MCP tools with their ``server_label``.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import Draft202012Validator, validator_for

from veto_core.adapters import ToolNames, VetoContext

__all__ = [
    "FRAMEWORK",
    "ArgumentSchema",
    "RolesSpec",
    "RunIdSpec",
    "ToolNames",
    "VetoContext",
    "parse_arguments",
]

FRAMEWORK = "openai-agents"

RolesSpec = (
    Sequence[str] | Mapping[str, Sequence[str]] | Callable[[str | None], Iterable[str]] | None
)
"""Roles for the principal: one list for every agent, a mapping ``agent name -> roles``,
or a function ``agent name -> roles``."""

RunIdSpec = str | Callable[[Any], str | None] | None
"""A fixed run id, or a function of the SDK run context object (what you passed as
``Runner.run(..., context=...)``) returning one."""


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """The call's arguments as the model sent them (JSON text, not coerced by pydantic).

    Both the approval check and the guardrail read the same raw JSON, so a request
    bound to these arguments is found again after a resume. Raises on anything that
    is not a JSON object (callers fail closed)."""
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if arguments is None or arguments == "":
        return {}
    if not isinstance(arguments, str):
        raise TypeError(f"tool arguments must be JSON text, got {type(arguments).__name__}")
    parsed = json.loads(arguments)
    if not isinstance(parsed, dict):
        raise ValueError(f"tool arguments must be a JSON object, got {type(parsed).__name__}")
    return parsed


def args_key(args: Mapping[str, Any]) -> str:
    """A stable text for a call's arguments (memo keys)."""
    try:
        return json.dumps(args, sort_keys=True, separators=(",", ":"), default=repr)
    except (TypeError, ValueError):
        return repr(sorted(args.items(), key=lambda kv: str(kv[0])))


class ArgumentSchema:
    """A tool's JSON Schema for its arguments, checked strictly before Veto decides.

    The SDK validates a call's JSON with pydantic in lax mode, which converts types:
    ``"true"`` or ``1`` become ``True`` for a ``bool`` parameter, ``"1e3"`` becomes
    ``1000.0``, ``"5"`` becomes ``5``. A policy decides on the JSON, so such a value
    would be decided as one thing and received as another. JSON Schema types are
    strict (a string is never a boolean, ``1`` is never ``true``), so a call whose
    arguments match the tool's schema reaches the tool with the values Veto decided
    on (a JSON ``500`` for a ``number`` is received as ``500.0``, the same number), and
    any other call is refused before it is decided (DESIGN.md 7)."""

    _KNOWN_MAX = 256

    def __init__(self, schema: Mapping[str, Any] | None) -> None:
        self.schema = dict(schema) if schema else None
        self._validator: Validator | None = None
        # Arguments already found valid (canonical JSON text): the SDK shows one call to
        # Veto up to three times (needs_approval, guardrail, body gate); validate it once.
        self._known: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def _compiled(self) -> Validator:
        if self._validator is None:
            assert self.schema is not None
            cls = validator_for(self.schema, default=Draft202012Validator)
            try:
                cls.check_schema(self.schema)
            except SchemaError as exc:
                raise ValueError(f"the tool's argument schema is invalid: {exc.message}") from exc
            self._validator = cls(self.schema)
        return self._validator

    def check(self, args: Mapping[str, Any], *, text: str | None = None) -> None:
        """Raise ``ValueError`` naming the first argument the schema does not accept.

        ``text``: the JSON text ``args`` were parsed from, if any (one text parses to
        one value, so it is a key as strict as the canonical text, without encoding)."""
        if self.schema is None:
            return
        key: str | None = text
        if key is None:
            try:  # strict JSON text: no value outside JSON shares a key with one inside it
                key = json.dumps(args, sort_keys=True, separators=(",", ":"))
            except (TypeError, ValueError):
                key = None
        with self._lock:
            if key is not None and key in self._known:
                return
        errors = sorted(self._compiled().iter_errors(dict(args)), key=lambda e: list(e.path))
        if not errors:
            if key is None:
                return
            with self._lock:
                self._known[key] = None
                if len(self._known) > self._KNOWN_MAX:
                    self._known.popitem(last=False)
            return
        err = errors[0]
        where = ".".join(str(p) for p in err.absolute_path) or "(arguments)"
        raise ValueError(
            f"argument {where}: {err.message} (the tool's schema; a value of another "
            "JSON type would reach the tool converted, so it is not decided on)"
        )
