#!/bin/sh
# Initialises PGDATA on first start as the official image does (a superuser named
# POSTGRES_USER with POSTGRES_PASSWORD, a database POSTGRES_DB, password auth over TCP),
# then runs the command. The initialising server listens on a private socket only, so
# `pg_isready` and clients see the database only once it is complete.
set -eu
user="${POSTGRES_USER:-postgres}"
database="${POSTGRES_DB:-$user}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "postgres-entrypoint: POSTGRES_PASSWORD is not set" >&2
    exit 1
  fi
  password_file="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" > "$password_file"
  initdb --username="$user" --pwfile="$password_file" --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 --no-instructions -D "$PGDATA" >/dev/null
  rm -f "$password_file"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [ "$database" != postgres ]; then
    init_socket="$(mktemp -d)"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k $init_socket" -l "$init_socket/log" -w start >/dev/null
    createdb -h "$init_socket" -U "$user" "$database"
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    rm -rf "$init_socket"
  fi
fi
exec "$@"
