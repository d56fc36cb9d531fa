"""The plugin manager: built-in plugins plus ``veto`` entry points.

Built in a function (no module-level global), so tests and embedders get a fresh
manager and can register their own plugins. Set ``VETO_DISABLE_PLUGINS`` to skip
third-party entry points (built-ins are always registered).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import pluggy

from veto_core import hookspecs

__all__ = [
    "BUILTIN_PLUGINS",
    "ENV_DISABLE_PLUGINS",
    "PluginInfo",
    "describe_plugins",
    "get_plugin_manager",
]

ENV_DISABLE_PLUGINS = "VETO_DISABLE_PLUGINS"

BUILTIN_PLUGINS: tuple[str, ...] = (
    "veto_core.audit.plugin",
    "veto_core.audit.witness",
    "veto_core.approvals.channels.console",
    "veto_core.approvals.channels.webhook",
    "veto_core.approvals.channels.slack",
    "veto_core.approvals.channels.email",
)
"""Dotted module names registered before entry points, in this order."""


def get_plugin_manager(
    *, load_entrypoints: bool | None = None, builtins: Sequence[str] = BUILTIN_PLUGINS
) -> pluggy.PluginManager:
    """``builtins`` narrows the built-in plugins registered (e.g. opening a store needs
    only the audit sinks, not the approval channels); entry points load as usual."""
    import importlib

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in builtins:
        pm.register(importlib.import_module(name), name=name)
    if load_entrypoints is None:
        load_entrypoints = not os.environ.get(ENV_DISABLE_PLUGINS)
    if load_entrypoints:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    return pm


@dataclass(frozen=True, kw_only=True, slots=True)
class PluginInfo:
    """One registered plugin, for ``veto plugins``."""

    name: str
    source: str  # "builtin" or "entry point <dist> <version>"
    hooks: tuple[str, ...]
    channels: tuple[str, ...] = ()


def describe_plugins(pm: pluggy.PluginManager | None = None) -> list[PluginInfo]:
    """What is loaded, in registration order, with where it came from."""
    pm = pm or get_plugin_manager()
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    out: list[PluginInfo] = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist = dists.get(id(plugin))
        if dist is not None:
            source = f"entry point {dist.project_name} {dist.version}"
        elif name in BUILTIN_PLUGINS:
            source = "builtin"
        else:
            source = "registered"
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or ()))
        channels: tuple[str, ...] = ()
        impl = getattr(plugin, "veto_approval_channels", None)
        if impl is not None:
            try:
                channels = tuple(str(getattr(c, "name", "?")) for c in impl() or ())
            except Exception as exc:
                channels = (f"<error: {type(exc).__name__}: {exc}>",)
        out.append(PluginInfo(name=name, source=source, hooks=hooks, channels=channels))
    return out
