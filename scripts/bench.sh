#!/usr/bin/env bash
# Benchmarks cairn against the real restic on the same data, in the same run, alternating
# the tools (A B A B) and reporting the median of RUNS runs: wall time, CPU time (user+sys)
# and peak RSS of each, and the ratio restic/cairn (above 1 means cairn is better).
#
#   scripts/bench.sh                 # 1 GiB mixed data, 200,000 small files, RUNS=3
#   BENCH_GIB=0.2 SMALL_FILES=20000 RUNS=1 scripts/bench.sh   # a quick look
#
# Steps measured: initial backup of the mixed data, no-change re-run over the small files,
# restore of the mixed snapshot, check --read-data, prune of half-garbage packs; cairn
# only (restic 0.14 has no rewrite): rewrite --forget and the prune after it.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR=${BENCH_DIR:-/tmp/cairn-bench}
BENCH_GIB=${BENCH_GIB:-1.05}
SMALL_FILES=${SMALL_FILES:-200000}
RUNS=${RUNS:-3}
command -v restic >/dev/null || { echo "restic is needed: apt-get install restic" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "GNU time is needed: apt-get install time" >&2; exit 1; }
cargo build --release -q
CAIRN=$PWD/target/release/cairn
mkdir -p "$BENCH_DIR"
# Restores go to a tmpfs when we can mount one: on ext4, creating files right after
# deleting many (the previous run's restore) costs seconds of kernel time in inode
# allocation that swamps both tools' own work and makes the step noise. Without root the
# restore goes to disk and the ratio is noisier.
RESTORE_DIR="$BENCH_DIR/restore"
mkdir -p "$RESTORE_DIR"
if [ "$(id -u)" = 0 ] && ! mountpoint -q "$RESTORE_DIR"; then
  mount -t tmpfs -o size=4g tmpfs "$RESTORE_DIR" && trap 'umount "$RESTORE_DIR"' EXIT
fi
export RESTIC_PASSWORD=bench
export RESTIC_CACHE_DIR="$BENCH_DIR/restic-cache"

python3 scripts/gen_data.py "$BENCH_DIR/mixed" "$BENCH_GIB" "$BENCH_DIR/small" "$SMALL_FILES"

RESULTS="$BENCH_DIR/results.tsv"
: > "$RESULTS"
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

run_tool() {
  local tool=$1 bin repo target
  repo="$BENCH_DIR/repo-$tool"; target="$RESTORE_DIR/$tool"
  rm -rf "$repo" "$target" "$RESTIC_CACHE_DIR"
  if [ "$tool" = restic ]; then bin=(restic --no-cache -q); else bin=("$CAIRN" -q); fi
  "${bin[@]}" -r "$repo" init >/dev/null
  measure "$tool" backup "${bin[@]}" -r "$repo" backup "$BENCH_DIR/mixed"
  "${bin[@]}" -r "$repo" backup "$BENCH_DIR/small" >/dev/null
  measure "$tool" nochange "${bin[@]}" -r "$repo" backup "$BENCH_DIR/small"
  local snap
  snap=$("${bin[@]}" -r "$repo" snapshots --json --path "$BENCH_DIR/mixed" | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
  measure "$tool" restore "${bin[@]}" -r "$repo" restore "$snap" --target "$target"
  measure "$tool" check "${bin[@]}" -r "$repo" check --read-data
  rm -rf "$target"
  # Prune: a second snapshot of the mixed data without half of its files, the first one
  # forgotten (by restic for both, untimed), so every data pack is about half garbage.
  "${bin[@]}" -r "$repo" backup --exclude '*[02468].bin' "$BENCH_DIR/mixed" >/dev/null
  restic --no-cache -q -r "$repo" forget "$snap" >/dev/null
  measure "$tool" prune "${bin[@]}" -r "$repo" prune
  # restic 0.14 has no rewrite (it came in 0.15): cairn's rewrite and the prune after it
  # are measured alone.
  if [ "$tool" = cairn ]; then
    measure "$tool" rewrite "${bin[@]}" -r "$repo" rewrite --exclude '*1.bin' --forget
    measure "$tool" prune2 "${bin[@]}" -r "$repo" prune
  fi
}

# Both tools read the same data from the page cache: warm it first, or whichever tool runs
# first in run 1 pays for reading it from disk.
find "$BENCH_DIR/mixed" "$BENCH_DIR/small" -type f -exec cat {} + > /dev/null

for i in $(seq 1 "$RUNS"); do
  echo "run $i/$RUNS"
  if [ $((i % 2)) = 1 ]; then run_tool cairn; run_tool restic; else run_tool restic; run_tool cairn; fi
done

summary "data: $BENCH_GIB GiB mixed, $SMALL_FILES small files" backup nochange restore check prune rewrite prune2
