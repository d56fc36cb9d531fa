#!/usr/bin/env bash
# Adapter matrix, LangChain: veto-langchain's tests (its contract subclasses included) on
# the lowest supported langchain-core and on the newest one an unpinned install resolves
# to, each in a venv of its own (the workspace lock pins one version).
#   .ci/matrix/langchain.sh [SPEC ...]   SPEC: a version, "newest", or "forced:VERSION";
#   default: 1.8.3 newest forced:1.8.4
# langchain-core 1.8.4 is published but needs langchain-protocol>=0.0.22, which the
# package index here does not have: an unpinned install resolves to the newest
# installable release, and the header names the version actually tested. "forced:1.8.4"
# still runs the suite on 1.8.4's own code: installed with --no-deps over the newest
# langchain-protocol the index has (the header says so).
set -euo pipefail
cd "$(dirname "$0")/../.."
export UV_PYTHON_DOWNLOADS=never
export UV_CACHE_DIR="${UV_CACHE_DIR:-$HOME/.cache/uv}"
MATRIX_DIR="${VETO_MATRIX_DIR:-$HOME/.cache/veto-matrix}"
FRAMEWORK=langchain-core
RANGE=">=1.8.3,<2"              # keep in step with packages/veto-langchain/pyproject.toml
specs=("$@")
[ ${#specs[@]} -gt 0 ] || specs=(1.8.3 newest forced:1.8.4)

tested=()
for spec in "${specs[@]}"; do
  forced=""
  case "$spec" in
    newest) req="$FRAMEWORK$RANGE" ;;
    forced:*) forced="${spec#forced:}"; req="$FRAMEWORK$RANGE" ;;
    *) req="$FRAMEWORK==$spec" ;;
  esac
  venv="$MATRIX_DIR/$FRAMEWORK-${spec/:/-}"
  [ -x "$venv/bin/python" ] || uv venv --quiet "$venv"
  VIRTUAL_ENV="$venv" uv pip install --quiet --upgrade \
    -e "packages/veto-core[otel]" -e packages/veto-langchain "$req" \
    pytest pytest-timeout vcrpy langchain-openai
  note=""
  if [ -n "$forced" ]; then
    VIRTUAL_ENV="$venv" uv pip install --quiet --no-deps "$FRAMEWORK==$forced"
    note=" (installed --no-deps over langchain-protocol $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("langchain-protocol"))'): the index lacks the >=0.0.22 it asks for)"
  fi
  got="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("langchain-core"))')"
  want="${forced:-$spec}"
  if [ "$spec" != newest ] && [ "$got" != "$want" ]; then
    echo "expected $FRAMEWORK $want, the venv has $got" >&2; exit 1
  fi
  if printf '%s\n' "${tested[@]:-}" | grep -qx "$got"; then
    echo "=== adapter matrix: $FRAMEWORK $got ($spec: already tested above) ==="
    continue
  fi
  echo "=== adapter matrix: $FRAMEWORK $got$note ==="
  # -p no:cacheprovider: several venvs share the checkout.
  "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/langchain
  tested+=("$got")
done
