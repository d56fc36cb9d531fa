"""Run state for deciding, and `observe` (DESIGN.md 2.7, the `runs` seam of section 3).

`RunTracker` owns a run store and an in-process cache of `RunState`s keyed by
``(tenant, run_id)``. Deciding reads the cache (loading a run on first use);
`authorize` first checks the store's head (one cheap round trip) so a run extended
by another process is caught up; `observe` appends to the store and extends the
cached state. Failures fail closed: a run that cannot be read is an evaluation
error (2.2 decides it), an output that cannot be recorded raises
`ObservationError`, and the adapter withholds the output.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..model import Effect, ToolCall
from ..policy.conditions import EvalContext
from ..policy.operators import EvalError
from .state import MAX_TEXT_BYTES, RunState
from .store import RunEvent, RunStore, RunStoreUnavailable
from .text import read_output

if TYPE_CHECKING:
    from ..policy.compiler import CompiledPolicy

__all__ = ["USER", "ObservationError", "RunTracker"]

#: The pseudo-tool of the person's own input (DESIGN.md 2.7).
USER = "@user"
_CACHE_RUNS = 1024  # runs kept in process (least recently used dropped first)


class ObservationError(RuntimeError):
    """An output could not be recorded in its run: the adapter must withhold it from
    the model (a flow rule could not see it later). Fail closed."""


class RunTracker:
    """A run store plus the cache of run states deciding reads (thread-safe)."""

    def __init__(
        self,
        *,
        store: RunStore | None = None,
        url: str | None = None,
        db: str | None = None,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._owns_store = store is None
        self._url = url
        self._db = db
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str | None, str], RunState] = OrderedDict()

    # --- the store ----------------------------------------------------------------------

    @property
    def store(self) -> RunStore:
        """The run store (opened on first use; raises `RunStoreUnavailable`)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    try:
                        from .backends import (
                            open_run_store,
                        )

                        self._store = open_run_store(self._url, default=self._db)
                    except RunStoreUnavailable:
                        raise
                    except Exception as exc:
                        raise RunStoreUnavailable(
                            f"cannot open the run store: {type(exc).__name__}: {exc}"
                        ) from exc
        return self._store

    def close(self) -> None:
        if self._store is not None and self._owns_store:
            self._store.close()
            self._store = None
        with self._lock:
            self._cache.clear()

    # --- reading ------------------------------------------------------------------------

    def state(self, tenant: str | None, run_id: str) -> RunState:
        """The run's state (cached; loaded on first use). Raises `RunStoreUnavailable`."""
        key = (tenant, run_id)
        found = self._cache.get(key)
        if found is not None:
            return found
        try:
            events = self.store.load(tenant, run_id, now=self._clock())
        except RunStoreUnavailable:
            raise
        except Exception as exc:
            raise RunStoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        state = RunState(events)
        self._put(key, state)
        return state

    def _put(self, key: tuple[str | None, str], state: RunState) -> None:
        with self._lock:
            self._cache[key] = state
            self._cache.move_to_end(key)
            while len(self._cache) > _CACHE_RUNS:
                self._cache.popitem(last=False)

    def lookup(self, call: ToolCall, tenant: str | None) -> RunState:
        """For deciding (`RunLookup`): the call's run, or EvalError (fail closed)."""
        run_id = call.run_id
        assert isinstance(run_id, str)  # conditions.read_run checked it
        found = self._cache.get((tenant, run_id))  # `state`'s first step, one frame less
        if found is not None:
            return found
        try:
            return self.state(tenant, run_id)
        except Exception as exc:
            raise EvalError(f"run state unavailable (failing closed): {exc}") from None

    def refresh(self, tenant: str | None, run_id: str) -> None:
        """Catch a cached run up with the store (a `head()` round trip, then only the
        new events). When the store fails, the cached state is dropped, so deciding
        reads the store again and fails closed rather than using stale history."""
        key = (tenant, run_id)
        cached = self._cache.get(key)
        if cached is None:
            return
        try:
            now = self._clock()
            head = self.store.head(tenant, run_id, now=now)
            if head == cached.head:
                return
            if head > cached.head:
                cached.extend(self.store.load(tenant, run_id, now=now, after_seq=cached.head))
                if cached.head == head:
                    return
            # expired, erased, or raced: start from what the store holds
            self._put(key, RunState(self.store.load(tenant, run_id, now=now)))
        except Exception:
            with self._lock:
                self._cache.pop(key, None)

    # --- writing ------------------------------------------------------------------------

    def observe(
        self,
        policy: CompiledPolicy,
        call: ToolCall,
        output: Any,
        *,
        tenant: str | None,
        env: str | None,
        effect: Effect,
    ) -> RunEvent:
        """Record ``output`` of ``call`` (which ran) in its run; returns the stored event.
        Raises `ObservationError` when it cannot be recorded."""
        run_id = call.run_id
        if not isinstance(run_id, str) or not run_id:
            raise ObservationError(
                "cannot observe an output without a run_id (the call's run is unknown)"
            )
        tool = call.tool
        if not isinstance(tool, str) or not tool:
            raise ObservationError("cannot observe an output without a tool name")
        if effect is Effect.DENY or not isinstance(effect, Effect):
            raise ObservationError(
                f"only calls that ran are observed (effect allow or require_approval), got {effect!r}"
            )
        try:
            labels, source_ids = self._labels(policy, call, tenant, env)
            # An output with parts that are not text (images, files) keeps an incomplete
            # text: like text cut at the bound, flow rules must not read it as complete.
            text, cut = read_output(output) if labels else ("", False)
            if len(text) > MAX_TEXT_BYTES // 4:  # possibly over the bound: cut by bytes
                data = text.encode("utf-8", "surrogatepass")
                if len(data) > MAX_TEXT_BYTES:
                    text = data[:MAX_TEXT_BYTES].decode("utf-8", "ignore")
                    cut = True  # flow rules must not read "not found" as "not in it"
            now = self._clock()
            event = RunEvent(
                tool=tool, args=dict(call.args), effect=effect.value, tool_call_id=call.tool_call_id,
                labels=labels, source_ids=source_ids, text=text, at=now, text_lost=cut,
            )  # fmt: skip
            seq = self.store.append(tenant, run_id, event, ttl_s=policy.run_ttl_s, now=now)
        except ObservationError:
            raise
        except Exception as exc:
            raise ObservationError(
                f"the output of {tool!r} could not be recorded in run {run_id!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        stored = replace(event, seq=seq)
        key = (tenant, run_id)
        cached = self._cache.get(key)
        if cached is not None:
            if cached.head == seq - 1:
                cached.extend((stored,))
            else:  # another writer appended in between: reload on next use
                with self._lock:
                    self._cache.pop(key, None)
        return stored

    def _labels(
        self, policy: CompiledPolicy, call: ToolCall, tenant: str | None, env: str | None
    ) -> tuple[frozenset[str], tuple[str, ...]]:
        """Labels and ids of the sources matching the call; a source whose `if` cannot
        be evaluated counts as matching (fail closed)."""
        labels: set[str] = set()
        ids: list[str] = []
        ctx: EvalContext | None = None
        for source in policy.sources_for(call.tool):
            if source.condition is not None:
                if ctx is None:
                    ctx = EvalContext(
                        call, env, tenant, policy.effective_roles, self._clock, self.lookup
                    )
                try:
                    if not source.condition.fn(ctx):
                        continue
                except EvalError:
                    pass
            labels.update(source.labels)
            ids.append(source.id)
        return frozenset(labels), tuple(ids)
