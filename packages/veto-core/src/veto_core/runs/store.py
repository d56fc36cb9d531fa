"""Where run state lives (DESIGN.md 2.7): the contract between the engine and the stores.

A run is ``(tenant, run_id)``. Its state is an append-only list of `RunEvent`s: one per
executed call that was observed (its output's text and the labels its sources gave), and
one per observation of the person's input (pseudo-tool ``"@user"``). Stores keep events
in the same database as approvals (SQLite by default, PostgreSQL; Redis when configured),
so a run paused for approval and resumed in another process keeps its history. A run
expires ``ttl_s`` seconds after its last event.

Every method raises `RunStoreUnavailable` when the store cannot be used: the engine turns
that into an error on the decision (reading) or a withheld output (writing). Fail closed.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["RunEvent", "RunStore", "RunStoreUnavailable"]


class RunStoreUnavailable(RuntimeError):
    """The run store cannot be read or written: flow rules cannot be decided, and an
    output that was not recorded must be withheld from the model."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RunEvent:
    """One observation in a run, as stored.

    ``seq`` is assigned by the store on append (1, 2, 3... per run, gap-free); the value
    passed to `RunStore.append` is ignored. ``effect`` is the decision's effect value
    (``"allow"``, or ``"require_approval"`` for a call that was approved and ran).
    ``text`` is the output's extracted text (DESIGN.md 2.7: strings, string/number leaves
    and object keys of JSON-like outputs, joined by newlines), not normalized, so
    `veto explain` can quote it; ``labels``/``source_ids`` are what the policy's
    ``sources`` gave this output. Pseudo-tools (``"@user"``) have ``args == {}``.
    ``text_lost`` is True when some of the output's text is not kept: it was cut to the
    per-run bound, or blanked to make room for newer text. A value not found in the
    kept text may then still have come from it, so `tainted_by` cannot answer "no"
    for its labels (an error: fail closed).
    """

    seq: int = 0
    tool: str
    args: Mapping[str, Any] = field(default_factory=dict)
    effect: str = "allow"
    tool_call_id: str | None = None
    labels: frozenset[str] = frozenset()
    source_ids: tuple[str, ...] = ()
    text: str = ""
    at: datetime
    text_lost: bool = False


class RunStore(abc.ABC):
    """Durable, shared run state. Implementations must be thread-safe and safe across
    processes (two workers appending to one run never lose or reorder an event). A store
    that keeps less text than it was given (cut, or blanked for newer text) must load
    that event with ``text_lost=True``, or flow rules would read lost text as absent."""

    @abc.abstractmethod
    def append(
        self, tenant: str | None, run_id: str, event: RunEvent, *, ttl_s: float, now: datetime
    ) -> int:
        """Append ``event`` atomically (committed when this returns) and return its seq.
        Refreshes the run's expiry to ``now + ttl_s``."""

    @abc.abstractmethod
    def load(
        self, tenant: str | None, run_id: str, *, now: datetime, after_seq: int = 0
    ) -> tuple[RunEvent, ...]:
        """The run's events with ``seq > after_seq``, oldest first; ``()`` for an unknown
        or expired run (an expired run starts afresh)."""

    @abc.abstractmethod
    def head(self, tenant: str | None, run_id: str, *, now: datetime) -> int:
        """The run's latest seq (0 for none/expired): a cheap freshness check."""

    @abc.abstractmethod
    def purge_expired(self, *, now: datetime) -> int:
        """Delete expired runs; returns how many runs were deleted."""

    @abc.abstractmethod
    def erase(self, *, tenant: str | None, run_id: str | None = None) -> int:
        """Delete a run's events (or every run of ``tenant`` when ``run_id`` is None)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""
