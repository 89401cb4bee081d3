#!/usr/bin/env bash
# HTTP/1.1 "Hello, World!" with hyper 1.x on maniac (`http_maniac`, through maniac::hyper) and on
# tokio (`http_tokio`, through hyper-util), loaded by wrk.
#
#   maniac-bench/http_bench.sh [--reps R] [--workers W] [--hogs N] [--port P]
#                              [--connections C] [--threads T] [--duration D] [--no-preemption]
#                              [--normal-monitor]
#
# Installs wrk if it is missing (apt-get, as root), builds both servers in release, then for each
# of R repetitions (default 3) runs each server in turn, alternating which goes first: start it
# with W workers (default 2), run `wrk -tT -cC -dD --latency` against it (default -t2 -c64 -d5s),
# kill it. Prints each run's requests/s and latency p50/p99, then each runtime's medians and the
# ratio maniac/tokio.
#
# wrk and the server share the machine's cores (on a 2-core machine wrk's 2 threads and the
# server's 2 workers compete for them), so the figures are a comparison, not a capacity.
#
# --hogs N starts each server with N tasks that compute forever without an .await. tokio never
# takes a worker back from a hog: with N >= W every worker is taken and wrk gets no response at
# all (0 requests/s, timeouts). maniac preempts them every quantum and keeps serving.
# --no-preemption and --normal-monitor set maniac's Builder::preemption(false) and
# Builder::preemption_realtime_monitor(false).
set -euo pipefail

reps=3 workers=2 hogs=0 port=18080 connections=64 threads=2 duration=5s maniac_flags=()
usage() { sed -n '4,7p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) reps=$2 ;;
        --workers) workers=$2 ;;
        --hogs) hogs=$2 ;;
        --port) port=$2 ;;
        --connections) connections=$2 ;;
        --threads) threads=$2 ;;
        --duration) duration=$2 ;;
        --no-preemption) maniac_flags+=(--no-preemption); shift; continue ;;
        --normal-monitor) maniac_flags+=(--normal-monitor); shift; continue ;;
        *) usage ;;
    esac
    [ $# -ge 2 ] || usage
    shift 2
done

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "wrk is missing, and installing it needs root: apt-get install wrk" >&2
        exit 1
    fi
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi

cd "$(dirname "$0")/.."
cargo build --release --quiet -p maniac-bench --bin http_maniac --bin http_tokio
target=${CARGO_TARGET_DIR:-target}

work=$(mktemp -d)
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# A wrk latency ("812.00us", "1.25ms", "2.00s") in microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) u = 1; else if (v ~ /ms$/) u = 1000; else if (v ~ /s$/) u = 1000000; else u = 1
        printf "%.1f", n * u
    }'
}

# The median of the numbers on stdin.
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Runs one server under wrk; appends "runtime rps p50_us p99_us" to $work/results.
run() {
    local runtime=$1 rep=$2 log="$work/$1.log" out="$work/$1.wrk"
    local flags=()
    if [ "$runtime" = maniac ]; then flags=("${maniac_flags[@]}"); fi
    "$target/release/http_$runtime" "127.0.0.1:$port" "$workers" --hogs "$hogs" ${flags[@]+"${flags[@]}"} \
        >"$log" 2>&1 &
    server=$!
    # Bounded wait for the server to say it listens.
    for _ in $(seq 200); do
        grep -q "listening on" "$log" && break
        kill -0 "$server" 2>/dev/null || { cat "$log" >&2; exit 1; }
        sleep 0.05
    done
    grep -q "listening on" "$log" || { echo "$runtime did not start" >&2; exit 1; }
    timeout 120 wrk -t"$threads" -c"$connections" -d"$duration" --latency \
        "http://127.0.0.1:$port/" >"$out" || true
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=""
    local rps p50 p99 errors
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p50=$(awk '$1 == "50%" { print $2 }' "$out")
    p99=$(awk '$1 == "99%" { print $2 }' "$out")
    errors=$(grep -E "Socket errors|Non-2xx" "$out" | tr -s ' ' | paste -sd';' - || true)
    printf "rep %d  %-6s  %12s req/s  p50 %9s  p99 %9s  %s\n" \
        "$rep" "$runtime" "${rps:-0}" "${p50:--}" "${p99:--}" "$errors"
    echo "$runtime ${rps:-0} $(to_us "${p50:-0}") $(to_us "${p99:-0}")" >>"$work/results"
}

echo "hyper hello world: wrk -t$threads -c$connections -d$duration, $workers workers, $hogs hogs," \
    "$reps repetitions, $(nproc) cores shared by wrk and the server"
for rep in $(seq "$reps"); do
    if [ $((rep % 2)) -eq 1 ]; then order="maniac tokio"; else order="tokio maniac"; fi
    for runtime in $order; do run "$runtime" "$rep"; done
done

echo
printf "%-8s %14s %12s %12s\n" median "req/s" "p50 (us)" "p99 (us)"
for runtime in maniac tokio; do
    for column in 2 3 4; do
        awk -v r="$runtime" -v c="$column" '$1 == r { print $c }' "$work/results" | median \
            >"$work/$runtime.$column"
    done
    printf "%-8s %14s %12s %12s\n" "$runtime" "$(cat "$work/$runtime.2")" \
        "$(cat "$work/$runtime.3")" "$(cat "$work/$runtime.4")"
done
awk -v m="$(cat "$work/maniac.2")" -v t="$(cat "$work/tokio.2")" \
    -v mp50="$(cat "$work/maniac.3")" -v tp50="$(cat "$work/tokio.3")" \
    -v mp99="$(cat "$work/maniac.4")" -v tp99="$(cat "$work/tokio.4")" 'BEGIN {
    ratio = "%-8s %14s %12s %12s\n"
    printf ratio, "m/t", (t > 0) ? sprintf("%.3f", m / t) : "-", (tp50 > 0) ? sprintf("%.3f", mp50 / tp50) : "-",
        (tp99 > 0) ? sprintf("%.3f", mp99 / tp99) : "-"
}'
