#!/usr/bin/env bash
# Build a local Debian 12 image that boots systemd as PID 1, for the test that
# runs install.sh under systemd (tests/integration/test_systemd.py), the way
# scripts/base-image.sh builds the base image: debootstrap from apt's own
# mirror, imported into Docker, with most of what install.sh installs (it adds
# certbot itself, from the same mirror). Skipped when the tag exists.
set -euo pipefail

TAG="${1:-paas-test/debian-systemd:12}"
CACHE_DIR="${PAAS_CACHE_DIR:-/var/cache/paas-test}"
# shellcheck source=scripts/debian-rootfs.sh
. "$(dirname "$0")/debian-rootfs.sh"

image_present "$TAG" "systemd image"
echo "systemd image $TAG: debootstrap bookworm with systemd (a few minutes)"
debian_rootfs systemd-image debootstrap-systemd.log \
    systemd,systemd-sysv,dbus,procps,iproute2,docker.io,nginx,git,python3,python3-venv,ca-certificates

# no site on port 80 (paas writes its own, on the ports the test gives it); the host's engine
# is used through its socket: no dockerd or containerd of its own; nor
# what a container lacks
for unit in docker.service docker.socket containerd.service systemd-udevd.service \
    systemd-udevd-control.socket systemd-udevd-kernel.socket getty@tty1.service \
    console-getty.service systemd-logind.service; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
rm -f "$rootfs/etc/nginx/sites-enabled/default"

import_rootfs "$TAG" "systemd image" \
    --change 'ENV container=docker' \
    --change 'CMD ["/sbin/init"]'
