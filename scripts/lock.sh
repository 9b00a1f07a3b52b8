#!/usr/bin/env bash
# Regenerate the hash-locked package lists from the human-edited ones:
#   requirements.txt                      -> requirements.lock      (what scripts/run.sh installs)
#   requirements.txt requirements-dev.txt -> requirements-dev.lock  (what scripts/test.sh adds)
# Every package, dependencies included, pinned with its sha256 hashes from PyPI, resolved for Linux x86_64 and
# Python 3.11 (the .venv's). Versions already in a lock are kept unless the .txt asks otherwise; to move every
# dependency to its newest allowed version: scripts/lock.sh --upgrade. uv runs from a throw-away venv, not .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
tools=${TMPDIR:-/tmp}/mnist-lab-lock-tools
if [ "$("$tools/bin/uv" --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet "uv==$UV_VERSION"
fi
compile() {
  "$tools/bin/uv" pip compile --quiet --generate-hashes --python-version 3.11 \
    --python-platform x86_64-unknown-linux-gnu --index-url https://pypi.org/simple \
    --custom-compile-command scripts/lock.sh "$@"
}
compile requirements.txt -o requirements.lock "${@}"
# The test tools on top of the same versions: requirements.lock is a constraint of the dev lock.
compile requirements.txt requirements-dev.txt -c requirements.lock -o requirements-dev.lock "${@}"
echo "requirements.lock: $(grep -c '^[a-z]' requirements.lock) packages;" \
  "requirements-dev.lock: $(grep -c '^[a-z]' requirements-dev.lock) packages"
