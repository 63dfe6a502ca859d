#!/usr/bin/env bash
# Build a local stand-in for the `python:3.11-slim` image, for machines that
# have no image registry (DESIGN.md, "Testing on these machines").
#
# debootstrap a minimal Debian bookworm with Python, import it into Docker,
# then add what the official image offers user Dockerfiles: `python` and `pip`
# on PATH, pip allowed to install system-wide, and the host's CA bundle so pip
# inside builds reaches the package index. Skipped when the tag already exists.
set -euo pipefail

TAG="${1:-python:3.11-slim}"
CACHE_DIR="${PAAS_CACHE_DIR:-/var/cache/paas-test}"

if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "base image $TAG: present"
    exit 0
fi

# The Debian mirror this machine's apt already uses (never a hard-coded host).
mirror="$(
    { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}';
      grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}'; } \
    | grep -v security | head -n1
)" || true
if [ -z "$mirror" ]; then
    echo "base-image: cannot find a Debian mirror in apt's sources" >&2
    exit 1
fi

mkdir -p "$CACHE_DIR"
rootfs="$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")"
trap 'rm -rf "$rootfs"' EXIT

echo "base image $TAG: debootstrap bookworm from apt's mirror (about a minute)"
debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$CACHE_DIR/debootstrap.log" 2>&1 || {
        tail -n 30 "$CACHE_DIR/debootstrap.log" >&2; exit 1; }

cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
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
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$TAG" >/dev/null
echo "base image $TAG: built"
