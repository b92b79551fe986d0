#!/usr/bin/env bash
# No-change backup of a Btrfs-snapshot plan, cairn vs restic in the same run.
#
#   sudo scripts/bench-btrfs.sh            # 100,000 files, RUNS=3
#   FILES=20000 RUNS=1 scripts/bench-btrfs.sh
#
# A Btrfs filesystem on a loop device holds a subvolume with FILES small files. Each tool
# backs it up once (untimed), then again with nothing changed (timed, RUNS times):
# - cairn: `cairn run` of a plan with `snapshot = { kind = "btrfs" }` (snapshot, backup
#   recorded under the subvolume's path, snapshot deleted; everything included);
# - restic-script: the field notes' script: a read-only snapshot at a timestamped path,
#   `restic backup` of that path, snapshot deleted (restic finds no parent: new path);
# - restic-fixed: the same with a fixed snapshot path, so restic finds its parent.
# Needs root (loop device, mount), btrfs-progs, restic, GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR=${BENCH_DIR:-/tmp/cairn-bench-btrfs}
FILES=${FILES:-100000}
RUNS=${RUNS:-3}
for t in restic btrfs mkfs.btrfs losetup /usr/bin/time bc; do
  command -v "$t" >/dev/null || { echo "$t is needed (apt-get install restic btrfs-progs time bc)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "run as root (loop device and mount)" >&2; exit 1; }
cargo build --release -q
CAIRN=$PWD/target/release/cairn
mnt="$BENCH_DIR/mnt"
cleanup() {
  umount "$mnt" 2>/dev/null || true
  [ -f "$BENCH_DIR/loopdev" ] && losetup -d "$(cat "$BENCH_DIR/loopdev")" 2>/dev/null || true
}
trap cleanup EXIT
cleanup
rm -rf "$BENCH_DIR"; mkdir -p "$mnt"
truncate -s 2G "$BENCH_DIR/fs.img"
mkfs.btrfs -q -f "$BENCH_DIR/fs.img" >/dev/null
losetup --find --show "$BENCH_DIR/fs.img" > "$BENCH_DIR/loopdev"
mount -t btrfs "$(cat "$BENCH_DIR/loopdev")" "$mnt"
btrfs subvolume create "$mnt/home" >/dev/null
python3 - "$mnt/home" "$FILES" <<'PY'
import os, sys, random
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(1)
for i in range(n):
    d = os.path.join(root, f"d{i // 1000:03}")
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06}"), "wb") as f:
        f.write(rng.randbytes(rng.randint(100, 4000)))
PY
echo bench > "$BENCH_DIR/pw"
export RESTIC_PASSWORD_FILE="$BENCH_DIR/pw"
cat > "$BENCH_DIR/cairn.toml" <<EOF
[settings]
state-dir = "$BENCH_DIR/state"
[repositories.r]
url = "$BENCH_DIR/repo-cairn"
password-file = "$BENCH_DIR/pw"
[sources.home]
paths = ["$mnt/home"]
snapshot = { kind = "btrfs" }
[plans.home]
repository = "r"
sources = ["home"]
EOF
cat > "$BENCH_DIR/restic-script.sh" <<EOF
#!/usr/bin/env bash
# The field notes' approach: snapshot at a timestamped path, back it up, delete it.
set -euo pipefail
snap="$mnt/snapshots/restic-\$1"
mkdir -p "$mnt/snapshots"
btrfs subvolume snapshot -r "$mnt/home" "\$snap" >/dev/null
restic -q --no-cache -r "$BENCH_DIR/repo-restic-\$2" backup "\$snap" --tag btrfs-snapshot || { btrfs subvolume delete "\$snap" >/dev/null; exit 1; }
btrfs subvolume delete "\$snap" >/dev/null
EOF
chmod +x "$BENCH_DIR/restic-script.sh"
"$CAIRN" -q -r "$BENCH_DIR/repo-cairn" init
restic -q -r "$BENCH_DIR/repo-restic-script" init
restic -q -r "$BENCH_DIR/repo-restic-fixed" init

RESULTS="$BENCH_DIR/results.tsv"
: > "$RESULTS"
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

echo "first backups (untimed)"
"$CAIRN" -q --config "$BENCH_DIR/cairn.toml" run home
"$BENCH_DIR/restic-script.sh" "$(date +%s%N)" script
"$BENCH_DIR/restic-script.sh" fixed fixed
for i in $(seq 1 "$RUNS"); do
  echo "no-change run $i/$RUNS"
  measure cairn nochange "$CAIRN" -q --config "$BENCH_DIR/cairn.toml" run home
  measure restic nochange "$BENCH_DIR/restic-script.sh" "$(date +%s%N)" script
  measure restic-fixed nochange "$BENCH_DIR/restic-script.sh" fixed fixed
done
"$CAIRN" --config "$BENCH_DIR/cairn.toml" history --steps --limit 1
summary "no-change backup of a Btrfs-snapshot plan, $FILES files (restic: field-note script, timestamped snapshot path)" nochange
python3 - "$RESULTS" <<'PY'
import sys, statistics, collections
d = collections.defaultdict(list)
for l in open(sys.argv[1]):
    t, s, w, c, r = l.split('\t')
    d[t].append((float(w), float(c), int(r)))
m = lambda t, i: statistics.median(x[i] for x in d[t])
print(f"restic with a fixed snapshot path (finds its parent): wall {m('restic-fixed',0):.2f}s, cpu {m('restic-fixed',1):.2f}s, "
      f"rss {m('restic-fixed',2)/1024:.1f} MiB; cairn is {m('restic-fixed',0)/m('cairn',0):.2f}x faster")
PY
