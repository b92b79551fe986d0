#!/usr/bin/env bash
# Benchmark (not CI) of the snapshot browser's API: listing one directory of a 100,000-file
# snapshot, through `GET /api/repositories/{repo}/snapshots/{id}/ls?path=`.
#
#   scripts/bench-web.sh                  # local repository, and Garage if `garage` is installed
#   BACKENDS=local scripts/bench-web.sh   # local only
#   CAIRN=target/debug/cairn DIRS=20 FILES_PER_DIR=50 scripts/bench-web.sh   # try the script
#
# Data: 200 directories of 500 small files (100,000 files), backed up once by cairn.
# For each backend, a fresh `cairn web` process (cold: nothing in memory) with a warm
# metadata cache (the on-disk cache filled by a `cairn ls` before) is started, and:
# - its FIRST request lists one directory: that request opens the repository (key, config,
#   index, snapshot) and reads the trees on the path. Printed whole, and without the key
#   derivation (scrypt: fixed by the repository's key parameters), which the server logs
#   when it opens a repository ("web: repository NAME opened in X ms (key Y ms, ...)");
#   RUNS fresh processes (default 3);
# - then, in the first process, each of the 200 directories is listed once over one
#   keep-alive connection, and p50/p99/max per listing are printed.
# Targets: first listing without the key derivation < 20 ms (issue 15); p50 < 20 ms,
# p99 < 100 ms (issue 12). Loopback: no network latency.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR=${BENCH_DIR:-/tmp/cairn-bench-web}
BACKENDS=${BACKENDS:-"local s3"}
DIRS=${DIRS:-200}
FILES_PER_DIR=${FILES_PER_DIR:-500}
RUNS=${RUNS:-3}
export PATH="$HOME/.cargo/bin:$PATH"
if [[ " $BACKENDS " = *" s3 "* ]] && ! command -v garage >/dev/null; then
  echo "garage is not installed: benchmarking the local repository only" >&2
  BACKENDS=${BACKENDS//s3/}
fi
# CAIRN=path/to/cairn skips the release build (e.g. to try the script on a debug build).
if [ -z "${CAIRN:-}" ]; then
  cargo build --release -q
  CAIRN=$PWD/target/release/cairn
fi
mkdir -p "$BENCH_DIR"
cleanup() {
  [ -f "$BENCH_DIR/web.pid" ] && kill "$(cat "$BENCH_DIR/web.pid")" 2>/dev/null || true
  [ -f "$BENCH_DIR/peer-s3/garage.pid" ] && kill "$(cat "$BENCH_DIR/peer-s3/garage.pid")" 2>/dev/null || true
}
trap cleanup EXIT

SRC=$BENCH_DIR/small-$DIRS-$FILES_PER_DIR
if [ ! -d "$SRC" ]; then
  python3 - "$SRC" "$DIRS" "$FILES_PER_DIR" <<'PY'
import os, sys
root, dirs, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for d in range(dirs):
    p = os.path.join(root, f"d{d:04}")
    os.makedirs(p)
    for i in range(per):
        with open(os.path.join(p, f"file-{i:05}.txt"), "w") as f:
            f.write(f"{d} {i}\n")
PY
fi
echo bench > "$BENCH_DIR/pw"
PW=$BENCH_DIR/pw

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_peer() { # start_peer NAME SCRIPT PORTVAR... : runs the script, exports what it prints
  local name=$1 script=$2; shift 2
  rm -rf "$BENCH_DIR/peer-$name"
  local envs=(STATE="$BENCH_DIR/peer-$name")
  for v in "$@"; do envs+=("$v=$(free_port)"); done
  local out; out=$(env "${envs[@]}" bash "scripts/peers/$script")
  while IFS='=' read -r k v; do [ -n "$k" ] && export "$k=${v//\'/}"; done <<< "$out"
}

HASH=$(printf 'bench-pw' | "$CAIRN" web hash-password)
echo "$HASH" > "$BENCH_DIR/user.hash"

for b in $BACKENDS; do
  CACHE=$BENCH_DIR/cache-$b
  rm -rf "$CACHE"
  ENVFILE=$BENCH_DIR/$b.env
  : > "$ENVFILE"
  case $b in
    local)
      URL=$BENCH_DIR/repo-local
      rm -rf "$URL" ;;
    s3)
      start_peer s3 start-garage.sh GARAGE_S3_PORT GARAGE_RPC_PORT GARAGE_ADMIN_PORT
      URL="s3:$S3_ENDPOINT/$S3_BUCKET/bench-web"
      # The keys go to the repository's env-file only: the web server reads them from its
      # backend overlay, not from its own environment.
      printf 'AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=%s\nAWS_DEFAULT_REGION=garage\n' \
        "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" > "$ENVFILE"
      unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY ;;
    *) echo "unknown backend $b (local, s3)" >&2; exit 1 ;;
  esac
  run() { env $(cat "$ENVFILE") "$CAIRN" -q --cache-dir "$CACHE" -r "$URL" --password-file "$PW" "$@"; }
  run init >/dev/null
  run backup "$SRC" >/dev/null
  run ls latest >/dev/null   # warms the on-disk metadata cache
  SNAP=$(run snapshots --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
  PORT=$(free_port)
  cat > "$BENCH_DIR/cairn-$b.toml" <<EOF
[settings]
state-dir = "$BENCH_DIR/state"
[settings.web]
listen = "127.0.0.1:$PORT"
[settings.web.users.bench]
password-hash-file = "$BENCH_DIR/user.hash"
role = "viewer"
[repositories.bench]
url = "$URL"
password-file = "$PW"
env-file = "$ENVFILE"
cache-dir = "$CACHE"
EOF
  echo "$b: listing $DIRS directories of $FILES_PER_DIR files ($((DIRS * FILES_PER_DIR)) files in the snapshot)"
  for run_no in $(seq 1 "$RUNS"); do
    "$CAIRN" --config "$BENCH_DIR/cairn-$b.toml" web 2>"$BENCH_DIR/web-$b.log" &
    echo $! > "$BENCH_DIR/web.pid"
    for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
    python3 - "$PORT" "$SRC" "$DIRS" "$SNAP" "$BENCH_DIR/web-$b.log" "$run_no" <<'PY'
import http.client, json, re, statistics, sys, time, urllib.parse
port, src, dirs, snap, log = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
run_no = int(sys.argv[6])
c = http.client.HTTPConnection("127.0.0.1", port)
c.request("POST", "/api/login", body=json.dumps({"username": "bench", "password": "bench-pw"}),
          headers={"Content-Type": "application/json"})
r = c.getresponse(); r.read()
assert r.status == 200, f"login: {r.status}"
cookie = r.getheader("Set-Cookie").split(";")[0]
def get(path):
    c.request("GET", path, headers={"Cookie": cookie})
    r = c.getresponse(); body = r.read()
    assert r.status == 200, f"{path}: {r.status} {body[:200]!r}"
    return body
def ls(d):
    path = urllib.parse.quote(f"{src}/d{d:04}")
    body = get(f"/api/repositories/bench/snapshots/{snap}/ls?path={path}")
    assert len(json.loads(body)["entries"]) > 0
# The first request of a fresh process opens the repository, then lists.
t = time.perf_counter()
ls(dirs // 2)
first = (time.perf_counter() - t) * 1000
m = None
for _ in range(20):
    m = re.search(r"opened in ([0-9.]+) ms \(key ([0-9.]+) ms", open(log).read())
    if m:
        break
    time.sleep(0.05)
if m:
    key = float(m.group(2))
    print(f"  run {run_no}: first listing of a fresh process {first:.1f} ms; key derivation {key:.1f} ms; "
          f"without it {first - key:.1f} ms (target < 20)")
else:
    print(f"  run {run_no}: first listing of a fresh process {first:.1f} ms (this cairn does not log its key derivation time)")
if run_no > 1:
    sys.exit(0)
t = time.perf_counter()
get("/api/repositories/bench/snapshots")
print(f"  snapshots list after it: {(time.perf_counter() - t) * 1000:.1f} ms")
ms = []
for d in range(dirs):
    t = time.perf_counter()
    ls(d)
    ms.append((time.perf_counter() - t) * 1000)
ms.sort()
p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
print(f"  ls one directory: p50 {statistics.median(ms):.1f} ms  p99 {p(0.99):.1f} ms  max {ms[-1]:.1f} ms  (targets: p50 < 20, p99 < 100)")
PY
    kill "$(cat "$BENCH_DIR/web.pid")" 2>/dev/null || true
    wait "$(cat "$BENCH_DIR/web.pid")" 2>/dev/null || true
    rm -f "$BENCH_DIR/web.pid"
  done
done
