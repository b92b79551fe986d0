#!/usr/bin/env bash
# Torture test (not run in CI): SIGKILL cairn at random moments of backup, forget --prune,
# prune, copy and rewrite on a growing local repository, and prove after every round that
# nothing was damaged or lost:
#   - `restic check` (0.14, the oracle) is clean on the repository (and on the copy target
#     after a copy round), after `restic unlock` removes the killed run's stale lock;
#   - every snapshot that existed before the round still exists, unless the command was
#     meant to remove it (forget: what `restic forget --dry-run` with the same policy would
#     remove; rewrite --forget: only when its rewritten snapshot exists);
#   - every CHECK_EVERY rounds, `cairn check` is clean too.
# The source tree changes between rounds (new, changed, truncated, deleted files). A hash
# manifest of the tree is kept for every finished backup; at the end `restic check
# --read-data` passes on both repositories and the last finished backup (or its rewrite)
# restores byte for byte with cairn.
#
# Usage: scripts/torture.sh            (ROUNDS=100, random SEED, printed)
#        ROUNDS=150 SEED=42 CHECK_EVERY=10 MAX_SOURCE_MB=48 scripts/torture.sh
#        KEEP_GOING=1  continue after a failure (default: stop at the first, keep the work dir)
#        WORK=/tmp/x   work directory (default: a new one under /tmp, removed on success)
#        CAIRN=path    binary to torture (default: target/debug/cairn, built with `cargo build`)
set -uo pipefail

ROUNDS=${ROUNDS:-100}
SEED=${SEED:-$(( $(date +%s) % 100000 ))}
CHECK_EVERY=${CHECK_EVERY:-10}
MAX_SOURCE_MB=${MAX_SOURCE_MB:-48}
KEEP_GOING=${KEEP_GOING:-0}
KEEP_LAST=${KEEP_LAST:-6}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

if [ -z "${CAIRN:-}" ]; then
  (cd "$ROOT" && cargo build -q -p cairn) || { echo "cargo build failed" >&2; exit 2; }
  CAIRN=$ROOT/target/debug/cairn
