#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite. This is the README's test command and
# what CI runs (.ci/run). Extra arguments go to pytest, e.g. `bash scripts/test.sh -k gates`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m pytest -q "$@"
