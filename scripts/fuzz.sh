#!/usr/bin/env bash
# Coverage-guided fuzzing of cairn's parsers of untrusted bytes with AFL++ (cargo-afl, on
# the stable toolchain). NOT part of CI: run it by hand, it takes MINUTES per target.
#
#   scripts/fuzz.sh [MINUTES] [TARGET...]     # default: 5 minutes, every target
#
# Targets: pack_header index_json tree_json snapshot_json key_file sftp rest s3 config.
# Needs once: `cargo install cargo-afl && cargo afl config --build`, and socat (sftp).
# Corpora and findings go to fuzz/out/TARGET/default/{queue,crashes,hangs}; a second run
# resumes from the corpus it left. See fuzz/README.md for triage.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
MINUTES=${1:-5}
shift || true
ALL=(pack_header index_json tree_json snapshot_json key_file sftp rest s3 config)
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL[@]}"); fi

if ! command -v cargo-afl >/dev/null; then
    echo "cargo-afl is missing: cargo install cargo-afl && cargo afl config --build" >&2
    exit 1
fi
for t in "${TARGETS[@]}"; do
    case " ${ALL[*]} " in
    *" $t "*) ;;
    *) echo "unknown target $t; targets: ${ALL[*]}" >&2; exit 2 ;;
    esac
done

# Only one core is ours when others build: be polite. FUZZ_NO_BUILD=1 reuses the binaries
# already built (the tree may be mid-edit).
if [ -z "${FUZZ_NO_BUILD:-}" ]; then
    nice -n 10 cargo afl build
fi
if [ -z "${FUZZ_NO_BUILD:-}" ] && [[ " ${TARGETS[*]} " == *" config "* ]]; then
    # The config is validated inside the cairn binary (not a library): fuzz the binary
    # itself, built instrumented into our own target dir, on `config check`.
    nice -n 10 cargo afl build --manifest-path ../crates/cairn/Cargo.toml --bin cairn \
        --target-dir target/cairn
fi

export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
export AFL_AUTORESUME=1 AFL_NO_AFFINITY=1
# Many threads (fake servers, parallel listing) must not reserve 64 MiB malloc arenas
# each under the 1 GiB memory limit below.
export MALLOC_ARENA_MAX=2

summary=()
for t in "${TARGETS[@]}"; do
    out="out/$t"
    mkdir -p "$out"
    dict=()
    [ -f "dict/$t.dict" ] && dict=(-x "dict/$t.dict")
    if [ "$t" = config ]; then
        # A panic in the binary exits 101 (the unwinding default): count it as a crash.
        cmd=(env AFL_CRASH_EXITCODE=101 cargo afl fuzz -V $((MINUTES * 60)) -m 1024 -t 5000
            "${dict[@]}" -i seeds/config -o "$out" -- target/cairn/debug/cairn
            --config @@ config check)
    else
        cmd=(cargo afl fuzz -V $((MINUTES * 60)) -m 1024 -t 5000 "${dict[@]}"
            -i "seeds/$t" -o "$out" -- "target/debug/$t")
    fi
    echo "== $t: ${MINUTES} min"
    nice -n 10 "${cmd[@]}" >"$out/afl.log" 2>&1 || {
        echo "afl-fuzz failed for $t; see fuzz/$out/afl.log" >&2
        tail -20 "$out/afl.log" >&2
        exit 1
    }
    stats="$out/default/fuzzer_stats"
    get() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
    line="$t: $(get execs_done) execs in $(get run_time)s, corpus $(get corpus_count), crashes $(get saved_crashes), hangs $(get saved_hangs)"
    echo "$line"
    summary+=("$line")
done

echo
echo "== summary"
printf '%s\n' "${summary[@]}"
echo "findings: fuzz/out/TARGET/default/crashes and hangs (reproduce: fuzz/target/debug/TARGET < FILE)"
