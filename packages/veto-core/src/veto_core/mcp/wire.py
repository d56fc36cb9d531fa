"""The stdio relay's messages as bytes: one JSON parse per line, no SDK models.

When the MCP client talks to ``veto mcp proxy`` over pipes and the upstream is a
command, the relay (:mod:`veto_core.mcp.relay`) moves :class:`Wire` messages: the
parsed JSON and its encoding (what is forwarded: the message as read and decided
on, never the line as it came, which another parser may read differently —
duplicate keys, say), checked against the
JSON-RPC message shapes of the SDK (:func:`check`, tested against the SDK's own
``JSONRPCMessage`` model as its reference). A line that is not one of them is an
exception item, as the SDK's transports report it: never forwarded.

:class:`LineReader` and :class:`LineWriter` read and write such lines on
non-blocking descriptors in the event loop: a message is written with one
``write`` when the pipe has room, and read without a task or thread hand-off.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import orjson

__all__ = ["LineReader", "LineWriter", "Wire", "check", "encode", "parse"]

_CHUNK = 1 << 16
_MISSING: Any = object()


class Wire:
    """One JSON-RPC message: ``data`` (its JSON) and ``raw`` (its encoding as forwarded,
    newline included). Reads like the SDK's message models (``method``, ``id``, ``params``,
    ``result``, ``error``; absent fields are None) and like a transport item
    (``message`` is the message itself)."""

    __slots__ = ("data", "raw")

    def __init__(self, raw: bytes, data: dict[str, Any]) -> None:
        self.raw = raw
        self.data = data

    @property
    def message(self) -> Wire:
        return self

    @property
    def method(self) -> Any:
        return self.data.get("method")

    @property
    def id(self) -> Any:
        return self.data.get("id")

    @property
    def params(self) -> Any:
        return self.data.get("params")

    @property
    def result(self) -> Any:
        return self.data.get("result")

    @property
    def error(self) -> Any:
        return self.data.get("error")


def _is_id(value: Any) -> bool:
    return type(value) is str or type(value) is int  # bool, float: not a request id


def check(data: Any) -> str | None:
    """Why ``data`` is not a JSON-RPC 2.0 request, notification, response or error
    as the SDK accepts them, or None. Never looser than the SDK's model (tested):
    an ``id`` that is neither a string, an integer nor null is refused even where
    the SDK would read the message as a notification."""
    if type(data) is not dict:
        return "a JSON-RPC message is a JSON object"
    if data.get("jsonrpc") != "2.0" or type(data.get("jsonrpc")) is not str:
        return 'a JSON-RPC message has "jsonrpc": "2.0"'
    rid = data.get("id", _MISSING)
    if rid is not _MISSING and rid is not None and not _is_id(rid):
        return "a JSON-RPC id is a string or an integer"
    method = data.get("method", _MISSING)
    if method is not _MISSING:
        if type(method) is not str:
            return "a JSON-RPC method is a string"
        if "result" in data or "error" in data:  # ambiguous: the SDKs' versions read it apart
            return "a JSON-RPC request has no result or error"
        params = data.get("params")
        if params is not None and type(params) is not dict:
            return "JSON-RPC params are an object"
        return None
    if not _is_id(rid):
        return "a JSON-RPC response has a string or integer id"
    if "params" in data:  # ambiguous, as above
        return "a JSON-RPC response has no params"
    result = data.get("result", _MISSING)
    error = data.get("error", _MISSING)
    if (result is _MISSING) == (error is _MISSING):
        return "a JSON-RPC response has a result or an error"
    if result is not _MISSING:
        return None if type(result) is dict else "a JSON-RPC result is an object"
    if type(error) is not dict:
        return "a JSON-RPC error is an object"
    code, text = error.get("code"), error.get("message")
    if type(code) is not int or type(text) is not str:
        return "a JSON-RPC error has an integer code and a string message"
    return None


def parse(line: bytes) -> Wire | ValueError:
    """The message of one line (its newline optional), or why it is none."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return ValueError(f"invalid JSON: {exc}")
    why = check(data)
    if why is not None:
        return ValueError(f"invalid JSON-RPC message: {why}")
    # Forward what was read, re-encoded, never the line itself: parsers differ on the
    # same bytes (a duplicate key is the last one here and the first one for others),
    # so the peer must get exactly the message that was decided on.
    try:
        raw = orjson.dumps(data) + b"\n"
    except orjson.JSONEncodeError as exc:
        return ValueError(f"invalid JSON: {exc}")
    return Wire(raw, data)


