#!/usr/bin/env bash
# Adapter matrix, CrewAI: veto-crewai's tests (its contract subclasses included) on
# the lowest supported crewai and on the newest one an unpinned install resolves
# to, each in a venv of its own (the workspace lock pins one version).
#   .ci/matrix/crewai.sh [SPEC ...]   SPEC: a version, or "newest"; default: 1.15.30 newest
set -euo pipefail
cd "$(dirname "$0")/../.."
export UV_PYTHON_DOWNLOADS=never
export UV_CACHE_DIR="${UV_CACHE_DIR:-$HOME/.cache/uv}"
export CREWAI_DISABLE_TELEMETRY=true OTEL_SDK_DISABLED=true CREWAI_TRACING_ENABLED=false
MATRIX_DIR="${VETO_MATRIX_DIR:-$HOME/.cache/veto-matrix}"
FRAMEWORK=crewai
RANGE=">=1.15.30,<2"            # keep in step with packages/veto-crewai/pyproject.toml
specs=("$@")
[ ${#specs[@]} -gt 0 ] || specs=(1.15.30 newest)

tested=()
for spec in "${specs[@]}"; do
  if [ "$spec" = newest ]; then req="$FRAMEWORK$RANGE"; else req="$FRAMEWORK==$spec"; fi
  venv="$MATRIX_DIR/$FRAMEWORK-$spec"
  [ -x "$venv/bin/python" ] || uv venv --quiet "$venv"
  VIRTUAL_ENV="$venv" uv pip install --quiet --upgrade \
    -e "packages/veto-core[otel]" -e packages/veto-crewai "$req" \
    pytest pytest-timeout vcrpy
  got="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("crewai"))')"
  if [ "$spec" != newest ] && [ "$got" != "$spec" ]; then
    echo "expected $FRAMEWORK $spec, the venv has $got" >&2; exit 1
  fi
  if printf '%s\n' "${tested[@]:-}" | grep -qx "$got"; then
    echo "=== adapter matrix: $FRAMEWORK $got ($spec: already tested above) ==="
    continue
  fi
  echo "=== adapter matrix: $FRAMEWORK $got ==="
  # -p no:cacheprovider: several venvs share the checkout.
  "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/crewai
  tested+=("$got")
done
