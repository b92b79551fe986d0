#!/usr/bin/env bash
# Benchmarks cairn against the real restic on remote repositories, same data, same run:
# a Garage S3 node and an OpenSSH sshd (SFTP), both on loopback, started here from
# scripts/peers/ and stopped at the end. Tools alternate (A B, then B A) over RUNS runs;
# medians of wall time, CPU time and peak RSS are reported with the ratios.
#
#   scripts/bench-remote.sh                       # 1 GiB mixed data, RUNS=3
#   BENCH_GIB=0.2 RUNS=1 scripts/bench-remote.sh  # a quick look
#
# Steps per backend: initial backup of the mixed data, restore of it, and the time to
# open the repository and list the snapshot's files (`ls latest`) with a warm cache and
# with no cache. Both tools use their default connections (5) and their own caches,
# emptied before each run. Loopback has no network latency: these figures measure the
# tools' own costs (CPU, syscalls, protocol round trips), not a WAN link.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR=${BENCH_DIR:-/tmp/cairn-bench}
BENCH_GIB=${BENCH_GIB:-1.05}
SMALL_FILES=${SMALL_FILES:-200000}
RUNS=${RUNS:-3}
BACKENDS=${BACKENDS:-"s3 sftp"}
export PATH="$HOME/.cargo/bin:$PATH"
need=(restic /usr/bin/time bc)
[[ " $BACKENDS " = *" s3 "* ]] && need+=(garage)
[[ " $BACKENDS " = *" sftp "* ]] && need+=(/usr/sbin/sshd ssh)
for t in "${need[@]}"; do
  command -v "$t" >/dev/null || { echo "$t is needed (scripts/test.sh installs the test peers)" >&2; exit 1; }
done
# CAIRN=path/to/cairn skips the release build (e.g. to compare with an older binary).
if [ -z "${CAIRN:-}" ]; then
  cargo build --release -q
  CAIRN=$PWD/target/release/cairn
fi
mkdir -p "$BENCH_DIR"
RESTORE_DIR="$BENCH_DIR/restore"
mkdir -p "$RESTORE_DIR"
cleanup() {
  for f in "$BENCH_DIR"/peer-s3/garage.pid "$BENCH_DIR"/peer-sftp/sshd.pid; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  mountpoint -q "$RESTORE_DIR" && umount "$RESTORE_DIR" || true
}
trap cleanup EXIT
# Restores go to a tmpfs when we can mount one (see bench.sh).
if [ "$(id -u)" = 0 ] && ! mountpoint -q "$RESTORE_DIR"; then
  mount -t tmpfs -o size=4g tmpfs "$RESTORE_DIR"
fi
export RESTIC_PASSWORD=bench
python3 scripts/gen_data.py "$BENCH_DIR/mixed" "$BENCH_GIB" "$BENCH_DIR/small" "$SMALL_FILES"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_peer() { # start_peer NAME SCRIPT PORTVAR... : runs the script, exports what it prints
  local name=$1 script=$2; shift 2
  rm -rf "$BENCH_DIR/peer-$name"
  local envs=(STATE="$BENCH_DIR/peer-$name")
  for v in "$@"; do envs+=("$v=$(free_port)"); done
  local out; out=$(env "${envs[@]}" bash "scripts/peers/$script")
  while IFS='=' read -r k v; do [ -n "$k" ] && export "$k=${v//\'/}"; done <<< "$out"
}
for b in $BACKENDS; do
  case $b in
    s3) start_peer s3 start-garage.sh GARAGE_S3_PORT GARAGE_RPC_PORT GARAGE_ADMIN_PORT ;;
    sftp) start_peer sftp start-sftp.sh SFTP_PORT ;;
    *) echo "unknown backend $b (s3, sftp)" >&2; exit 1 ;;
  esac
done

RESULTS="$BENCH_DIR/results-remote.tsv"
: > "$RESULTS"
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

