#!/usr/bin/env bash
# A first run of cairn on an embedded default: builds cairn, creates a local repository,
# sample data and a sample plan (cairn.toml plus a conf.d/ fragment per "service"), runs
# the plan (hooks, backup, retention, prune, check), shows status and history, then uses
# the restic-style commands on the same repository: snapshots, restore, ls, diff, check.
# It ends with `cairn daemon` in the foreground: the scheduler and the web UI on
# http://${CAIRN_DEMO_LISTEN:-127.0.0.1:9816}/ over the demo plan, user `admin`, a
# generated password in $demo/web-admin-password (0600). Ctrl-C stops it.
# `--no-serve` (or CI=true) stops after the commands instead, so CI never hangs.
# Everything lives under ${CAIRN_DEMO_DIR:-/tmp/cairn-demo}.
set -euo pipefail
serve=1
for arg in "$@"; do
  case "$arg" in
    --no-serve) serve=0 ;;
    *) echo "usage: $0 [--no-serve]" >&2; exit 2 ;;
  esac
done
[ "${CI:-}" = true ] && serve=0
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
  echo "installing Rust with rustup (https://rustup.rs)"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
cargo build --release -q
cairn="$PWD/target/release/cairn"
demo=${CAIRN_DEMO_DIR:-/tmp/cairn-demo}
rm -rf "$demo"; mkdir -p "$demo/data/etc" "$demo/data/db" "$demo/conf.d"
echo "demo-password" > "$demo/password"
export RESTIC_REPOSITORY="$demo/repo" RESTIC_PASSWORD_FILE="$demo/password"
for i in $(seq 1 200); do echo "setting $i = $RANDOM" > "$demo/data/etc/conf$i.ini"; done
echo "old" > "$demo/data/etc/conf1.ini.bak"
head -c 20000000 /dev/urandom > "$demo/data/db/blob.bin"

# The web UI's admin: a random password readable by its owner only, and its argon2id hash.
listen=${CAIRN_DEMO_LISTEN:-127.0.0.1:9816}
(
  umask 077
  head -c 18 /dev/urandom | base64 | tr -d '/+=\n' > "$demo/web-admin-password"
  "$cairn" web hash-password < "$demo/web-admin-password" > "$demo/web-admin.hash"
)

# The sample plan (see examples/ for real users' setups).
cat > "$demo/cairn.toml" <<EOF
[settings]
state-dir = "$demo/state"
metrics = { textfile = "$demo/metrics/cairn.prom" }

[repositories.local]
url = "$demo/repo"
password-file = "$demo/password"

[plans.nightly]
repository = "local"
sources = ["*"]
schedule = "03:00"
retention = { keep-last = 5, keep-daily = 7, keep-weekly = 4, keep-monthly = 6 }
check = { schedule = "weekly", read-data-subset = "10%" }
max-age = "26h"
hooks = { before = ["echo preparing \$CAIRN_PLAN"], finally = ["echo \$CAIRN_PLAN: \$CAIRN_RESULT \$CAIRN_SNAPSHOT_ID"] }

[settings.web]
listen = "$listen"
users = { admin = { password-hash-file = "$demo/web-admin.hash", role = "admin" } }
EOF
cat > "$demo/conf.d/etc.toml" <<EOF
[sources.etc]
paths = ["$demo/data/etc"]
exclude = ["*.bak"]
EOF
cat > "$demo/conf.d/db.toml" <<EOF
[sources.db]
paths = ["$demo/data/db"]
EOF
export CAIRN_CONFIG="$demo/cairn.toml"

set -x
"$cairn" config check
"$cairn" init
"$cairn" run nightly
first=$("$cairn" snapshots --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
echo "setting 1 = changed" > "$demo/data/etc/conf1.ini"
"$cairn" run nightly
"$cairn" status
"$cairn" history --steps
"$cairn" snapshots
"$cairn" restore latest --target "$demo/restore" --verify
diff -r --exclude='*.bak' "$demo/data" "$demo/restore$demo/data"
"$cairn" ls latest "$demo/data/db" --long
"$cairn" diff "$first" latest
"$cairn" check --read-data
cat "$demo/metrics/cairn.prom" | head -5
set +x
echo "demo OK: repository at $demo/repo (readable by restic with the same password),"
echo "plan config at $demo/cairn.toml; try: CAIRN_CONFIG=$demo/cairn.toml $cairn status"
if [ "$serve" = 0 ]; then
  echo "web UI not started (--no-serve or CI=true); start it with: CAIRN_CONFIG=$demo/cairn.toml $cairn daemon"
  exit 0
fi
echo
echo "web UI: http://$listen/"
echo "  log in as: admin"
echo "  password:  in $demo/web-admin-password (cat it; readable by you only)"
echo "cairn daemon runs the plan on its schedule and serves the UI; Ctrl-C stops it."
exec "$cairn" daemon
