"""The adapter benchmarks' "own work" figure, measured without the durable record.

Subtracting the time spent inside ``Veto.authorize`` from an adapter call is not enough
on a shared machine: the process sleeps in the record's fsync, other processes run, and
the adapter's code after it runs with cold CPU caches (measured here: the same adapter
code took 3-8x longer right after an fsync than in a loop without one). So each bench
also times the adapter with ``Veto.authorize`` answered by the ``Authorization`` that a
real ``authorize`` of the same tool returned first (same decision, same record id): the
adapter runs exactly its production path around it, and nothing else is in the loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from veto_core import Authorization, ToolCall, Veto

__all__ = ["premade_authorize"]


@contextlib.contextmanager
def premade_authorize(veto: Veto) -> Iterator[None]:
    """Within: ``veto.authorize(call)`` records the first call of each tool for real,
    then answers that tool's calls with the same ``Authorization``."""
    before = vars(veto).get("authorize")  # a bench's own timing wrapper, if any
    real = veto.authorize
    made: dict[str, Authorization] = {}

    def authorize(call: ToolCall) -> Authorization:
        hit = made.get(call.tool)
        if hit is None:
            hit = made[call.tool] = real(call)
        return hit

    veto.authorize = authorize  # type: ignore[method-assign]
    try:
        yield
    finally:
        if before is None:
            del veto.authorize  # back to the class's method
        else:
            veto.authorize = before  # type: ignore[method-assign]
