#!/bin/bash
# Entrypoint of the local PostgreSQL test image, mimicking the official
# postgres image: POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB /
# POSTGRES_HOST_AUTH_METHOD / POSTGRES_INITDB_ARGS, *_FILE variants, and data
# in /var/lib/postgresql/data. First start initialises; later starts reuse.
set -euo pipefail

file_env() {
  local var="$1" file_var="${1}_FILE" default="${2:-}"
  if [ -n "${!file_var:-}" ]; then
    export "$var"="$(cat "${!file_var}")"
  elif [ -z "${!var:-}" ]; then
    export "$var"="$default"
  fi
}
file_env POSTGRES_PASSWORD
file_env POSTGRES_USER postgres
file_env POSTGRES_DB "$POSTGRES_USER"
file_env POSTGRES_INITDB_ARGS
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
AUTH="${POSTGRES_HOST_AUTH_METHOD:-}"

as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

if [ "${1:-postgres}" != "postgres" ]; then
  exec "$@"
fi

mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "$POSTGRES_PASSWORD" ] && [ "$AUTH" != "trust" ]; then
    cat >&2 <<'MSG'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".
       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
       connections without a password. This is *not* recommended.
MSG
    exit 1
  fi
  pwargs=()
  if [ -n "$POSTGRES_PASSWORD" ]; then
    # A file, not argv: the password must not show in the process list.
    pwfile="$(mktemp)"
    printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
    chown postgres "$pwfile"
    pwargs=(--pwfile="$pwfile")
  fi
  # shellcheck disable=SC2086
  as_postgres initdb --username="$POSTGRES_USER" "${pwargs[@]}" $POSTGRES_INITDB_ARGS >/dev/null
  rm -f "${pwfile:-}"
  method="${AUTH:-scram-sha-256}"
  printf '\nhost all all all %s\n' "$method" >> "$PGDATA/pg_hba.conf"
  as_postgres pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  if [ "$POSTGRES_DB" != "postgres" ]; then
    as_postgres psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
      -c "CREATE DATABASE \"$POSTGRES_DB\";" >/dev/null
  fi
  as_postgres pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "PostgreSQL init process complete; ready for start up."
fi

exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$PGDATA" -c listen_addresses='*' "${@:2}"
