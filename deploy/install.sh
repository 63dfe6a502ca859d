#!/usr/bin/env bash
# Install paas on a Debian 12 server, as root (not through sudo, which a
# minimal Debian lacks), from this checkout:
#
#   PAAS_DOMAIN=example.com deploy/install.sh
#
# Installs docker.io, nginx, git and Python's venv; puts paas in a virtual
# environment; writes /etc/paas/paas.env (once, with generated secrets); makes
# the data directory; starts dockerd and nginx if they are not running; runs
# web and agent as systemd services when systemd is PID 1, otherwise starts
# `paas up` in the background (its log rotated daily by logrotate, from cron);
# prints the control-plane URL and, the first time, an API token and the web
# UI's first user: PAAS_ADMIN_USER (admin) with PAAS_ADMIN_PASSWORD, or a
# generated password printed once. Running it again changes nothing; running
# it from newer code upgrades in place (docs/operations.md, "Upgrading").
#
# Any PAAS_* variable set when it first runs is written to paas.env. Where
# things go can be changed for tests: PAAS_PREFIX (/opt/paas), PAAS_ETC_DIR
# (/etc/paas), PAAS_RUN_DIR (/run/paas), PAAS_LOG_FILE (/var/log/paas.log),
# PAAS_LOGROTATE_CONF (/etc/logrotate.d/paas), PAAS_BIN_LINK (/usr/local/bin/paas: the
# `paas` command on root's PATH, a link into the virtual environment).
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX="${PAAS_PREFIX:-/opt/paas}"
ETC="${PAAS_ETC_DIR:-/etc/paas}"
RUN_DIR="${PAAS_RUN_DIR:-/run/paas}"
LOG_FILE="${PAAS_LOG_FILE:-/var/log/paas.log}"
ENV_FILE="$ETC/paas.env"
VENV="$PREFIX/venv"
PAAS="$VENV/bin/paas"
BIN_LINK="${PAAS_BIN_LINK:-/usr/local/bin/paas}"
WEB_USER="${PAAS_WEB_USER-paas}"
NOTIFY_USER="${PAAS_NOTIFY_USER-paas-notify}"  # Apprise runs as this user, on URLs web may have chosen
# Debian's own Python: readable by every user, so the unprivileged web process
# can import its standard library (a Python under /root could not).
PYTHON="${PAAS_PYTHON:-/usr/bin/python3}"

