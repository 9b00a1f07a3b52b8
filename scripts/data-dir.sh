# Sourced by run.sh and test.sh (and .ci/run): with a shared datasets folder beside the clone
# (../shared/datasets/<Name>/raw/, as on the team's machines and in CI), use it instead of fetching
# into ./data. A DIGITS_DATA_DIR already set wins.
if [ -z "${DIGITS_DATA_DIR:-}" ] && [ -d ../shared/datasets ]; then
  DIGITS_DATA_DIR="$(cd ../shared/datasets && pwd)"
  export DIGITS_DATA_DIR
fi
