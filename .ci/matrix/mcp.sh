#!/usr/bin/env bash
# Matrix entry: `veto mcp proxy` on mcp 2.x. The workspace lock holds mcp 1.x (CrewAI
# pins mcp<2); `pip install veto-core[mcp]` alone gets 2.x. This builds its own venv
# with veto-core[mcp,server] and mcp==2.3.0 and runs tests/mcp in it (without the
# adapter-naming test: LangChain's and CrewAI's MCP clients need mcp 1.x).
set -euo pipefail
cd "$(dirname "$0")/../.."

export UV_PYTHON_DOWNLOADS=never
export UV_CACHE_DIR="${UV_CACHE_DIR:-$HOME/.cache/uv}"
MCP_VERSION="${MCP_VERSION:-2.3.0}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
VENV="$WORK/venv"

uv venv -q -p 3.11 "$VENV"
VIRTUAL_ENV="$VENV" uv pip install -q "./packages/veto-core[mcp,server]" "mcp==$MCP_VERSION" \
  "pytest>=8" "pytest-timeout>=2.3" "httpx>=0.27" "hypothesis>=6"

echo "=== matrix: mcp $MCP_VERSION ==="
"$VENV/bin/python" -c "import importlib.metadata as m; v = m.version('mcp'); print('mcp', v); assert v == '$MCP_VERSION', v"
"$VENV/bin/python" -m pytest tests/mcp -p no:cacheprovider --ignore=tests/mcp/test_adapter_names.py "$@"
