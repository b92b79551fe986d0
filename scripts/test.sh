#!/usr/bin/env bash
# Runs cairn's whole test suite on a Debian machine, installing what the tests need first:
# the real restic (our interop oracle) and attr (xattr tools). Called by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v restic >/dev/null 2>&1 || need+=(restic)
command -v setfattr >/dev/null 2>&1 || need+=(attr)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  echo "installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust with https://rustup.rs first" >&2
  exit 1
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace -- --test-threads="${CAIRN_TEST_THREADS:-2}"
