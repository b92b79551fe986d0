# Shared by the benchmark scripts (sourced): measuring a command and summarising results.
# shellcheck shell=bash
# Needs BENCH_DIR and RESULTS set by the caller.

# measure TOOL STEP CMD... : runs CMD under GNU time, appends "tool step wall cpu rss_kib"
measure() {
  local tool=$1 step=$2; shift 2
  local tf; tf=$(mktemp)
  if ! /usr/bin/time -f '%e %U %S %M %R %c' -o "$tf" "$@" >"$BENCH_DIR/last.out" 2>"$BENCH_DIR/last.err"; then
    echo "$tool $step failed:" >&2; tail -5 "$BENCH_DIR/last.err" >&2; exit 1
  fi
  local wall user sys rss faults ics
  read -r wall user sys rss faults ics < "$tf"; rm -f "$tf"
  echo -e "$tool\t$step\t$wall\t$(echo "$user + $sys" | bc)\t$rss" >> "$RESULTS"
  # user/sys, minor page faults and involuntary context switches: why one run of the same
  # work took more CPU than another (kernel time, page faults, preemption).
  printf '  %-6s %-16s wall %7.2fs  cpu %7.2fs  rss %7.1f MiB  (user %.2f sys %.2f faults %d preempted %d)\n' \
    "$tool" "$step" "$wall" "$(echo "$user + $sys" | bc)" "$(echo "$rss / 1024" | bc -l)" "$user" "$sys" "$faults" "$ics"
}

# summary TITLE STEP[:TARGET]... : a Markdown table of the medians per tool and step (STEP
# may be A+B: per run the sum of both steps' times and the larger peak RSS), the
# ratios restic/cairn (speed and CPU, above 1 means cairn is faster) and cairn/restic (peak
# RSS, below 1 means cairn uses less). With a TARGET (a speed ratio), whether the median
# wall-time ratio meets it and whether peak RSS is at most 0.6x restic's.
summary() {
  local title=$1; shift
  python3 - "$RESULTS" "$title" "$@" <<'PY'
import sys, statistics, collections
rows = [l.split('\t') for l in open(sys.argv[1]) if l.strip()]
d = collections.defaultdict(list)
for tool, step, wall, cpu, rss in rows:
    d[(tool, step)].append((float(wall), float(cpu), int(rss)))
med = lambda v, i: statistics.median(x[i] for x in v)
head = ["step", "cairn wall s", "restic wall s", "speed ×", "target", "met", "cairn CPU s",
        "restic CPU s", "CPU ×", "cairn MiB", "restic MiB", "RSS ratio", "RSS ≤ 0.6"]
out = []
def runs(tool, step):
    # "a+b": per run, the sum of the times and the larger peak RSS of steps a and b.
    parts = [d[(tool, p)] for p in step.split("+")]
    if len(parts) == 1: return parts[0]
    if not all(parts) or len({len(p) for p in parts}) != 1: return []
    return [(sum(x[0] for x in xs), sum(x[1] for x in xs), max(x[2] for x in xs)) for xs in zip(*parts)]
for arg in sys.argv[3:]:
    step, _, target = arg.partition(":")
    c, r = runs("cairn", step), runs("restic", step)
    if not c:
        continue
    cw, cc, cm = med(c, 0), med(c, 1), med(c, 2) / 1024
    if not r:
        out.append([step, f"{cw:.2f}", "–", "–", "–", "–", f"{cc:.2f}", "–", "–", f"{cm:.1f}", "–", "–", "–"])
        continue
    rw, rc, rm = med(r, 0), med(r, 1), med(r, 2) / 1024
    speed, ratio = rw / max(cw, 1e-3), cm / max(rm, 1e-3)
    met = rss_ok = "–"
    if target:
        met = "yes" if speed >= float(target) else "no"
        rss_ok = "yes" if ratio <= 0.6 else "no"
    out.append([step, f"{cw:.2f}", f"{rw:.2f}", f"{speed:.2f}×", f"{target}×" if target else "–", met,
                f"{cc:.2f}", f"{rc:.2f}", f"{rc / max(cc, 1e-3):.2f}×", f"{cm:.1f}", f"{rm:.1f}", f"{ratio:.2f}", rss_ok])
w = [max(len(x[i]) for x in out + [head]) for i in range(len(head))]
line = lambda cells: "| " + " | ".join(s.ljust(w[i]) if i == 0 else s.rjust(w[i]) for i, s in enumerate(cells)) + " |"
print(f"\nmedians over runs; {sys.argv[2]}\n")
print(line(head))
print("|" + "|".join("-" * (n + 1) + ":" if i else ":" + "-" * (n + 1) for i, n in enumerate(w)) + "|")
for cells in out:
    print(line(cells))
PY
}

# repo_size_summary FILE MAX_PERCENT : FILE has "tool bytes" lines (one per run); prints the
# median repository sizes and whether cairn's is at most MAX_PERCENT above restic's.
repo_size_summary() {
  python3 - "$1" "$2" <<'PY'
import sys, statistics, collections
d = collections.defaultdict(list)
for l in open(sys.argv[1]):
    if l.strip():
        tool, size = l.split()
        d[tool].append(int(size))
if d["cairn"] and d["restic"]:
    c, r = statistics.median(d["cairn"]), statistics.median(d["restic"])
    pct, limit = (c / r - 1) * 100, float(sys.argv[2])
    print(f"\nrepository after the first backup: cairn {c / 1048576:.1f} MiB, restic {r / 1048576:.1f} MiB, "
          f"cairn {pct:+.2f}% (target: at most +{limit:g}%: {'met' if pct <= limit else 'not met'})")
PY
}
