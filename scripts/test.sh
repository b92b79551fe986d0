#!/usr/bin/env bash
# Runs cairn's whole test suite on a Debian machine, installing what the tests need first:
# the real restic (our interop oracle), attr (xattr tools), btrfs-progs (snapshot tests on a
# loop device), PostgreSQL and MariaDB (dump tests; private instances on Unix sockets), python3
# (the fault proxy in front of the remote peers, a hostile SFTP server), Chromium and its
# WebDriver (the web UI's end-to-end test),
# Nix (the NixOS module evaluated against a stub), man-db, bash-completion, zsh and fish (the
# Debian package's man pages and completions, scripts/test-deb.sh),
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
command -v nix-instantiate >/dev/null 2>&1 || need+=(nix-bin)   # evaluates the NixOS module (nix/) against a stub
command -v man >/dev/null 2>&1 || need+=(man-db)   # the Debian package's man pages (scripts/test-deb.sh)
command -v groff >/dev/null 2>&1 || need+=(groff-base)
[ -f /usr/share/bash-completion/bash_completion ] || need+=(bash-completion)   # the package's completions, as shells load them
command -v zsh >/dev/null 2>&1 || need+=(zsh)
command -v fish >/dev/null 2>&1 || need+=(fish)
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
# The Debian package of the test build, installed, checked and purged (needs root: CI's).
if [ "$(id -u)" = 0 ]; then
  bash scripts/test-deb.sh
else
  echo "scripts/test-deb.sh skipped: it installs a package and needs root"
fi