# The S3 server runs on the same cores as the tools: its CPU time (user + sys, from /proc)
# during each step is recorded too, to show how much of a step's wall time the server's
# own work takes (the floor of a loopback benchmark).
SERVER="$BENCH_DIR/results-server.tsv"
: > "$SERVER"
server_cpu() { # seconds of CPU the Garage process has used so far
  local pid; pid=$(cat "$BENCH_DIR/peer-s3/garage.pid" 2>/dev/null) || { echo 0; return; }
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$pid/stat" 2>/dev/null || echo 0
}
measure_remote() { # measure_remote BACKEND TOOL STEP CMD...
  local b=$1 tool=$2 step=$3; shift 3
  local before; before=$(server_cpu)
  measure "$tool" "$step" "$@"
  [ "$b" = s3 ] && echo -e "$tool\t$step\t$(echo "$(server_cpu) - $before" | bc)" >> "$SERVER"
  return 0
}

run_tool() { # run_tool BACKEND TOOL RUN
  local b=$1 tool=$2 run=$3 url opts=() bin target
  case $b in
    s3) url="s3:$S3_ENDPOINT/$S3_BUCKET/$tool-$run" ;;
    sftp) url="sftp:sftp-test:$SFTP_DATA/$tool-$run"
          opts=(-o "sftp.command=ssh -F $SFTP_SSH_CONFIG sftp-test -s sftp") ;;
  esac
  local cache="$BENCH_DIR/cache-$tool"
  rm -rf "$cache"
  if [ "$tool" = restic ]; then
    bin=(restic -q --cache-dir "$cache" -r "$url" "${opts[@]}")
  else
    bin=("$CAIRN" -q --cache-dir "$cache" -r "$url" "${opts[@]}")
  fi
  target="$RESTORE_DIR/$tool"
  rm -rf "$target"
  "${bin[@]}" init >/dev/null
  measure_remote "$b" "$tool" "$b-backup" "${bin[@]}" backup "$BENCH_DIR/mixed"
  measure_remote "$b" "$tool" "$b-restore" "${bin[@]}" restore latest --target "$target"
  rm -rf "$target"
  # Open + list a snapshot of many small files: what a cache is for.
  "${bin[@]}" backup "$BENCH_DIR/small" >/dev/null
  measure_remote "$b" "$tool" "$b-ls-cached" "${bin[@]}" ls latest
  measure_remote "$b" "$tool" "$b-ls-nocache" "${bin[@]}" --no-cache ls latest
  [ "$b" = sftp ] && rm -rf "${SFTP_DATA:?}/$tool-$run"
  return 0
}

for i in $(seq 1 "$RUNS"); do
  echo "run $i/$RUNS"
  for b in $BACKENDS; do
    if [ $((i % 2)) = 1 ]; then run_tool "$b" cairn "$i"; run_tool "$b" restic "$i"
    else run_tool "$b" restic "$i"; run_tool "$b" cairn "$i"; fi
  done
done

steps=()
for b in $BACKENDS; do steps+=("$b-backup" "$b-restore" "$b-ls-cached" "$b-ls-nocache"); done
summary "remote repositories on loopback; data: $BENCH_GIB GiB mixed, $SMALL_FILES small files for ls" "${steps[@]}"
if [ -s "$SERVER" ]; then
  echo
  echo "Garage's own CPU during each step (median s; it shares the 2 cores with the tool):"
  echo
  python3 - "$SERVER" <<'PY'
import sys, statistics, collections
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    tool, step, cpu = line.split("\t")
    d[(step, tool)].append(float(cpu))
print("| step | server CPU s during cairn | server CPU s during restic |")
print("|:--|--:|--:|")
for step in sorted({s for s, _ in d}):
    cell = lambda t: f"{statistics.median(d[(step, t)]):.2f}" if d[(step, t)] else "–"
    print(f"| {step} | {cell('cairn')} | {cell('restic')} |")
PY
fi
