// The preempt_cost workload of maniac-bench (maniac-bench/src/preempt.rs) on Go's scheduler, for
// maniac-bench/preempt_bench.sh.
//
//	go build -o cost . && steps=$(./cost -calibrate) &&
//	    GODEBUG=asyncpreemptoff=1 ./cost -steps $steps && ./cost -steps $steps
//
// GOMAXPROCS is W (default: the machine's cores). 2W goroutines each compute about -task of
// pure arithmetic (the same LCG and xor-shift as the Rust side) in one go, with no function call
// that could yield: Go preempts them only by signal (sysmon, after 10 ms), and not at all with
// GODEBUG=asyncpreemptoff=1. Run both ways with the same -steps; throughput loss and cost per
// preemption follow from the two CPU times, as on the Rust side.
//
// Go counts no preemptions, so each goroutine counts its own: every 2^14 steps it reads the
// monotonic clock (runtime.nanotime: no stack check, so no cooperative preemption point), and a
// gap of more than 500 µs between two reads is a time it did not run. With asyncpreemptoff the
// gaps are the machine's own (the host taking a vCPU away); with preemption on, preemptions are
// the gaps beyond those (the script subtracts the two counts).
//
// Prints one JSON line: the mode, the process's CPU time (user + system, ns) for the batch, the
// wall time, and the gaps counted.
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	_ "unsafe" // go:linkname
)

//go:linkname nanotime runtime.nanotime
func nanotime() int64

// gap is the shortest time between two clock reads that counts as not running.
const gap = 500 * time.Microsecond

var sink atomic.Uint64

// compute runs `steps` steps of the LCG with an xor-shift and returns the gaps it saw.
func compute(steps uint64) (uint64, uint64) {
	x := uint64(0x9E3779B97F4A7C15)
	gaps := uint64(0)
	last := nanotime()
	for i := uint64(0); i < steps; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		x ^= x >> 29
		if i&0x3FFF == 0 {
			now := nanotime()
			if now-last > int64(gap) {
				gaps++
			}
			last = now
		}
	}
	return x, gaps
}

// calibrate returns how many compute steps take `length` (best of three).
func calibrate(length time.Duration) uint64 {
	const steps = 20_000_000
	best := time.Duration(math.MaxInt64)
	for i := 0; i < 3; i++ {
		started := time.Now()
		x, _ := compute(steps)
		sink.Store(x)
		if elapsed := time.Since(started); elapsed < best {
			best = elapsed
		}
	}
	return uint64(float64(steps) * length.Seconds() / best.Seconds())
}

func cpuNanos() int64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		fmt.Fprintln(os.Stderr, "cost: getrusage:", err)
		os.Exit(1)
	}
	return usage.Utime.Nano() + usage.Stime.Nano()
}

func main() {
	workers := flag.Int("workers", runtime.NumCPU(), "GOMAXPROCS, and half the number of tasks")
	task := flag.Duration("task", 500*time.Millisecond, "work of one task")
	steps := flag.Uint64("steps", 0, "steps of one task (default: calibrated to -task)")
	calibrateOnly := flag.Bool("calibrate", false, "print the steps of -task and exit")
	flag.Parse()
	if *workers < 1 || *task <= 0 {
		fmt.Fprintln(os.Stderr, "cost: -workers and -task must be positive")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*workers)
	if *steps == 0 {
		*steps = calibrate(*task)
	}
	if *calibrateOnly {
		fmt.Println(*steps)
		return
	}

	var gaps atomic.Uint64
	var tasks sync.WaitGroup
	cpuBefore := cpuNanos()
	started := time.Now()
	for i := 0; i < 2**workers; i++ {
		tasks.Add(1)
		go func() {
			defer tasks.Done()
			x, seen := compute(*steps)
			sink.Store(x)
			gaps.Add(seen)
		}()
	}
	tasks.Wait()
	wall := time.Since(started)
	cpu := cpuNanos() - cpuBefore
	mode := "on"
	if os.Getenv("GODEBUG") == "asyncpreemptoff=1" {
		mode = "off"
	}
	fmt.Printf("{\"bench\":\"preempt_cost\",\"runtime\":\"go\",\"mode\":\"%s\",\"workers\":%d,"+
		"\"steps\":%d,\"cpu_ns\":%d,\"wall_ns\":%d,\"gaps\":%d,\"go\":\"%s\"}\n",
		mode, *workers, *steps, cpu, wall.Nanoseconds(), gaps.Load(), runtime.Version())
}
