"""Public fakes for users' own tests of policies, approvals and adapters.

```python
from veto_core.testing import FakeClock, RecordingChannel

clock = FakeClock()
veto = Veto.from_file("policy.yaml", clock=clock)
clock.advance(3600)                      # time-of-day rules, expiry, limit windows
channel = RecordingChannel("slack")      # veto.approvals.use_channels([channel])
```
"""

from __future__ import annotations

import datetime as _dt
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .approvals import ApprovalLinks, ApprovalRequest

__all__ = ["FakeClock", "RecordingChannel"]


class FakeClock:
    """A settable, thread-safe UTC clock to pass as ``Veto(clock=...)``."""

    def __init__(self, start: _dt.datetime | None = None) -> None:
        self._now = start or _dt.datetime(2025, 1, 1, 12, 0, tzinfo=_dt.UTC)
        if self._now.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime (e.g. tzinfo=datetime.UTC)")
        self._lock = threading.Lock()

    def __call__(self) -> _dt.datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += _dt.timedelta(seconds=seconds)

    def set(self, when: _dt.datetime) -> None:
        with self._lock:
            self._now = when


class RecordingChannel:
    """An approval channel that remembers what it was asked to deliver (and can fail
    on purpose, to test that a failing channel approves nothing and stops no other)."""

    def __init__(self, name: str, *, fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.seen: list[tuple[ApprovalRequest, ApprovalLinks]] = []

    def notify(self, request: ApprovalRequest, links: ApprovalLinks) -> None:
        self.seen.append((request, links))
        if self.fail:
            raise RuntimeError(f"{self.name} is down")
