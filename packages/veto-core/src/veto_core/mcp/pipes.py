"""The proxy's stdin/stdout without a worker thread per line.

The SDK's ``stdio_server`` reads and writes the process's standard streams through
``anyio.wrap_file``: every line read, every write and every flush is a hop to a
worker thread and back. When the MCP client talks to the proxy over pipes (what
every client that starts ``veto mcp proxy`` as a command does), the proxy hands
``stdio_server`` these two objects instead: line reads and writes on non-blocking
pipe descriptors that wait in the event loop (``anyio.wait_readable`` /
``wait_writable``). Framing and JSON-RPC stay the SDK's: ``stdio_server`` still
splits nothing but lines and parses every message itself.

While serving, descriptors 0 and 1 point at the null device and at stderr (what
mcp 2.x's own ``stdio_server`` does), so nothing else in the process can read the
client's messages or write stray bytes onto the wire; both are restored on exit.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import AsyncIterator, Iterator

import anyio

__all__ = ["PipeReader", "PipeWriter", "pipe_stdio"]

_CHUNK = 1 << 16


def _is_pipe(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class PipeReader:
    """``async for line in reader``: UTF-8 lines (with their newline) of a
    non-blocking descriptor, until end of file."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        pending = b""
        while True:
            try:
                chunk = os.read(self.fd, _CHUNK)
            except BlockingIOError:
                await anyio.wait_readable(self.fd)
                continue
            if not chunk:
                if pending:
                    yield pending.decode("utf-8", errors="replace")
                return
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield (line + b"\n").decode("utf-8", errors="replace")


class PipeWriter:
    """``await write(text)`` buffers, ``await flush()`` writes it all to a
    non-blocking descriptor (waiting in the event loop while the pipe is full)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = bytearray()

    async def write(self, text: str) -> int:
        self._buffer += text.encode("utf-8")
        return len(text)

    async def flush(self) -> None:
        view = memoryview(self._buffer)
        done = 0
        try:
            while done < len(view):
                try:
                    done += os.write(self.fd, view[done:])
                except BlockingIOError:
                    await anyio.wait_writable(self.fd)
        finally:
            view.release()
            del self._buffer[:done]


@contextlib.contextmanager
def _claimed(fd: int, diversion: int) -> Iterator[int]:
    """A private non-blocking duplicate of ``fd``; ``fd`` itself points at
    ``diversion`` until the block ends, then at the wire again (blocking)."""
    private = os.dup(fd)
    try:
        os.set_blocking(private, False)
        os.dup2(diversion, fd)
        try:
            yield private
        finally:
            os.dup2(private, fd)
            os.set_blocking(fd, True)
    finally:
        os.close(private)


@contextlib.contextmanager
def pipe_stdio() -> Iterator[tuple[PipeReader, PipeWriter] | None]:
    """``(reader, writer)`` for the process's stdin and stdout when both are pipes
    or sockets (and the platform is POSIX); None otherwise (a terminal, a file: the
    caller uses the SDK's own threaded streams)."""
    if os.name != "posix" or not (_is_pipe(0) and _is_pipe(1)):
        yield None
        return
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        with _claimed(0, null) as stdin, _claimed(1, 2) as stdout:
            os.close(null)
            null = -1
            yield PipeReader(stdin), PipeWriter(stdout)
    finally:
        if null >= 0:
            os.close(null)
