#!/usr/bin/env bash
# Scaling table (not CI): how the cost of cairn grows with the work, with restic 0.14 beside it
# where affordable. Three dimensions, each a Markdown table printed at the end (and kept in
# $SCALE_DIR/scale.md):
#   files  N generated small files (20-300 bytes, unique content: one data blob each),
#          1,000 per directory, on a loop-mounted ext4 with inline_data when run as root (10M
#          tiny files would otherwise take 40 GB of 4 KiB blocks; the image is sparse);
#   data   G GiB of the mixed data of scripts/gen_data.py (1-64 KiB files and a few 1-24 MiB);
#   snaps  a repository holding K snapshots of a 1,000-file tree (one file changes each time),
#          built once by cairn and copied for each tool: both measure the same repository.
#          The first SCALE_SNAP_REAL (100) are real backups; beyond, scripts/gen_snapshots.py
#          adds copies of them with new times (1,000 backups would take 10-30 min of scrypt).
# Steps, each timed with GNU time (wall, user+sys CPU, peak RSS) and the load average noted:
#   backup (first), nochange (rerun, nothing changed), onechange (rerun after appending to
#   one file), snapshots (list), restore-one
#   (`restore ID --target T --include /one/file`), open-index (`cat blob ID` of that file's
#   blob: key, index load, one blob), forget-prune (`forget ... --prune`: files/data forget
#   the first of two identical snapshots, so prune finds nothing to delete and measures the
#   index and tree walk; snaps keep the newest half). Also the repository size after the
#   first backup and the index memory per blob: `cairn stats --mode debug --json` when the
#   binary has it, else estimated as (peak RSS of open-index - peak RSS of snapshots) / blobs.
#
#   scripts/bench-scale.sh                                   # full table (hours)
#   SCALE_DIMS=files SCALE_FILES="100000 1000000" scripts/bench-scale.sh
#   SCALE_DIMS="snaps" SCALE_SNAPS="1 10 100" scripts/bench-scale.sh
#   SCALE_DIMS=data SCALE_GIB="1 4" scripts/bench-scale.sh
#   SCALE_DIMS=files SCALE_FILES=10000000 RESTIC_MAX_FILES=0 scripts/bench-scale.sh  # cairn only
#
# Env: SCALE_DIR (work dir, default /tmp/cairn-scale), SCALE_DIMS ("files snaps data"),
# SCALE_FILES ("100000 1000000 10000000"), SCALE_GIB ("1 5 20"; a size is skipped when the
# disk has less than 2.2 x its size free: data + one repository at a time), SCALE_SNAPS
# ("1 10 100 1000"), SCALE_SNAP_FILES (1000), RESTIC_MAX_FILES / RESTIC_MAX_GIB /
# RESTIC_MAX_SNAPS (restic runs up to these sizes; default 1000000 / 20 / 1000),
# SCALE_KEEP=1 (keep generated data for a rerun), SCALE_APPEND=1 (add to the results already
# in SCALE_DIR, e.g. another dimension; the tables cover both), SCALE_REPORT_ONLY=1 (print
# the tables of SCALE_DIR's results, measure nothing), CAIRN (binary; default: release build),
# CAIRN_REV (its source, for the table's header).
# The binary is copied into SCALE_DIR first, so one run uses one binary even if the tree is
# rebuilt meanwhile. Runs are single (no medians): read CPU time and peak RSS, which load
# barely moves; wall times depend on the load average printed beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE_DIR=${SCALE_DIR:-/tmp/cairn-scale}
SCALE_DIMS=${SCALE_DIMS:-"files snaps data"}
SCALE_FILES=${SCALE_FILES:-"100000 1000000 10000000"}
SCALE_GIB=${SCALE_GIB:-"1 5 20"}
SCALE_SNAPS=${SCALE_SNAPS:-"1 10 100 1000"}
SCALE_SNAP_FILES=${SCALE_SNAP_FILES:-1000}
SCALE_SNAP_REAL=${SCALE_SNAP_REAL:-100}
SCALE_APPEND=${SCALE_APPEND:-0}
SCALE_REPORT_ONLY=${SCALE_REPORT_ONLY:-0}
RESTIC_MAX_FILES=${RESTIC_MAX_FILES:-1000000}
RESTIC_MAX_GIB=${RESTIC_MAX_GIB:-20}
RESTIC_MAX_SNAPS=${RESTIC_MAX_SNAPS:-1000}
SCALE_KEEP=${SCALE_KEEP:-0}
for t in restic /usr/bin/time bc python3 sha256sum; do
  command -v "$t" >/dev/null || { echo "$t is needed (apt-get install restic time bc)" >&2; exit 1; }
