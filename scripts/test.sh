#!/usr/bin/env bash
# Runs cairn's whole test suite on a Debian machine, installing what the tests need first:
# the real restic (our interop oracle), attr (xattr tools), btrfs-progs (snapshot tests on a
# loop device), PostgreSQL and MariaDB (dump tests; private instances on Unix sockets), python3
# (the fault proxy in front of the remote peers, a hostile SFTP server), Chromium and its
# WebDriver (the web UI's end-to-end test),
# and the servers the remote backend tests start on loopback: OpenSSH (SFTP), rclone
# (REST), Garage (S3; built with cargo the first time, about 20 minutes). Called by
# .ci/run. Each test starts and stops its own servers (crates/cairn/tests/it/peers.rs,
# scripts/peers/).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v restic >/dev/null 2>&1 || need+=(restic)
command -v setfattr >/dev/null 2>&1 || need+=(attr)
command -v btrfs >/dev/null 2>&1 || need+=(btrfs-progs)
command -v rclone >/dev/null 2>&1 || need+=(rclone)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v pg_dump >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v python3 >/dev/null 2>&1 || need+=(python3)   # the fault proxy and a hostile SFTP server in the tests
command -v chromedriver >/dev/null 2>&1 || need+=(chromium chromium-driver)   # the web UI test drives headless Chromium
command -v node >/dev/null 2>&1 || need+=(nodejs)   # runs a page script against a fake page in a unit test
command -v unzip >/dev/null 2>&1 || need+=(unzip)   # a second, independent reader of our .zip downloads
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)   # restore-test commands of the examples and the disaster rehearsal
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

export PATH="$HOME/.cargo/bin:$PATH"
if ! garage --version >/dev/null 2>&1; then
  echo "building Garage (S3 server for the tests; once, about 20 minutes)"
  cargo install garage --locked
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace -- --test-threads="${CAIRN_TEST_THREADS:-2}"
