"""One writer per store: a queue-fed thread that commits every queued record at once.

A thread that finds the writer idle commits its record itself (no hand-off). Other
threads and asyncio tasks hand their prepared record to :meth:`AuditWriter.submit`
/ :meth:`AuditWriter.asubmit` and wait for the commit that holds it: a thread on
its own lock (the writer releases exactly the waiters of each batch), a task on a
future resolved on its loop (one ``call_soon_threadsafe`` per loop and batch). The
writer takes everything queued (up to ``max_batch``) into one transaction, so the
commit's fsync is shared by as many callers as arrived while the previous one ran.
A caller returns only after its batch committed, or raises the batch's error: a
record is never acknowledged before it is durable (``durability`` of the store).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from veto_core.audit.errors import AuditUnavailable

if TYPE_CHECKING:
    import asyncio  # imported by the async path only: `veto` starts without it (DESIGN.md 8)

__all__ = ["AuditWriter"]

T = TypeVar("T")
R = TypeVar("R")

_allocate_lock = threading.Lock
# When the last batch had several callers, wait up to this long for as many again
# (a fraction of one fsync; a lone caller never waits: it commits inline).
# The writer sleeps on a lock that the caller completing the batch releases: no
# polling (each poll woke the writer and took the GIL from the callers building records).
_LINGER_S = 0.0005


class _Waiter:
    __slots__ = ("error", "future", "item", "lock", "loop", "result")

    def __init__(self, item: Any) -> None:
        self.item = item
        self.result: Any = None
        self.error: BaseException | None = None
        self.lock: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.future: asyncio.Future[Any] | None = None


def _resolve(waiters: list[_Waiter]) -> None:
    """On the waiters' loop: settle their futures (a cancelled caller is skipped; its
    record is committed all the same)."""
    for w in waiters:
        f = w.future
        assert f is not None
        if f.done():
            continue
        if w.error is None:
            f.set_result(w.result)
        else:
            f.set_exception(w.error)


class AuditWriter(Generic[T, R]):
    """Batching commits of ``commit(items) -> results`` (same length, same order)."""

    def __init__(
        self,
        commit: Callable[[Sequence[T]], Sequence[R]],
        *,
        max_batch: int = 512,
        name: str = "veto-audit-writer",
    ) -> None:
        self._commit = commit
        self._max = max_batch
        self._name = name
        self._lock = _allocate_lock()
        self._queue: list[_Waiter] = []
        self._signal = _allocate_lock()  # held while the writer has nothing to do
        self._signal.acquire()
        self._enough = _allocate_lock()  # held; released once ``_want`` records are queued
        self._enough.acquire()
        self._want = 0  # > 0 while the writer lingers for that many queued records
        self._idle = True
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = -1

    # -- callers -------------------------------------------------------------------

    def submit(self, item: T) -> R:
        """Queue ``item`` and block until the commit that holds it has finished.

        A lone caller (nothing queued, no commit running) commits inline, so it does
        not pay two thread hand-offs; callers arriving meanwhile queue for the writer.
        """
        with self._lock:
            inline = self._idle and not self._queue and not self._closed
            if inline and self._pid == os.getpid():
                self._idle = False  # the writer stays asleep; newcomers queue behind us
            else:
                inline = False
        if inline:
            try:
                results = self._commit([item])
                if len(results) != 1:
                    raise AuditUnavailable("audit commit returned a wrong number of results")
                return results[0]
            finally:
                with self._lock:
                    if self._queue or self._closed:
                        self._signal.release()  # the writer takes over (or stops)
                    else:
                        self._idle = True
        w = _Waiter(item)
        lock = _allocate_lock()
        lock.acquire()
        w.lock = lock
        self._enqueue(w)
        lock.acquire()  # released by the writer once w's batch committed (or failed)
        if w.error is not None:
            raise w.error
        result: R = w.result
        return result

    async def asubmit(self, item: T) -> R:
        """As :meth:`submit`, without blocking the event loop."""
        import asyncio

        loop = asyncio.get_running_loop()
        w = _Waiter(item)
        w.loop = loop
        fut: asyncio.Future[R] = loop.create_future()
        w.future = fut
        self._enqueue(w)
        # Cancelling the caller cancels only its wait: the record is committed all the
        # same (the writer skips futures that are already done).
        return await fut

    def _enqueue(self, w: _Waiter) -> None:
        with self._lock:
            if self._closed:
                raise AuditUnavailable("audit log is closed")
            if self._pid != os.getpid():  # first use, or a forked child: no writer here yet
                self._start()
            queue = self._queue
            queue.append(w)
            if self._idle:
                self._idle = False
                self._signal.release()
            elif self._want and len(queue) >= self._want:
                self._want = 0
                self._enough.release()  # the lingering writer commits now

    def _start(self) -> None:
        self._signal = _allocate_lock()
        self._signal.acquire()
        self._enough = _allocate_lock()
        self._enough.acquire()
        self._want = 0
        self._idle = True
        self._queue = []  # a forked child owns none of the parent's waiters
        self._pid = os.getpid()
        t = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread = t
        t.start()

    # -- the writer thread ---------------------------------------------------------

    def _run(self) -> None:
        lock = self._lock
        signal = self._signal
        enough = self._enough
        last = 1
        while True:
            signal.acquire()
            while True:
                if last > 1 and len(self._queue) < last:
                    # Callers are concurrent: give the ones still building their record
                    # a moment (the GIL) to join this commit instead of paying the next.
                    self._linger(lock, enough, last)
                with lock:
                    batch = self._queue[: self._max]
                    del self._queue[: self._max]
                    if not batch:
                        self._idle = True
                        stop = self._closed
                        break
                last = len(batch)
                self._commit_batch(batch)
            if stop:
                return

    def _linger(self, lock: Any, enough: Any, want: int) -> None:
        """Sleep until ``want`` records are queued (the caller queuing the last one
        wakes us) or :data:`_LINGER_S` has passed."""
        with lock:
            if len(self._queue) >= want:
                return
            self._want = want
        got = enough.acquire(timeout=_LINGER_S)
        with lock:
            if not got and self._want == 0:
                enough.acquire()  # released just after our timeout: hold it again
            self._want = 0

    def _commit_batch(self, batch: list[_Waiter]) -> None:
        error: BaseException | None = None
        results: Sequence[Any] = ()
        try:
            results = self._commit([w.item for w in batch])
            if len(results) != len(batch):
                error = AuditUnavailable("audit commit returned a wrong number of results")
        except BaseException as exc:  # every waiter of the batch hears it: nothing is lost
            error = exc
        loops: dict[asyncio.AbstractEventLoop, list[_Waiter]] = {}
        for i, w in enumerate(batch):
            if error is None:
                w.result = results[i]
            else:
                w.error = error
            if w.lock is not None:
                w.lock.release()
            else:
                assert w.loop is not None
                loops.setdefault(w.loop, []).append(w)
        for loop, waiters in loops.items():
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, waiters)

    # -- shutdown ------------------------------------------------------------------

    def close(self, timeout: float | None = 30.0) -> None:
        """Commit what is queued, then stop the writer (later submits raise)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            t = self._thread if self._pid == os.getpid() else None
            if t is not None and self._idle:
                self._idle = False
                self._signal.release()
            elif self._want:
                self._want = 0
                self._enough.release()  # a lingering writer stops waiting for more
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