done
mkdir -p "$SCALE_DIR"
if [ "$SCALE_REPORT_ONLY" = 1 ]; then SCALE_DIMS=""; SCALE_APPEND=1; CAIRN=${CAIRN:-$SCALE_DIR/cairn}; fi
if [ -z "${CAIRN:-}" ]; then
  cargo build --release -q -p cairn
  CAIRN=$PWD/target/release/cairn
fi
if [ "$(realpath "$CAIRN")" != "$(realpath -m "$SCALE_DIR/cairn")" ]; then
  cp "$CAIRN" "$SCALE_DIR/cairn.new" && mv "$SCALE_DIR/cairn.new" "$SCALE_DIR/cairn"
fi
CAIRN=$SCALE_DIR/cairn
# CAIRN_REV names the binary's source in the table (default: this tree's HEAD, +uncommitted
# if crates/ has changes; set it when CAIRN is a binary built elsewhere).
REV=${CAIRN_REV:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
if [ -z "${CAIRN_REV:-}" ] && [ -n "$(git status --porcelain -- crates 2>/dev/null)" ]; then REV="$REV+uncommitted"; fi
export RESTIC_PASSWORD=bench
unset RESTIC_REPOSITORY RESTIC_PASSWORD_FILE RESTIC_PASSWORD_COMMAND
RESULTS=$SCALE_DIR/results.tsv
NOTES=$SCALE_DIR/notes.tsv
if [ "$SCALE_APPEND" != 1 ]; then : > "$RESULTS"; : > "$NOTES"; : > "$SCALE_DIR/header.txt"; fi
touch "$RESULTS" "$NOTES"
MNT=$SCALE_DIR/mnt
cleanup() {
  if mountpoint -q "$MNT" 2>/dev/null; then umount "$MNT" || true; fi
}
trap cleanup EXIT
cleanup

HAS_DEBUG=0
if "$CAIRN" stats --help 2>/dev/null | grep -q debug; then HAS_DEBUG=1; fi
[ -z "$SCALE_DIMS" ] || {
  echo "cairn $REV ($("$CAIRN" --version 2>/dev/null || true)), $(restic version | cut -d' ' -f1-2)"
  echo "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, started $(date -u '+%F %H:%M') UTC: $SCALE_DIMS"
} >> "$SCALE_DIR/header.txt"
[ -z "$SCALE_DIMS" ] || tail -2 "$SCALE_DIR/header.txt"

# smeasure DIM SIZE TOOL STEP CMD... : times CMD; a failure is recorded (nan) and the run goes on.
smeasure() {
  local dim=$1 size=$2 tool=$3 step=$4; shift 4
  local tf load wall user sys rss cpu
  tf=$(mktemp); load=$(cut -d' ' -f1 /proc/loadavg)
  if /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >"$SCALE_DIR/last.out" 2>"$SCALE_DIR/last.err"; then
    read -r wall user sys rss < "$tf"
    cpu=$(echo "$user + $sys" | bc)
  else
    echo "  $tool $step failed:" >&2; tail -3 "$SCALE_DIR/last.err" >&2
    wall=nan; cpu=nan; rss=0
  fi
  rm -f "$tf"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$dim" "$size" "$tool" "$step" "$wall" "$cpu" "$rss" "$load" >> "$RESULTS"
  printf '  %-6s %-12s wall %8ss  cpu %8ss  rss %7s MiB  load %s\n' "$tool" "$step" "$wall" "$cpu" "$((rss / 1024))" "$load"
}

# note DIM SIZE TOOL KEY VALUE : a figure that is not a timing (sizes, blob counts).
note() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$NOTES"; }

bin_of() { if [ "$1" = restic ]; then echo "restic --no-cache -q"; else echo "$CAIRN -q"; fi; }

snapshot_ids() { # TOOL REPO : snapshot ids, oldest first
  local -a bin; read -r -a bin <<< "$(bin_of "$1")"
  "${bin[@]}" -r "$2" snapshots --json | python3 -c '
import json, sys
for s in sorted(json.load(sys.stdin), key=lambda s: s["time"]): print(s["id"])'
}

# index_memory DIM SIZE REPO : blobs and index bytes per blob from `cairn stats --mode debug`
# (without it, only the number of blobs, from `stats --mode raw-data`).
index_memory() {
  if [ "$HAS_DEBUG" = 0 ]; then
    note "$1" "$2" cairn blobs "$("$CAIRN" -q -r "$3" stats --mode raw-data --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["total_blob_count"])')"
    return 0
  fi
  "$CAIRN" -q -r "$3" stats --mode debug --json 2>/dev/null | python3 -c '
import json, sys
def flat(v, p=""):
    if isinstance(v, dict):
        for k, x in v.items(): yield from flat(x, p + k.lower() + ".")
    elif isinstance(v, (int, float)) and not isinstance(v, bool): yield p.rstrip("."), v
d = dict(flat(json.load(sys.stdin)))
per = next((v for k, v in d.items() if "per_blob" in k), None)
blobs = d.get("index_blobs", next((v for k, v in d.items() if k.endswith("blobs") and "per" not in k), None))
secs = next((v for k, v in d.items() if "seconds" in k), -1)
if per is not None and blobs is not None: print(int(blobs), round(float(per), 1), secs)' > "$SCALE_DIR/debug.txt" || true
  if read -r blobs per secs < "$SCALE_DIR/debug.txt"; then
    note "$1" "$2" cairn blobs "$blobs"; note "$1" "$2" cairn index-bytes-per-blob "$per"
    note "$1" "$2" cairn index-load-seconds "$secs"
  fi
}

# reads DIM SIZE TOOL REPO ONE_FILE : snapshots, restore-one, open-index on REPO.
reads() {
  local dim=$1 size=$2 tool=$3 repo=$4 one=$5 last blob target=$SCALE_DIR/restore-$3
  local -a bin; read -r -a bin <<< "$(bin_of "$tool")"
  last=$(snapshot_ids "$tool" "$repo" | tail -1)
  blob=$(sha256sum "$one" | cut -c1-64)
  rm -rf "$target"
  smeasure "$dim" "$size" "$tool" snapshots "${bin[@]}" -r "$repo" snapshots
  smeasure "$dim" "$size" "$tool" restore-one "${bin[@]}" -r "$repo" restore "$last" --target "$target" --include "$one"
  cmp -s "$one" "$target$one" || echo "  $tool restore-one: $target$one missing or different" >&2
  rm -rf "$target"
  smeasure "$dim" "$size" "$tool" open-index "${bin[@]}" -r "$repo" cat blob "$blob"
  cmp -s "$one" "$SCALE_DIR/last.out" || echo "  $tool open-index: cat blob printed something else" >&2
  if [ "$tool" = cairn ]; then index_memory "$dim" "$size" "$repo"; fi
}

# backup_steps DIM SIZE TOOL SRC ONE_FILE : first backup, no-change rerun, reads, forget+prune.
backup_steps() {
  local dim=$1 size=$2 tool=$3 src=$4 one=$5 repo=$SCALE_DIR/repo-$3 first
  local -a bin; read -r -a bin <<< "$(bin_of "$tool")"
  rm -rf "$repo"
  "${bin[@]}" -r "$repo" init >/dev/null
  du -s "$src" >/dev/null # the tree's metadata in cache for both tools
  smeasure "$dim" "$size" "$tool" backup "${bin[@]}" -r "$repo" backup "$src"
  note "$dim" "$size" "$tool" repo-bytes "$(du -sb "$repo" | cut -f1)"
  smeasure "$dim" "$size" "$tool" nochange "${bin[@]}" -r "$repo" backup "$src"
  # One file changed: what a rerun costs when it has something to store (the data index
  # is needed to deduplicate it; the later steps read this newest snapshot).
  echo "changed for $tool at $(date +%s%N)" >> "$one"
  smeasure "$dim" "$size" "$tool" onechange "${bin[@]}" -r "$repo" backup "$src"
  reads "$dim" "$size" "$tool" "$repo" "$one"
  first=$(snapshot_ids "$tool" "$repo" | awk 'NR == 1')
  smeasure "$dim" "$size" "$tool" forget-prune "${bin[@]}" -r "$repo" forget "$first" --prune
  rm -rf "$repo"
}

tools_for() { # SIZE MAX : cairn, and restic when SIZE <= MAX
  echo cairn
  if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)' "$1" "$2"; then echo restic; fi
}

