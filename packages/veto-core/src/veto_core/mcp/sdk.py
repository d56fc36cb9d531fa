"""The few places where mcp 1.x and 2.x differ, behind one small interface.

Both majors are supported (CrewAI pins ``mcp<2``; ``pip install veto-core[mcp]``
alone gets 2.x). The protocol itself is always the SDK's: this module only
registers handlers on the SDK's low-level ``Server`` (1.x: the ``request_handlers``
table; 2.x: ``on_list_tools``/``on_call_tool``), reads the per-request context
(progress token, HTTP request), and converts between the SDK's models and their
wire-form dicts (``model_validate``/``model_dump(by_alias=True)`` work alike in
both majors).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from importlib.metadata import version
from typing import Any

import mcp.types as types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.lowlevel import Server

from mcp import ClientSession, StdioServerParameters

__all__ = [
    "MCP_MAJOR",
    "RequestInfo",
    "build_server",
    "call_params",
    "call_upstream",
    "dump",
    "error_payload",
    "error_result",
    "list_all_tools",
    "list_result",
    "message",
    "open_transport",
    "open_upstream",
    "session_message",
    "tools_page",
    "unwrap",
    "upstream_env",
]

MCP_MAJOR = int(version("mcp").split(".")[0])


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestInfo:
    """What a handler needs to know of the request it serves."""

    #: ``(progress, total, message)``: progress notifications for this request, or
    #: None when the client sent no progress token.
    progress: Callable[[float, float | None, str], Awaitable[None]] | None
    #: The HTTP request (a Starlette ``Request``) when served over streamable HTTP.
    http_request: Any | None


ListHandler = Callable[[RequestInfo], Awaitable[list[dict[str, Any]]]]
CallHandler = Callable[[str, Mapping[str, Any] | None, RequestInfo], Awaitable[Any]]


def dump(model: Any) -> dict[str, Any]:
    """The wire form of an SDK model."""
    out: dict[str, Any] = model.model_dump(by_alias=True, mode="json", exclude_none=True)
    return out


def error_result(text: str, meta: Mapping[str, Any] | None = None) -> Any:
    """A ``CallToolResult`` with ``isError: true`` and ``text``."""
    data: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": True}
    if meta:
        data["_meta"] = dict(meta)
    return types.CallToolResult.model_validate(data)


def list_result(tools: Sequence[Mapping[str, Any]]) -> Any:
    return types.ListToolsResult.model_validate({"tools": list(tools)})


def _v1_info(ctx: Any) -> RequestInfo:
    token = getattr(ctx.meta, "progressToken", None) if ctx.meta is not None else None
    progress = None
    if token is not None:
        session, request_id = ctx.session, ctx.request_id

        async def progress(done: float, total: float | None, message: str) -> None:
            await session.send_progress_notification(
                token, done, total=total, message=message, related_request_id=request_id
            )

    return RequestInfo(progress=progress, http_request=ctx.request)


def _v2_info(ctx: Any) -> RequestInfo:
    meta = ctx.meta or {}
    progress = None
    if meta.get("progress_token") is not None:
        session = ctx.session

        async def progress(done: float, total: float | None, message: str) -> None:
            await session.report_progress(done, total, message)

    return RequestInfo(progress=progress, http_request=ctx.request)


def build_server(name: str, server_version: str, on_list: ListHandler, on_call: CallHandler) -> Any:
    """The SDK's low-level ``Server`` answering ``tools/list`` and ``tools/call``."""
    if MCP_MAJOR >= 2:

        async def list_v2(ctx: Any, params: Any) -> Any:
            return list_result(await on_list(_v2_info(ctx)))

        async def call_v2(ctx: Any, params: Any) -> Any:
            return await on_call(params.name, params.arguments, _v2_info(ctx))

        return Server(name, version=server_version, on_list_tools=list_v2, on_call_tool=call_v2)  # type: ignore[call-arg]

    server: Any = Server(name, version=server_version)

    async def list_v1(req: Any) -> Any:
        return types.ServerResult(list_result(await on_list(_v1_info(server.request_context))))

    async def call_v1(req: Any) -> Any:
        info = _v1_info(server.request_context)
        return types.ServerResult(await on_call(req.params.name, req.params.arguments, info))

    # Raw handlers (not the decorators): the proxy does its own strict input check
    # and must see every call, including ones for tools it never listed.
    server.request_handlers[types.ListToolsRequest] = list_v1
    server.request_handlers[types.CallToolRequest] = call_v1
    return server


def upstream_env() -> dict[str, str]:
    """The environment an upstream server is started with: the proxy's own (so the
    server gets the tokens its MCP client configured) without Veto's secrets."""
    return {k: v for k, v in os.environ.items() if not k.startswith("VETO_")}