say() { printf '%s\n' "paas-install: $*"; }
die() { printf '%s\n' "paas-install: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and services)"
[ -r /etc/debian_version ] || die "this installer supports Debian 12 (and Ubuntu); see the README for others"

systemd_is_init() { [ "$(cat /proc/1/comm 2>/dev/null)" = "systemd" ]; }

# paas.env is data, never code: a restore brings it from an archive, and this script runs as
# root. Each setting is one PAAS_NAME='value' line, which systemd (EnvironmentFile=), python-
# dotenv (paas's commands) and read_settings below all read as written; nothing here sources it.
setting_line() {  # name value: the setting's line in paas.env
    case "$2" in
        *\'* | *\\* | *$'\n'* | *$'\r'*) die "$1: paas.env cannot hold a value with a quote ('), a backslash or a line break" ;;
    esac
    printf "%s='%s'\n" "$1" "$2"
}
given_settings() {  # every PAAS_* variable given to this run, but those named in $1 (a regex)
    local name
    for name in $(compgen -e | LC_ALL=C sort); do
        [[ "$name" =~ ^PAAS_[A-Z0-9_]+$ ]] && [[ ! "$name" =~ ^($1)$ ]] || continue
        setting_line "$name" "${!name}"
    done
}
read_settings() {  # file: export the PAAS_* settings it holds, each value as written
    local line name value n=0
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        line="${line#"${line%%[![:space:]]*}"}"
        case "$line" in "" | "#"*) continue ;; esac
        line="${line#export }"
        if [[ ! "$line" =~ ^(PAAS_[A-Z0-9_]+)=(.*)$ ]]; then
            say "ignoring line $n of $1: not PAAS_NAME=value"
            continue
        fi
        name="${BASH_REMATCH[1]}"
        value="${BASH_REMATCH[2]}"
        value="${value%"${value##*[![:space:]]}"}"
        # 'value' (as written here) or "value" (as people write it); unquoted, as written
        # before (the whole rest of the line, spaces too)
        if [[ "$value" =~ ^\'(.*)\'$ || "$value" =~ ^\"(.*)\"$ ]]; then value="${BASH_REMATCH[1]}"; fi
        export "$name=$value"
    done <"$1"
}

# $PREFIX/venv -> venvs/<id>, replaced in one rename (a venv from before venvs/ is a directory)
use_venv() {
    if [ -d "$VENV" ] && [ ! -L "$VENV" ]; then rm -rf "$VENV"; fi
    ln -sfn "venvs/$(basename "$1")" "$VENV.new"
    mv -T "$VENV.new" "$VENV"
    echo "$source_id" >"$stamp"
}

pidfile="$RUN_DIR/paas-up.pid"
paas_up_pid() {  # the running `paas up`'s pid, if there is one
    local pid
    pid="$(cat "$pidfile" 2>/dev/null)" && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Stop web and the agent: SIGTERM; the agent finishes its running jobs first
stop_paas() {
    if systemd_is_init; then
        say "stopping paas-web and paas-agent (running deploys finish first)"
        systemctl stop paas-agent paas-web 2>/dev/null || true
        return
    fi
    local pid
    pid="$(paas_up_pid)" || return 0
    say "stopping paas up (pid $pid; running deploys finish first)"
    kill -TERM "$pid"
    # its supervisor waits up to 60 s for web and the agent before it kills them
    for _ in $(seq 1 900); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    die "paas up (pid $pid) did not stop within 90 s"
}

# 1. packages -------------------------------------------------------------------------
need=()
# without systemd's journal, logrotate (run daily by cron) keeps paas's log file in bounds
log_pkgs=""
systemd_is_init || log_pkgs="logrotate cron"
for pkg in docker.io nginx git python3 python3-venv ca-certificates certbot $log_pkgs; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# paas runs on the system's Python, which must be 3.11 or newer (Debian 12 ships 3.11.2)
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "paas needs Python 3.11 or newer; $PYTHON is $("$PYTHON" -V 2>&1) (Debian 12 ships 3.11)"

# 2. the web process's own unprivileged user (it never gets the Docker socket) ------------
if [ -n "$WEB_USER" ] && ! id -u "$WEB_USER" >/dev/null 2>&1; then
    say "creating system user $WEB_USER"
    useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin "$WEB_USER"
fi
# ... and the notification sender's, which can read nothing of paas
if [ -n "$NOTIFY_USER" ] && ! id -u "$NOTIFY_USER" >/dev/null 2>&1; then
    say "creating system user $NOTIFY_USER"
    useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin "$NOTIFY_USER"
fi

# 3. settings, written once -----------------------------------------------------------------
if [ ! -f "$ENV_FILE" ]; then
    say "writing $ENV_FILE"
    mkdir -p "$ETC"
    chmod 0750 "$ETC"
    domain="${PAAS_DOMAIN:-}"
    if [ -z "$domain" ]; then
        ip="$(hostname -I 2>/dev/null | awk '{print $1}')"
        # <ip>.sslip.io resolves to <ip>: apps work before a real domain is set.
        if [ -n "$ip" ]; then domain="${ip}.sslip.io"; else domain="localhost"; fi
    fi
    umask 077
    {
        echo "# paas settings (see docs/settings.md). Written by install.sh."
        setting_line PAAS_DOMAIN "$domain"
        setting_line PAAS_DATA_DIR "${PAAS_DATA_DIR:-/var/lib/paas}"
        setting_line PAAS_WEB_USER "$WEB_USER"
        setting_line PAAS_NOTIFY_USER "$NOTIFY_USER"
        setting_line PAAS_KEYS_DIR "${PAAS_KEYS_DIR:-$ETC/keys}"
        setting_line PAAS_ACME_WEBROOT_DIR "${PAAS_ACME_WEBROOT_DIR:-/var/lib/paas-acme}"
        setting_line PAAS_RUN_DIR "$RUN_DIR"
        setting_line PAAS_ENV_FILE "$ENV_FILE"
        setting_line PAAS_SECRET_KEY "$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(48))')"
        # every other PAAS_* setting given to this first run
        given_settings 'PAAS_(DOMAIN|DATA_DIR|WEB_USER|NOTIFY_USER|KEYS_DIR|ACME_WEBROOT_DIR|SECRET_KEY|PREFIX|ETC_DIR|RUN_DIR|ENV_FILE|LOG_FILE|ADMIN_USER|ADMIN_PASSWORD|BIN_LINK|LOGROTATE_CONF)'
    } >"$ENV_FILE.new"  # whole or not at all: a value refused above leaves no paas.env behind
    mv -f "$ENV_FILE.new" "$ENV_FILE"
    umask 022
    [ -n "$WEB_USER" ] && chgrp "$WEB_USER" "$ETC" "$ENV_FILE" && chmod 0640 "$ENV_FILE"
fi
# an installation from before PAAS_NOTIFY_USER sent notifications as nobody: now as its own user
if [ -n "$NOTIFY_USER" ] && ! grep -q '^PAAS_NOTIFY_USER=' "$ENV_FILE"; then
    setting_line PAAS_NOTIFY_USER "$NOTIFY_USER" >>"$ENV_FILE"
fi
read_settings "$ENV_FILE"
export PAAS_ENV_FILE="$ENV_FILE"  # paas backup puts it in the archive; paas's commands read it
DATA_DIR="${PAAS_DATA_DIR:-/var/lib/paas}"

# off-site copies of the scheduled backups (docs/operations.md, "Backups")
if [ -n "${PAAS_BACKUP_RCLONE_REMOTE:-}" ] && ! command -v "${PAAS_RCLONE_BIN:-rclone}" >/dev/null; then
    say "installing rclone (PAAS_BACKUP_RCLONE_REMOTE is set)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rclone >/dev/null
fi

# 4. the data directory: `paas migrate` (step 7) makes its layout, where the web user may
#    write the database's own directory and nothing else (docs/security.md) ----------
# nginx's workers (www-data) read ACME challenges from here: outside the private data directory
if [ -n "${PAAS_ACME_WEBROOT_DIR:-}" ]; then
    mkdir -p "$PAAS_ACME_WEBROOT_DIR"
    chmod 0755 "$PAAS_ACME_WEBROOT_DIR"
fi

# 5. paas itself, in a virtual environment per source ($PREFIX/venvs/<id>), which $PREFIX/venv
#    points to. A new source is installed beside the running one, which serves on, untouched,
#    until step 8 stops it ----------------------------------------------------------------------
stamp="$PREFIX/installed-from"
previous_id="$(cat "$stamp" 2>/dev/null || true)"
source_id="$(cd "$SRC" && find paas agent web templates migrations pyproject.toml -type f \
    ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
# what `paas --version` shows after the package's version: the commit, or the files' hash
# where the checkout has changes (or is no git checkout)
source_label="s$source_id"
if commit="$(git -C "$SRC" rev-parse --short=12 HEAD 2>/dev/null)" \
    && [ -z "$(git -C "$SRC" status --porcelain --untracked-files=no -- paas agent web templates migrations pyproject.toml 2>/dev/null)" ]; then
    source_label="g$commit"
fi
new_venv="$PREFIX/venvs/$source_id"
upgrade=""  # the version being replaced, when paas was installed from another source
if [ ! -x "$PAAS" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$source_id" ]; then
    if [ -x "$PAAS" ]; then
        upgrade="$("$PAAS" --version 2>/dev/null)" || upgrade=""  # paas 0.2.0+g…; none before 0.2
        upgrade="${upgrade#paas }"
        [ -n "$upgrade" ] \
            || upgrade="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("paas"))')" \
            || upgrade="unknown"
    fi
    # paas-source is written last: without it the venv is half-made (an interrupted run)
    if [ ! -f "$new_venv/paas-source" ]; then
        say "installing paas into $new_venv"
        mkdir -p "$PREFIX/venvs"
        rm -rf "$new_venv"
        "$PYTHON" -m venv "$new_venv"
        "$new_venv/bin/python" -m pip install -qq --disable-pip-version-check "$SRC"
        printf '%s\n' "$source_label" >"$new_venv/paas-source"
    fi
    chmod 0755 "$PREFIX" "$PREFIX/venvs" "$new_venv"
    [ -n "$upgrade" ] || use_venv "$new_venv"
fi
# `paas backup`, `paas doctor`, `paas restore` where the README says: on root's PATH, through
# $VENV (a link itself), so an upgrade's new environment is the one it runs
mkdir -p "$(dirname "$BIN_LINK")"
ln -sfn "$PAAS" "$BIN_LINK"

# 6. dockerd and nginx ------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
    say "starting dockerd"
    if systemd_is_init; then
        systemctl enable --now docker >/dev/null
    else
        nohup dockerd >/var/log/dockerd.log 2>&1 &
    fi
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || die "dockerd did not start (see /var/log/dockerd.log)"
fi
# paas caps BuildKit's build steps (memory, processes) in the cgroup dockerd's cgroupfs driver
# gives them; under the systemd driver (dockerd's default on a cgroup v2 host) it cannot, and
# builds fall back to the classic builder (docs/apps.md, "Builds"). An engine with nothing on it
# yet is switched; one that runs containers is the operator's to restart, when it suits them.
if [ "$(docker info --format '{{.CgroupDriver}}' 2>/dev/null)" = systemd ]; then
    daemon_json=/etc/docker/daemon.json
    if systemd_is_init && [ ! -s "$daemon_json" ] && [ -z "$(docker ps -aq)" ]; then
        say "setting dockerd's cgroup driver to cgroupfs (nothing runs on this engine yet)"
        mkdir -p /etc/docker
        printf '{\n  "exec-opts": ["native.cgroupdriver=cgroupfs"]\n}\n' >"$daemon_json"
        systemctl restart docker || true
        for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
        if ! docker info >/dev/null 2>&1; then
            # dockerd's own flags may already name a driver: as it was, and say so
            rm -f "$daemon_json"
            systemctl restart docker || true
            die "dockerd did not start with $daemon_json (journalctl -u docker); it was removed again"
        fi
    else
        say "note: dockerd uses the systemd cgroup driver, so builds use the classic builder (no RUN --mount);" \
            "add \"exec-opts\": [\"native.cgroupdriver=cgroupfs\"] to $daemon_json and restart dockerd to build with BuildKit"
    fi
fi
# Debian's packaged site claims default_server on port 80; paas has its own, which answers
# unknown hostnames with nothing at all, so the packaged one is switched off (it stays in
# /etc/nginx/sites-available)
if [ -z "${PAAS_NGINX_MAIN_CONF:-}" ] && [ -L /etc/nginx/sites-enabled/default ]; then
    say "disabling nginx's packaged default site (paas answers unknown hostnames itself)"
    rm -f /etc/nginx/sites-enabled/default
fi
nginx_bin="${PAAS_NGINX_BIN:-nginx}"
nginx_args=()
[ -n "${PAAS_NGINX_MAIN_CONF:-}" ] && nginx_args=(-c "$PAAS_NGINX_MAIN_CONF")
if ! "$nginx_bin" "${nginx_args[@]}" -s reload >/dev/null 2>&1; then
    say "starting nginx"
    if systemd_is_init && [ -z "${PAAS_NGINX_MAIN_CONF:-}" ]; then
        systemctl enable --now nginx >/dev/null
    else
        "$nginx_bin" "${nginx_args[@]}"
    fi
fi

# 7. an upgrade stops the old code (its running deploys finish first; apps keep serving: their
#    containers and nginx are left alone), switches to the new and migrates; then the database
#    and the keys that encrypt env values (web user: Fernet and public key only) ---------------
now() { date +%s.%N; }
if [ -n "$upgrade" ]; then
    stopped_at="$(now)"
    stop_paas
    use_venv "$new_venv"
fi
# (`paas up` does the same as it starts: an upgrade without systemd leaves it to it, a second
# sooner back)
if [ -z "$upgrade" ] || systemd_is_init; then
    "$PAAS" migrate >/dev/null
fi

# 8. the services -------------------------------------------------------------------------------
write_if_changed() {  # path, content: write only when different; true if written
    if [ ! -f "$1" ] || [ "$(cat "$1")" != "$2" ]; then printf '%s\n' "$2" >"$1"; return 0; fi
    return 1
}
if systemd_is_init; then
    changed=""
    web_unit="[Unit]
Description=paas web (control plane)
After=network.target

[Service]
EnvironmentFile=$ENV_FILE
User=${WEB_USER:-root}
Group=${WEB_USER:-root}
UMask=0007
ExecStart=$PAAS web
Restart=always
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=$DATA_DIR/db
PrivateTmp=yes

[Install]
WantedBy=multi-user.target"
    agent_unit="[Unit]
Description=paas agent (deploys)
After=network.target docker.service nginx.service
Wants=docker.service nginx.service

[Service]
EnvironmentFile=$ENV_FILE
UMask=0007
ExecStart=$PAAS agent
Restart=always
KillMode=mixed
TimeoutStopSec=900

[Install]
WantedBy=multi-user.target"
    write_if_changed /etc/systemd/system/paas-web.service "$web_unit" && changed=1
    write_if_changed /etc/systemd/system/paas-agent.service "$agent_unit" && changed=1
    if [ -n "$changed" ]; then
        systemctl daemon-reload
        systemctl enable paas-web paas-agent >/dev/null 2>&1
        systemctl restart paas-agent paas-web
    else
        systemctl start paas-agent paas-web
    fi
else
    logrotate_conf="${PAAS_LOGROTATE_CONF:-/etc/logrotate.d/paas}"
    # copytruncate: paas up keeps its log file open
    write_if_changed "$logrotate_conf" "$LOG_FILE {
    daily
    maxsize 50M
    rotate 7
    compress
    delaycompress
    missingok
    notifempty
    copytruncate
}" || true
    if ! grep -qsx cron /proc/[0-9]*/comm; then
        say "starting cron (it runs logrotate daily)"
        cron
    fi
    mkdir -p "$RUN_DIR"
    if pid="$(paas_up_pid)"; then
        say "paas up is already running (pid $pid)"
    else
        say "no systemd: starting paas up in the background (log: $LOG_FILE)"
        nohup "$PAAS" up >>"$LOG_FILE" 2>&1 </dev/null &
        echo $! >"$pidfile"
    fi
fi

# 9. wait until the control plane answers, then say how to use it -----------------------------
web_port="${PAAS_WEB_PORT:-8000}"
"$VENV/bin/python" - "$web_port" <<'PY' || die "the control plane did not become ready (see $LOG_FILE or journalctl -u paas-web)"
import sys, time, httpx
url = f"http://127.0.0.1:{sys.argv[1]}/readyz"
for _ in range(600):
    try:
        if httpx.get(url, timeout=2).status_code == 200:
            sys.exit(0)
    except httpx.HTTPError:
        pass
    time.sleep(0.1)
sys.exit(1)
PY
if [ -n "$upgrade" ]; then
    down="$(awk -v a="$stopped_at" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')"
    say "upgraded paas $upgrade -> $("$PAAS" --version | sed 's/^paas //'): the control plane was unavailable for $down s (apps were not touched)"
    # keep the version just replaced beside the new one; older ones go
    for old in "$PREFIX"/venvs/*; do
        case "$(basename "$old")" in "$source_id" | "$previous_id") ;; *) rm -rf "$old" ;; esac
    done
fi

# 10. HTTPS (on unless PAAS_ACME=off): the control plane's URL is https:// once its certificate
#     is served; the agent asks for it as soon as DNS points here and port 80 answers
acme_off=""
case "$(printf '%s' "${PAAS_ACME:-on}" | tr '[:upper:]' '[:lower:]')" in off | false | no | 0) acme_off=1 ;; esac
why="$(mktemp)"
if [ -n "$acme_off" ]; then
    url="$("$PAAS" admin url 2>/dev/null)"
else
    url="$("$PAAS" admin url --wait 90 2>"$why")"
fi
say "paas is running. Control plane: $url"
if [ -n "$acme_off" ]; then
    say "WARNING: PAAS_ACME=off, so nothing is encrypted: API tokens, web UI passwords and"
    say "WARNING: sessions, and webhook secrets cross the network in clear. The CLI refuses to"
    say "WARNING: send a token to such a URL unless you log in with --insecure."
elif [ "${url#https://}" = "$url" ]; then
    say "HTTPS is not on yet ($(cat "$why")). paas keeps trying every few minutes: point DNS"
    say "for paas.${PAAS_DOMAIN} and *.${PAAS_DOMAIN} here and open ports 80 and 443. Every URL paas"
    say "shows switches to https:// by itself, and \`paas login\` sends no token in clear meanwhile."
fi
rm -f "$why"
token="$("$PAAS" admin create-token admin --if-none)"
if [ -n "$token" ]; then
    say "API token (shown once; keep it safe):"
    echo "$token"
    if [ "${url#https://}" != "$url" ]; then
        say "on your machine: paas login $url --token <the token above>"
    else  # the CLI sends a token in clear only to loopback (or with --insecure): tunnel to it
        say "on your machine, until HTTPS is on, through an SSH tunnel to the control plane:"
        say "  ssh -N -L 8000:127.0.0.1:${web_port} root@<this server> &"
        say "  paas login http://127.0.0.1:8000 --token <the token above>"
        say "(or paas login $url --token <the token above> --insecure: the token then crosses the network in clear)"
    fi
else
    say "an API token was printed by the first install; make another with: $PAAS admin create-token NAME"
fi

# the first web UI user: PAAS_ADMIN_USER (admin) with PAAS_ADMIN_PASSWORD, else a generated
# password shown this once; never a default password, and never written to paas.env
admin_user="${PAAS_ADMIN_USER:-admin}"
admin_password="${PAAS_ADMIN_PASSWORD:-$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(18))')}"
created="$(printf '%s\n' "$admin_password" | "$PAAS" admin create-user "$admin_user" --if-none)" \
    || die "could not create the web UI user $admin_user"
if [ -n "$created" ]; then
    say "web UI: sign in at $url as $admin_user"
    if [ -z "${PAAS_ADMIN_PASSWORD:-}" ]; then
        say "web UI password (shown once; keep it safe):"
        echo "$admin_password"
    fi
fi
