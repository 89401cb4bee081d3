// maniac-bench's preemption workloads (maniac-bench/src/preempt.rs) on Go's scheduler, for
// maniac-bench/preempt_bench.sh: one program, two modes.
//
//	go build -o preempt_go . &&
//	    ./preempt_go -mode latency [-workers W] [-seconds S] &&
//	    steps=$(./preempt_go -mode cost -calibrate) &&
//	    GODEBUG=asyncpreemptoff=1 ./preempt_go -mode cost -steps $steps &&
//	    ./preempt_go -mode cost -steps $steps
//
// GOMAXPROCS is W (default: the machine's cores). Both modes run 2W goroutines of pure
// arithmetic (compute.go: the same LCG and xor-shift as the Rust side, calling nothing that
// could yield, so Go preempts them only by signal: sysmon's, after 10 ms, since Go 1.14).
//   - latency (latency.go): preempt_latency, hogs beside a 1 ms ticker;
//   - cost (cost.go): preempt_cost, the CPU time of a batch, run with
//     GODEBUG=asyncpreemptoff=1 and without.
//
// Each prints one JSON line in maniac-bench's format.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"
)

func main() {
	mode := flag.String("mode", "", "latency or cost")
	workers := flag.Int("workers", runtime.NumCPU(), "GOMAXPROCS, and half the number of goroutines")
	seconds := flag.Float64("seconds", 2, "latency: measuring time")
	task := flag.Duration("task", 500*time.Millisecond, "cost: work of one goroutine")
	steps := flag.Uint64("steps", 0, "cost: steps of one goroutine (default: calibrated to -task)")
	calibrateOnly := flag.Bool("calibrate", false, "cost: print the steps of -task and exit")
	clock := flag.Bool("clock", false, "latency: the hogs read the clock at every step (time.Since)")
	flag.Parse()
	if *workers < 1 || *seconds <= 0 || *task <= 0 {
		fmt.Fprintln(os.Stderr, "preempt_go: -workers, -seconds and -task must be positive")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*workers)
	switch *mode {
	case "latency":
		runLatency(*workers, time.Duration(*seconds*float64(time.Second)), *clock)
	case "cost":
		runCost(*workers, *task, *steps, *calibrateOnly)
	default:
		fmt.Fprintln(os.Stderr, "preempt_go: -mode must be latency or cost")
		os.Exit(2)
	}
}
