#!/usr/bin/env bash
# Wake latency of a 1 ms ticker beside CPU hogs: maniac (preemption at 1 ms and at 100 µs, with
# its monitor at real-time priority, the default, and at normal priority (`_normal`); and off),
# tokio and Go, with the same workload (maniac-bench's `preempt_latency`, and
# maniac-bench/go's `-mode latency`), in one run.
#
#   maniac-bench/preempt_bench.sh [--reps R] [--workers W] [--seconds S] [--clock-hogs]
#
# With --clock-hogs the latency part's hogs read the clock at every step (maniac-bench's
# `--clock-hogs`, the Go program's `-clock`) instead of pure arithmetic.
# Installs Debian's golang-go if `go` is missing (apt-get, as root), builds the Go program
# (maniac-bench/go) and maniac-bench in release, then for each of R repetitions (default 3) runs
# the Go program's latency mode and `maniac-bench --only preempt_latency --reps 1` (which runs
# its six contenders), alternating which goes first. Every contender measures for S seconds
# (default 2) with W workers (default: the machine's cores) and 2W hogs. Prints each run's
# figures, then one table of each contender's medians over the repetitions, with the ratios of
# its p99 and p99.9 to Go's and to maniac_1ms's, and how often the machine itself took a busy
# thread's core away (`cpu_gaps`, run before each repetition): the floor under every tail
# latency.
#
# Then the cost of a preemption, maniac against Go: R repetitions of Go's preempt_cost
# (maniac-bench/go's `-mode cost`: 2W goroutines of about 500 ms of arithmetic each, with
# GODEBUG=asyncpreemptoff=1 and without, back to back, order alternating), then
# `maniac-bench --only preempt_cost --reps R` (off, and quanta of 10 ms (Go's forcePreemptNS),
# 1 ms and 100 µs, back to back, order rotating), then `maniac-bench --only interrupt_floor
# --reps R` (the same work on plain threads, interrupted once a quantum by their own timers or by
# a sleeping thread's tgkill: the floor under any design that interrupts once a quantum); a table
# of the medians of the per-repetition throughput loss and cost per preemption (or interrupt).
set -euo pipefail

reps=3 workers=$(nproc) seconds=2 clock_rust="" clock_go="" hogs="CPU hogs"
usage() { sed -n '7,7p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
    if [ "$1" = --clock-hogs ]; then
        clock_rust=--clock-hogs clock_go=-clock hogs="hogs reading the clock at every step"
        shift
        continue
    fi
    [ $# -ge 2 ] || usage
    case "$1" in
        --reps) reps=$2 ;;
        --workers) workers=$2 ;;
        --seconds) seconds=$2 ;;
        *) usage ;;
    esac
    shift 2
done

if ! command -v go >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "go is missing, and installing it needs root: apt-get install golang-go" >&2
        exit 1
    fi
    apt-get update -qq && apt-get install -y -qq golang-go >/dev/null
fi

cd "$(dirname "$0")/.."
cargo build --release --quiet -p maniac-bench --bin maniac-bench
target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd maniac-bench/go && go build -o "$work/preempt_go" .)

# Runs one contender family and appends its JSON lines to $work/results.
run_go() {
    "$work/preempt_go" -mode latency -workers "$workers" -seconds "$seconds" $clock_go |
        tee -a "$work/results"
}
run_rust() {
    "$target/release/maniac-bench" --only cpu_gaps,preempt_latency --reps 1 --json \
        --workers "$workers" --seconds "$seconds" $clock_rust 2>/dev/null | tee -a "$work/results"
}

echo "wake latency of a 1 ms ticker beside $((2 * workers)) $hogs (200 ms jobs) on $workers" \
    "workers, ${seconds} s per contender, $reps repetitions, $(nproc) cores; $(go version)"
for rep in $(seq "$reps"); do
    echo "rep $rep"
    if [ $((rep % 2)) -eq 1 ]; then run_go; run_rust; else run_rust; run_go; fi
done

# The median of the numbers on stdin.
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# Field $1 (a number) of the JSON lines on stdin.
json() { sed -E "s/.*\"$1\":([-0-9.e+]+).*/\1/"; }
# Field $2 of the JSON lines of runtime $1 (or of bench $1).
field() { grep -E "\"(runtime|bench)\":\"$1\"" "$work/results" | json "$2"; }

echo
printf "%-20s %7s %10s %10s %10s %10s %9s %9s %12s %12s\n" median ticks "p50 (us)" "p99 (us)" \
    "p99.9 (us)" "max (us)" "p99/go" "p99.9/go" "p99/m_1ms" "p99.9/m_1ms"
go_p99=$(field go p99_us | median) go_p999=$(field go p999_us | median)
m_p99=$(field maniac_1ms p99_us | median) m_p999=$(field maniac_1ms p999_us | median)
for runtime in maniac_1ms maniac_100us maniac_1ms_normal maniac_100us_normal maniac_off tokio go; do
    ticks=$(field "$runtime" ticks | median)
    p50=$(field "$runtime" p50_us | median)
    p99=$(field "$runtime" p99_us | median)
    p999=$(field "$runtime" p999_us | median)
    max=$(field "$runtime" max_us | median)
    awk -v r="$runtime" -v t="$ticks" -v a="$p50" -v b="$p99" -v c="$p999" -v d="$max" \
        -v gb="$go_p99" -v gc="$go_p999" -v mb="$m_p99" -v mc="$m_p999" 'BEGIN {
        printf "%-20s %7d %10.0f %10.0f %10.0f %10.0f %9.3f %9.3f %12.2f %12.2f\n",
            r, t, a, b, c, d, b / gb, c / gc, b / mb, c / mc
    }'
