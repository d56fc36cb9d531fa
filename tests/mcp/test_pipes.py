"""The proxy's thread-free stdin/stdout (``veto_core.mcp.pipes``) on real pipes."""

from __future__ import annotations

import os
import threading

import anyio

from veto_core.mcp.pipes import PipeReader, PipeWriter


def test_reader_yields_whole_lines_across_chunks_and_the_last_unterminated_one() -> None:
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)

    def feed() -> None:
        for part in (b'{"a":', b' 1}\n{"b": "\xc3', b'\xa9"}\n\n', b"tail"):
            os.write(wfd, part)
        os.close(wfd)

    async def read() -> list[str]:
        threading.Thread(target=feed).start()
        return [line async for line in PipeReader(rfd)]

    try:
        assert anyio.run(read) == ['{"a": 1}\n', '{"b": "é"}\n', "\n", "tail"]
    finally:
        os.close(rfd)


def test_writer_waits_while_the_pipe_is_full_and_loses_nothing() -> None:
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)
    text = "x" * 999 + "\n"
    received = bytearray()

    def drain() -> None:
        while chunk := os.read(rfd, 1 << 16):
            received.extend(chunk)

    async def write() -> None:
        writer = PipeWriter(wfd)
        for _ in range(300):  # 300 kB: several times a pipe's buffer
            await writer.write(text)
            await writer.flush()
        os.close(wfd)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        anyio.run(write)
        reader.join(10)
        assert bytes(received) == text.encode() * 300
    finally:
        os.close(rfd)
