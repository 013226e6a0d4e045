#!/usr/bin/env bash
# Sets up .venv with everything the product and its tests need. Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

# durable_rules 2.0.28 builds and imports on CPython 3.11 and 3.12 only.
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] in ((3,11),(3,12)) else 1)'; then
      PY="$cand"; break
    fi
  done
fi
[ -n "$PY" ] || { echo "setup: need Python 3.11 or 3.12 (durable_rules does not import on 3.13)" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip setuptools wheel grpcio-tools

# The PyPI sdist compiles its C core without -O (its setup.py overwrites CFLAGS); CPPFLAGS is
# appended, and -O2 doubles its throughput. --no-cache-dir keeps pip from reusing an -O0 wheel.
if ! .venv/bin/python -c 'import durable_rules_engine' >/dev/null 2>&1; then
  CPPFLAGS=-O2 .venv/bin/python -m pip install --quiet --no-cache-dir --no-binary durable-rules durable-rules==2.0.28
fi

.venv/bin/python -m pip install --quiet -e '.[test]'
echo "setup: .venv ready ($(.venv/bin/python --version))"
