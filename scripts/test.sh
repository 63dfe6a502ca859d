#!/usr/bin/env bash
# The test command: installs what the tests need, starts it, runs everything.
#
#   scripts/test.sh [pytest args...]
#
# Needs root on Debian 12 (apt-get, dockerd). Installs docker.io, nginx, git,
# debootstrap, certbot, pebble (Let's Encrypt's test CA), chromium (the UI's
# browser tests drive it with Playwright) and rclone (off-site backups) if missing, starts
# dockerd in the background if no engine answers, builds the local
# python:3.11-slim image once (cached), creates
# .venv from /usr/bin/python3 (what install.sh uses) with paas and its test
# and dev extras, then runs ruff, mypy and lint-imports (the layering contracts in
# pyproject.toml), the unit tests, and the integration
# suite against the real Docker engine, nginx and git, stopping at the first
# of these that fails. With arguments, it runs pytest with them instead.
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022  # the unprivileged web user of the tests reads the code and the venv

log() { printf '\n== %s\n' "$*"; }

# 1. system packages ----------------------------------------------------------------
need=()
for pkg in docker.io nginx git debootstrap ca-certificates python3-venv certbot pebble chromium fonts-dejavu-core \
    iproute2 rclone; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    log "installing ${need[*]}"
    # Do not let package scripts start services (a system nginx on port 80):
    # the tests run their own, on loopback ports only.
    policy=/usr/sbin/policy-rc.d
    created_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    [ -n "$created_policy" ] && rm -f "$policy"
fi

# 2. the Python environment ---------------------------------------------------------------
log "python environment"
# The interpreter install.sh builds its venv from (Debian 12's Python 3.11.2),
# never whatever python3 is first on PATH: the tests run what users run.
PYTHON=/usr/bin/python3
if [ -x .venv/bin/python ] && [ "$(readlink -f .venv/bin/python)" != "$(readlink -f "$PYTHON")" ]; then
    log "recreating .venv: it was made from $(readlink -f .venv/bin/python), not $PYTHON"
    rm -rf .venv
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "paas needs Python 3.11 or newer; $PYTHON is $("$PYTHON" -V 2>&1)" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -qq --disable-pip-version-check -e '.[test,dev]'

# As root, `paas up` runs web as nobody: it must be able to import this checkout. Where a
# parent directory keeps others out (a clone under /root, say), run from a readable copy.
if [ "$(id -u)" -eq 0 ] && ! runuser -u nobody -- .venv/bin/python -c 'import web.app' 2>/dev/null; then
    copy=/var/tmp/paas-test-checkout
    log "user nobody cannot import $PWD: running the tests from a copy in $copy"
    rm -rf "$copy"
    mkdir -p "$copy"
    tar -C . --exclude=./.venv -cf - . | tar -C "$copy" -xf -
    chmod -R a+rX "$copy"
    exec "$copy/scripts/test.sh" "$@"
fi

# 3. the fast lane: linters and unit tests, before any engine is started ------------------
# (a type error is found in a minute, not after dockerd, nginx and a base image)
if [ "$#" -eq 0 ]; then
    log "linters"
    .venv/bin/python -m ruff check .
    .venv/bin/python -m ruff format --check .
    .venv/bin/python -m mypy paas agent web
    .venv/bin/lint-imports  # the layering: pyproject.toml's [tool.importlinter]
    log "unit tests"
    .venv/bin/python -m pytest tests/unit -p no:cacheprovider -n auto  # one worker per core
fi

# 4. a Docker engine ------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
    log "starting dockerd"
    mkdir -p /var/log
    nohup dockerd >/var/log/paas-test-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { tail -n 30 /var/log/paas-test-dockerd.log >&2; exit 1; }
fi

# 5. the base image user Dockerfiles name, and the database images paas runs --------------
log "base image"
scripts/base-image.sh python:3.11-slim
log "database images"
for image in postgres:15-bookworm postgres:17-bookworm redis:7.0-bookworm; do
    scripts/db-images.sh "$image"
done

# 6. the tests ----------------------------------------------------------------------------
if [ "$#" -gt 0 ]; then  # what the caller named, as pytest takes it
    log "tests: $*"
    exec .venv/bin/python -m pytest "$@"
fi
log "integration tests"
exec .venv/bin/python -m pytest tests/integration