def encode(data: Mapping[str, Any]) -> Wire:
    """The message for a wire-form dict the proxy writes itself (checked too)."""
    body = dict(data)
    why = check(body)
    if why is not None:
        raise ValueError(f"invalid JSON-RPC message: {why}")
    return Wire(orjson.dumps(body) + b"\n", body)


class LineReader:
    """``async for item in reader``: a :class:`Wire` or a ``ValueError`` per line of
    a non-blocking descriptor, until end of file (blank lines are skipped).

    On asyncio the descriptor is watched by one reader callback for the whole
    session, which reads what arrives into a queue of lines (as asyncio's pipe
    transports do): no registration and removal per message. Reading pauses while
    more than ``_HIGH_WATER`` bytes of whole lines wait, so a client that floods the
    proxy is held back by its pipe, not buffered without bound. Elsewhere (another
    anyio backend) it waits for the descriptor with ``anyio.wait_readable``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __aiter__(self) -> AsyncIterator[Wire | ValueError]:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._polled()
        return _Watched(loop, self.fd).items()

    async def _polled(self) -> AsyncIterator[Wire | ValueError]:
        pending = b""
        fd = self.fd
        while True:
            try:
                chunk = os.read(fd, _CHUNK)
            except BlockingIOError:
                await anyio.wait_readable(fd)
                continue
            if not chunk:
                if pending.strip():
                    yield parse(pending)
                return
            pending += chunk
            if b"\n" not in chunk:
                continue
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    yield parse(line + b"\n")


#: Bytes of whole lines read ahead before `LineReader` stops reading its pipe.
_HIGH_WATER = 1 << 22


class _Watched:
    """One `LineReader` session on an asyncio loop (see there)."""

    __slots__ = (
        "_error",
        "_fd",
        "_lines",
        "_loop",
        "_queued",
        "_waiter",
        "_watching",
        "eof",
        "pending",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._loop = loop
        self._fd = fd
        self._lines: deque[bytes] = deque()
        self._queued = 0  # bytes in _lines
        self._waiter: asyncio.Future[None] | None = None
        self._watching = False
        self._error: OSError | None = None
        self.eof = False
        self.pending = b""  # the start of a line not yet ended

    def _watch(self, on: bool) -> None:
        if on and not self._watching:
            self._loop.add_reader(self._fd, self._readable)
        elif not on and self._watching:
            self._loop.remove_reader(self._fd)
        self._watching = on

    def _readable(self) -> None:
        try:
            chunk = os.read(self._fd, _CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            self._error = exc
            chunk = b""
        if not chunk:
            self.eof = True
            self._watch(False)
        else:
            pending = self.pending + chunk
            if b"\n" in chunk:
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._lines.append(line)
                    self._queued += len(line)
                if self._queued > _HIGH_WATER:
                    self._watch(False)
            self.pending = pending
            if not self._lines:
                return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def items(self) -> AsyncIterator[Wire | ValueError]:
        self._watch(True)
        try:
            lines = self._lines
            while True:
                while lines:
                    line = lines.popleft()
                    self._queued -= len(line)
                    if not self._watching and not self.eof and self._queued <= _HIGH_WATER // 2:
                        self._watch(True)
                    if line.strip():
                        yield parse(line + b"\n")
                if self._error is not None:
                    raise self._error
                if self.eof:
                    if self.pending.strip():
                        yield parse(self.pending)
                    return
                self._waiter = self._loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
        finally:
            self._watch(False)


class LineWriter:
    """``await send(item)`` writes ``item.raw`` to a non-blocking descriptor: one
    ``write`` when the pipe has room; otherwise the rest waits in the event loop, and
    messages sent meanwhile queue behind it (whole lines, in order). A closed pipe
    raises ``anyio.BrokenResourceError``; after ``close()``, ``ClosedResourceError``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = bytearray()
        self._busy = False
        self._broken = False
        self._closed = False

    async def send(self, item: Wire) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._broken:
            raise anyio.BrokenResourceError
        self._buffer += item.raw
        if self._busy:
            return  # the sender writing now writes this too, in order
        self._busy = True
        try:
            while self._buffer:
                try:
                    done = os.write(self.fd, self._buffer)
                except BlockingIOError:
                    await anyio.wait_writable(self.fd)
                    continue
                except OSError as exc:  # EPIPE: the reader is gone
                    self._broken = True
                    self._buffer.clear()
                    raise anyio.BrokenResourceError from exc
                del self._buffer[:done]
        finally:
            self._busy = False

    def close(self) -> None:
        self._closed = True
