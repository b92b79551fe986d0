#!/usr/bin/env bash
# Start a private MariaDB (Debian's package) on a Unix socket in $STATE, no networking,
# root without password over the socket. Stop: kill "$(cat $STATE/mariadb.pid)".
# Prints MYSQL_SOCKET, MYSQL_USER.
set -euo pipefail
STATE=${STATE:?}
mkdir -p "$STATE"
if [ ! -d "$STATE/data" ]; then
  mariadb-install-db --no-defaults --datadir="$STATE/data" --user=root \
    --auth-root-authentication-method=socket --skip-test-db >/dev/null 2>&1
fi
mariadbd --no-defaults --datadir="$STATE/data" --socket="$STATE/mysql.sock" \
  --skip-networking --user=root --pid-file="$STATE/mariadb.pid" --log-error="$STATE/error.log" \
  >"$STATE/mariadbd.out" 2>&1 &
for i in $(seq 1 300); do
  mariadb --no-defaults -S "$STATE/mysql.sock" -u root -e 'SELECT 1' >/dev/null 2>&1 && break
  [ "$i" = 300 ] && { echo "mariadb not ready" >&2; cat "$STATE/error.log" >&2; exit 1; }
  sleep 0.1
done
cat <<OUT
MYSQL_SOCKET=$STATE/mysql.sock
MYSQL_USER=root
OUT
