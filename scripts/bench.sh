#!/usr/bin/env bash
# The benchmark suite (benchmarks/__main__.py): deploys, rollback, memory and
# webhooks measured beside their floors on this machine, several runs each.
# Not part of the tests or of CI's pass/fail.
#
#   scripts/bench.sh [--runs N] [--webhooks N]
#
# As root on Debian 12, like scripts/test.sh, which it uses to install and
# start what it needs (dockerd, nginx, the local python:3.11-slim, .venv).
# Writes benchmarks/results/<date>.md and latest.md, and the table in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
here="$PWD"
scripts/test.sh --collect-only -q >/dev/null
# `paas up` runs web as nobody, which must import the code: test.sh made a readable copy
# where this checkout is not (a clone under /root, say)
if [ "$(id -u)" -eq 0 ] && ! runuser -u nobody -- .venv/bin/python -c 'import web.app' 2>/dev/null; then
    cd /var/tmp/paas-test-checkout
fi
exec .venv/bin/python -m benchmarks --out "$here/benchmarks/results" --readme "$here/docs/benchmarks.md" "$@"
