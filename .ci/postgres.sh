#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1 for the search's distributed-storage tests,
# from nothing every time: a new data folder, a new cluster, a new `search` database, on a free
# port. Runs the server as the `postgres` user when started as root (PostgreSQL refuses root),
# with trust authentication on the loopback interface only.
#
#   env="$(bash .ci/postgres.sh)" || exit 1; eval "$env"   # sets the two variables below
#   bash .ci/postgres.sh --stop "$RESNET_JOB_PGROOT"       # stop it and remove its folder
#
# Prints export lines on stdout and nothing else:
#   RESNET_JOB_POSTGRES_URL  postgresql://postgres@127.0.0.1:<port>/search
#   RESNET_JOB_PGROOT        the server's folder (data, logs, socket), for --stop
# On failure: one sentence on stderr (plus the server log's tail), exit 1, nothing on stdout,
# and nothing left running or on disk.
# Environment: PGPORT (default: a free port; a port given and already taken is refused),
# PGROOT (default: a new `mktemp -d`; one given must be empty or absent), PGBIN (Debian's).
set -euo pipefail

die() { echo "postgres.sh: $*" >&2; exit 1; }

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

find_pgbin() {
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    echo "${PGBIN:-$dir}"
}

# Whether something already listens on 127.0.0.1:$1 (bash's /dev/tcp: no extra tool needed).
port_taken() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A port the kernel reports free right now (bind to port 0). The server may still lose a race
# for it; start_server then retries with another one.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop_server() { # stop_server ROOT: stop the server (if running) and remove the folder
    local root="$1" pgbin
    pgbin="$(find_pgbin)"
    if [ -f "$root/data/postmaster.pid" ] && [ -x "$pgbin/pg_ctl" ]; then
        as_pg "$pgbin/pg_ctl" -D "$root/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
    fi
    rm -rf --one-file-system "$root"
}

if [ "${1:-}" = "--stop" ]; then
    [ -n "${2:-}" ] || die "--stop needs the server's folder (RESNET_JOB_PGROOT)."
    [ -d "$2" ] || exit 0
    stop_server "$2"
    exit 0
fi

PGBIN="$(find_pgbin)"
[ -x "$PGBIN/initdb" ] ||
    die "no PostgreSQL binaries found under /usr/lib/postgresql; install them (apt-get install postgresql) or set PGBIN."

if [ -z "${PGPORT:-}" ]; then
    command -v python3 >/dev/null || die "python3 is needed to pick a free port; install it or set PGPORT."
else
    [[ "$PGPORT" =~ ^[0-9]+$ ]] || die "PGPORT=$PGPORT is not a port number; unset it to use a free port."
    port_taken "$PGPORT" &&
        die "port $PGPORT on 127.0.0.1 is already in use; unset PGPORT to use a free port, or choose another."
fi

if [ -n "${PGROOT:-}" ]; then
    if [ -e "$PGROOT" ] && [ -n "$(ls -A "$PGROOT" 2>/dev/null)" ]; then
        die "PGROOT=$PGROOT is not empty; every run starts from a new folder: unset PGROOT or name an empty one."
    fi
    mkdir -p "$PGROOT"
    PGROOT="$(cd "$PGROOT" && pwd)"
else
    PGROOT="$(mktemp -d /tmp/resnet-job-pg.XXXXXX)"
fi
ROOT="$PGROOT"
started=0
cleanup() { [ "$started" = 1 ] || stop_server "$ROOT"; }
trap cleanup EXIT
[ "$(id -u)" = 0 ] && chown postgres:postgres "$ROOT"
as_pg test -w "$ROOT" ||
    die "$ROOT cannot be written by the server's user (a parent folder is private); unset PGROOT or name a folder under /tmp."
# The server's user may not be able to enter the caller's folder; every path here is absolute.
cd /

as_pg "$PGBIN/initdb" -D "$ROOT/data" -U postgres --auth=trust -E UTF8 >"$ROOT/initdb.log" 2>&1 ||
    { tail -n 20 "$ROOT/initdb.log" >&2; die "initdb failed in $ROOT/data (log above)."; }

# Up to 5 tries with a fresh free port when none was given; once with PGPORT.
tries=1
[ -n "${PGPORT:-}" ] || tries=5
port=""
for ((i = 1; i <= tries; i++)); do
    port="${PGPORT:-$(free_port)}"
    if as_pg "$PGBIN/pg_ctl" -D "$ROOT/data" -l "$ROOT/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $ROOT -c max_connections=200" start >/dev/null 2>&1; then
        break
    fi
    as_pg "$PGBIN/pg_ctl" -D "$ROOT/data" -m immediate stop >/dev/null 2>&1 || true
    port=""
done
if [ -z "$port" ]; then
    tail -n 20 "$ROOT/server.log" >&2 2>/dev/null || true
    die "the PostgreSQL server did not start on 127.0.0.1 after $tries attempt(s) (server log above)."
fi

as_pg "$PGBIN/createdb" -h 127.0.0.1 -p "$port" -U postgres search ||
    die "the server runs on port $port but creating the database 'search' failed."

started=1
echo "export RESNET_JOB_POSTGRES_URL=postgresql://postgres@127.0.0.1:$port/search"
echo "export RESNET_JOB_PGROOT=$ROOT"
