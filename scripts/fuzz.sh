#!/usr/bin/env bash
# Fuzz yoton-rs with cargo-fuzz (libFuzzer); the targets are in fuzz/fuzz_targets.
#
#   scripts/fuzz.sh                 every target for 600 s
#   scripts/fuzz.sh SECONDS         every target for SECONDS
#   scripts/fuzz.sh smoke           every target for 10 s (what CI runs)
#   scripts/fuzz.sh SECONDS T...    only the targets T... (codec object handshake address ws_deframe router)
#
# Installs cargo-fuzz when it is missing. On a stable toolchain cargo-fuzz needs nightly
# flags (-Zsanitizer=address): RUSTC_BOOTSTRAP=1 allows them. Prints the executions and
# crashes of each target; exits non-zero when a target crashed (the input that did it is
# in fuzz/artifacts/TARGET/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz TARGET fuzz/artifacts/TARGET/crash-...).
# The corpus grows in fuzz/corpus/TARGET/ (seeded on the first run) and is reused.
# FUZZ_KEEP_GOING=1 keeps fuzzing after a crash (libFuzzer's -fork=1 -ignore_crashes=1),
# to look past a known bug; every crash input is still saved and counted.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

secs=600
case "${1:-}" in
    smoke) secs=10; shift ;;
    ''|-*) ;;
    *[!0-9]*) echo "usage: $0 [SECONDS|smoke] [TARGET...]" >&2; exit 2 ;;
    *) secs=$1; shift ;;
esac
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(codec object handshake address ws_deframe router)

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz >&2
fi

seed() { # seed TARGET NAME PRINTF-FORMAT
    local dir="fuzz/corpus/$1"
    mkdir -p "$dir"
    # shellcheck disable=SC2059
    printf "$3" > "$dir/seed-$2"
}
hdr() { # the 56-byte header: slot source seq dest dseq length (little-endian u64s)
    local out='YOTON   ' v i
    for v in "$@"; do
        for i in 0 1 2 3 4 5 6 7; do out+=$(printf '\\x%02x' $(( (v >> (8 * i)) & 255 ))); done
    done
    printf '%s' "$out"
}
if [ ! -d fuzz/corpus/codec ]; then
    # byte 0: max size selector, byte 1: split seed, then the stream
    seed codec package "\x04\x07$(hdr 9 5 1 0 0 3)abc$(hdr 1 0 0 0 0 0)$(hdr 1 0 1 0 0 0)"
    seed codec huge "\x05\x01$(hdr 9 5 1 0 0 1073741824)0123456789"
    seed codec toolarge "\x02\x03$(hdr 9 5 1 0 0 65)"
fi
if [ ! -d fuzz/corpus/object ]; then
    seed object tuple 't\x03s\x04echot\x02s\x05hellof\x00\x00\x00\x00\x00\x00\xe0?d\x01s\x01ai\x01\x00\x00\x00\x00\x00\x00\x00'
    seed object long 'l\xff\x02\x00\x00\x00\x00\x00\x00\x00nb\x01'
    seed object nested 'l\x01l\x01l\x01l\x01d\x01nn'
fi
if [ ! -d fuzz/corpus/handshake ]; then
    seed handshake host '\x00YOTON!0123456789abcdef.4242\r\n'
    seed handshake client '\x01YOTON!0123456789abcdef.4242\r\n'
    seed handshake auth '\x02YOTON!0123456789abcdef.42+auth:000102030405060708090a0b0c0d0e0f\r\nAUTH 000102030405060708090a0b0c0d0e0f 000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f\r\n'
    seed handshake authc '\x03YOTON!0123456789abcdef.42+auth:000102030405060708090a0b0c0d0e0f\r\nAUTH-OK 000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f\r\n'
    seed handshake http '\x00GET / HTTP/1.1\r\nHost: x\r\n\r\n'
fi
if [ ! -d fuzz/corpus/ws_deframe ]; then
    # byte 0: side (bit 0: server) and size limit, byte 1: pieces seed, then frames
    seed ws_deframe masked '\x0b\x05\x82\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58\x89\x81\x01\x02\x03\x04\x71'
    seed ws_deframe fragments '\x0a\x09\x02\x03abc\x89\x01p\x00\x03def\x80\x01g\x8a\x00\x88\x05\x03\xe9bye'
    seed ws_deframe long '\x0a\x02\x82\x7e\x00\x80xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\x81\x01t'
fi
if [ ! -d fuzz/corpus/router ]; then
    # ops: \x00 adds a link; kind 2 (op % 8) is a read of 1 + op / 8 % 8 packages
    # over link byte % 8, each (source, seq choice, dest); kind 1 removes a link
    seed router stream '\x00\x3a\x00\x01\x00\x02\x01\x00\x02\x01\x00\x02\x01\x00\x02\x01\x00\x02\x01\x00\x02\x01\x00\x02\x01\x00\x02'
    seed router forward '\x00\x00\x1a\x01\x02\x02\x07\x01\x00\x06\x03\x05\x00\x01\x02\x01\x03\x01\x01\x00'
    seed router duplicates '\x00\x12\x00\x01\x02\x05\x00\x01\x00\x00\x01\x03\x00\x00\x0a\x00\x08\x00\x03\x02'
fi
if [ ! -d fuzz/corpus/address ]; then
    seed address name 'tcp://localhost:test+2/path'
    seed address v6 'quic://[::1]:7'
    seed address inproc 'inproc://workers'
    seed address underscore 'ws://example.org:1_000/yoton'
fi

cargo fuzz build --fuzz-dir fuzz >&2

mkdir -p fuzz/logs
failed=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/artifacts/$t"
    before=$(find "fuzz/artifacts/$t" -type f | wc -l)
    log="fuzz/logs/$t.log"
    echo "fuzz.sh: $t for ${secs}s (log: $log)" >&2
    extra=()
    if [ "${FUZZ_KEEP_GOING:-0}" = 1 ]; then extra=(-fork=1 -ignore_crashes=1); fi
    set +e
    cargo fuzz run --fuzz-dir fuzz "$t" -- \
        -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 \
        -timeout=10 "${extra[@]}" >"$log" 2>&1
    rc=$?
    set -e
    after=$(find "fuzz/artifacts/$t" -type f | wc -l)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    crashes=$((after - before))
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes="?(exit $rc)"; fi
    if [ "$rc" -ne 0 ] || [ "$after" -ne "$before" ]; then
        failed=1
        echo "fuzz.sh: $t FAILED; last lines of $log:" >&2
        tail -40 "$log" >&2
    fi
    summary+=("$(printf '%-10s executions %-12s coverage %-6s crashes %s' "$t" "${execs:-?}" "${cov:-?}" "$crashes")")
done
echo "== fuzz summary (${secs}s per target) =="
printf '%s\n' "${summary[@]}"
exit "$failed"
