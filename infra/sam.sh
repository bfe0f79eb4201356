#!/usr/bin/env bash
# Runs the pinned AWS SAM CLI from .tools/sam (see infra/install-sam.sh) from the repo root,
# with a real `python3.13` on PATH (the functions' runtime: `sam build` needs it) and
# telemetry off. Arguments pass through: infra/sam.sh build | infra/sam.sh validate --lint
# Paths given as arguments are relative to the repo root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SAM="$ROOT/.tools/sam/bin/sam"
RUNTIME_PYTHON="python3.13"

if [[ ! -x "$SAM" ]]; then
    echo "infra/sam.sh: no SAM CLI at $SAM; run: bash infra/install-sam.sh" >&2
    exit 1
fi

# pyenv's `python3.13` is a shim that fails unless 3.13 is an active version: put the
# newest installed 3.13.x's own bin directory first on PATH instead.
if command -v pyenv >/dev/null 2>&1; then
    version="$(pyenv versions --bare 2>/dev/null | grep -E '^3\.13\.[0-9]+$' | sort -V | tail -n 1 || true)"
    if [[ -n "$version" && -x "$(pyenv root)/versions/$version/bin/$RUNTIME_PYTHON" ]]; then
        PATH="$(pyenv root)/versions/$version/bin:$PATH"
    fi
fi
if ! "$RUNTIME_PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1; then
    echo "infra/sam.sh: no working $RUNTIME_PYTHON found (pyenv install 3.13, or put one on PATH)" >&2
    exit 1
fi

# The layer's Makefile builds the wheels of the template parameter `Architecture`, which SAM
# does not pass to a makefile build: take it from --parameter-overrides (Key=Value or
# ParameterKey=Architecture,ParameterValue=Value), else the template's default.
architecture=""
for arg in "$@"; do
    if [[ "$arg" =~ (^|[[:space:],])(Architecture=|ParameterKey=Architecture,ParameterValue=)([a-z0-9_]+) ]]; then
        architecture="${BASH_REMATCH[3]}"
    fi
done
if [[ -z "$architecture" ]]; then
    architecture="$(awk '/^  Architecture:/ {found=1} found && /Default:/ {print $2; exit}' "$ROOT/template.yaml")"
fi
export LAYER_ARCHITECTURE="$architecture"

export PATH
export SAM_CLI_TELEMETRY=0
# Validation and builds need a region but no credentials.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

cd "$ROOT"
exec "$SAM" "$@"
