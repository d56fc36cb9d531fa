"""OpenTelemetry spans and metrics for decisions (extra ``veto-core[otel]``; DESIGN.md 4).

Every ``Veto.authorize`` (and ``authorize_and_wait``) is one span following the GenAI
semantic conventions for tool execution: named ``execute_tool {tool}``, kind INTERNAL,
with ``gen_ai.operation.name=execute_tool``, ``gen_ai.tool.name``, ``gen_ai.tool.type``
and ``gen_ai.tool.call.id``, plus ``veto.*`` attributes (effect, outcome, rule ids,
policy, approval, audit record id, latency, tenant, env, run, framework). It is a child
of whatever span is current when the adapter calls Veto (the framework's tool span,
or the caller's own). Waiting for an approval is a child span ``veto.approval.wait``
that ends with the request's final state.

Metrics (meter ``veto``): ``veto.decisions`` (counter by effect, outcome, tool, tenant,
env, framework), ``veto.decision.duration`` (histogram, seconds: decide + limits +
durable record + approval request), ``veto.approvals.pending`` (observable gauge: the
pending, unexpired requests in each approval store a traced call used, by tenant).

Free when unused: nothing here imports OpenTelemetry. Telemetry is on only when the
process already imported ``opentelemetry.trace`` / ``opentelemetry.metrics`` and
installed a real (SDK) tracer or meter provider, or when `configure` was given one;
otherwise a decorated method costs one dictionary lookup. Telemetry never changes a
decision: any error raised by OpenTelemetry or an exporter is logged once and the
call goes on exactly as it would without telemetry.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from veto_core.engine import Veto
    from veto_core.model import Authorization, ToolCall

__all__ = [
    "METER_NAME",
    "TRACER_NAME",
    "WAIT_SPAN",
    "configure",
    "enabled",
    "outcome_of",
    "trace_approval_wait",
    "trace_authorize",
]

TRACER_NAME = METER_NAME = "veto"
WAIT_SPAN = "veto.approval.wait"

_log = logging.getLogger("veto.telemetry")
_modules = sys.modules
_F = TypeVar("_F", bound=Callable[..., Any])

#: The veto span of this call, while authorize runs: a nested authorize (a bundle's
#: tenant child, or authorize inside authorize_and_wait) adds to it instead of
#: opening a second span for the same call.
_CURRENT: contextvars.ContextVar[_CallSpan | None] = contextvars.ContextVar(
    "veto_telemetry_span", default=None
)


@dataclass(frozen=True, kw_only=True, slots=True)
class _Instruments:
    """The tracer and instruments of one (tracer provider, meter provider) pair."""

    tracer: Any  # None: no tracer provider
    decisions: Any  # None (with duration and pending): no meter provider
    duration: Any
    pending: _PendingGauge | None


_explicit: tuple[Any, Any] | None = None  # configure(): (tracer provider, meter provider)
_cache: dict[tuple[Any, Any], _Instruments] = {}  # by the providers themselves (not ids)
_cache_lock = threading.Lock()
_warned: set[str] = set()


def configure(*, tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Use these providers instead of OpenTelemetry's global ones (both ``None``:
    back to the global providers). For embedders that keep separate providers, and
    tests (a process can set the global providers only once)."""
    global _explicit
    with _cache_lock:
        _explicit = None if tracer_provider is None and meter_provider is None else (
            tracer_provider, meter_provider
        )  # fmt: skip
        _cache.clear()


def enabled() -> bool:
    """True when decisions are traced or measured now (a provider is installed)."""
    if _explicit is None and "opentelemetry.trace" not in _modules:
        return False
    return _instruments() is not None


def _instruments() -> _Instruments | None:
    try:
        if _explicit is not None:
            tp, mp = _explicit
        else:
            tp, mp = _global_providers()
        if tp is None and mp is None:
            return None
        key = (tp, mp)
        found = _cache.get(key)
        if found is not None:
            return found
        with _cache_lock:
            found = _cache.get(key)
            if found is None:
                found = _cache[key] = _build(tp, mp)
        return found
    except Exception as exc:
        _warn_once("setup", exc)
        return None


