"""Leader/follower group commit: concurrent callers share one durable commit.

A caller enqueues its item; if no commit is running it becomes the leader, takes
every queued item (up to ``max_batch``), commits them in one transaction (one
fsync) and wakes the others. Each caller returns only after the batch holding
its item committed, or raises the batch's error. No background thread: a single
caller commits inline, with no hand-off latency.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["GroupCommitter"]

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T, R]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None


class GroupCommitter(Generic[T, R]):
    def __init__(self, commit: Callable[[Sequence[T]], Sequence[R]], *, max_batch: int = 1024):
        self._commit = commit
        self._max = max_batch
        self._cv = threading.Condition(threading.Lock())
        self._queue: list[_Slot[T, R]] = []
        self._leading = False

    def submit(self, item: T) -> R:
        slot: _Slot[T, R] = _Slot(item)
        cv = self._cv
        with cv:
            self._queue.append(slot)
            while not slot.done:
                if self._leading:
                    cv.wait()
                    continue
                self._leading = True
                batch = self._queue[: self._max]
                del self._queue[: self._max]
                cv.release()
                results: Sequence[R] = ()
                error: BaseException | None = None
                try:
                    results = self._commit([s.item for s in batch])
                    if len(results) != len(batch):
                        error = RuntimeError("group commit returned a wrong number of results")
                except BaseException as exc:
                    error = exc
                finally:
                    cv.acquire()
                    for i, s in enumerate(batch):
                        if error is None:
                            s.result = results[i]
                        else:
                            s.error = error
                        s.done = True
                    self._leading = False
                    cv.notify_all()
        if slot.error is not None:
            raise slot.error
        assert slot.result is not None
        return slot.result
