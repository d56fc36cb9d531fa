"""``veto mcp proxy`` over stdio: a relay of the SDK's own messages (DESIGN.md 7a).

The client's session runs end to end with the upstream server: the SDK's
``stdio_server`` parses what the client writes, the SDK's ``stdio_client`` (or
streamable HTTP client) carries it to the upstream and back, and the proxy only
moves the SDK's ``SessionMessage`` objects between the two, unchanged, except:

* ``tools/call`` is decided by :class:`~veto_core.mcp.gate.McpGate` first; a refused
  call is answered here (``isError`` and the reason) and never forwarded, an allowed
  one is forwarded as it came and its answer comes back through :meth:`Relay.returned`;
* ``tools/list`` answers are filtered for ``--hide-denied``; the proxy reads the
  upstream's tool list itself (all pages) once the client's session is initialized
  and again on ``notifications/tools/list_changed``;
* only tools are served: the ``initialize`` answer announces the upstream's
  ``tools`` capability alone, other client requests (resources, prompts, ...) are
  answered "method not found", and requests of the upstream to the client
  (sampling, elicitation, roots) are refused as the SDK's client refuses them
  (``ping`` is answered);
* an upstream that crashes, closes, or sends a malformed message fails every
  ``tools/call`` in flight, and every later one, as an ``isError`` result.

No request is re-served through an SDK ``Server`` and ``ClientSession``. Over pipes
to an upstream command (:func:`serve_stdio`) the items are not even SDK models but
:class:`~veto_core.mcp.wire.Wire` lines: one JSON parse per message, forwarded as
re-encoded from what was parsed (what was decided is what the peer reads); with the
SDK's transports (HTTP upstream, a terminal, or
``VETO_MCP_STDIO_TRANSPORT=sdk``) each message is parsed and serialized once on each
side.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ..adapters import Verdict
from . import sdk
from .gate import Caller, ToolCatalog
from .names import mcp_tool_name

if TYPE_CHECKING:
    from .proxy import McpProxy

__all__ = ["Relay", "serve_stdio"]

log = logging.getLogger("veto.mcp")

METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

#: Client requests forwarded as they are (``tools/call`` is decided first).
_PASS_REQUESTS = frozenset({"initialize", "ping", "tools/list"})
#: Upstream notifications the client hears.
_PASS_NOTIFICATIONS = frozenset(
    {"notifications/progress", "notifications/message", "notifications/tools/list_changed"}
)
#: How long a ``tools/call`` waits for the proxy's first read of the tool list, and
#: how long the proxy waits for an answer to its own ``tools/list``.
_LIST_TIMEOUT_S = 60.0


class UpstreamGone(Exception):
    """The upstream connection cannot take a message any more."""


class _Reply:
    """One answer of the upstream that a task awaits: set once, or failed."""

    __slots__ = ("event", "item", "why")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.item: Any = None
        self.why: str | None = None

    def set(self, item: Any) -> None:
        self.item = item
        self.event.set()

    def fail(self, why: str) -> None:
        self.why = why
        self.event.set()


class Relay:
    """One client session relayed to one upstream connection (see the module doc)."""

    def __init__(
        self,
        proxy: McpProxy,
        down: tuple[Any, Any],
        up: tuple[Any, Any],
        caller: Caller,
        *,
        make: Callable[[Mapping[str, Any]], Any] = sdk.session_message,
    ) -> None:
        self.proxy = proxy
        #: A transport item for a wire-form dict the proxy sends itself: the SDK's
        #: ``SessionMessage``, or a :class:`~veto_core.mcp.wire.Wire` on raw pipes.
        self.make = make
        self.gate = proxy.gate
        self.down_read, self.down_write = down
        self.up_read, self.up_write = up
        self.caller = caller
        self._waiting: dict[Any, _Reply] = {}  # upstream request id -> awaited answer
        self._passing: dict[Any, str] = {}  # id of a forwarded request -> its method
        self._calls: dict[Any, tuple[anyio.CancelScope, list[bool]]] = {}
        self._own_ids = itertools.count(1)
        self._own_prefix = f"veto-{uuid.uuid4().hex}-"
        self._listed = anyio.Event()
        self._tg: Any = None
        #: ``tools/call`` tasks started on the asyncio loop itself (see `_spawn`)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._crashed: BaseException | None = None
        self._scopes: set[anyio.CancelScope] = set()  # one per running call task
        self._ending = False  # set once the relay cancels its calls

    def _error(self, rid: Any, code: int, text: str) -> Any:
        return self.make({"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": text}})

    def _result(self, rid: Any, result: Mapping[str, Any]) -> Any:
        return self.make({"jsonrpc": "2.0", "id": rid, "result": dict(result)})

    async def run(self) -> None:
        """Relay until the client closes its side; then cancel what still waits
        (a call waiting for approval cancels its request)."""
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # another anyio backend: every task in the task group
            self._loop = None
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._from_upstream)
                await self._from_client()
                await self._end_calls()  # while the upstream is still read
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._end_calls()
        if self._crashed is not None:
            raise self._crashed

    def _spawn(self, func: Callable[..., Any], *args: Any) -> None:
        """Start one ``tools/call`` task. On asyncio it is a loop task (anyio's
        ``start_soon`` costs ~35 µs a task, a loop task ~6: per call, that is the
        proxy's largest own cost after the decision) that the relay cancels and awaits
        when it ends, as the task group would; one that fails ends the relay, as in
        the task group."""
        if self._loop is None:
            self._tg.start_soon(func, *args)
            return
        task = self._loop.create_task(self._scoped(func, *args))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    async def _scoped(self, func: Callable[..., Any], *args: Any) -> None:
        """Run a call task in its own cancel scope, which `_end_calls` cancels: anyio
        cancellation, so cleanups under a shield (cancelling an approval request,
        telling the upstream) run to the end, as in the task group; a bare
        ``Task.cancel()`` would interrupt them."""
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                if self._ending:
                    scope.cancel()
                await func(*args)
            finally:
                self._scopes.discard(scope)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self._crashed is None:
            self._crashed = exc
            if self._tg is not None:
                self._tg.cancel_scope.cancel()

    async def _end_calls(self) -> None:
        """Cancel the ``tools/call`` tasks still running and wait for them (a call
        waiting for approval cancels its request; a forwarded one tells the upstream)."""
        self._ending = True
        while self._tasks:
            tasks = list(self._tasks)
            for scope in list(self._scopes):
                scope.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- the client's side ------------------------------------------------------------

    async def _from_client(self) -> None:
        async for item in self.down_read:
            if isinstance(item, Exception):
                log.warning("the MCP client sent a malformed message: %s", item)
                continue
            msg = sdk.unwrap(item)
            method = getattr(msg, "method", None)
            rid = getattr(msg, "id", None)
            if method is None:
                continue  # an answer to a request of the upstream: none is forwarded
            if rid is None:
                await self._client_notification(method, msg, item)
            elif method == "tools/call":
                self._spawn(self._call, item, msg)
            elif method in _PASS_REQUESTS:
                self._passing[rid] = method
                try:
                    await self._send_up(item)
                except UpstreamGone as exc:
                    self._passing.pop(rid, None)
                    await self._to_client(self._error(rid, INTERNAL_ERROR, str(exc)))
            else:
                await self._to_client(
                    self._error(
                        rid,
                        METHOD_NOT_FOUND,
                        f"Method not found: {method} (veto mcp proxy serves tools only)",
                    )
                )

    async def _client_notification(self, method: str, msg: Any, item: Any) -> None:
        if method == "notifications/initialized":
            await self._send_up_quietly(item)
            self._tg.start_soon(self.refresh)
        elif method == "notifications/cancelled":
            rid = (msg.params or {}).get("requestId")
            call = self._calls.get(rid)
            if call is not None:
                scope, forwarded = call
                if forwarded[0]:
                    await self._send_up_quietly(item)
                scope.cancel()
            elif rid in self._passing:
                await self._send_up_quietly(item)

    async def _to_client(self, item: Any) -> None:
        try:
            await self.down_write.send(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            log.debug("the MCP client is gone; a message to it was dropped")

    # --- tools/call ---------------------------------------------------------------------

    async def _call(self, item: Any, msg: Any) -> None:
        rid = msg.id
        forwarded = [False]
        with anyio.CancelScope() as scope:
            self._calls[rid] = (scope, forwarded)
            try:
                answer = await self._decide_and_forward(item, msg, forwarded)
            finally:
                self._calls.pop(rid, None)
            await self._to_client(answer)
        # A call the client cancelled is not answered (the protocol's rule).

    async def _decide_and_forward(self, item: Any, msg: Any, forwarded: list[bool]) -> Any:
        rid = msg.id
        try:
            name, arguments = sdk.call_params(msg.params)
        except Exception as exc:
            return self._error(rid, INVALID_PARAMS, f"invalid tools/call params: {exc}")
        tool = mcp_tool_name(self.gate.server, str(name))
        proxy = self.proxy
        if proxy.upstream_error is not None:
            return self._result(rid, sdk.error_payload(proxy.unavailable(tool)))
        if not self._listed.is_set():
            with anyio.move_on_after(_LIST_TIMEOUT_S):
                await self._listed.wait()
        progress = self._progress(msg)
        verdict = await self.gate.check(proxy.catalog, name, arguments, self.caller, progress)
        if not verdict.run:
            return self._result(rid, sdk.error_payload(verdict.reason, verdict.info()))
        label = getattr(verdict.call, "tool", tool)
        reply = _Reply()
        self._waiting[rid] = reply
        try:
            try:
                await self._send_up(item)
            except UpstreamGone as exc:
                return self._result(rid, sdk.error_payload(proxy.failed(label, str(exc))))
            forwarded[0] = True
            timeout = proxy.settings.call_timeout_s
            with anyio.move_on_after(timeout) as waited:
                await reply.event.wait()
            if waited.cancelled_caught:
                await self._cancel_upstream(rid, f"no answer within {timeout}s")
                reply.fail(f"no answer within {timeout}s")
        except BaseException:
            if forwarded[0] and not reply.event.is_set():
                with anyio.CancelScope(shield=True):
                    await self._cancel_upstream(rid, "the MCP client cancelled the call")
            raise
        finally:
            self._waiting.pop(rid, None)
        if reply.item is None:
            return self._result(rid, sdk.error_payload(proxy.failed(label, reply.why or "")))
        return await self.returned(rid, verdict, reply.item)

    async def returned(self, rid: Any, verdict: Verdict, item: Any) -> Any:
        """The one place where the answer of a forwarded ``tools/call`` comes back: the
        upstream's own message (a result or a JSON-RPC error) is relayed unchanged once
        its text is recorded in the run (DESIGN.md 2.7); if it cannot be, the client gets
        a refusal instead."""
        msg = sdk.unwrap(item)
        result = getattr(msg, "result", None)
        if result is None:
            # A JSON-RPC error answer: the client shows the model its message and data,
            # which the upstream (or an attacker's text it read) wrote: recorded the same.
            error = getattr(msg, "error", None)
            dump = getattr(error, "model_dump", None)
            result = {"error": dump(mode="json") if callable(dump) else str(error)}
        withheld = await self.gate.observe(verdict, dict(result))
        if withheld is not None:
            return self._result(rid, sdk.error_payload(withheld, verdict.info()))
        return item

    def _progress(self, msg: Any) -> Any:
        meta = (msg.params or {}).get("_meta") or {}
        token = meta.get("progressToken") if isinstance(meta, Mapping) else None
        if token is None:
            return None

        async def progress(done: float, total: float | None, message: str) -> None:
            params: dict[str, Any] = {"progressToken": token, "progress": done, "message": message}
            if total is not None:
                params["total"] = total
            await self._to_client(
                self.make({"jsonrpc": "2.0", "method": "notifications/progress", "params": params})
            )

        return progress

    async def _cancel_upstream(self, rid: Any, reason: str) -> None:
        note = {"requestId": rid, "reason": reason}
        await self._send_up_quietly(
            self.make({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": note})
        )

    # --- the upstream's side ------------------------------------------------------------

    async def _send_up(self, item: Any) -> None:
        if self.proxy.upstream_error is not None:
            raise UpstreamGone(
                f"the upstream MCP server is unavailable: {self.proxy.upstream_error}"
            )
        try:
            await self.up_write.send(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            self._upstream_lost(f"the connection to it is closed ({type(exc).__name__})")
            raise UpstreamGone(
                f"the upstream MCP server is unavailable: {self.proxy.upstream_error}"
            ) from None

    async def _send_up_quietly(self, item: Any) -> None:
        try:
            await self._send_up(item)
        except UpstreamGone as exc:
            log.warning("not sent to the upstream MCP server: %s", exc)

    async def _from_upstream(self) -> None:
        try:
            async for item in self.up_read:
                if isinstance(item, Exception):  # JSON or JSON-RPC validation failed
                    log.warning("the upstream MCP server sent a malformed message: %s", item)
                    self._fail_waiting(f"the upstream sent a malformed message: {item}")
                    continue
                msg = sdk.unwrap(item)
                method = getattr(msg, "method", None)
                rid = getattr(msg, "id", None)
                if method is None:
                    await self._upstream_answer(rid, msg, item)
                elif rid is not None:
                    await self._upstream_request(method, rid)
                elif method in _PASS_NOTIFICATIONS:
                    await self._to_client(item)
                    if method == "notifications/tools/list_changed":
                        self._listed = anyio.Event()  # calls wait for the new list
                        self._tg.start_soon(self.refresh)
        except Exception as exc:
            log.warning("upstream MCP connection: %s: %s", type(exc).__name__, exc)
        finally:
            self._upstream_lost("the connection to it is closed")
            with anyio.CancelScope(shield=True):
                for rid in list(self._passing):
                    self._passing.pop(rid, None)
                    await self._to_client(
                        self._error(
                            rid,
                            INTERNAL_ERROR,
                            f"the upstream MCP server is unavailable: {self.proxy.upstream_error}",
                        )
                    )

    async def _upstream_answer(self, rid: Any, msg: Any, item: Any) -> None:
        reply = self._waiting.pop(rid, None)
        if reply is not None:
            reply.set(item)
            return
        method = self._passing.pop(rid, None)
        if method is None:
            log.info("an answer of the upstream MCP server to no pending request was dropped")
            return
        result = getattr(msg, "result", None)
        if isinstance(result, Mapping):
            if method == "initialize":
                # Serve tools only: what else the upstream offers is not governed.
                caps = result.get("capabilities") or {}
                tools_cap = caps.get("tools") if isinstance(caps, Mapping) else None
                item = self._result(rid, {**result, "capabilities": {"tools": tools_cap or {}}})
            elif method == "tools/list" and self.proxy.settings.hide_denied:
                item = self._result(rid, await self._visible(result))
        await self._to_client(item)

    async def _visible(self, result: Mapping[str, Any]) -> dict[str, Any]:
        tools = [t for t in result.get("tools") or () if isinstance(t, Mapping)]
        catalog = ToolCatalog.build(self.gate.server, tools)
        shown = set(await anyio.to_thread.run_sync(self.gate.visible, catalog, self.caller))
        return {**result, "tools": [t for t in tools if t.get("name") in shown]}

    async def _upstream_request(self, method: str, rid: Any) -> None:
        if method == "ping":
            answer = self._result(rid, {})
        else:  # sampling, elicitation, roots: what the SDK's client refuses too
            answer = self._error(
                rid, METHOD_NOT_FOUND, f"{method} is not supported by veto mcp proxy"
            )
        await self._send_up_quietly(answer)

    def _upstream_lost(self, why: str) -> None:
        if self.proxy.upstream_error is None:
            self.proxy.upstream_error = why
        self._fail_waiting(why)

    def _fail_waiting(self, why: str) -> None:
        waiting, self._waiting = self._waiting, {}
        for reply in waiting.values():
            reply.fail(why)

    # --- the proxy's own requests -------------------------------------------------------

    async def refresh(self) -> None:
        """Read the upstream's tool list (all pages) into the catalog; calls wait for
        it. A list that cannot be read leaves no catalog: every call is refused."""
        listed = self._listed
        try:
            tools: list[dict[str, Any]] = []
            cursor: str | None = None
            for _ in range(100):
                result = await self._request("tools/list", {"cursor": cursor} if cursor else {})
                page, cursor = sdk.tools_page(result)
                tools.extend(page)
                if not cursor:
                    break
            else:
                raise RuntimeError("the upstream's tools/list did not end within 100 pages")
            self.proxy.catalog = ToolCatalog.build(self.gate.server, tools)
        except Exception as exc:
            log.warning("could not read the upstream's tool list: %s", exc)
            self.proxy.catalog = None
        finally:
            listed.set()

    async def _request(self, method: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
        rid = f"{self._own_prefix}{next(self._own_ids)}"
        reply = _Reply()
        self._waiting[rid] = reply
        try:
            await self._send_up(
                self.make({"jsonrpc": "2.0", "id": rid, "method": method, "params": dict(params)})
            )
            with anyio.fail_after(_LIST_TIMEOUT_S):
                await reply.event.wait()
        finally:
            self._waiting.pop(rid, None)
        if reply.item is None:
            raise RuntimeError(reply.why or "no answer")
        msg = sdk.unwrap(reply.item)
        result = getattr(msg, "result", None)
        if not isinstance(result, Mapping):
            raise RuntimeError(f"{method} failed: {getattr(msg, 'error', msg)}")
        return result


#: ``sdk``: serve stdio through the SDK's transports even where raw lines would do.
_TRANSPORT_ENV = "VETO_MCP_STDIO_TRANSPORT"


async def serve_stdio(proxy: McpProxy) -> None:
    """Serve one MCP client on stdin/stdout, relayed to the upstream of ``proxy``.

    Over pipes to an upstream command, messages are :class:`~veto_core.mcp.wire.Wire`
    lines moved in the event loop (one JSON parse each, forwarded re-encoded);
    otherwise (a terminal, an HTTP upstream), or with ``VETO_MCP_STDIO_TRANSPORT=sdk``
    (the reference, for comparison), through the SDK's transports."""
    from .pipes import pipe_stdio

    s = proxy.settings
    with pipe_stdio() as pipes:
        if pipes is not None and s.command and os.environ.get(_TRANSPORT_ENV) != "sdk":
            from . import wire

            reader, writer = pipes
            async with upstream_process(s.command) as up:
                down = (wire.LineReader(reader.fd), wire.LineWriter(writer.fd))
                await Relay(proxy, down, up, proxy.caller(None), make=wire.encode).run()
            return
        from mcp.server.stdio import stdio_server

        async with sdk.open_transport(
            command=s.command or None, url=s.url, headers=s.headers
        ) as up:
            streams: tuple[Any, Any] = pipes or (None, None)
            async with stdio_server(*streams) as down:
                await Relay(proxy, down, up, proxy.caller(None)).run()


#: After its stdin closes, how long the upstream has to exit before SIGTERM, and
#: then before SIGKILL (the SDK's stdio client waits as long).
_EXIT_GRACE_S = 2.0


@asynccontextmanager
async def upstream_process(command: Sequence[str]) -> AsyncIterator[tuple[Any, Any]]:
    """The upstream server as a child process (its own session, so its whole process
    group can be ended; the environment without Veto's secrets; stderr shared with
    the proxy's): ``(reader, writer)`` of :mod:`~veto_core.mcp.wire` lines on its
    stdout and stdin. On exit its stdin is closed, then it is given
    ``_EXIT_GRACE_S`` to exit before SIGTERM, and as long again before SIGKILL
    (the SDK's stdio client's shutdown)."""
    from . import wire

    proc = subprocess.Popen(
        list(command),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=sdk.upstream_env(),
        start_new_session=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout
    writer = wire.LineWriter(stdin.fileno())
    try:
        os.set_blocking(stdin.fileno(), False)
        os.set_blocking(stdout.fileno(), False)
        yield wire.LineReader(stdout.fileno()), writer
    finally:
        writer.close()
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(OSError):
                stdin.close()
            await _reap(proc)
            stdout.close()


async def _reap(proc: subprocess.Popen[bytes]) -> None:
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, sig)
        deadline = anyio.current_time() + _EXIT_GRACE_S
        while proc.poll() is None and anyio.current_time() < deadline:
            await anyio.sleep(0.02)
        if proc.returncode is not None:
            return