def _global_providers() -> tuple[Any, Any]:
    """OpenTelemetry's global providers, each ``None`` while none was installed (the
    API's proxy or a no-op one): then there is nothing to report to.

    Read from the API's module globals (``get_tracer_provider()`` costs microseconds:
    it looks up an environment variable on every call); the public getters are used
    when those globals are unset and the ``OTEL_PYTHON_*_PROVIDER`` variable names a
    provider to load, or when a future API renames them."""
    tp = _installed("opentelemetry.trace", "_TRACER_PROVIDER", "get_tracer_provider",
                    "OTEL_PYTHON_TRACER_PROVIDER")  # fmt: skip
    if tp is not None:
        from opentelemetry import trace

        if isinstance(tp, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            tp = None
    mp = _installed("opentelemetry.metrics._internal", "_METER_PROVIDER", "get_meter_provider",
                    "OTEL_PYTHON_METER_PROVIDER")  # fmt: skip
    if mp is not None and type(mp).__name__ in ("_ProxyMeterProvider", "NoOpMeterProvider"):
        mp = None
    return tp, mp


_MISSING = object()
_env_providers: dict[str, bool] = {}


def _installed(module: str, attr: str, getter: str, env: str) -> Any:
    mod = _modules.get(module)
    if mod is None:
        return None  # never imported: nothing can have been installed
    found = getattr(mod, attr, _MISSING)
    if found is None:
        named = _env_providers.get(env)
        if named is None:
            import os

            named = _env_providers[env] = bool(os.environ.get(env))
        if not named:
            return None
    if found is None or found is _MISSING:
        return getattr(mod, getter)()
    return found


def _build(tp: Any, mp: Any) -> _Instruments:
    from veto_core import __version__

    tracer = tp.get_tracer(TRACER_NAME, __version__) if tp is not None else None
    if mp is None:
        return _Instruments(tracer=tracer, decisions=None, duration=None, pending=None)
    meter = mp.get_meter(METER_NAME, __version__)
    decisions = meter.create_counter(
        "veto.decisions", unit="{decision}", description="Tool-call decisions by effect and outcome"
    )
    duration = meter.create_histogram(
        "veto.decision.duration",
        unit="s",
        description="Time to authorize a tool call: decide, limits, durable record, approval request",
    )
    pending = _PendingGauge()
    meter.create_observable_gauge(
        "veto.approvals.pending",
        callbacks=[pending.observe],
        unit="{request}",
        description="Approval requests waiting for a decision (unexpired), by tenant",
    )
    return _Instruments(tracer=tracer, decisions=decisions, duration=duration, pending=pending)


def _warn_once(what: str, exc: BaseException) -> None:
    key = f"{what}:{type(exc).__name__}"
    if key not in _warned:
        _warned.add(key)
        _log.warning(
            "OpenTelemetry %s failed (decisions are unaffected): %s: %s",
            what, type(exc).__name__, exc, exc_info=exc,
        )  # fmt: skip


class _PendingGauge:
    """Counts pending requests in the approval stores that traced calls used (read at
    collection time only, without side effects; a store that fails is skipped)."""

    def __init__(self) -> None:
        self._vetos: weakref.WeakValueDictionary[int, Veto] = weakref.WeakValueDictionary()

    def watch(self, veto: Veto) -> None:
        root = veto
        while root._parent is not None:  # tenant children share their parent's stores
            root = root._parent
        self._vetos[id(root)] = root

    def observe(self, options: Any) -> Iterator[Any]:
        from opentelemetry.metrics import Observation

        from veto_core.approvals import ApprovalState

        counts: dict[str, int] = {}
        seen: set[int] = set()
        for veto in list(self._vetos.values()):
            service = veto._approvals
            if service is None or id(service.store) in seen:
                continue
            seen.add(id(service.store))
            try:
                now = service.clock()
                rows = service.store.list(tenant=None, states=(ApprovalState.PENDING,), limit=None)
            except Exception as exc:
                _warn_once("pending approvals gauge", exc)
                continue
            for r in rows:
                if r.expires_at > now:
                    counts[r.tenant] = counts.get(r.tenant, 0) + 1
        for tenant, n in sorted(counts.items()):
            yield Observation(n, {"veto.tenant": tenant})


# --- spans ----------------------------------------------------------------------------


def outcome_of(auth: Authorization) -> str:
    """The call's outcome as the audit trail names it (allowed / denied /
    pending_approval / shadow-*), and after a wait: approved / rejected / expired /
    cancelled / already_used, or error when the approval path failed."""
    from veto_core.audit.log import outcome_for
    from veto_core.authorize import shadow_outcome as _shadow_outcome
    from veto_core.model import Effect

    d = auth.decision
    shadow = _shadow_outcome(d)
    if shadow is not None:
        return shadow
    if auth.approval_error is not None:
        return "error"
    if d.effect is Effect.REQUIRE_APPROVAL and auth.approval is not None:
        state = str(auth.approval.state)
        if state == "approved":
            return "approved" if auth.released else "already_used"
        if state == "denied":
            return "rejected"
        if state != "pending":
            return state
    return outcome_for(d.effect)


class _CallSpan:
    """One decision span while it is open (the owner ends it)."""

    __slots__ = ("call", "span", "veto")

    def __init__(self, span: Any, veto: Veto, call: ToolCall) -> None:
        self.span = span
        self.veto = veto
        self.call = call


def _call_attributes(veto: Veto, call: ToolCall) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": call.tool,
        "gen_ai.tool.type": "function",
    }
    optional = {
        "gen_ai.tool.call.id": call.tool_call_id,
        "veto.tenant": call.tenant or call.principal.tenant or veto.tenant,
        "veto.env": call.env or veto.env,
        "veto.run_id": call.run_id,
        "veto.framework": call.framework,
        "veto.principal.agent": call.principal.agent,
    }
    attrs.update({k: v for k, v in optional.items() if v})
    return attrs


