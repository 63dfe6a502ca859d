# Sourced by scripts/base-image.sh and scripts/systemd-image.sh: what both do
# to make a local Debian 12 image without a registry.
#
#   image_present TAG WHAT     exit 0 (the caller's script) when TAG is built already
#   debian_rootfs WHAT LOG PACKAGES [SUITE]
#                              debootstrap SUITE (bookworm unless named; minbase) with PACKAGES from the
#                              mirror this machine's apt already uses (never a
#                              hard-coded host) into $rootfs, removed when the
#                              script exits; with the host's CA bundle, so TLS
#                              inside reaches what the host reaches
#   import_rootfs TAG WHAT --change ...
#                              apt's caches dropped, then $rootfs imported as TAG

image_present() {
    if docker image inspect "$1" >/dev/null 2>&1; then
        echo "$2 $1: present"
        exit 0
    fi
}

debian_rootfs() {
    local what="$1" log="$2" packages="$3" suite="${4:-bookworm}" mirror
    mirror="$(
        { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}';
          grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}'; } \
        | grep -v security | head -n1
    )" || true
    [ -n "$mirror" ] || { echo "$what: cannot find a Debian mirror in apt's sources" >&2; exit 1; }

    mkdir -p "$CACHE_DIR"
    rootfs="$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")"
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >"$CACHE_DIR/$log" 2>&1 || {
        tail -n 30 "$CACHE_DIR/$log" >&2; exit 1; }
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
}

import_rootfs() {
    local tag="$1" what="$2"
    shift 2
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import "$@" - "$tag" >/dev/null
    echo "$what $tag: built"
}
