#!/usr/bin/env bash
# Benchmarks cairn against the real restic on the same data, in the same run, alternating
# the tools (A B A B) and reporting the median of RUNS runs: wall time, CPU time (user+sys)
# and peak RSS of each, the ratios restic/cairn (above 1 means cairn is better), the target
# of issue 15 for the step and whether the median meets it (and peak RSS <= 0.6x restic's).
#
#   scripts/bench.sh                 # 1 GiB mixed data, 200,000 small files, RUNS=3
#   BENCH_GIB=0.2 SMALL_FILES=20000 RUNS=1 scripts/bench.sh   # a quick look
#   CAIRN=/path/to/cairn scripts/bench.sh                     # another binary, no build
#
# Steps measured, each by both tools on its own repository:
#   backup        initial backup of the mixed data (then the repository's size is noted)
#   nochange      re-run over the small files with nothing changed (their first backup untimed)
#   snapshots     list the snapshots (open + read the snapshot files)
#   restore       restore of the mixed snapshot into a tmpfs (the tools alone; the
#                 repository read into the page cache before, for both)
#   restore-disk  the same onto the disk (ext4 under BENCH_DIR; `sync` before, untimed), each
#                 run into a new directory (see DISK_DIR)
#   restore-one   restore of one 1-64 KiB file of it: `restore ID --target T --include /path`
#   check         check --read-data
#   forget        forget of the mixed snapshot, after a second backup of the mixed data
#                 without half of its files (untimed), so every data pack is about half garbage
#   prune         prune of that repository (and the row forget+prune: both, summed per run)
#   backup-cold   the first backup again, into a new repository, with the page cache dropped
#                 before (root only): the files read from the disk, as on a user's machine
# and cairn only (restic 0.14 has no rewrite): rewrite --forget and the prune after it.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR=${BENCH_DIR:-/tmp/cairn-bench}
BENCH_GIB=${BENCH_GIB:-1.05}
SMALL_FILES=${SMALL_FILES:-200000}
RUNS=${RUNS:-3}
command -v restic >/dev/null || { echo "restic is needed: apt-get install restic" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "GNU time is needed: apt-get install time" >&2; exit 1; }
if [ -z "${CAIRN:-}" ]; then
  cargo build --release -q
  CAIRN=$PWD/target/release/cairn
