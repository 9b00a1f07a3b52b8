#!/usr/bin/env bash
# Set everything up (first time only) and start the dashboard: scripts/run.sh [streamlit options]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/data-dir.sh
scripts/setup.sh
exec .venv/bin/streamlit run app.py "$@"
