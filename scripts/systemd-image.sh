#!/usr/bin/env bash
# Build a local Debian 12 image that boots systemd as PID 1, for the test that
# runs install.sh under systemd (tests/integration/test_systemd.py), the way
# scripts/base-image.sh builds the base image: debootstrap from apt's own
# mirror, imported into Docker, with most of what install.sh installs (it adds
# certbot itself, from the same mirror). Skipped when the tag exists.
set -euo pipefail

TAG="${1:-paas-test/debian-systemd:12}"
CACHE_DIR="${PAAS_CACHE_DIR:-/var/cache/paas-test}"

if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "systemd image $TAG: present"
    exit 0
fi

mirror="$(
    { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}';
      grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}'; } \
    | grep -v security | head -n1
)" || true
[ -n "$mirror" ] || { echo "systemd-image: cannot find a Debian mirror in apt's sources" >&2; exit 1; }

mkdir -p "$CACHE_DIR"
rootfs="$(mktemp -d "$CACHE_DIR/systemd-rootfs.XXXXXX")"
trap 'rm -rf "$rootfs"' EXIT

echo "systemd image $TAG: debootstrap bookworm with systemd (a few minutes)"
debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,procps,iproute2,docker.io,nginx,git,python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$CACHE_DIR/debootstrap-systemd.log" 2>&1 || {
        tail -n 30 "$CACHE_DIR/debootstrap-systemd.log" >&2; exit 1; }

cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
# no site on port 80 (paas writes its own, on the ports the test gives it); the host's engine
# is used through its socket: no dockerd or containerd of its own; nor
# what a container lacks
for unit in docker.service docker.socket containerd.service systemd-udevd.service \
    systemd-udevd-control.socket systemd-udevd-kernel.socket getty@tty1.service \
    console-getty.service systemd-logind.service; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
rm -f "$rootfs/etc/nginx/sites-enabled/default"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

tar -C "$rootfs" -c . | docker import \
    --change 'ENV container=docker' \
    --change 'CMD ["/sbin/init"]' \
    - "$TAG" >/dev/null
echo "systemd image $TAG: built"
