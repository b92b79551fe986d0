#!/usr/bin/env bash
# Builds a static cairn for any x86_64 Linux: a release build for x86_64-unknown-linux-musl
# (no glibc, no shared libraries: copy the one file anywhere, or into a container image,
# see Containerfile). Installs the Rust target with rustup and musl-gcc (Debian's
# musl-tools, for the C parts: SQLite, zstd, ring) when missing. Checks the result is
# static and prints its path on the last line. Not run in CI (a second full release build).
#
# musl's allocator is slower than glibc's under many threads: prefer the glibc build (the
# .deb, `cargo install`) where glibc is available.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
triple=x86_64-unknown-linux-musl
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust with https://rustup.rs first" >&2
  exit 1
fi
if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
  rustup target add "$triple"
fi
if ! command -v musl-gcc >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  echo "installing musl-tools (musl-gcc)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq musl-tools file >/dev/null
fi
# The C dependencies (SQLite, zstd, ring) compiled by musl-gcc; the Rust linker with musl's
# own static C runtime (the target's default: crt-static).
export CC_x86_64_unknown_linux_musl=musl-gcc
# A file to copy around: symbols kept (named backtraces), no debug info (the release
# profile's line tables would triple its size).
export CARGO_PROFILE_RELEASE_DEBUG=none CARGO_PROFILE_RELEASE_STRIP=debuginfo
cargo build --release --locked -p cairn --target "$triple"
bin="${CARGO_TARGET_DIR:-target}/$triple/release/cairn"
[ -x "$bin" ] || { echo "no binary at $bin" >&2; exit 1; }

description=$(file -b "$bin")
echo "file: $description"
case "$description" in
  *"statically linked"*|*"static-pie linked"*) ;;
  *) echo "$bin is not static: $description" >&2; exit 1 ;;
esac
if ldd_out=$(ldd "$bin" 2>&1); then
  case "$ldd_out" in
    *"not a dynamic executable"*|*"statically linked"*) ;;
    *) echo "$bin links shared libraries: $ldd_out" >&2; exit 1 ;;
  esac
fi
echo "ldd: ${ldd_out:-}"
"$bin" --version
echo "size: $(du -h "$bin" | cut -f1) ($(stat -c %s "$bin") bytes)"
echo "$bin"
