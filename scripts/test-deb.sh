#!/usr/bin/env bash
# CI check of the Debian package, on a Debian machine as root: packages the test build
# (dev profile, already built by `cargo test`: no release build) with scripts/build-deb.sh,
# installs it with `apt-get install ./cairn_*.deb` from a clean temporary directory, checks
# what the package promises — `cairn --version`, `man cairn` and a page per command, bash
# (and zsh, fish) completions, the `cairn` system user, the modes of /etc/cairn and
# /var/lib/cairn, the config readable by the daemon's user, the unit accepted by
# `systemd-analyze verify` and neither enabled nor running — reinstalls it (postinst runs
# again), then purges it and checks the machine is as it was. Every miss is listed; any
# miss exits 1. Refuses to run where a cairn package, user or /etc/cairn already exists.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
die() { echo "test-deb: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "installs a package: run it as root"
dpkg -s cairn >/dev/null 2>&1 && die "a cairn package is installed already; this test would remove it"
getent passwd cairn >/dev/null && die "a user cairn exists already; this test's purge would delete it"
[ -e /etc/cairn ] && die "/etc/cairn exists already; this test's purge would change it"
command -v man >/dev/null 2>&1 || die "man not found: apt-get install man-db groff-base"

deb=$(scripts/build-deb.sh --profile dev --fast | tail -n 1)
[ -f "$deb" ] || die "scripts/build-deb.sh produced no package"
echo "test-deb: package $deb ($(du -h "$deb" | cut -f1))"

tmp=$(mktemp -d)
installed=0
# State and cache of cairn run as root before (its default directories; earlier tests):
# kept aside, and put back after the purge.
saved=()
for d in /var/lib/cairn /var/cache/cairn; do
  if [ -e "$d" ]; then
    mkdir -p "$tmp/saved$(dirname "$d")"
    mv "$d" "$tmp/saved$d"
    saved+=("$d")
  fi
done
cleanup() {
  if [ "$installed" = 1 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq cairn >/dev/null 2>&1 || true
  fi
  for d in "${saved[@]}"; do
    rm -rf "$d"
    mv "$tmp/saved$d" "$d"
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
cp "$deb" "$tmp/"
failures=()
fail() { failures+=("$*"); echo "FAIL: $*" >&2; }
check() {
  local what=$1 out; shift
  if ! out=$("$@" 2>&1); then fail "$what ($*): $out"; fi
}
modes() { stat -c '%a %U %G' "$1" 2>/dev/null || echo missing; }
expect_mode() { local got; got=$(modes "$1"); [ "$got" = "$2" ] || fail "$1: $got, expected $2"; }

(cd "$tmp" && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ./"$(basename "$deb")") ||
  die "apt-get install ./$(basename "$deb") failed"
installed=1

# The binary.
[ "$(command -v cairn)" = /usr/bin/cairn ] || fail "cairn is not /usr/bin/cairn: $(command -v cairn || true)"
version=$(grep -m1 '^version' "$root/Cargo.toml" | cut -d'"' -f2)
got=$(cairn --version 2>&1 || true)
[ "$got" = "cairn $version" ] || fail "cairn --version says '$got', expected 'cairn $version'"

# The man pages: cairn(1) and one per command, as `cairn man` writes them.
page=$(MANPAGER=cat MANWIDTH=120 man -P cat cairn 2>&1 || true)
for want in SYNOPSIS "EXIT STATUS" cairn-backup cairn-daemon; do
  grep -q -- "$want" <<<"$page" || fail "man cairn has no '$want'"
done
backup=$(MANWIDTH=200 man -P cat cairn-backup 2>&1 | sed 's/.\x08//g' || true)
for want in --exclude --tag --password-file; do
  grep -q -- "$want" <<<"$backup" || fail "man cairn-backup has no '$want'"
done
cairn man --quiet "$tmp/man"
expected=$(find "$tmp/man" -name '*.1' | wc -l)
shipped=$(dpkg -L cairn | grep -c '^/usr/share/man/man1/cairn.*\.1\.gz$' || true)
if [ "$expected" -lt 20 ] || [ "$shipped" != "$expected" ]; then
  fail "$shipped man pages installed, cairn man writes $expected"
fi

# Completions: bash's is loadable and completes commands and options.
bashc=/usr/share/bash-completion/completions/cairn
check "bash completion syntax" bash -n "$bashc"
words=$(bash -c 'source "$1"; complete -p cairn >/dev/null || exit 1
  COMP_WORDS=(cairn sn); COMP_CWORD=1; COMP_LINE="cairn sn"; COMP_POINT=${#COMP_LINE}
  _cairn cairn sn cairn; printf "%s\n" "${COMPREPLY[@]}"' _ "$bashc" 2>&1 || true)
grep -qx snapshots <<<"$words" || fail "bash completion of 'cairn sn' gave: $words"
if [ -f /usr/share/bash-completion/bash_completion ]; then
  # As an interactive shell finds it: bash-completion's loader, by command name.
  words=$(bash -c 'source /usr/share/bash-completion/bash_completion; _completion_loader cairn
    complete -p cairn' 2>&1 || true)
  grep -q _cairn <<<"$words" || fail "bash-completion does not load cairn's completion: $words"
fi
[ -s /usr/share/zsh/vendor-completions/_cairn ] || fail "no zsh completion"
[ -s /usr/share/fish/vendor_completions.d/cairn.fish ] || fail "no fish completion"
if command -v zsh >/dev/null 2>&1; then
  check "zsh completion syntax" zsh -n /usr/share/zsh/vendor-completions/_cairn
fi
if command -v fish >/dev/null 2>&1; then
  words=$(fish -c 'complete -C "cairn sn"' 2>&1 || true)
  grep -q '^snapshots' <<<"$words" || fail "fish completion of 'cairn sn' gave: $words"
fi

# The system user and the directories.
IFS=: read -r _ _ uid _ _ home shell <<<"$(getent passwd cairn || true)"
[ -n "${uid:-}" ] || fail "no user cairn"
if [ -n "${uid:-}" ]; then
  [ "$uid" -lt 1000 ] || fail "user cairn has uid $uid: not a system user"
  [ "$home" = /var/lib/cairn ] || fail "user cairn's home is $home"
  [ "$shell" = /usr/sbin/nologin ] || fail "user cairn's shell is $shell"
fi
expect_mode /etc/cairn "750 root cairn"
expect_mode /etc/cairn/cairn.toml "640 root cairn"
expect_mode /etc/cairn/conf.d "750 root cairn"
expect_mode /var/lib/cairn "700 cairn cairn"
expect_mode /var/cache/cairn "700 cairn cairn"
dpkg-query -W -f='${Conffiles}\n' cairn | grep -q ' /etc/cairn/cairn.toml ' ||
  fail "/etc/cairn/cairn.toml is not a conffile"
# The daemon's user reads the skeleton config and its state directory.
check "cairn config check as the cairn user" runuser -u cairn -- cairn --config /etc/cairn/cairn.toml config check
check "cairn status as the cairn user" runuser -u cairn -- cairn --config /etc/cairn/cairn.toml status
runuser -u nobody -- cat /etc/cairn/cairn.toml >/dev/null 2>&1 && fail "another user can read /etc/cairn/cairn.toml"

# The unit: valid, installed, neither enabled nor running.
unit=/usr/lib/systemd/system/cairn.service
[ -f "$unit" ] || fail "no $unit"
if command -v systemd-analyze >/dev/null 2>&1; then
  out=$(systemd-analyze verify --man=no "$unit" 2>&1) || fail "systemd-analyze verify $unit: $out"
  grep -i 'cairn' <<<"$out" && fail "systemd-analyze verify warns about the unit: $out"
else
  echo "test-deb: systemd-analyze not available: the unit is not verified"
fi
wants=$(find /etc/systemd/system -name 'cairn.service' 2>/dev/null || true)
[ -z "$wants" ] || fail "cairn.service is enabled: $wants"
if [ -d /run/systemd/system ]; then
  [ "$(systemctl is-enabled cairn.service 2>/dev/null || true)" = disabled ] || fail "cairn.service is not disabled"
  systemctl is-active --quiet cairn.service && fail "cairn.service is running after install"
fi

# Reinstalling runs postinst again over the existing user and directories.
(cd "$tmp" && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall ./"$(basename "$deb")") ||
  fail "apt-get install --reinstall failed"
expect_mode /etc/cairn "750 root cairn"
expect_mode /etc/cairn/cairn.toml "640 root cairn"

# Purge leaves the machine as it was.
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq cairn >/dev/null || fail "apt-get purge cairn failed"
installed=0
[ -e /usr/bin/cairn ] && fail "/usr/bin/cairn is left after purge"
for p in /etc/cairn /var/lib/cairn /var/cache/cairn "$unit"; do
  [ -e "$p" ] && fail "$p is left after purge"
done
getent passwd cairn >/dev/null && fail "user cairn is left after purge"
getent group cairn >/dev/null && fail "group cairn is left after purge"
dpkg-statoverride --list | grep -q /etc/cairn && fail "a dpkg-statoverride of /etc/cairn is left after purge"

if [ ${#failures[@]} -gt 0 ]; then
  echo "test-deb: ${#failures[@]} failure(s):" >&2
  printf '  %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "test-deb: OK (installed, checked, reinstalled, purged)"
