#!/bin/bash
# kubext's PostgreSQL entrypoint: the official postgres image's contract, on Debian's packages.
# - PGDATA (default /var/lib/postgresql/data): an empty or missing directory is initialised at the
#   first start (initdb), a directory holding PG_VERSION is started as it is.
# - POSTGRES_PASSWORD (required to initialise, unless POSTGRES_HOST_AUTH_METHOD=trust),
#   POSTGRES_USER (default postgres: the superuser), POSTGRES_DB (default POSTGRES_USER),
#   POSTGRES_INITDB_ARGS (extra initdb arguments), POSTGRES_HOST_AUTH_METHOD (default
#   scram-sha-256, for TCP connections from anywhere; local socket connections are trusted).
# - Started as root it makes PGDATA and the socket directory the postgres user's (uid 999), then
#   runs as that user; started as any other uid it runs as that uid (PGDATA must be writable).
# - Any command other than `postgres` (or options, which go to postgres) runs as given: psql,
#   pg_dumpall, pg_restore for the operator's backup and restore Jobs.
set -Eeuo pipefail

log() { printf 'kubext-postgres: %s\n' "$*" >&2; }
: "${PGDATA:=/var/lib/postgresql/data}"
# initdb takes the locale from LANG: UTF8 databases unless the caller says otherwise.
: "${LANG:=C.UTF-8}"
export PGDATA LANG

if [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi
if [ "$1" != postgres ]; then exec "$@"; fi

socket_dir=/var/run/postgresql
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" "$socket_dir"
  chown postgres:postgres "$PGDATA" "$socket_dir"
  chmod 700 "$PGDATA"
  chmod 2775 "$socket_dir"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if ! mkdir -p "$PGDATA" 2>/dev/null || [ ! -w "$PGDATA" ]; then
  log "error: PGDATA $PGDATA is not writable by uid $(id -u) (mount a volume it owns, or start as root)"
  exit 1
fi
chmod 700 "$PGDATA" 2>/dev/null || true
mkdir -p "$socket_dir" 2>/dev/null || true
if [ ! -w "$socket_dir" ]; then
  # A read-only root with a fresh /run: the socket goes to /tmp (TCP is unaffected).
  log "$socket_dir is not writable; the unix socket is in /tmp"
  socket_dir=/tmp
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    log "error: the database is uninitialised and POSTGRES_PASSWORD is not set"
    log "  set POSTGRES_PASSWORD to the superuser's password (or POSTGRES_HOST_AUTH_METHOD=trust)"
    exit 1
  fi
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  args=(--username="$user" --auth-local=trust --auth-host="$auth")
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then args+=(--pwfile=/dev/stdin); fi
  log "initialising $PGDATA (superuser $user, database $db)"
  # The password on a pipe: never in a file or on a command line.
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of words, as in the official image
  printf '%s\n' "${POSTGRES_PASSWORD:-}" | initdb "${args[@]}" ${POSTGRES_INITDB_ARGS:-} >&2
  printf '\n# kubext-postgres: clients from any address, with a password\nhost all all all %s\n' \
    "$auth" >> "$PGDATA/pg_hba.conf"
  printf "\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
  if [ "$db" != postgres ]; then
    printf 'CREATE DATABASE "%s";\n' "${db//\"/\"\"}" \
      | postgres --single -D "$PGDATA" -c unix_socket_directories="$socket_dir" postgres >/dev/null
  fi
  log "initialised"
fi

exec "$@" -c unix_socket_directories="$socket_dir"
