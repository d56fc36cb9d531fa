"""Lazy package exports (PEP 562): `veto` must start fast, so a package's ``__init__``
names its public API without importing the modules behind it until first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    namespace: dict[str, Any], where: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """-> (``__getattr__``, ``__dir__``) for the package whose ``globals()`` is
    ``namespace``; ``where`` maps each exported name to its (relative) module."""
    package = str(namespace["__name__"])

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where})

    return __getattr__, __dir__
