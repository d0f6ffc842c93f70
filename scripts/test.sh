#!/usr/bin/env bash
# Installs what the tests need when it is missing, then runs every test.
#   - SIPp (Debian package sip-tester) for the scenario tests in sipp-scenarios/
#   - pjsua2 (PyPI pjsua2-python) in a local venv (.venv/) for the softphone interop tests
# Run as root on Debian/Ubuntu for the apt-get step (CI does); elsewhere install SIPp yourself.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v sipp >/dev/null 2>&1; then
  echo "== installing SIPp (sip-tester)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester >/dev/null
  fi
fi

# jemalloc (the release allocator) is built from C: it needs make besides the C compiler.
if ! command -v make >/dev/null 2>&1; then
  echo "== installing make"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make >/dev/null
  fi
fi

if [ -f tests/interop/requirements.txt ]; then
  if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import pjsua2' 2>/dev/null; then
    echo "== installing pjsua2 into .venv"
    python3 -m venv .venv
    .venv/bin/pip install -q -r tests/interop/requirements.txt
  fi
  export HANDOVER_PYTHON="$PWD/.venv/bin/python"
fi

# In the test suite a missing SIPp or pjsua2 is a failure, not a skip.
export HANDOVER_REQUIRE_SIPP=1
export HANDOVER_REQUIRE_PJSUA=1
cargo test --all-targets
