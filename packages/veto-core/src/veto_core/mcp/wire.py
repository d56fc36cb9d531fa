"""The stdio relay's messages as bytes: one JSON parse per line, no SDK models.

When the MCP client talks to ``veto mcp proxy`` over pipes and the upstream is a
command, the relay (:mod:`veto_core.mcp.relay`) moves :class:`Wire` messages: the
line as it came (forwarded byte for byte) and its parsed JSON, checked against the
JSON-RPC message shapes of the SDK (:func:`check`, tested against the SDK's own
``JSONRPCMessage`` model as its reference). A line that is not one of them is an
exception item, as the SDK's transports report it: never forwarded.

:class:`LineReader` and :class:`LineWriter` read and write such lines on
non-blocking descriptors in the event loop: a message is written with one
``write`` when the pipe has room, and read without a task or thread hand-off.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import orjson

__all__ = ["LineReader", "LineWriter", "Wire", "check", "encode", "parse"]

_CHUNK = 1 << 16
_MISSING: Any = object()


class Wire:
    """One JSON-RPC message: ``raw`` (the line, newline included) and ``data`` (its
    JSON). Reads like the SDK's message models (``method``, ``id``, ``params``,
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
    raw = line if line.endswith(b"\n") else line + b"\n"
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
    a non-blocking descriptor, until end of file (blank lines are skipped)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __aiter__(self) -> AsyncIterator[Wire | ValueError]:
        return self._items()

    async def _items(self) -> AsyncIterator[Wire | ValueError]:
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