files_dim() {
  local n img src one i
  for n in $SCALE_FILES; do
    echo "== files: $n"
    img=$SCALE_DIR/files-$n.img
    if [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null; then
      if [ ! -f "$img" ]; then
        # 512-byte inodes hold files up to ~300 bytes inline: no data block per file.
        truncate -s $((n * 1024 + (2 << 30))) "$img"
        # lazy_itable_init + noinit_itable: no background zeroing of the inode tables (GBs at
        # 10M files) writing to the disk while the tools are measured.
        mkfs.ext4 -q -F -m 0 -O inline_data -I 512 -N $((n + n / 500 + 10000)) \
          -E lazy_itable_init=1,nodiscard "$img"
      fi
      mkdir -p "$MNT"; mount -o loop,noatime,noinit_itable "$img" "$MNT"
      src=$MNT/files
    else
      src=$SCALE_DIR/files-$n
    fi
    local t0=$SECONDS
    python3 scripts/gen_scale.py "$src" "$n"
    echo "  generated in $((SECONDS - t0))s"
    i=$((n / 2))
    one=$(printf '%s/d%04d/d%06d/f%08d' "$src" $((i / 100000)) $((i / 1000)) "$i")
    for tool in $(tools_for "$n" "$RESTIC_MAX_FILES"); do backup_steps files "$n" "$tool" "$src" "$one"; done
    if [ "$src" = "$MNT/files" ]; then
      umount "$MNT"
      [ "$SCALE_KEEP" = 1 ] || rm -f "$img"
    elif [ "$SCALE_KEEP" != 1 ]; then
      rm -rf "$src"
    fi
  done
}

data_dim() {
  local g src one free need own
  for g in $SCALE_GIB; do
    echo "== data: $g GiB"
    src=$SCALE_DIR/data-$g; own=1
    # The 1.05 GiB tree of scripts/bench.sh is reused when it is there.
    if [ "$g" = 1.05 ] && [ -f /tmp/cairn-bench/mixed/.done ] && [ ! -d "$src" ]; then src=/tmp/cairn-bench/mixed; own=0; fi
    free=$(df -k --output=avail "$SCALE_DIR" | tail -1)
    need=$(python3 -c 'import sys; print(int(float(sys.argv[1]) * 2.2 * (1 << 20)))' "$g")
    if [ ! -f "$src/.done" ] && [ "$free" -lt "$need" ]; then
      echo "  skipped: $((free >> 20)) GiB free, $((need >> 20)) GiB needed (data + one repository)"; continue
    fi
    local t0=$SECONDS
    python3 scripts/gen_data.py "$src" "$g"
    echo "  generated in $((SECONDS - t0))s"
    find "$src" -type f -exec cat {} + > /dev/null
    one=$(find "$src" -type f -name '*.bin' -size -500k | sort | awk 'NR <= 1000 { l = $0 } END { print l }')
    for tool in $(tools_for "$g" "$RESTIC_MAX_GIB"); do backup_steps data "$g" "$tool" "$src" "$one"; done
    if [ "$own" = 1 ] && [ "$SCALE_KEEP" != 1 ]; then rm -rf "$src"; fi
  done
}

snaps_dim() {
  local src=$SCALE_DIR/snap-src repo=$SCALE_DIR/repo-snaps work k=0 n tool keep one
  echo "== snapshots: $SCALE_SNAPS (tree of $SCALE_SNAP_FILES files)"
  python3 scripts/gen_scale.py "$src" "$SCALE_SNAP_FILES"
  one=$src/d0000/d000000/f00000000
  rm -rf "$repo"
  "$CAIRN" -q -r "$repo" init
  for n in $(tr ' ' '\n' <<< "$SCALE_SNAPS" | sort -n); do
    local t0=$SECONDS
    while [ "$k" -lt "$n" ] && [ "$k" -lt "$SCALE_SNAP_REAL" ]; do
      k=$((k + 1)); echo "$k" > "$src/counter"
      "$CAIRN" -q -r "$repo" backup "$src"
    done
    if [ "$k" -lt "$n" ]; then
      "$CAIRN" -q -r "$repo" cat masterkey > "$SCALE_DIR/masterkey.json"
      "$CAIRN" -q -r "$repo" snapshots --json > "$SCALE_DIR/snapshots.json"
      python3 scripts/gen_snapshots.py "$repo" "$SCALE_DIR/masterkey.json" "$SCALE_DIR/snapshots.json" $((n - k))
      rm -f "$SCALE_DIR/masterkey.json"
      k=$n
    fi
    echo "  $k snapshots (built in $((SECONDS - t0))s by cairn, the first $SCALE_SNAP_REAL backups)"
    note snaps "$n" cairn repo-bytes "$(du -sb "$repo" | cut -f1)"
    keep=$(( n / 2 > 0 ? n / 2 : 1 ))
    for tool in $(tools_for "$n" "$RESTIC_MAX_SNAPS"); do
      local -a bin; read -r -a bin <<< "$(bin_of "$tool")"
      work=$SCALE_DIR/repo-snaps-$tool
      rm -rf "$work"; cp -a "$repo" "$work"
      reads snaps "$n" "$tool" "$work" "$one"
      smeasure snaps "$n" "$tool" nochange "${bin[@]}" -r "$work" backup "$src"
      smeasure snaps "$n" "$tool" forget-prune "${bin[@]}" -r "$work" forget --keep-last "$keep" --prune
      rm -rf "$work"
    done
  done
  rm -rf "$repo"
  [ "$SCALE_KEEP" = 1 ] || rm -rf "$src"
}

for dim in $SCALE_DIMS; do
  case $dim in
    files) files_dim ;;
    data) data_dim ;;
    snaps) snaps_dim ;;
    *) echo "unknown dimension $dim (files, data, snaps)" >&2; exit 2 ;;
  esac
