#!/usr/bin/env bash
# Set up a fresh machine for diffgates: CPU torch (pinned: an unpinned torch pulls GBs of CUDA
# packages), the package itself in editable mode with its test extras, and the simulators the
# hardware-export tests use. Safe to run again: every step skips what is already there.
#   bash scripts/setup.sh          # everything
#   DIFFGATES_NO_APT=1 bash ...    # skip the Debian packages (their tests then skip)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

"$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "torch==2.13.0"
"$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e ".[test]"
# Triton runs the GPU kernels' tests under its interpreter on CPU (it has no torch dependency).
"$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "triton==3.9.0"

if [ -z "${DIFFGATES_NO_APT:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for pkg in iverilog verilator yosys berkeley-abc; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]} (Debian)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
echo "setup: done ($("$PY" -c 'import torch, diffgates; print("torch", torch.__version__, "| diffgates", diffgates.__version__)'))"
