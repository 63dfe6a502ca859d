#!/usr/bin/env bash
# Build local stand-ins for the official database images paas runs, for
# machines that have no image registry (docs/databases.md, "Images").
#
#   scripts/db-images.sh postgres:15-bookworm   PostgreSQL 15 from bookworm
#   scripts/db-images.sh postgres:17-bookworm   PostgreSQL 17 from trixie (bookworm
#                                               has no 17); its tag is the official
#                                               name paas asks for
#   scripts/db-images.sh redis:7.0-bookworm     Redis 7.0 from bookworm
#
# Each honours the part of the official image's contract paas uses, and no
# more (read from docker-library/postgres and docker-library/redis):
#   postgres: POSTGRES_PASSWORD / POSTGRES_USER / POSTGRES_DB read on the first
#     start only, the data in PGDATA=/var/lib/postgresql/data, initdb with the
#     password (scram-sha-256 over TCP, trust on the container's own socket),
#     listen_addresses '*', the server run as user postgres from an entrypoint
#     started as root; psql, pg_dump, pg_dumpall,
#     pg_restore and pg_isready on PATH.
#   redis: redis-server and redis-cli on PATH, user redis owning /data (the
#     working directory), CMD redis-server.
# (`docker import` cannot set STOPSIGNAL; paas stops postgres with SIGINT
# itself, the official image's choice.) Skipped when the tag already exists.
set -euo pipefail

TAG="${1:?usage: db-images.sh postgres:15-bookworm|postgres:17-bookworm|redis:7.0-bookworm}"
CACHE_DIR="${PAAS_CACHE_DIR:-/var/cache/paas-test}"
# shellcheck source=scripts/debian-rootfs.sh
. "$(dirname "$0")/debian-rootfs.sh"

image_present "$TAG" "database image"

postgres_entrypoint() {  # the official entrypoint's behaviour, as far as paas relies on it
    cat >"$rootfs/usr/local/bin/docker-entrypoint.sh" <<'ENTRY'
#!/bin/sh
# Stand-in for docker-library/postgres's docker-entrypoint.sh (paas tests only).
set -eu
if [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi
if [ "$1" != postgres ]; then exec "$@"; fi
: "${PGDATA:=/var/lib/postgresql/data}"
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    chmod 3777 /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    user="${POSTGRES_USER:-postgres}"
    db="${POSTGRES_DB:-$user}"
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "Error: Database is uninitialized and superuser password is not specified." >&2
        exit 1
    fi
    umask 077
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb --username="$user" --pwfile="$pwfile" -D "$PGDATA" --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
    if [ "$db" != postgres ]; then
        printf 'CREATE DATABASE "%s";\n' "$db" | postgres --single -D "$PGDATA" postgres >/dev/null
    fi
    echo "PostgreSQL init process complete; ready for start up."
fi
exec "$@"
ENTRY
    chmod 755 "$rootfs/usr/local/bin/docker-entrypoint.sh"
}

case "$TAG" in
postgres:15-bookworm | postgres:17-bookworm)
    major="${TAG#postgres:}"
    major="${major%%-*}"
    suite=bookworm
    [ "$major" = 17 ] && suite=trixie
    echo "database image $TAG: debootstrap $suite with postgresql-$major (a minute or two)"
    debian_rootfs db-image "debootstrap-postgres-$major.log" "postgresql-$major,ca-certificates" "$suite"
    # Debian's package made a cluster of its own: the image starts empty, as the official one
    rm -rf "$rootfs/var/lib/postgresql/$major" "$rootfs/etc/postgresql/$major"
    sed -ri "s/^#?listen_addresses\s*=\s*\S+.*/listen_addresses = '*'/" \
        "$rootfs/usr/share/postgresql/$major/postgresql.conf.sample"
    mkdir -p "$rootfs/var/lib/postgresql/data"
    chroot "$rootfs" chown -R postgres:postgres /var/lib/postgresql
    chmod 1777 "$rootfs/var/lib/postgresql/data"
    postgres_entrypoint
    import_rootfs "$TAG" "database image" \
        --change "ENV PATH=/usr/lib/postgresql/$major/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --change "ENV PG_MAJOR=$major" \
        --change 'ENV PGDATA=/var/lib/postgresql/data' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'EXPOSE 5432' \
        --change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
        --change 'CMD ["postgres"]'
    ;;
redis:7.0-bookworm)
    echo "database image $TAG: debootstrap bookworm with redis-server (about a minute)"
    debian_rootfs db-image debootstrap-redis.log "redis-server,redis-tools,ca-certificates"
    mkdir -p "$rootfs/data"
    chroot "$rootfs" chown redis:redis /data
    import_rootfs "$TAG" "database image" \
        --change 'ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'WORKDIR /data' \
        --change 'EXPOSE 6379' \
        --change 'CMD ["redis-server"]'
    ;;
*)
    echo "db-images.sh: no stand-in for $TAG (postgres:15-bookworm, postgres:17-bookworm, redis:7.0-bookworm)" >&2
    exit 2
    ;;
esac
