"""The arguments a CrewAI tool body will really receive (DESIGN.md 7, "decide what runs").

``BaseTool.run`` validates the model's arguments with the tool's ``args_schema`` after the
before-tool-call hooks ran (``_validate_kwargs``: ``model_validate`` then ``model_dump``),
and pydantic coerces in lax mode: ``"true"`` and ``1`` become ``True``, ``"1e3"``
``1000.0``, ``"5"`` ``5``. So Veto decides on that validated dump (as JSON values,
defaults included, exactly the keys the body gets); arguments the schema rejects are
refused, since the tool would not run with them either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

__all__ = ["received_args"]


def received_args(tool: Any, args: Any) -> Any:
    """``args`` as ``tool``'s body will get them. Raises when the schema rejects them."""
    schema = getattr(tool, "args_schema", None)
    if not isinstance(args, Mapping) or not (
        isinstance(schema, type) and issubclass(schema, BaseModel) and schema.model_fields
    ):
        return args
    return schema.model_validate(dict(args)).model_dump(mode="json")
