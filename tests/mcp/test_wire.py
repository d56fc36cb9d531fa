"""The stdio relay's byte-level messages (``veto_core.mcp.wire``): the JSON-RPC shape
check is never looser than the SDK's own ``JSONRPCMessage`` model (the reference),
and the line reader/writer move whole lines on real pipes."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import anyio
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veto_core.mcp import sdk, wire

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False),
    st.text(max_size=5),
)  # fmt: skip
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip
_ids = st.one_of(
    st.integers(-5, 2**40),
    st.text(max_size=4),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
)
_keys = {
    "jsonrpc": st.one_of(st.just("2.0"), st.just("1.0"), st.just(2.0), st.none()),
    "id": _ids,
    "method": st.one_of(st.sampled_from(["tools/call", "ping", "notifications/cancelled"]), _json),
    "params": st.one_of(st.dictionaries(st.text(max_size=4), _json, max_size=3), _json),
    "result": st.one_of(st.dictionaries(st.text(max_size=4), _json, max_size=3), _json),
    "error": st.one_of(
        st.fixed_dictionaries(
            {"code": st.one_of(st.integers(-40000, 0), _json), "message": st.one_of(st.text(max_size=5), _json)},
            optional={"data": _json},
        ),
        _json,
    ),
    "extra": _json,
}  # fmt: skip
_messages = st.one_of(
    st.fixed_dictionaries({}, optional=_keys),
    st.fixed_dictionaries({"jsonrpc": st.just("2.0")}, optional={k: v for k, v in _keys.items() if k != "jsonrpc"}),
    _json,
)  # fmt: skip


def _reference(data: Any) -> Any:
    """The SDK's reading of ``data`` (the model the relay used to move), or None."""
    try:
        return sdk.unwrap(sdk.session_message(data)) if isinstance(data, dict) else None
    except Exception:
        return None


@settings(max_examples=3000, deadline=None)
@given(_messages)
def test_check_is_never_looser_than_the_sdk_and_reads_the_same_fields(data: Any) -> None:
    line = json.dumps(data).encode()
    item = wire.parse(line)
    ref = _reference(data)
    if isinstance(item, wire.Wire):
        assert ref is not None, f"accepted what the SDK refuses: {data!r}"
        for name in ("method", "id", "params", "result", "error"):
            mine, theirs = getattr(item, name), getattr(ref, name, None)
            if hasattr(theirs, "model_dump"):
                theirs = theirs.model_dump(by_alias=True, exclude_unset=True)
            assert mine == theirs, (name, data)
        assert item.raw == orjson.dumps(data) + b"\n" and orjson.loads(item.raw) == data
    else:
        assert isinstance(item, ValueError)


@given(st.sampled_from([
    {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x", "arguments": {"a": 1}}},
    {"jsonrpc": "2.0", "id": "a", "method": "tools/list"},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3}},
    {"jsonrpc": "2.0", "id": 7, "result": {"content": [], "isError": False}},
    {"jsonrpc": "2.0", "id": 7, "error": {"code": -32601, "message": "no"}},
]))  # fmt: skip
def test_every_message_an_mcp_session_exchanges_is_accepted(data: dict[str, Any]) -> None:
    assert isinstance(wire.parse(json.dumps(data).encode()), wire.Wire)
    assert _reference(data) is not None


