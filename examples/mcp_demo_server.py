"""A tiny MCP server (official ``mcp`` SDK) for ``mcp_proxy_quickstart.py``: a file
store with read, write and delete. Works with mcp 1.x (FastMCP) and 2.x (MCPServer).

    python examples/mcp_demo_server.py        # speaks MCP on stdin/stdout
"""

from __future__ import annotations

try:  # mcp 2.x renamed FastMCP to MCPServer
    from mcp.server.mcpserver import MCPServer as App
except ImportError:
    from mcp.server.fastmcp import FastMCP as App

app = App("files")
FILES: dict[str, str] = {"readme.txt": "hello from the demo server"}


@app.tool()
def read_file(path: str) -> str:
    """Read a file."""
    return FILES.get(path, f"no such file: {path}")


@app.tool()
def write_file(path: str, content: str) -> str:
    """Write a file."""
    FILES[path] = content
    return f"wrote {len(content)} characters to {path}"


@app.tool()
def delete_file(path: str) -> str:
    """Delete a file."""
    FILES.pop(path, None)
    return f"deleted {path}"


if __name__ == "__main__":
    app.run()