def _result_attributes(auth: Authorization, outcome: str, latency_us: int) -> dict[str, Any]:
    d = auth.decision
    attrs: dict[str, Any] = {
        "veto.effect": str(d.effect.value),
        "veto.outcome": outcome,
        "veto.run_tool": auth.run_tool,
        "veto.enforced": d.enforced,
        "veto.rule_ids": list(d.rule_ids),
        "veto.deciding_rule_ids": list(d.deciding_rule_ids),
        "veto.policy.name": d.policy_name,
        "veto.policy.revision": d.policy_revision,
        "veto.latency_us": latency_us,
    }
    if auth.record_id is not None:
        attrs["veto.record_id"] = auth.record_id
    if auth.approval is not None:
        attrs["veto.approval.id"] = auth.approval.id
        attrs["veto.approval.state"] = str(auth.approval.state)
    return attrs


def _failed(auth: Authorization) -> str | None:
    """Why the call failed closed (an evaluation error, an unreachable store), or None
    for a decision that worked as the policy says (a denial is not an error)."""
    if auth.approval_error is not None:
        return auth.approval_error
    if auth.decision.errors:
        return "; ".join(auth.decision.errors)
    return None


def _start(ins: _Instruments, veto: Veto, call: ToolCall) -> tuple[_CallSpan | None, Any]:
    """Open the call's span as the current span; (None, None) when not tracing."""
    if ins.tracer is None:
        return None, None
    from opentelemetry import context, trace

    span = ins.tracer.start_span(
        f"execute_tool {call.tool}",
        kind=trace.SpanKind.INTERNAL,
        attributes=_call_attributes(veto, call),
    )
    token = context.attach(trace.set_span_in_context(span))
    return _CallSpan(span, veto, call), token


def _finish(
    ins: _Instruments, cs: _CallSpan | None, veto: Veto, call: ToolCall,
    auth: Authorization, latency_us: int,
) -> None:  # fmt: skip
    outcome = outcome_of(auth)
    if ins.decisions is not None:
        labels = {
            "veto.effect": str(auth.decision.effect.value),
            "veto.outcome": outcome,
            "gen_ai.tool.name": call.tool,
        }
        tenant = call.tenant or call.principal.tenant or veto.tenant
        for key, value in (
            ("veto.tenant", tenant), ("veto.env", call.env or veto.env),
            ("veto.framework", call.framework),
        ):  # fmt: skip
            if value:
                labels[key] = value
        ins.decisions.add(1, labels)
        ins.duration.record(latency_us / 1e6, labels)
    if ins.pending is not None and auth.approval is not None:
        ins.pending.watch(veto)
    if cs is not None:
        cs.span.set_attributes(_result_attributes(auth, outcome, latency_us))
        error = _failed(auth)
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            cs.span.set_attribute("error.type", "veto.fail_closed")
            cs.span.set_status(Status(StatusCode.ERROR, error))


