#!/usr/bin/env bash
# Instructions per poll of the suite's `yield_many`, counted by callgrind (deterministic, unlike
# times on a shared machine): maniac with preemption on and off, and tokio, each on 2 workers.
#
#   maniac-bench/instructions.sh [--iterations N]
#
# Installs Debian's valgrind if it is missing (apt-get, as root), builds the
# `yield_instructions` binary in release, runs each contender under callgrind for N and 2N
# iterations (default 10; each iteration is 200,000 polls) and divides the difference in
# instructions by N x 200,000 polls: start-up and shutdown cancel out. Prints one line per
# contender and the ratios maniac_on/maniac_off and maniac/tokio.
set -euo pipefail

iterations=10
usage() { sed -n '5,5p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || usage
    case "$1" in
        --iterations) iterations=$2 ;;
        *) usage ;;
    esac
    shift 2
done

if ! command -v valgrind >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "valgrind is missing, and installing it needs root: apt-get install valgrind" >&2
        exit 1
    fi
    apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi

cd "$(dirname "$0")/.."
cargo build --release --quiet -p maniac-bench --bin yield_instructions
binary=${CARGO_TARGET_DIR:-target}/release/yield_instructions
polls_per_iteration=200000

# Instructions callgrind counts for one run of `contender` for `n` iterations.
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$binary" "$1" "$2" 2>&1 >/dev/null |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

declare -A per_poll
for contender in maniac_on maniac_off tokio; do
    once=$(count "$contender" "$iterations")
    twice=$(count "$contender" $((2 * iterations)))
    per_poll[$contender]=$(awk -v a="$once" -v b="$twice" -v n="$iterations" -v p="$polls_per_iteration" \
        'BEGIN { printf "%.1f", (b - a) / (n * p) }')
    printf '%-10s %s instructions per poll (%d and %d iterations: %d and %d instructions)\n' \
        "$contender" "${per_poll[$contender]}" "$iterations" $((2 * iterations)) "$once" "$twice"
done
awk -v on="${per_poll[maniac_on]}" -v off="${per_poll[maniac_off]}" -v tokio="${per_poll[tokio]}" 'BEGIN {
    printf "maniac on/off %.4f (%+.1f instructions a poll); maniac on/tokio %.3f, off/tokio %.3f\n",
        on / off, on - off, on / tokio, off / tokio
}'
