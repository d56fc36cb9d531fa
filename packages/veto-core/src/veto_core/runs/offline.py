"""Runs replayed offline: calls and observations applied in order, as `veto check
--batch` and policy tests' ``steps:`` apply them (DESIGN.md 2.7 and the batch format
of section 9).

An allowed call joins its run as if it ran. An observation of the run's previous
call (same tool and args) records that call's output instead of adding the call a
second time; one of a call that required approval records it with effect
``require_approval`` (it was approved and ran); one of a denied call is refused
(`ObservationError`: a denied call never runs, so it is never observed). Any other
observation (the person's input ``"@user"``, a call made outside the batch) is
recorded as a call that ran and was allowed.

The previous call is recorded lazily, on the run's next line, so its output can still
join it; the run's state then holds exactly what `Veto.authorize` plus `Veto.observe`
right after each call would have stored, and the decisions are the in-process ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..model import Decision, Effect, ToolCall, make_decision
from .tracker import ObservationError

if TYPE_CHECKING:
    from ..engine import Veto

__all__ = ["OfflineRuns"]


@dataclass(frozen=True, kw_only=True, slots=True)
class _Previous:
    call: ToolCall
    effect: Effect


class OfflineRuns:
    """Decide calls and record observations of in-memory runs with batch semantics.

    ``veto`` must keep its runs in memory (``Veto(..., run_store=MemoryRunStore())``).
    ``namespace`` is prefixed to every run id, so several sequences (one per policy
    test case) can share one `Veto` and still each start from a fresh run.
    """

    def __init__(self, veto: Veto, *, namespace: str = "") -> None:
        self._veto = veto
        self._namespace = namespace
        self._previous: dict[tuple[str | None, str], _Previous] = {}
        self._touched: set[tuple[str | None, str]] = set()

    def _key(self, call: ToolCall) -> tuple[str | None, str] | None:
        run_id = call.run_id
        if not isinstance(run_id, str) or not run_id:
            return None
        key = (call.tenant or call.principal.tenant or self._veto.tenant, run_id)
        self._touched.add(key)
        return key

    def _scoped(self, call: ToolCall) -> ToolCall:
        if self._namespace and call.run_id:
            return replace(call, run_id=self._namespace + call.run_id)
        return call

    def _settle(self, key: tuple[str | None, str]) -> None:
        """Record the run's previous call if it was allowed and not observed yet."""
        previous = self._previous.pop(key, None)
        if previous is not None and previous.effect is Effect.ALLOW:
            self._veto.observe(previous.call, None, effect=Effect.ALLOW)

    def decide(self, call: ToolCall) -> Decision:
        """Decide ``call`` with its run's history; an allowed call joins the run.
        Never raises for the call's content (an unrecordable call fails closed)."""
        key = self._key(call)
        if key is None:
            return self._veto.decide(call)
        call = self._scoped(call)
        try:
            self._settle(key)
        except ObservationError as exc:
            return _refused(self._veto, f"the run's previous call could not be recorded: {exc}")
        decision = self._veto.decide(call)
        self._previous[key] = _Previous(call=call, effect=decision.effect)
        return decision

    def observe(self, call: ToolCall, output: Any) -> None:
        """Record ``output`` of ``call`` in its run (see the module docstring).
        Raises `ObservationError` when it cannot be recorded."""
        key = self._key(call)
        if key is None:
            raise ObservationError(
                "cannot observe an output without a run_id (the call's run is unknown)"
            )
        call = self._scoped(call)
        previous = self._previous.get(key)
        if (
            previous is not None
            and previous.call.tool == call.tool
            and dict(previous.call.args) == dict(call.args)
        ):
            del self._previous[key]
            if previous.effect is Effect.DENY:
                raise ObservationError(
                    f"the run's previous call of {call.tool!r} was denied: a denied call "
                    "never runs, so it cannot be observed"
                )
            self._veto.observe(previous.call, output, effect=previous.effect)
            return
        self._settle(key)
        self._veto.observe(call, output, effect=Effect.ALLOW)

    def source_ids(self) -> frozenset[str]:
        """Ids of the sources whose labels these runs acquired (after recording every
        allowed call not observed yet): what `veto test` counts as exercised sources."""
        for key in list(self._previous):
            self._settle(key)
        store, now = self._veto.run_store, self._veto.clock()
        found: set[str] = set()
        for tenant, run_id in self._touched:
            for event in store.load(tenant, self._namespace + run_id, now=now):
                found.update(event.source_ids)
        return frozenset(found)


def _refused(veto: Veto, reason: str) -> Decision:
    p = veto.policy
    return make_decision(
        Effect.DENY, (), (), (f"{reason} (failing closed)",), (reason,), p.name, p.revision, None
    )
