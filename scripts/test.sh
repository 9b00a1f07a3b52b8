#!/usr/bin/env bash
# Set everything up (first time only) and run lint, type check and the whole test suite:
# unit tests, Streamlit AppTests and browser tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/data-dir.sh
scripts/setup.sh --dev
echo "== ruff" && .venv/bin/ruff check core pages tests app.py
echo "== mypy" && .venv/bin/mypy app.py pages core
echo "== pytest"
status=0
.venv/bin/python -m pytest "$@" || status=$?
[ $status = 5 ] && { echo "pytest collected no tests" >&2; exit 1; }
exit $status