fi
command -v restic >/dev/null || { echo "restic is needed (apt-get install restic)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 2; }

WORK=${WORK:-$(mktemp -d /tmp/cairn-torture.XXXXXX)}
mkdir -p "$WORK"/{manifests,logs,failures}
REPO=$WORK/repo
REPO2=$WORK/repo2
SRC=$WORK/src
PW=$WORK/pw
echo "torture password" > "$PW"
export CAIRN_CACHE_DIR=$WORK/cache   # kept across kills on purpose: a stale cache must not hurt
unset RESTIC_REPOSITORY RESTIC_PASSWORD RESTIC_PASSWORD_FILE RESTIC_CACHE_DIR
RANDOM=$SEED

cairn() { "$CAIRN" --password-file "$PW" "$@"; }
rst() { restic --no-cache --password-file "$PW" "$@"; }

# ---- helpers in Python: seeded tree changes, manifests, snapshot lists -------------------

py_mutate() { # ROUND: add, change, truncate, delete files; a fresh *.tmp for rewrite
  python3 - "$SRC" "$SEED" "$1" "$MAX_SOURCE_MB" <<'EOF'
import os, random, sys
src, seed, rnd, max_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
r = random.Random(seed * 100003 + rnd)
os.makedirs(src, exist_ok=True)
def files():
    out = []
    for d, _, fs in os.walk(src):
        out += [os.path.join(d, f) for f in fs if not os.path.islink(os.path.join(d, f))]
    return sorted(out)
def data(n):
    if r.random() < 0.3:   # compressible
        line = b"round %d line of a log that compresses well\n" % rnd
        return (line * (n // len(line) + 1))[:n]
    return r.randbytes(n)
for f in files():
    if f.endswith(".tmp"):
        os.remove(f)
dirs = [src] + [os.path.join(src, d) for d in ("a", "a/b", "c", "c/d/e")]
for d in dirs:
    os.makedirs(d, exist_ok=True)
for _ in range(r.randint(1, 8)):                       # new files
    n = int(2 ** r.uniform(0, 21))                     # 1 B .. 2 MiB
    if r.random() < 0.08:
        n = r.randint(6, 16) << 20                     # a big one now and then
    with open(os.path.join(r.choice(dirs), "f%d-%d" % (rnd, r.randint(0, 1 << 30))), "wb") as f:
        f.write(data(n))
fs = files()
for f in r.sample(fs, min(len(fs), r.randint(0, 4))):  # changed in place
    size = os.path.getsize(f)
    with open(f, "r+b") as h:
        k = r.random()
        if k < 0.4:
            h.seek(r.randint(0, size)); h.write(data(r.randint(1, 65536)))
        elif k < 0.7:
            h.seek(0, 2); h.write(data(r.randint(1, 1 << 20)))
        else:
            h.truncate(r.randint(0, size))
fs = files()
for f in r.sample(fs, min(len(fs), r.randint(0, 3))):  # deleted
    os.remove(f)
if r.random() < 0.3:                                   # a symlink
    os.symlink("f-target-%d" % rnd, os.path.join(r.choice(dirs), "l%d" % rnd))
with open(os.path.join(src, "scratch-%d.tmp" % rnd), "wb") as f:  # what rewrite removes
    f.write(data(r.randint(1, 200000)))
fs = files()
total = sum(os.path.getsize(f) for f in fs)
while total > max_mb << 20 and fs:                     # bounded source, growing repository
    f = fs.pop(r.randrange(len(fs)))
    total -= os.path.getsize(f)
    os.remove(f)
EOF
}

py_manifest() { # DIR: one line per entry: path, type, sha256 or link target, size
  python3 - "$1" <<'EOF'
import hashlib, os, sys
root = sys.argv[1]
out = []
for d, ds, fs in os.walk(root):
    for n in ds + fs:
        p = os.path.join(d, n)
        rel = os.path.relpath(p, root)
        if os.path.islink(p):
            out.append("%s\tlink\t%s" % (rel, os.readlink(p)))
        elif os.path.isdir(p):
            out.append("%s\tdir" % rel)
        else:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for b in iter(lambda: f.read(1 << 20), b""):
                    h.update(b)
            out.append("%s\tfile\t%s\t%d" % (rel, h.hexdigest(), os.path.getsize(p)))
for l in sorted(out):
    print(l)
EOF
}

snapshots() { # REPO -> "id original time" per line (sorted by id), via restic
  rst -r "$1" snapshots --json 2>>"$WORK/logs/snapshots.err" | python3 -c '
import json, sys
for s in sorted(json.load(sys.stdin), key=lambda s: s["id"]):
    print(s["id"], s.get("original") or "-", s["time"])'
}

forget_would_remove() { # the ids restic itself would remove with our policy
  rst -r "$REPO" forget --dry-run --json --keep-last "$KEEP_LAST" 2>/dev/null | python3 -c '
import json, sys
for g in json.load(sys.stdin) or []:
    for s in g.get("remove") or []:
        print(s["id"])'
}

# ---- bookkeeping ------------------------------------------------------------------------

declare -A started killed completed failed_runs maxdelay
for op in backup forget prune copy rewrite; do
  started[$op]=0; killed[$op]=0; completed[$op]=0; failed_runs[$op]=0; maxdelay[$op]=3000
done
failures=0
stale_locks=0
cairn_checks=0
last_backup=""      # id of the last finished backup snapshot

fail() { # ROUND MESSAGE: record, keep the evidence, stop unless KEEP_GOING
  failures=$((failures + 1))
  echo "FAIL round $1: $2" | tee -a "$WORK/failures/list"
  cp -a "$WORK/logs" "$WORK/failures/round-$1-logs" 2>/dev/null
  if [ "$KEEP_GOING" != 1 ]; then summary; exit 1; fi
}

summary() {
  echo
  echo "== torture summary: seed $SEED, $round/$ROUNDS rounds, work dir $WORK"
  printf '%-8s %8s %8s %10s %8s\n' command started killed completed "failed"
  for op in backup forget prune copy rewrite; do
    printf '%-8s %8d %8d %10d %8d\n' "$op" "${started[$op]}" "${killed[$op]}" \
      "${completed[$op]}" "${failed_runs[$op]}"
  done
  echo "stale locks left by kills (removed by restic unlock): $stale_locks"
  echo "cairn check runs: $cairn_checks"
  echo "failures: $failures"
}

# ---- setup ------------------------------------------------------------------------------

cairn -r "$REPO" init >/dev/null || { echo "init failed" >&2; exit 2; }
cairn -r "$REPO2" init >/dev/null || { echo "init of the copy target failed" >&2; exit 2; }
py_mutate 0
echo "torture: seed $SEED, $ROUNDS rounds, work dir $WORK, binary $CAIRN"

round=0
while [ "$round" -lt "$ROUNDS" ]; do
  round=$((round + 1))
  log=$WORK/logs/round.log
  : > "$log"
  # Backups most often (they grow the repository), every other command now and then.
  if [ -z "$last_backup" ]; then op=backup; else
    k=$((RANDOM % 100))
    if [ $k -lt 40 ]; then op=backup
    elif [ $k -lt 55 ]; then op=forget
    elif [ $k -lt 70 ]; then op=prune
    elif [ $k -lt 85 ]; then op=copy
    else op=rewrite; fi
  fi
  before=$(snapshots "$REPO") || { fail $round "cannot list snapshots before the round"; continue; }
  before2=$(snapshots "$REPO2")
  may_vanish=""
  case $op in
    backup)
      py_mutate "$round"
      py_manifest "$SRC" > "$WORK/manifests/pending"
      cmd=(cairn -r "$REPO" backup "$SRC") ;;
    forget)
      may_vanish=$(forget_would_remove)
      cmd=(cairn -r "$REPO" forget --keep-last "$KEEP_LAST" --prune) ;;
    prune)
      cmd=(cairn -r "$REPO" prune --max-unused 0) ;;
    copy)
      cmd=(cairn -r "$REPO2" copy --from-repo "$REPO" --from-password-file "$PW") ;;
    rewrite)
      cmd=(cairn -r "$REPO" rewrite --exclude '*.tmp' --forget) ;;
  esac
  started[$op]=$((started[$op] + 1))
  "${cmd[@]}" >>"$log" 2>&1 &
  pid=$!
  delay=$((RANDOM * 32768 + RANDOM))
  delay=$((delay % (maxdelay[$op] + 1)))
  t0=$(date +%s%N)
  sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
  if kill -9 "$pid" 2>/dev/null; then
    wait "$pid" 2>/dev/null
    killed[$op]=$((killed[$op] + 1))
    how="killed after ${delay}ms"
  else
    wait "$pid"; rc=$?
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    # Aim the next kill of this command inside its running time.
    maxdelay[$op]=$(( ms * 13 / 10 + 100 ))
    if [ $rc -ne 0 ]; then
      failed_runs[$op]=$((failed_runs[$op] + 1))
      fail $round "$op exited $rc without being killed: $(tail -3 "$log")"
    fi
    completed[$op]=$((completed[$op] + 1))
    how="completed (exit $rc)"
  fi

  # A killed run may leave its lock: restic removes it as stale (dead pid, same host).
  if ls "$REPO/locks" "$REPO2/locks" 2>/dev/null | grep -q '^[0-9a-f]\{64\}$'; then
    stale_locks=$((stale_locks + 1))
  fi
  rst -r "$REPO" unlock >>"$log" 2>&1
  rst -r "$REPO2" unlock >>"$log" 2>&1
  if ! rst -r "$REPO" check >>"$log" 2>&1; then
    fail $round "restic check failed after $op $how: $(grep -i error "$log" | head -5)"
  fi
  if [ "$op" = copy ] && ! rst -r "$REPO2" check >>"$log" 2>&1; then
    fail $round "restic check of the copy target failed after copy $how"
  fi
  if [ $((round % CHECK_EVERY)) = 0 ]; then
    cairn_checks=$((cairn_checks + 1))
    cairn -r "$REPO" check >>"$log" 2>&1 || fail $round "cairn check failed after $op $how"
    cairn -r "$REPO2" check >>"$log" 2>&1 || fail $round "cairn check of the copy target failed"
  fi

  # No finished snapshot lost: each one is still there, or was meant to go.
  after=$(snapshots "$REPO")
  while read -r id orig _; do
    [ -n "$id" ] || continue
    grep -q "^$id " <<<"$after" && continue
    if [ "$op" = forget ] && grep -qx "$id" <<<"$may_vanish"; then continue; fi
    if [ "$op" = rewrite ]; then
      o=$id; [ "$orig" != - ] && o=$orig
      grep -q " $o " <<<"$after" && continue
    fi
    fail $round "snapshot $id vanished during $op ($how)"
  done <<<"$before"
  after2=$(snapshots "$REPO2")
  while read -r id _; do
    [ -n "$id" ] || continue
    grep -q "^$id " <<<"$after2" || fail $round "snapshot $id vanished from the copy target"
  done <<<"$before2"
  # A new snapshot from a backup (even one killed after writing it) is a finished backup.
  if [ "$op" = backup ]; then
    new=$(comm -13 <(cut -d' ' -f1 <<<"$before") <(cut -d' ' -f1 <<<"$after"))
    if [ "$(wc -w <<<"$new")" -gt 1 ]; then fail $round "one backup wrote several snapshots: $new"; fi
    if [ -n "$new" ]; then
      mv "$WORK/manifests/pending" "$WORK/manifests/$new"
      last_backup=$new
    fi
  fi
  printf 'round %3d: %-7s %-28s snapshots %2d, copies %2d\n' "$round" "$op" "$how" \
    "$(grep -c . <<<"$after")" "$(grep -c . <<<"$after2")"
