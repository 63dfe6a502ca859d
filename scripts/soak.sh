#!/usr/bin/env bash
# The disk soak (benchmarks/soak.py): 100 deploys of a small app with paas's
# default retention, printing every 10 what paas leaves on disk (its images,
# the engine's use, container logs, the data directory). Each must level off.
# Not part of the tests or of CI.
#
#   scripts/soak.sh [--deploys N] [--every N] [--cleanup-seconds S] [--build-cache-max SIZE]
#
# BuildKit's cache is one of the columns: the clean-up (every 60 s here, hourly in
# production) trims it to --build-cache-max (64m here, PAAS_BUILD_CACHE_MAX).
#
# As root on Debian 12, like scripts/bench.sh, which it follows: scripts/test.sh
# installs and starts what it needs (dockerd, nginx, the local base image, .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test.sh --collect-only -q >/dev/null
# `paas up` runs web as nobody, which must import the code: test.sh made a readable copy
# where this checkout is not (a clone under /root, say)
if [ "$(id -u)" -eq 0 ] && ! runuser -u nobody -- .venv/bin/python -c 'import web.app' 2>/dev/null; then
    cd /var/tmp/paas-test-checkout
fi
exec .venv/bin/python -m benchmarks.soak "$@"
