#!/usr/bin/env bash
# Build a local stand-in for the `python:3.11-slim` image, for machines that
# have no image registry (ARCHITECTURE.md, "How testing works").
#
# debootstrap a minimal Debian bookworm with Python, import it into Docker,
# then add what the official image offers user Dockerfiles: `python` and `pip`
# on PATH, pip allowed to install system-wide, and the host's CA bundle so pip
# inside builds reaches the package index. Skipped when the tag already exists.
set -euo pipefail

TAG="${1:-python:3.11-slim}"
CACHE_DIR="${PAAS_CACHE_DIR:-/var/cache/paas-test}"
# shellcheck source=scripts/debian-rootfs.sh
. "$(dirname "$0")/debian-rootfs.sh"

image_present "$TAG" "base image"
echo "base image $TAG: debootstrap bookworm from apt's mirror (about a minute)"
debian_rootfs base-image debootstrap.log python3,python3-venv,python3-pip,ca-certificates

rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
mkdir -p "$rootfs/etc"
cat >"$rootfs/etc/pip.conf" <<'PIPCONF'
[global]
cert = /etc/ssl/certs/ca-certificates.crt
disable-pip-version-check = true
root-user-action = ignore
PIPCONF

import_rootfs "$TAG" "base image" \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]'
