#!/usr/bin/env bash
# Start a private PostgreSQL (Debian's package) on a Unix socket in $STATE (no TCP), as
# the postgres user, trust authentication. Stop: kill "$(head -1 $STATE/data/postmaster.pid)".
# Prints PG_HOST (socket dir), PG_PORT, PG_USER.
set -euo pipefail
STATE=${STATE:?}
PORT=${PG_PORT:-5432}
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
mkdir -p "$STATE"
chmod 0777 "$STATE"
chmod o+x "$(dirname "$STATE")"   # the postgres user must reach it
if [ ! -d "$STATE/data" ]; then
  su postgres -s /bin/sh -c "$BIN/initdb -D '$STATE/data' -A trust -U postgres" >/dev/null
fi
su postgres -s /bin/sh -c "$BIN/pg_ctl -D '$STATE/data' -l '$STATE/log' -w -o \"-p $PORT -k '$STATE' -c listen_addresses=''\" start" >/dev/null
head -1 "$STATE/data/postmaster.pid" > "$STATE/postgres.pid"
cat <<OUT
PG_HOST=$STATE
PG_PORT=$PORT
PG_USER=postgres
OUT
