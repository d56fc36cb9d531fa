"""The arguments a LangChain tool body will really receive (DESIGN.md 7, "decide what runs").

``BaseTool.run`` validates the model's arguments with the tool's ``args_schema`` *after*
Veto decided, and pydantic coerces in lax mode: ``"true"`` and ``1`` become ``True``,
``"1e3"`` becomes ``1000.0``, ``"5"`` becomes ``5``. A rule ``force equals true`` would
see the string and let the call through while the tool gets ``True``. So every
integration point decides on the validated values instead, the way
``BaseTool._parse_input`` computes them (provided fields and fields with defaults,
injected arguments left out), as JSON values. Arguments the schema rejects are refused:
the tool would not run with them either.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from types import FrameType
from typing import Any

from langchain_core.tools import BaseTool
from langchain_core.tools.base import FILTERED_ARGS
from pydantic import BaseModel
from pydantic import v1 as pydantic_v1
from pydantic_core import to_jsonable_python

__all__ = ["received_args", "tool_on_stack"]

_VARIADIC = frozenset({"args", "kwargs"})  # pydantic's synthetic fields for *args/**kwargs
_MAX_FRAMES = 64


class _Plan:
    """What ``received_args`` needs of one tool, worked out once per tool (and again
    if its ``args_schema`` is reassigned): LangChain recomputes the injected argument
    names from the schema's annotations and the function signature on every call."""

    __slots__ = ("args_schema", "injected", "kind", "optional", "schema", "tool")

    def __init__(self, tool: BaseTool) -> None:
        self.tool = tool  # held: the cache key is id(tool)
        self.args_schema = tool.args_schema
        schema = tool.tool_call_schema  # args_schema without the injected arguments
        self.schema: Any = schema
        # LangChain's own filter on a probe holding every key it could filter (the
        # schema's fields, its fixed names, the signature's injected names): it filters
        # by key only, so what it drops of the probe is what it drops of any input.
        names = [*_field_names(tool.args_schema), *FILTERED_ARGS]
        names += getattr(tool, "_injected_args_keys", ())
        probe = dict.fromkeys(names)
        self.injected = frozenset(probe) - frozenset(tool._filter_injected_args(probe))
        self.optional: frozenset[str] = frozenset()
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            self.kind = "v2"
            self.optional = frozenset(
                k for k, f in schema.model_fields.items() if not f.is_required()
            )
        elif isinstance(schema, type) and issubclass(schema, pydantic_v1.BaseModel):
            self.kind = "v1"
            self.optional = frozenset(k for k, f in schema.__fields__.items() if not f.required)
        else:
            self.kind = "other"


def _field_names(args_schema: Any) -> list[str]:
    if isinstance(args_schema, type) and issubclass(args_schema, BaseModel):
        return list(args_schema.model_fields)
    if isinstance(args_schema, type) and issubclass(args_schema, pydantic_v1.BaseModel):
        return list(args_schema.__fields__)
    return []


_PLANS: dict[int, _Plan] = {}
_PLANS_MAX = 4096  # tools made per call: don't grow forever


def _plan(tool: BaseTool) -> _Plan:
    plan = _PLANS.get(id(tool))
    if plan is not None and plan.tool is tool and plan.args_schema is tool.args_schema:
        return plan
    plan = _Plan(tool)
    if len(_PLANS) >= _PLANS_MAX:
        _PLANS.clear()
    _PLANS[id(tool)] = plan
    return plan


def received_args(tool: BaseTool | None, args: Any) -> Any:
    """``args`` as the body of ``tool`` will get them (JSON values). Raises when the
    schema rejects them (callers refuse the call). Strings (single-input tools) and
    tools without a pydantic schema (no ``args_schema``, or a JSON-schema dict, which
    LangChain passes through unvalidated) are returned as they are."""
    if tool is None or not isinstance(args, Mapping):
        return args
    if tool.args_schema is None or isinstance(tool.args_schema, dict):
        return dict(args)
    plan = _plan(tool)
    injected = plan.injected
    given = {k: v for k, v in args.items() if k not in injected}
    schema = plan.schema
    if plan.kind == "v2":
        model = schema.model_validate(given)
        dumped = model.model_dump(mode="json")
        provided = model.model_fields_set
    elif plan.kind == "v1":
        model_v1 = schema.parse_obj(given)
        dumped = json.loads(model_v1.json())
        provided = set(model_v1.__fields_set__)
    else:
        return to_jsonable_python(given)
    optional = plan.optional
    return {
        k: v
        for k, v in dumped.items()
        if k in given or k in provided or (k in optional and k not in _VARIADIC)
    }


def tool_on_stack(name: str, inputs: Any = None) -> BaseTool | None:
    """The ``BaseTool`` whose ``run``/``arun`` is starting on this thread (the caller of
    a callback's ``on_tool_start``), or ``None``. A callback is handed the raw input
    only; the tool's schema is needed to know what the body will receive."""
    codes = {BaseTool.run.__code__, BaseTool.arun.__code__}
    frame: FrameType | None = sys._getframe(1)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return None
        if frame.f_code in codes:
            tool = frame.f_locals.get("self")
            same_input = inputs is None or frame.f_locals.get("filtered_tool_input") is inputs
            return tool if isinstance(tool, BaseTool) and tool.name == name and same_input else None
        frame = frame.f_back
    return None
