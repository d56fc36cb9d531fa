#!/usr/bin/env bash
# Adapter matrix, CrewAI: the adapter's tests and its contract subclasses on one crewai
# version, in a venv of its own (the workspace lock pins one version).
#   .ci/matrix/crewai.sh [VERSION ...]     default: the lowest supported and the newest
set -euo pipefail
cd "$(dirname "$0")/../.."
export UV_PYTHON_DOWNLOADS=never
export UV_CACHE_DIR="${UV_CACHE_DIR:-$HOME/.cache/uv}"
export CREWAI_DISABLE_TELEMETRY=true OTEL_SDK_DISABLED=true CREWAI_TRACING_ENABLED=false
MATRIX_DIR="${VETO_MATRIX_DIR:-$HOME/.cache/veto-matrix}"

versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(1.15.30)   # lowest supported = newest released today

for v in "${versions[@]}"; do
  echo "=== adapter matrix: crewai $v ==="
  venv="$MATRIX_DIR/crewai-$v"
  [ -x "$venv/bin/python" ] || uv venv --quiet "$venv"
  VIRTUAL_ENV="$venv" uv pip install --quiet \
    -e packages/veto-core -e packages/veto-crewai "crewai==$v" \
    pytest pytest-timeout vcrpy
  got="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("crewai"))')"
  [ "$got" = "$v" ] || { echo "expected crewai $v, venv has $got" >&2; exit 1; }
  "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/crewai
done
