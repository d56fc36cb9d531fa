#!/usr/bin/env bash
# Adapter matrix, LangChain: the adapter's tests and its contract subclasses on one
# langchain-core version, in a venv of its own (the workspace lock pins one version).
#   .ci/matrix/langchain.sh [VERSION ...]     default: the lowest supported and the newest
set -euo pipefail
cd "$(dirname "$0")/../.."
export UV_PYTHON_DOWNLOADS=never
export UV_CACHE_DIR="${UV_CACHE_DIR:-$HOME/.cache/uv}"
MATRIX_DIR="${VETO_MATRIX_DIR:-$HOME/.cache/veto-matrix}"

versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(1.8.3 1.8.4)   # lowest supported (the lock) and newest

for v in "${versions[@]}"; do
  echo "=== adapter matrix: langchain-core $v ==="
  venv="$MATRIX_DIR/langchain-core-$v"
  [ -x "$venv/bin/python" ] || uv venv --quiet "$venv"
  VIRTUAL_ENV="$venv" uv pip install --quiet \
    -e packages/veto-core -e packages/veto-langchain "langchain-core==$v" \
    pytest pytest-timeout vcrpy langchain-openai
  got="$("$venv/bin/python" -c 'import langchain_core; print(langchain_core.__version__)')"
  [ "$got" = "$v" ] || { echo "expected langchain-core $v, venv has $got" >&2; exit 1; }
  # -p no:cacheprovider: several matrix venvs share the checkout.
  "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/langchain
done
