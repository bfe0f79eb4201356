#!/usr/bin/env bash
# Installs the AWS SAM CLI into its own virtual environment, .tools/sam (git-ignored).
# It is kept out of .venv on purpose: aws-sam-cli pins pydantic and boto3, which would
# fight the project's own pins. Idempotent: does nothing when the pinned version is there.
# Usage: bash infra/install-sam.sh     (then run SAM through infra/sam.sh)
set -euo pipefail

SAM_VERSION="${SAM_VERSION:-1.170.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.tools/sam"
PYTHON="${SAM_PYTHON:-python3}"

installed="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("aws-sam-cli"))' 2>/dev/null || true)"
if [[ "$installed" == "$SAM_VERSION" && -x "$VENV/bin/sam" ]]; then
    echo "aws-sam-cli $SAM_VERSION already installed in $VENV"
    exit 0
fi

echo "Installing aws-sam-cli $SAM_VERSION into $VENV (found: ${installed:-none})"
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "aws-sam-cli==$SAM_VERSION"
SAM_CLI_TELEMETRY=0 "$VENV/bin/sam" --version
