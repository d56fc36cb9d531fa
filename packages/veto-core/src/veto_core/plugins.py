"""The plugin manager: built-in plugins plus ``veto`` entry points.

Built in a function (no module-level global), so tests and embedders get a fresh
manager and can register their own plugins. Set ``VETO_DISABLE_PLUGINS`` to skip
third-party entry points (built-ins are always registered).
"""

from __future__ import annotations

import os

import pluggy

from veto_core import hookspecs

__all__ = ["BUILTIN_PLUGINS", "ENV_DISABLE_PLUGINS", "get_plugin_manager"]

ENV_DISABLE_PLUGINS = "VETO_DISABLE_PLUGINS"

BUILTIN_PLUGINS: tuple[str, ...] = ("veto_core.audit.plugin",)
"""Dotted module names registered before entry points, in this order."""


def get_plugin_manager(*, load_entrypoints: bool | None = None) -> pluggy.PluginManager:
    import importlib

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    if load_entrypoints is None:
        load_entrypoints = not os.environ.get(ENV_DISABLE_PLUGINS)
    if load_entrypoints:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    return pm
