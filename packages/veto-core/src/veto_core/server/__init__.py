"""``veto serve``: the self-hosted dashboard and JSON API (extra ``veto-core[server]``).

>>> from veto_core.server import create_app      # doctest: +SKIP
>>> app = create_app("sqlite:///veto.db")        # an ASGI app: uvicorn.run(app)

Names are imported lazily so that ``veto`` (whose ``serve``/``users`` commands
live in ``veto_core.server.cli``) starts without the extra installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from veto_core.server.app import create_app
    from veto_core.server.context import ServerSettings
    from veto_core.server.store import ROLES, ServerStore, ServerStoreError, open_server_store

__all__ = [
    "ROLES",
    "ServerSettings",
    "ServerStore",
    "ServerStoreError",
    "create_app",
    "open_server_store",
]

_WHERE = {
    "create_app": "veto_core.server.app",
    "ServerSettings": "veto_core.server.context",
    "ROLES": "veto_core.server.store",
    "ServerStore": "veto_core.server.store",
    "ServerStoreError": "veto_core.server.store",
    "open_server_store": "veto_core.server.store",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'veto_core.server' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