done
echo
echo "the machine's own gaps (medians): $workers spinning threads lost their core for more than" \
    "1 ms $(field cpu_gaps over_1ms_per_s | median) times a second each; longest gap" \
    "$(field cpu_gaps longest_us | median) us"
echo "goal: maniac's p99.9 within one quantum + 200 us (1200 us at 1 ms, 300 us at 100 us);" \
    "Go about 10-20 ms (it preempts after 10 ms); tokio and maniac_off about a hog's job or more"

echo
echo "cost of a preemption: $((2 * workers)) tasks of about 500 ms of arithmetic on $workers" \
    "workers, process CPU time with preemption off and on, $reps repetitions"
steps=$("$work/preempt_go" -mode cost -workers "$workers" -calibrate)
run_go_cost() {
    GODEBUG=asyncpreemptoff=$1 "$work/preempt_go" -mode cost -workers "$workers" -steps "$steps" |
        tee -a "$work/cost_go_$1"
}
for rep in $(seq "$reps"); do
    echo "rep $rep"
    if [ $((rep % 2)) -eq 1 ]; then run_go_cost 1; run_go_cost 0; else run_go_cost 0; run_go_cost 1; fi
done
# One run of all repetitions, so that maniac's own order of settings rotates (preempt.rs); its
# JSON lines are medians over them.
"$target/release/maniac-bench" --only preempt_cost --reps "$reps" --json --workers "$workers" \
    2>/dev/null | tee "$work/cost_maniac"
"$target/release/maniac-bench" --only interrupt_floor --reps "$reps" --json --workers "$workers" \
    2>/dev/null | tee "$work/floor"

echo
printf "%-22s %12s %10s %16s\n" median preemptions "CPU loss" "per preemption"
# A row of the table: label $1 at quantum $2 (us), preemptions $3, loss $4, ns per preemption $5.
row() {
    awk -v name="$1" -v q="$2" -v n="$3" -v l="$4" -v c="$5" 'BEGIN {
        printf "%-22s %12.0f %9.2f%% %13.1f us\n", name " " q / 1000 " ms", n, l * 100, c / 1000
    }'
}
for quantum in 10000 1000 100; do
    lines=$(grep "\"quantum_us\":$quantum," "$work/cost_maniac" || true)
    if [ -z "$lines" ]; then
        echo "maniac-bench printed no preempt_cost line for a quantum of $quantum us" >&2
        exit 1
    fi
    row maniac "$quantum" "$(json preemptions <<<"$lines")" "$(json cpu_loss <<<"$lines")" \
        "$(json ns_per_preemption <<<"$lines")"
done
# Go counts no preemptions: each goroutine counts the gaps in its own running (cost.go), and
# its preemptions are the gaps with preemption on beyond those with it off (the machine's own).
paste -d ' ' <(json cpu_ns <"$work/cost_go_1") <(json gaps <"$work/cost_go_1") \
    <(json cpu_ns <"$work/cost_go_0") <(json gaps <"$work/cost_go_0") >"$work/cost_go_pairs"
go_loss=$(awk '{ print ($3 - $1) / $1 }' "$work/cost_go_pairs" | median)
go_preemptions=$(awk '{ print $4 - $2 }' "$work/cost_go_pairs" | median)
go_cost=
if awk '$4 > $2 { found = 1 } END { exit !found }' "$work/cost_go_pairs"; then
    go_cost=$(awk '$4 > $2 { print ($3 - $1) / ($4 - $2) }' "$work/cost_go_pairs" | median)
fi
awk -v n="$go_preemptions" -v l="$go_loss" -v c="$go_cost" 'BEGIN {
    cost = (c == "") ? "n/a" : sprintf("%.1f us", c / 1000)
    printf "%-22s %12.0f %9.2f%% %16s\n", "go (slices ~20 ms)", n, l * 100, cost
}'
for quantum in 1000 100; do
    for source in own_timer sleeper; do
        lines=$(grep "\"quantum_us\":$quantum,\"source\":\"$source\"" "$work/floor" || true)
        if [ -z "$lines" ]; then
            echo "maniac-bench printed no interrupt_floor line for $source at $quantum us" >&2
            exit 1
        fi
        row "floor $source" "$quantum" "$(json interrupts <<<"$lines")" \
            "$(json cpu_loss <<<"$lines")" "$(json ns_per_interrupt <<<"$lines")"
    done
done
echo "floor rows: no runtime, each thread interrupted once a quantum (interrupt_floor," \
    "maniac-bench/src/preempt.rs)"
echo "goal: at most the signal round trip + 300 ns per preemption, at most 1 % loss at 1 ms" \
    "(the machine's signal round trip: maniac-bench --only signal_roundtrip)"
