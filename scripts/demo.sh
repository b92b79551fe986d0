#!/usr/bin/env bash
# A first run of cairn on an embedded default: builds cairn, creates a local repository
# and sample data, backs it up twice (the second run reuses everything), lists snapshots,
# restores and checks. Everything lives under ${CAIRN_DEMO_DIR:-/tmp/cairn-demo}.
set -euo pipefail
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
rm -rf "$demo"; mkdir -p "$demo/data/etc" "$demo/data/db"
echo "demo-password" > "$demo/password"
export RESTIC_REPOSITORY="$demo/repo" RESTIC_PASSWORD_FILE="$demo/password"
for i in $(seq 1 200); do echo "setting $i = $RANDOM" > "$demo/data/etc/conf$i.ini"; done
head -c 20000000 /dev/urandom > "$demo/data/db/blob.bin"
set -x
"$cairn" init
"$cairn" backup "$demo/data" --tag demo
first=$("$cairn" backup "$demo/data" --tag demo --json | sed -n 's/.*"snapshot_id": *"\([0-9a-f]*\)".*/\1/p')
"$cairn" snapshots
"$cairn" restore latest --target "$demo/restore" --verify
diff -r "$demo/data" "$demo/restore$demo/data"
"$cairn" ls latest "$demo/data/db" --long
echo "setting 1 = changed" > "$demo/data/etc/conf1.ini"
"$cairn" backup "$demo/data" --tag demo
"$cairn" diff "$first" latest
"$cairn" forget --keep-last 2 --prune
"$cairn" check --read-data
set +x
echo "demo OK: repository at $demo/repo (readable by restic with the same password)"