done

# ---- the end: read every byte, restore the last finished backup ---------------------------

rst -r "$REPO" check --read-data > "$WORK/logs/read-data.log" 2>&1 \
  || fail end "restic check --read-data failed: $(grep -i error "$WORK/logs/read-data.log" | head -5)"
rst -r "$REPO2" check --read-data > "$WORK/logs/read-data2.log" 2>&1 \
  || fail end "restic check --read-data of the copy target failed"
final=$(snapshots "$REPO")
# The last finished backup, or the snapshot its rewrite left (without the *.tmp files).
target=$(awk -v id="$last_backup" '$1 == id || $2 == id {print $1}' <<<"$final" | head -1)
if [ -z "$target" ]; then
  fail end "the last finished backup $last_backup is gone"
else
  expected=$WORK/manifests/$last_backup
  if [ "$target" != "$last_backup" ]; then
    grep -v '\.tmp	' "$expected" > "$WORK/manifests/expected-rewritten"
    expected=$WORK/manifests/expected-rewritten
  fi
  rm -rf "$WORK/restore"
  if cairn -r "$REPO" restore "$target" --target "$WORK/restore" > "$WORK/logs/restore.log" 2>&1; then
    if diff <(py_manifest "$WORK/restore$SRC") "$expected" > "$WORK/logs/restore.diff"; then
      echo "last finished backup ${last_backup:0:8} (as ${target:0:8}) restored byte for byte"
    else
      fail end "restore of $target differs from the source at backup time: $(head -5 "$WORK/logs/restore.diff")"
    fi
  else
    fail end "restore of $target failed: $(tail -3 "$WORK/logs/restore.log")"
  fi
fi
summary
[ "$failures" = 0 ] || exit 1
[ "${WORK_KEEP:-0}" = 1 ] || rm -rf "$WORK"