def test_lines_that_are_not_messages_are_errors_never_forwarded() -> None:
    for line in (b"not json\n", b"[1]\n", b'{"jsonrpc": "2.0"}\n', b'{"id": 1, "method": "x"}\n',
                 b'{"jsonrpc":"2.0","id":1,"method":"x"', b'{"jsonrpc":"2.0","id":1.5,"method":"x"}',
                 b'{"jsonrpc":"2.0","id":true,"result":{}}', b'{"jsonrpc":"2.0","id":1,"result":[]}',
                 b'{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}', b'\xff\n'):  # fmt: skip
        assert isinstance(wire.parse(line), ValueError), line


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """How some JSON parsers read a duplicate key (cJSON, for one): the first one."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


@pytest.mark.parametrize(
    "line",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo","name":"echo","arguments":{"text":"x"}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"rm -rf /","text":"ok"}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping","params":{"name":"delete_repo"}}',
        b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"IBAN DE89"}],"content":[]}}',
    ],
)
def test_what_is_forwarded_reads_the_same_for_every_parser(line: bytes) -> None:
    """A duplicate key is read as its last value here, its first by other parsers: the
    relay forwards the message it read and decided on, re-encoded, so the peer cannot
    read another tool, other arguments or another output than Veto saw."""
    item = wire.parse(line)
    assert isinstance(item, wire.Wire)
    assert json.loads(item.raw, object_pairs_hook=_first_wins) == item.data
    assert json.loads(item.raw) == item.data


@pytest.mark.parametrize("loop", ["watched", "polled"])
def test_reader_yields_whole_lines_across_chunks_and_the_last_unterminated_one(loop: str) -> None:
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)

    def feed() -> None:
        for part in (b'{"jsonrpc": "2.0", "id": 1, "res', b'ult": {}}\n\n{"jsonrpc": "2.0", "meth',
                     b'od": "\xc3', b'\xa9"}\nnope\n', b'{"jsonrpc": "2.0", "id": 2, "result": {}}'):  # fmt: skip
            os.write(wfd, part)
        os.close(wfd)

    async def read() -> list[Any]:
        threading.Thread(target=feed).start()
        reader = wire.LineReader(rfd)
        items = reader if loop == "watched" else reader._polled()  # the other backends' path
        return [item async for item in items]

    try:
        items = anyio.run(read)
    finally:
        os.close(rfd)
    assert [getattr(i, "data", None) for i in items] == [
        {"jsonrpc": "2.0", "id": 1, "result": {}},
        {"jsonrpc": "2.0", "method": "é"},
        None,
        {"jsonrpc": "2.0", "id": 2, "result": {}},
    ]
    assert isinstance(items[2], ValueError)
    assert items[0].raw == b'{"jsonrpc":"2.0","id":1,"result":{}}\n'


def test_reader_stops_reading_a_flooding_writer_until_its_lines_are_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Read-ahead is bounded: past the high-water mark the reader leaves the rest in
    the pipe, so the writer blocks (back-pressure) instead of the proxy buffering it;
    every line still arrives, in order, once the consumer takes them."""
    monkeypatch.setattr(wire, "_HIGH_WATER", 20_000)
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    line = b'{"jsonrpc": "2.0", "method": "m", "params": {"pad": "%s", "i": %d}}\n'
    total = 3000  # ~270 KB: several pipe buffers beyond the high-water mark
    written = [0]

    def flood() -> None:
        for i in range(total):
            os.write(wfd, line % (b"x" * 40, i))  # blocking: waits while the pipe is full
            written[0] = i + 1
        os.close(wfd)

    async def read() -> tuple[int, list[Any]]:
        threading.Thread(target=flood, daemon=True).start()
        items = aiter(wire.LineReader(rfd))
        got = [await anext(items)]
        await anyio.sleep(0.5)  # the consumer is busy: the reader must not drain the pipe
        stalled = written[0]
        got += [item async for item in items]
        return stalled, got

    try:
        stalled, items = anyio.run(read)
    finally:
        os.close(rfd)
    assert stalled < total // 2, stalled  # ~20 KB queued + one 64 KiB pipe, not everything
    assert [item.data["params"]["i"] for item in items] == list(range(total))


def test_writer_keeps_lines_whole_and_in_order_while_the_pipe_is_full() -> None:
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)
    received = bytearray()

    def drain() -> None:
        while chunk := os.read(rfd, 1 << 16):
            received.extend(chunk)

    messages = [wire.encode({"jsonrpc": "2.0", "method": "m", "params": {"i": i, "pad": "x" * 999}})
                for i in range(300)]  # fmt: skip

    async def write() -> None:
        writer = wire.LineWriter(wfd)
        async with anyio.create_task_group() as tg:  # concurrent senders share one pipe
            for part in (messages[0::3], messages[1::3], messages[2::3]):
                tg.start_soon(_send_all, writer, part)
        await writer.send(wire.encode({"jsonrpc": "2.0", "method": "last"}))  # flushes the rest
        os.close(wfd)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        anyio.run(write)
        reader.join(10)
    finally:
        os.close(rfd)
    lines = bytes(received).splitlines()
    assert sorted(orjson.loads(x)["params"]["i"] for x in lines[:-1]) == list(range(300))
    assert orjson.loads(lines[-1])["method"] == "last"


async def _send_all(writer: wire.LineWriter, items: list[wire.Wire]) -> None:
    for item in items:
        await writer.send(item)


def test_writer_to_a_closed_pipe_is_broken_and_says_so_again() -> None:
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)
    os.close(rfd)

    async def write() -> list[str]:
        writer = wire.LineWriter(wfd)
        seen = []
        for _ in range(2):
            try:
                await writer.send(wire.encode({"jsonrpc": "2.0", "method": "m"}))
            except anyio.BrokenResourceError:
                seen.append("broken")
        writer.close()
        try:
            await writer.send(wire.encode({"jsonrpc": "2.0", "method": "m"}))
        except anyio.ClosedResourceError:
            seen.append("closed")
        return seen

    try:
        assert anyio.run(write) == ["broken", "broken", "closed"]
    finally:
        os.close(wfd)


def test_messages_the_sdk_versions_read_apart_are_refused() -> None:
    """A request carrying a result or an error, or a response carrying params: mcp 1.x
    and 2.x read these differently (2.x drops the extra field), so the relay refuses
    them rather than pick a reading."""
    for data in (
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "result": {}},
        {"jsonrpc": "2.0", "method": "tools/call", "error": {"code": 1, "message": "x"}},
        {"jsonrpc": "2.0", "id": 0, "params": {}, "error": {"code": 0, "message": ""}},
        {"jsonrpc": "2.0", "id": 0, "params": {}, "result": {}},
    ):
        assert isinstance(wire.parse(json.dumps(data).encode()), ValueError), data