def trace_authorize(fn: _F) -> _F:
    """Decorates ``Veto.authorize`` / ``Veto.authorize_and_wait`` (``(self, call, ...)``):
    one ``execute_tool`` span and the decision metrics per call."""

    @functools.wraps(fn)
    def traced(self: Veto, call: ToolCall, *args: Any, **kwargs: Any) -> Authorization:
        if _explicit is None and "opentelemetry.trace" not in _modules:
            return fn(self, call, *args, **kwargs)  # type: ignore[no-any-return]
        if _CURRENT.get() is not None:  # the outer span of this call reports it
            return fn(self, call, *args, **kwargs)  # type: ignore[no-any-return]
        ins = _instruments()
        if ins is None:
            return fn(self, call, *args, **kwargs)  # type: ignore[no-any-return]
        return _traced_call(ins, fn, self, call, args, kwargs)

    return cast("_F", traced)


def _traced_call(
    ins: _Instruments, fn: Callable[..., Any], veto: Veto, call: ToolCall,
    args: tuple[Any, ...], kwargs: dict[str, Any],
) -> Authorization:  # fmt: skip
    try:
        cs, token = _start(ins, veto, call)
    except Exception as exc:
        _warn_once("span start", exc)
        cs, token = None, None
    guard = _CURRENT.set(cs or _NOT_TRACED)
    t0 = perf_counter_ns()
    try:
        auth = cast("Authorization", fn(veto, call, *args, **kwargs))
    except BaseException as exc:  # a bug below: report it, never swallow it
        _end(cs, token, guard, exc)
        raise
    latency_us = (perf_counter_ns() - t0) // 1000
    try:
        _finish(ins, cs, veto, call, auth, latency_us)
    except Exception as exc:
        _warn_once("recording a decision", exc)
    _end(cs, token, guard, None)
    return auth


_NOT_TRACED = cast("_CallSpan", object())  # metrics only: still one report per call


def _end(cs: _CallSpan | None, token: Any, guard: Any, exc: BaseException | None) -> None:
    _CURRENT.reset(guard)
    try:
        if token is not None:
            from opentelemetry import context

            context.detach(token)
        if cs is not None:
            if exc is not None:
                from opentelemetry.trace import Status, StatusCode

                cs.span.record_exception(exc)
                cs.span.set_attribute("error.type", type(exc).__qualname__)
                cs.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            cs.span.end()
    except Exception as err:
        _warn_once("span end", err)


def trace_approval_wait(fn: _F) -> _F:
    """Decorates ``Veto.wait_for_approval`` (``(self, auth, timeout=None)``): a
    ``veto.approval.wait`` span, child of the current span, ending with the final state."""

    @functools.wraps(fn)
    def traced(self: Veto, auth: Authorization, timeout: float | None = None) -> Authorization:
        if _explicit is None and "opentelemetry.trace" not in _modules:
            return fn(self, auth, timeout)  # type: ignore[no-any-return]
        if auth.approval is None or auth.released:
            return fn(self, auth, timeout)  # type: ignore[no-any-return]
        ins = _instruments()
        if ins is None or ins.tracer is None:
            return fn(self, auth, timeout)  # type: ignore[no-any-return]
        return _traced_wait(ins.tracer, fn, self, auth, timeout)

    return cast("_F", traced)


def _traced_wait(
    tracer: Any, fn: Callable[..., Any], veto: Veto, auth: Authorization, timeout: float | None
) -> Authorization:
    span: Any = None
    request: Any = auth.approval
    try:
        attrs: dict[str, Any] = {"veto.approval.id": request.id, "gen_ai.tool.name": request.tool}
        if timeout is not None:
            attrs["veto.approval.timeout_s"] = float(timeout)
        span = tracer.start_span(WAIT_SPAN, attributes=attrs)
    except Exception as exc:
        _warn_once("span start", exc)
    try:
        final = cast("Authorization", fn(veto, auth, timeout))
    except BaseException as exc:
        _end_wait(span, None, exc)
        raise
    _end_wait(span, final, None)
    return final


def _end_wait(span: Any, final: Authorization | None, exc: BaseException | None) -> None:
    if span is None:
        return
    try:
        from opentelemetry.trace import Status, StatusCode

        if final is not None:
            state = str(final.approval.state) if final.approval is not None else "unknown"
            span.set_attributes(
                {
                    "veto.approval.state": state,
                    "veto.approval.released": final.released,
                    "veto.outcome": outcome_of(final),
                }
            )
            if final.approval_error is not None:
                span.set_attribute("error.type", "veto.fail_closed")
                span.set_status(Status(StatusCode.ERROR, final.approval_error))
        if exc is not None:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.end()
    except Exception as err:
        _warn_once("span end", err)
