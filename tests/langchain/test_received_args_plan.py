"""``received_args`` works out each tool's injected-argument names and schema once; the
cached plan must decide exactly what LangChain's own filtering and validation give the
body, and follow a reassigned ``args_schema`` (DESIGN.md 7, "decide what runs")."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from langchain_core.tools import InjectedToolArg, StructuredTool, tool
from pydantic import BaseModel, ValidationError

from veto_langchain._args import received_args


@tool
def deploy(service: str, batch: int, secret: Annotated[str, InjectedToolArg]) -> str:
    """Deploy a service."""
    return f"{service}:{batch}:{secret}"


def test_injected_argument_is_left_out_and_the_rest_coerced() -> None:
    sent = {"service": "api", "batch": "5", "secret": "s3cr3t"}
    for _ in range(3):  # the cached plan gives the same answer as the first call
        assert received_args(deploy, sent) == {"service": "api", "batch": 5}
    # LangChain's own filter agrees on which keys are injected
    assert deploy._filter_injected_args(dict(sent)) == {"service": "api", "batch": "5"}


def test_fixed_langchain_names_are_filtered_like_langchain_does() -> None:
    sent: dict[str, Any] = {"service": "api", "batch": 1, "callbacks": None}
    assert received_args(deploy, sent) == {"service": "api", "batch": 1}


def test_rejected_arguments_raise() -> None:
    with pytest.raises(ValidationError):
        received_args(deploy, {"service": "api", "batch": "many"})


class Narrow(BaseModel):
    n: int


class Wide(BaseModel):
    n: float
    note: str = "x"


def test_reassigned_args_schema_is_followed() -> None:
    def count(n: float, note: str = "x") -> str:
        """Count."""
        return str(n)

    t = StructuredTool.from_function(count, name="count", args_schema=Narrow)
    assert received_args(t, {"n": "3"}) == {"n": 3}
    t.args_schema = Wide
    assert received_args(t, {"n": "3"}) == {"n": 3.0, "note": "x"}  # defaults reach the body
    with pytest.raises(ValidationError):
        t.args_schema = Narrow
        received_args(t, {"n": "3.5"})