def message(data: Mapping[str, Any]) -> Any:
    """The SDK's JSON-RPC message for a wire-form dict (1.x: the ``JSONRPCMessage``
    root model; 2.x: the matching ``JSONRPCRequest``/``...Response`` model)."""
    if MCP_MAJOR >= 2:
        return types.jsonrpc_message_adapter.validate_python(dict(data), by_name=False)  # type: ignore[attr-defined]
    return types.JSONRPCMessage.model_validate(dict(data))


def session_message(data: Mapping[str, Any]) -> Any:
    """``message(data)`` wrapped for a transport stream."""
    from mcp.shared.message import SessionMessage

    return SessionMessage(message(data))


def unwrap(item: Any) -> Any:
    """The JSON-RPC request/notification/response/error model of a transport item
    (a ``SessionMessage``), whichever major wraps it how."""
    msg = item.message
    return getattr(msg, "root", msg)


def call_params(params: Mapping[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
    """``(name, arguments)`` of a ``tools/call``, checked by the SDK's own model
    (raises ``ValueError`` for params that are not a valid ``tools/call``)."""
    parsed = types.CallToolRequestParams.model_validate(dict(params or {}))
    arguments = parsed.arguments
    return parsed.name, None if arguments is None else dict(arguments)


def tools_page(result: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """The tools (wire-form dicts) and next cursor of one ``tools/list`` answer,
    checked by the SDK's ``ListToolsResult`` model (raises ``ValueError``)."""
    page = dump(types.ListToolsResult.model_validate(dict(result)))
    cursor = page.get("nextCursor")
    return list(page.get("tools") or ()), cursor if isinstance(cursor, str) and cursor else None


def error_payload(text: str, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The wire form of :func:`error_result`."""
    return dump(error_result(text, meta))


@asynccontextmanager
async def open_transport(
    *,
    command: Sequence[str] | None = None,
    url: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[tuple[Any, Any]]:
    """The SDK's client transport streams ``(read, write)`` to the upstream server: a
    subprocess over stdio (``command``) or a streamable HTTP endpoint (``url``)."""
    if command:
        params = StdioServerParameters(
            command=command[0], args=list(command[1:]), env=upstream_env()
        )
        transport: Any = stdio_client(params)
    elif url:
        http_client = None
        if headers:
            from mcp.shared._httpx_utils import create_mcp_http_client

            http_client = create_mcp_http_client(headers=dict(headers))
        transport = streamable_http_client(url, http_client=http_client)
    else:
        raise ValueError("an upstream needs a command or a URL")
    async with transport as streams:
        yield streams[0], streams[1]


@asynccontextmanager
async def open_upstream(
    *,
    command: Sequence[str] | None = None,
    url: str | None = None,
    headers: Mapping[str, str] | None = None,
    message_handler: Callable[[Any], Awaitable[None]] | None = None,
    call_timeout_s: float | None = None,
) -> AsyncIterator[Any]:
    """An initialized ``ClientSession`` to the upstream server: a subprocess over
    stdio (``command``) or a streamable HTTP endpoint (``url``)."""
    timeout: Any = None
    if call_timeout_s is not None:
        timeout = call_timeout_s if MCP_MAJOR >= 2 else timedelta(seconds=call_timeout_s)
    async with open_transport(command=command, url=url, headers=headers) as (read, write):
        handler: Any = message_handler
        async with ClientSession(
            read, write, read_timeout_seconds=timeout, message_handler=handler
        ) as session:
            await session.initialize()
            yield session


async def list_all_tools(session: Any, *, max_pages: int = 100) -> list[dict[str, Any]]:
    """Every tool of the upstream (all pages), as wire-form dicts."""
    tools: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(max_pages):
        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
        result = await session.list_tools(params=params)
        tools.extend(dump(t) for t in result.tools)
        cursor = dump(result).get("nextCursor")
        if not cursor:
            return tools
    raise RuntimeError(f"the upstream's tools/list did not end within {max_pages} pages")


async def call_upstream(
    session: Any,
    name: str,
    arguments: Mapping[str, Any],
    progress: Callable[[float, float | None, str], Awaitable[None]] | None,
) -> Any:
    """Forward one ``tools/call``; upstream progress is relayed to the client."""
    relay = None
    if progress is not None:

        async def relay(done: float, total: float | None, message: str | None) -> None:
            await progress(done, total, message or "")

    if MCP_MAJOR >= 2:
        # 2.x: call_tool adds per-tool request headers and checks structured output
        # with a cached validator.
        return await session.call_tool(name, dict(arguments), progress_callback=relay)
    # 1.x: call_tool's only extra is re-validating structured output with
    # jsonschema.validate, which compiles (and meta-validates) the output schema on
    # every call (~1 ms). The proxy forwards the result as it came: the client that
    # asked for it checks it against the schema it was given.
    request = types.ClientRequest(
        types.CallToolRequest(
            params=types.CallToolRequestParams(name=name, arguments=dict(arguments))
        )
    )
    return await session.send_request(request, types.CallToolResult, progress_callback=relay)
