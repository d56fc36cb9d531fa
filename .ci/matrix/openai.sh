#!/usr/bin/env bash
# Adapter matrix for veto-openai: one private venv per openai-agents version (the
# workspace lock cannot hold openai-agents >= 0.21 next to CrewAI's openai<3 pin), then
# the adapter's own tests and the shared contract suite on that version.
#   .ci/matrix/openai.sh [VERSION ...]      default: the lowest and the newest supported
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"

export UV_PYTHON_DOWNLOADS=never
export UV_CACHE_DIR="${UV_CACHE_DIR:-$HOME/.cache/uv}"
CACHE="${VETO_MATRIX_CACHE:-$UV_CACHE_DIR/veto-matrix}"
VERSIONS=("$@")
[ ${#VERSIONS[@]} -gt 0 ] || VERSIONS=(0.20.0 0.24.0)

for version in "${VERSIONS[@]}"; do
  echo "=== adapter matrix: openai-agents ${version} ==="
  venv="$CACHE/openai-agents-$version"
  if [ ! -x "$venv/bin/python" ]; then
    uv venv --quiet --python 3.11 "$venv"
  fi
  # Editable installs, so the venv always tests this checkout; the pin is re-applied
  # every run (uv makes it a no-op when the venv already has it).
  VIRTUAL_ENV="$venv" uv pip install --quiet --python "$venv/bin/python" \
    -e "packages/veto-core[otel]" -e packages/veto-openai \
    "openai-agents==$version" \
    "pytest>=8" "pytest-timeout>=2.3" "hypothesis>=6.100" "vcrpy>=6" "httpx>=0.27"
  "$venv/bin/python" -c "import agents, importlib.metadata as m; print('openai-agents', m.version('openai-agents'), 'openai', m.version('openai'))"
  # rootdir + the root pyproject's pytest options; only the OpenAI tests and their contract
  # subclass are collected (the test_quality gate and other adapters run in the workspace).
  (cd "$ROOT" && "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/openai)
done
