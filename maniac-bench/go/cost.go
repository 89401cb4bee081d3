package main

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func cpuNanos() int64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		fmt.Fprintln(os.Stderr, "preempt_go: getrusage:", err)
		os.Exit(1)
	}
	return usage.Utime.Nano() + usage.Stime.Nano()
}

// runCost: 2W goroutines each compute `steps` (calibrated to `task` if 0) in one go. Run with
// GODEBUG=asyncpreemptoff=1 (no preemption at all) and without, with the same steps: the
// throughput loss and the cost per preemption follow from the two CPU times, as on the Rust
// side. Go counts no preemptions, so each goroutine counts the gaps in its own running
// (compute): with preemption off they are the machine's own (the host taking a vCPU away);
// with it on, the preemptions are the gaps beyond those (the script subtracts the two counts).
// Prints the mode, the process's CPU time (user + system, ns), the wall time and the gaps.
func runCost(workers int, task time.Duration, steps uint64, calibrateOnly bool) {
	if steps == 0 {
		steps = calibrate(task)
	}
	if calibrateOnly {
		fmt.Println(steps)
		return
	}
	var gaps atomic.Uint64
	var tasks sync.WaitGroup
	cpuBefore := cpuNanos()
	started := time.Now()
	for i := 0; i < 2*workers; i++ {
		tasks.Add(1)
		go func() {
			defer tasks.Done()
			x, seen := compute(steps, nil)
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
		mode, workers, steps, cpu, wall.Nanoseconds(), gaps.Load(), runtime.Version())
}
