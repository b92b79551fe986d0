#!/usr/bin/env bash
# Benchmark (not CI): download a 1 GiB folder of a snapshot through the web UI's API as
# .tar.gz and as .zip, and report the server's peak RSS (VmHWM of `cairn web`) and the
# throughput. The download streams through a bounded channel: the target is a peak RSS
# under 150 MiB whatever the folder's size.
#
#   scripts/bench-download.sh                     # 1 GiB mixed data (scripts/gen_data.py)
#   BENCH_GIB=0.2 PROFILE=dev scripts/bench-download.sh   # a quick look, debug build
#
# Exits 1 when the peak RSS is over RSS_LIMIT_MIB (150).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR=${BENCH_DIR:-/tmp/cairn-bench-download}
BENCH_GIB=${BENCH_GIB:-1.0}
PROFILE=${PROFILE:-release}
RSS_LIMIT_MIB=${RSS_LIMIT_MIB:-150}
PORT=${PORT:-18437}
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }
if [ "$PROFILE" = release ]; then
  cargo build --release -q -p cairn
  CAIRN=$PWD/target/release/cairn
else
  cargo build -q -p cairn
  CAIRN=$PWD/target/debug/cairn
fi
mkdir -p "$BENCH_DIR"
python3 scripts/gen_data.py "$BENCH_DIR/data" "$BENCH_GIB" "$BENCH_DIR/small" 2000 >/dev/null

W=$(mktemp -d "$BENCH_DIR/run.XXXXXX")
SERVER=
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
echo bench > "$W/pw"
export CAIRN_CACHE_DIR="$W/cache"
"$CAIRN" -r "$W/repo" --password-file "$W/pw" init -q >/dev/null
echo "backing up $BENCH_DIR/data ..."
"$CAIRN" -r "$W/repo" --password-file "$W/pw" backup -q "$BENCH_DIR/data" >/dev/null
SNAP=$("$CAIRN" -r "$W/repo" --password-file "$W/pw" snapshots --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
BYTES=$(du -sb --apparent-size "$BENCH_DIR/data" | cut -f1)

echo bench-pw | "$CAIRN" web hash-password > "$W/admin.hash"
cat > "$W/cairn.toml" <<EOF
[settings]
state-dir = "$W/state"
[settings.web]
listen = "127.0.0.1:$PORT"
[settings.web.users.admin]
password-hash-file = "$W/admin.hash"
role = "admin"
[repositories.bench]
url = "$W/repo"
password-file = "$W/pw"
EOF
"$CAIRN" --config "$W/cairn.toml" web 2> "$W/web.log" &
SERVER=$!
for _ in $(seq 1 200); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
  sleep 0.1
done
curl -sf -c "$W/jar" -H 'Content-Type: application/json' \
  -d '{"username":"admin","password":"bench-pw"}' "http://127.0.0.1:$PORT/api/login" >/dev/null
hwm() { awk '/VmHWM/ {print int($2/1024)}' "/proc/$SERVER/status"; }
ITEM=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$BENCH_DIR/data")
echo "server up (pid $SERVER), peak RSS before downloads: $(hwm) MiB; folder: $((BYTES >> 20)) MiB"
worst=0
for fmt in tar.gz zip; do
  read -r size secs < <(curl -sf -b "$W/jar" -o /dev/null -w '%{size_download} %{time_total}\n' \
    "http://127.0.0.1:$PORT/api/repositories/bench/snapshots/$SNAP/download?item=$ITEM&format=$fmt")
  peak=$(hwm)
  [ "$peak" -gt "$worst" ] && worst=$peak
  python3 - "$fmt" "$BYTES" "$size" "$secs" "$peak" <<'PY'
import sys
fmt, data, size, secs, peak = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
print(f"  {fmt:7} {data / 2**20 / secs:7.1f} MiB/s of folder data ({size / 2**20:.0f} MiB sent in {secs:.1f} s), server peak RSS {peak} MiB")
PY
done
echo "peak RSS of the server: $worst MiB (target < $RSS_LIMIT_MIB MiB)"
[ "$worst" -lt "$RSS_LIMIT_MIB" ]
