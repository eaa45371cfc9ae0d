#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster on 127.0.0.1 for the search's distributed-storage tests.
# Runs the server as the `postgres` user (CI runs as root; PostgreSQL refuses root), with trust
# authentication on the loopback interface only. Idempotent. Prints an export line on stdout:
#   eval "$(.ci/postgres.sh)"     # sets RESNET_JOB_POSTGRES_URL
# Environment: PGPORT (default 55432), PGROOT (default /tmp/resnet-job-pg), PGBIN (Debian's).
set -euo pipefail
PGPORT="${PGPORT:-55432}"
PGROOT="${PGROOT:-/tmp/resnet-job-pg}"
PGBIN="${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}"
[ -x "$PGBIN/initdb" ] || { echo "postgres.sh: no PostgreSQL binaries (apt-get install postgresql)" >&2; exit 1; }

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

mkdir -p "$PGROOT"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$PGROOT"
if [ ! -f "$PGROOT/data/PG_VERSION" ]; then
  as_pg "$PGBIN/initdb" -D "$PGROOT/data" -U postgres --auth=trust -E UTF8 >"$PGROOT/initdb.log"
fi
if ! as_pg "$PGBIN/pg_ctl" -D "$PGROOT/data" status >/dev/null 2>&1; then
  as_pg "$PGBIN/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGROOT -c max_connections=200" start >/dev/null
fi
if ! as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname='search'" | grep -q 1; then
  as_pg "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres search
fi
RESNET_JOB_POSTGRES_URL="postgresql://postgres@127.0.0.1:$PGPORT/search"
export RESNET_JOB_POSTGRES_URL
echo "export RESNET_JOB_POSTGRES_URL=$RESNET_JOB_POSTGRES_URL"
