"""An in-memory `RunStore`: for tests, `veto check --batch`, and single-process use."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timedelta

from .store import RunEvent, RunStore

__all__ = ["MemoryRunStore"]


class MemoryRunStore(RunStore):
    """Runs kept in this process only (lost on exit); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[tuple[str | None, str], tuple[list[RunEvent], datetime]] = {}

    def _live(self, key: tuple[str | None, str], now: datetime) -> list[RunEvent] | None:
        found = self._runs.get(key)
        if found is None:
            return None
        if found[1] <= now:
            del self._runs[key]
            return None
        return found[0]

    def append(
        self, tenant: str | None, run_id: str, event: RunEvent, *, ttl_s: float, now: datetime
    ) -> int:
        key = (tenant, run_id)
        with self._lock:
            events = self._live(key, now) or []
            seq = len(events) + 1
            events.append(replace(event, seq=seq))
            self._runs[key] = (events, now + timedelta(seconds=ttl_s))
            return seq

    def load(
        self, tenant: str | None, run_id: str, *, now: datetime, after_seq: int = 0
    ) -> tuple[RunEvent, ...]:
        with self._lock:
            events = self._live((tenant, run_id), now) or []
            return tuple(events[after_seq:])

    def head(self, tenant: str | None, run_id: str, *, now: datetime) -> int:
        with self._lock:
            return len(self._live((tenant, run_id), now) or ())

    def purge_expired(self, *, now: datetime) -> int:
        with self._lock:
            dead = [key for key, (_, expires) in self._runs.items() if expires <= now]
            for key in dead:
                del self._runs[key]
            return len(dead)

    def erase(self, *, tenant: str | None, run_id: str | None = None) -> int:
        with self._lock:
            keys = [k for k in self._runs if k[0] == tenant and (run_id is None or k[1] == run_id)]
            for key in keys:
                del self._runs[key]
            return len(keys)