done

python3 - "$RESULTS" "$NOTES" "$SCALE_DIR/header.txt" "$HAS_DEBUG" <<'PY' | tee "$SCALE_DIR/scale.md"
import sys, collections, math
res, notes, header, has_debug = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
R = {}
for l in open(res):
    if not l.strip(): continue
    dim, size, tool, step, wall, cpu, rss, load = l.rstrip("\n").split("\t")
    R[(dim, size, tool, step)] = (float(wall), float(cpu), int(rss) / 1024, load)
N = collections.defaultdict(dict)
for l in open(notes):
    if not l.strip(): continue
    dim, size, tool, key, val = l.rstrip("\n").split("\t")
    N[(dim, size)][(tool, key)] = float(val)
steps = ["backup", "nochange", "onechange", "snapshots", "restore-one", "open-index", "forget-prune"]
unit = {"files": ("files", "µs CPU/file", 1e6), "data": ("GiB", "s CPU/GiB", 1.0), "snaps": ("snapshots", "ms CPU/snapshot", 1e3)}
fmt = lambda x, p=2: "–" if x is None or math.isnan(x) else f"{x:.{p}f}"
print("\n" + open(header).read().strip().replace("\n", "  \n"))
for dim in ("files", "data", "snaps"):
    sizes = sorted({k[1] for k in R if k[0] == dim}, key=float)
    if not sizes: continue
    uname, uhead, umul = unit[dim]
    print(f"\n### {dim}\n")
    print(f"| {uname} | step | cairn wall s | cairn CPU s | {uhead} | cairn MiB | restic wall s | restic CPU s | restic MiB | speed × (wall) | CPU × | RSS ratio | load |")
    print("|" + "---|" * 13)
    for size in sizes:
        for step in steps:
            c, r = R.get((dim, size, "cairn", step)), R.get((dim, size, "restic", step))
            if not c: continue
            per = c[1] / float(size) * umul
            row = [size, step, fmt(c[0]), fmt(c[1]), fmt(per, 1 if dim != "files" else 2), fmt(c[2], 0)]
            if r:
                row += [fmt(r[0]), fmt(r[1]), fmt(r[2], 0), fmt(r[0] / c[0]) + "×" if c[0] > 0 else "–",
                        fmt(r[1] / c[1]) + "×" if c[1] > 0 else "–", fmt(c[2] / r[2]) if r[2] > 0 else "–"]
            else:
                row += ["not run"] + ["–"] * 5
            row.append(c[3] if not r or r[3] == c[3] else f"{c[3]}/{r[3]}")
            print("| " + " | ".join(row) + " |")
    print(f"\n| {uname} | cairn repo MiB | restic repo MiB | size ratio | blobs | cairn index B/blob | cairn index load s | restic B/blob (est.) |")
    print("|" + "---|" * 8)
    for size in sizes:
        n = N.get((dim, size), {})
        cr, rr = n.get(("cairn", "repo-bytes")), n.get(("restic", "repo-bytes"))
        blobs, per = n.get(("cairn", "blobs")), n.get(("cairn", "index-bytes-per-blob"))
        secs = n.get(("cairn", "index-load-seconds"), -1)
        if blobs is None and dim == "files":
            f = int(size); blobs = f + f // 1000 + f // 100000 + 6  # files, directories, path
        def est(t):
            a, b = R.get((dim, size, t, "open-index")), R.get((dim, size, t, "snapshots"))
            if not a or not b or not blobs: return None
            return (a[2] - b[2]) * 1048576 / blobs
        # Both peaks include scrypt's 32 MiB scratch (freed before the index loads), so the
        # difference means something only once the index outgrows it: no estimate below 500k.
        if blobs and blobs < 500000: est = lambda t: None
        cidx = f"{per:.1f} (debug)" if per is not None else (fmt(est("cairn"), 0) + " (est.)" if est("cairn") is not None else "–")
        print(f"| {size} | {fmt(cr and cr / 1048576, 1)} | {fmt(rr and rr / 1048576, 1)} | "
              f"{fmt(cr / rr, 3) if cr and rr else '–'} | {int(blobs) if blobs else '–'} | {cidx} | "
              f"{fmt(secs, 3) if secs >= 0 else '–'} | {fmt(est('restic'), 0)} |")
print("\nspeed × and CPU × = restic / cairn (above 1: cairn faster); RSS ratio = cairn / restic. "
      "est. = (peak RSS of open-index − peak RSS of snapshots) / blobs, a lower bound (the index's "
      "peak, transient buffers included, beyond the 32 MiB of scrypt both peaks hold); "
      "debug and index load s: `cairn stats --mode debug` (the index's heap bytes; listing, fetching, decrypting, building it).")
PY