fi
mkdir -p "$BENCH_DIR"
# Restores go to a tmpfs when we can mount one: on ext4, creating files right after
# deleting many (the previous run's restore) costs seconds of kernel time in inode
# allocation that swamps both tools' own work and makes the step noise. Without root the
# restore goes to disk and the ratio is noisier. restore-disk measures the disk on purpose.
RESTORE_DIR="$BENCH_DIR/restore"
DISK_DIR="$BENCH_DIR/restore-disk"
# Each restore onto the disk goes to its own directory, all removed only at the end
# (RUNS x 2 x BENCH_GIB of disk meanwhile). ext4 without a journal (this VM's root) skips
# inodes deleted in the last 60 s (300 s while their table block is dirty) when it
# allocates one (`recently_deleted`, fs/ext4/ialloc.c): a restore of 54k files started
# seconds after the previous one was deleted spent ~1 s more in the kernel scanning past
# them (`perf`: find_get_block_common, recently_deleted; 1.50 s fresh, 2.47 s right after
# an `rm -rf`), the same second for both tools, whichever ran last.
if [ -n "$(ls -A "$DISK_DIR" 2>/dev/null)" ]; then
  echo "removing the previous bench's restores from $DISK_DIR, then 61 s for ext4 to forget them"
  rm -rf "${DISK_DIR:?}"/*; sync; sleep 61
fi
mkdir -p "$RESTORE_DIR" "$DISK_DIR"
if [ "$(id -u)" = 0 ] && ! mountpoint -q "$RESTORE_DIR"; then
  mount -t tmpfs -o size=4g tmpfs "$RESTORE_DIR" && trap 'umount "$RESTORE_DIR"' EXIT
fi
export RESTIC_PASSWORD=bench
export RESTIC_CACHE_DIR="$BENCH_DIR/restic-cache"

python3 scripts/gen_data.py "$BENCH_DIR/mixed" "$BENCH_GIB" "$BENCH_DIR/small" "$SMALL_FILES"
# The file of restore-one: the 1,000th (or last) of the files below 500 KiB (one blob).
ONE=$(find "$BENCH_DIR/mixed" -type f -name '*.bin' -size -500k | sort | awk 'NR <= 1000 { l = $0 } END { print l }')

RESULTS="$BENCH_DIR/results.tsv"
SIZES="$BENCH_DIR/sizes.tsv"
LOADS="$BENCH_DIR/loads.txt"
: > "$RESULTS"; : > "$SIZES"; : > "$LOADS"
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

run_tool() {
  local tool=$1 run=$2 bin repo target disk
  repo="$BENCH_DIR/repo-$tool"; target="$RESTORE_DIR/$tool"; disk="$DISK_DIR/$tool-$run"
  rm -rf "$repo" "$target" "$RESTIC_CACHE_DIR"
  if [ "$tool" = restic ]; then bin=(restic --no-cache -q); else bin=("$CAIRN" -q); fi
  "${bin[@]}" -r "$repo" init >/dev/null
  measure "$tool" backup "${bin[@]}" -r "$repo" backup "$BENCH_DIR/mixed"
  echo -e "$tool\t$(du -sb "$repo" | cut -f1)" >> "$SIZES"
  "${bin[@]}" -r "$repo" backup "$BENCH_DIR/small" >/dev/null
  measure "$tool" nochange "${bin[@]}" -r "$repo" backup "$BENCH_DIR/small"
  measure "$tool" snapshots "${bin[@]}" -r "$repo" snapshots
  local snap
  snap=$("${bin[@]}" -r "$repo" snapshots --json --path "$BENCH_DIR/mixed" | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
  # The repository into the page cache first, for both tools (untimed): cairn's backup
  # writes packs with O_DIRECT, which leaves them out of the page cache, restic's does
  # not, so without this cairn's restore would read from the disk and restic's from memory.
  find "$repo" -type f -exec cat {} + > /dev/null
  measure "$tool" restore "${bin[@]}" -r "$repo" restore "$snap" --target "$target"
  rm -rf "$target"
  sync
  measure "$tool" restore-disk "${bin[@]}" -r "$repo" restore "$snap" --target "$disk"
  # Kept until the end (see DISK_DIR above): deleting it now would slow the next restore.
  sync
  measure "$tool" restore-one "${bin[@]}" -r "$repo" restore "$snap" --target "$target" --include "$ONE"
  cmp -s "$ONE" "$target$ONE" || { echo "$tool restore-one: $target$ONE missing or different" >&2; exit 1; }
  rm -rf "$target"
  measure "$tool" check "${bin[@]}" -r "$repo" check --read-data
  # Prune: a second snapshot of the mixed data without half of its files, the first one
  # forgotten, so every data pack is about half garbage.
  "${bin[@]}" -r "$repo" backup --exclude '*[02468].bin' "$BENCH_DIR/mixed" >/dev/null
  measure "$tool" forget "${bin[@]}" -r "$repo" forget "$snap"
  measure "$tool" prune "${bin[@]}" -r "$repo" prune
  # restic 0.14 has no rewrite (it came in 0.15): cairn's rewrite and the prune after it
  # are measured alone.
  if [ "$tool" = cairn ]; then
    measure "$tool" rewrite "${bin[@]}" -r "$repo" rewrite --exclude '*1.bin' --forget
    measure "$tool" prune2 "${bin[@]}" -r "$repo" prune
  fi
  # A first backup as a user's really is: the files not in the page cache (root only: the
  # caches are dropped), into a new repository; then the data is read back in for the next
  # steps, untimed.
  if [ "$(id -u)" = 0 ]; then
    rm -rf "$repo"; "${bin[@]}" -r "$repo" init >/dev/null
    sync; echo 3 > /proc/sys/vm/drop_caches
    measure "$tool" backup-cold "${bin[@]}" -r "$repo" backup "$BENCH_DIR/mixed"
    rm -rf "$repo"
    find "$BENCH_DIR/mixed" "$BENCH_DIR/small" -type f -exec cat {} + > /dev/null
  fi
}

# Both tools read the same data from the page cache: warm it first, or whichever tool runs
# first in run 1 pays for reading it from disk.
find "$BENCH_DIR/mixed" "$BENCH_DIR/small" -type f -exec cat {} + > /dev/null

for i in $(seq 1 "$RUNS"); do
  load=$(cut -d' ' -f1 /proc/loadavg); echo -n "$load " >> "$LOADS"
  echo "run $i/$RUNS (load average $load)"
  if [ $((i % 2)) = 1 ]; then run_tool cairn "$i"; run_tool restic "$i"; else run_tool restic "$i"; run_tool cairn "$i"; fi
done

# Targets of issue 15 (restic time / cairn time); steps without one are reported only.
summary "data: $BENCH_GIB GiB mixed, $SMALL_FILES small files; $RUNS runs, load average at their starts: $(cat "$LOADS")" \
  backup:3 backup-cold nochange:6 snapshots restore:3 restore-disk:3 restore-one check:4 forget \
  prune:4 forget+prune rewrite prune2
repo_size_summary "$SIZES" 3
rm -rf "${DISK_DIR:?}"/*
