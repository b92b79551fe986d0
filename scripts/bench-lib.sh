# Shared by the benchmark scripts (sourced): measuring a command and summarising results.
# Needs BENCH_DIR and RESULTS set by the caller.

# measure TOOL STEP CMD... : runs CMD under GNU time, appends "tool step wall cpu rss_kib"
measure() {
  local tool=$1 step=$2; shift 2
  local tf; tf=$(mktemp)
  if ! /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >"$BENCH_DIR/last.out" 2>"$BENCH_DIR/last.err"; then
    echo "$tool $step failed:" >&2; tail -5 "$BENCH_DIR/last.err" >&2; exit 1
  fi
  read -r wall user sys rss < "$tf"; rm -f "$tf"
  echo -e "$tool\t$step\t$wall\t$(echo "$user + $sys" | bc)\t$rss" >> "$RESULTS"
  printf '  %-6s %-16s wall %7.2fs  cpu %7.2fs  rss %7.1f MiB\n' "$tool" "$step" "$wall" "$(echo "$user + $sys" | bc)" "$(echo "$rss / 1024" | bc -l)"
}

# summary TITLE STEP... : medians per tool and step, and the ratios restic/cairn (speed,
# above 1 means cairn is faster) and cairn/restic (memory, below 1 means cairn uses less).
summary() {
  local title=$1; shift
  python3 - "$RESULTS" "$title" "$@" <<'PY'
import sys, statistics, collections
rows = [l.split('\t') for l in open(sys.argv[1]) if l.strip()]
d = collections.defaultdict(list)
for tool, step, wall, cpu, rss in rows:
    d[(tool, step)].append((float(wall), float(cpu), int(rss)))
med = lambda v, i: statistics.median(x[i] for x in v)
print(f"\nmedians over runs; {sys.argv[2]}")
print(f"{'step':16} {'cairn wall':>11} {'restic wall':>12} {'speed x':>8} {'cairn cpu':>10} {'restic cpu':>11} {'cairn MiB':>10} {'restic MiB':>11} {'rss ratio':>9}")
for step in sys.argv[3:]:
    c, r = d[("cairn", step)], d[("restic", step)]
    if c and not r:
        print(f"{step:16} {med(c,0):10.2f}s {'-':>12} {'-':>8} {med(c,1):9.2f}s {'-':>11} {med(c,2)/1024:10.1f} {'-':>11} {'-':>9}")
        continue
    if not c or not r: continue
    cw, rw, cc, rc, cm, rm = med(c,0), med(r,0), med(c,1), med(r,1), med(c,2)/1024, med(r,2)/1024
    print(f"{step:16} {cw:10.2f}s {rw:11.2f}s {rw/max(cw,1e-3):7.2f}x {cc:9.2f}s {rc:10.2f}s {cm:10.1f} {rm:11.1f} {cm/max(rm,1e-3):8.2f}")
PY
}
