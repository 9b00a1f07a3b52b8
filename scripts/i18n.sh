#!/usr/bin/env bash
# Refresh the message catalogs after editing user-facing strings: extract every marked message into
# locales/messages.pot, then merge it into each language's messages.po (new messages arrive empty,
# for a translator to fill). `scripts/i18n.sh init fr` starts a new language. No compile step: the app
# reads the .po files at start-up (core/i18n.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PYBABEL=.venv/bin/pybabel
$PYBABEL extract -F babel.cfg -k N_ --no-wrap --sort-by-file --project "MNIST Lab" \
  --copyright-holder "MNIST Lab" --omit-header -o locales/messages.pot .
if [ "${1:-}" = init ]; then
  $PYBABEL init --no-wrap -i locales/messages.pot -d locales -l "$2"
else
  $PYBABEL update --no-wrap --no-fuzzy-matching --ignore-obsolete -i locales/messages.pot -d locales
fi
