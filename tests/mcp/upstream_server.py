"""A small MCP server (the official SDK, 1.x FastMCP or 2.x MCPServer) that the tests
put behind ``veto mcp proxy``. Every tool run appends one line ``<tool> <json args>``
to the file named by ``$RUNS_FILE``, so a test can count what really ran.

    python upstream_server.py stdio
    python upstream_server.py http PORT
"""

from __future__ import annotations

import json
import os
import sys
import time

try:  # mcp 2.x renamed FastMCP to MCPServer
    from mcp.server.mcpserver import MCPServer as App
except ImportError:
    from mcp.server.fastmcp import FastMCP as App

app = App("upstream")

# The protocol's own stdout, taken before the SDK starts (mcp 2.x moves fd 1 aside so
# that stray prints cannot corrupt the stream; `garbage` corrupts it on purpose).
WIRE = os.dup(1)


def _ran(tool: str, **args: object) -> None:
    with open(os.environ["RUNS_FILE"], "a", encoding="utf-8") as fh:
        fh.write(f"{tool} {json.dumps(args, sort_keys=True)}\n")
        fh.flush()
        os.fsync(fh.fileno())


@app.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    _ran("echo", text=text)
    return f"echo: {text}"


@app.tool()
def refund(amount: float, to: str) -> str:
    """Refund an amount to a customer."""
    _ran("refund", amount=amount, to=to)
    return f"refunded {amount} to {to}"


@app.tool()
def delete_repo(name: str) -> str:
    """Delete a repository."""
    _ran("delete_repo", name=name)
    return f"deleted {name}"


@app.tool()
def crash() -> str:
    """The server process dies in the middle of the call."""
    _ran("crash")
    os._exit(3)


@app.tool()
def garbage() -> str:
    """Writes a line that is not JSON-RPC to stdout, then answers late."""
    _ran("garbage")
    os.write(WIRE, b"this is not json-rpc\n")
    time.sleep(1.0)
    return "late answer"


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        app.run()
    else:
        import uvicorn

        uvicorn.run(
            app.streamable_http_app(), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning"
        )
