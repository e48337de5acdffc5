#!/bin/bash
# Entrypoint of the local MariaDB test image. It mimics the official
# mariadb/mysql images for the variables real Compose stacks use, so the
# backup engine meets the same container environment it meets in production.
set -euo pipefail

# file_env VAR: VAR may be given directly or as VAR_FILE (Docker secrets).
file_env() {
  local var="$1" file_var="${1}_FILE" default="${2:-}"
  if [ -n "${!file_var:-}" ]; then
    export "$var"="$(cat "${!file_var}")"
  elif [ -z "${!var:-}" ]; then
    export "$var"="$default"
  fi
}

# MARIADB_* wins over MYSQL_*, as in the official mariadb image.
for name in ROOT_PASSWORD DATABASE USER PASSWORD ALLOW_EMPTY_PASSWORD ALLOW_EMPTY_ROOT_PASSWORD RANDOM_ROOT_PASSWORD; do
  file_env "MARIADB_${name}"
  file_env "MYSQL_${name}"
  m="MARIADB_${name}"; y="MYSQL_${name}"
  if [ -z "${!m}" ] && [ -n "${!y}" ]; then export "$m"="${!y}"; fi
done
if [ -n "${MARIADB_ALLOW_EMPTY_PASSWORD}" ]; then MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1; fi

DATADIR=/var/lib/mysql
SOCKET=/run/mysqld/mysqld.sock
mkdir -p /run/mysqld "$DATADIR"
chown mysql:mysql /run/mysqld "$DATADIR"

if [ "${1:-mariadbd}" != "mariadbd" ] && [ "${1:-}" != "mysqld" ]; then
  exec "$@"
fi

sql_escape() { printf '%s' "$1" | sed "s/\\\\/\\\\\\\\/g; s/'/\\\\'/g"; }

if [ ! -d "$DATADIR/mysql" ]; then
  if [ -z "$MARIADB_ROOT_PASSWORD" ] && [ -z "$MARIADB_ALLOW_EMPTY_ROOT_PASSWORD" ] && [ -z "$MARIADB_RANDOM_ROOT_PASSWORD" ]; then
    echo >&2 "error: database is uninitialized and password option is not specified"
    echo >&2 "  You need to specify one of MARIADB_ROOT_PASSWORD, MARIADB_ALLOW_EMPTY_ROOT_PASSWORD and MARIADB_RANDOM_ROOT_PASSWORD"
    exit 1
  fi
  if [ -n "$MARIADB_RANDOM_ROOT_PASSWORD" ]; then
    MARIADB_ROOT_PASSWORD="$(head -c 18 /dev/urandom | base64)"
    echo "GENERATED ROOT PASSWORD: $MARIADB_ROOT_PASSWORD"
  fi
  echo "Initializing database in $DATADIR"
  mariadb-install-db --user=mysql --datadir="$DATADIR" --skip-test-db \
    --auth-root-authentication-method=normal --skip-name-resolve >/dev/null
  mariadbd --user=mysql --datadir="$DATADIR" --skip-networking --socket="$SOCKET" &
  pid=$!
  for _ in $(seq 1 60); do
    if mariadb --protocol=socket --socket="$SOCKET" -uroot -e 'SELECT 1' >/dev/null 2>&1; then break; fi
    sleep 0.5
  done
  rootpw="$(sql_escape "$MARIADB_ROOT_PASSWORD")"
  {
    echo "SET @@SESSION.SQL_LOG_BIN=0;"
    echo "DELETE FROM mysql.user WHERE user='' OR host NOT IN ('localhost');"
    echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '${rootpw}';"
    echo "CREATE USER 'root'@'%' IDENTIFIED BY '${rootpw}';"
    echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    if [ -n "$MARIADB_DATABASE" ]; then
      echo "CREATE DATABASE IF NOT EXISTS \`${MARIADB_DATABASE}\`;"
    fi
    if [ -n "$MARIADB_USER" ] && [ -n "$MARIADB_PASSWORD" ]; then
      echo "CREATE USER '${MARIADB_USER}'@'%' IDENTIFIED BY '$(sql_escape "$MARIADB_PASSWORD")';"
      if [ -n "$MARIADB_DATABASE" ]; then
        echo "GRANT ALL ON \`${MARIADB_DATABASE}\`.* TO '${MARIADB_USER}'@'%';"
      fi
    fi
    echo "FLUSH PRIVILEGES;"
  } | mariadb --protocol=socket --socket="$SOCKET" -uroot
  # Shut the bootstrap server down cleanly: the real one must start on a clean datadir.
  kill "$pid"
  wait "$pid" || true
  echo "MariaDB init process done. Ready for start up."
fi

exec mariadbd --user=mysql --datadir="$DATADIR" --socket="$SOCKET" \
  --bind-address=0.0.0.0 --port=3306 --skip-name-resolve "${@:2}"
