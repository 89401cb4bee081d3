// The preempt_latency workload of maniac-bench (maniac-bench/src/preempt.rs) on Go's scheduler,
// for maniac-bench/preempt_bench.sh.
//
//	go run latency.go [-workers W] [-seconds S]
//
// GOMAXPROCS is W (default: the machine's cores). 2W goroutines compute job after job of about
// 200 ms of pure arithmetic (the same LCG and xor-shift as the Rust side, no function call inside
// a job, runtime.Gosched between jobs), while a ticker goroutine sleeps 1 ms in a loop and
// records its wake latency (the moment it runs again minus the deadline it asked for). The main
// goroutine keeps the time, then stops the hogs and the ticker. Go preempts a goroutine that has
// run for 10 ms (sysmon's forcePreemptNS) with a signal (SIGURG), since Go 1.14.
//
// Prints one JSON line in maniac-bench's format: ticks, p50/p99/p99.9/max in µs, jobs.
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

const (
	job  = 200 * time.Millisecond
	tick = time.Millisecond
)

// sink keeps the compiler from dropping the computations.
var sink atomic.Uint64

// compute runs `steps` steps of the LCG with an xor-shift, looking at stop every 2^20 steps.
func compute(steps uint64, stop *atomic.Bool) uint64 {
	x := uint64(0x9E3779B97F4A7C15)
	for i := uint64(0); i < steps; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		x ^= x >> 29
		if i&0xFFFFF == 0 && stop.Load() {
			break
		}
	}
	return x
}

// calibrate returns how many compute steps take `length` (best of three).
func calibrate(length time.Duration) uint64 {
	var never atomic.Bool
	const steps = 20_000_000
	best := time.Duration(math.MaxInt64)
	for i := 0; i < 3; i++ {
		started := time.Now()
		sink.Store(compute(steps, &never))
		if elapsed := time.Since(started); elapsed < best {
			best = elapsed
		}
	}
	return uint64(float64(steps) * length.Seconds() / best.Seconds())
}

// quantile is the q quantile (nearest rank) of sorted values.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	if rank > len(sorted) {
		rank = len(sorted)
	}
	return sorted[rank-1]
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

func main() {
	workers := flag.Int("workers", runtime.NumCPU(), "GOMAXPROCS, and half the number of hogs")
	seconds := flag.Float64("seconds", 2, "measuring time")
	flag.Parse()
	if *workers < 1 || *seconds <= 0 {
		fmt.Fprintln(os.Stderr, "latency: -workers and -seconds must be positive")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*workers)
	steps := calibrate(job)

	var stop atomic.Bool
	var jobs atomic.Uint64
	var hogs sync.WaitGroup
	for i := 0; i < 2**workers; i++ {
		hogs.Add(1)
		go func() {
			defer hogs.Done()
			for !stop.Load() {
				sink.Store(compute(steps, &stop))
				jobs.Add(1)
				runtime.Gosched()
			}
		}()
	}
	result := make(chan []time.Duration)
	go func() {
		latencies := make([]time.Duration, 0, 4096)
		for !stop.Load() {
			deadline := time.Now().Add(tick)
			time.Sleep(tick)
			late := time.Since(deadline)
			if late < 0 {
				late = 0
			}
			latencies = append(latencies, late)
		}
		result <- latencies
	}()

	time.Sleep(time.Duration(*seconds * float64(time.Second)))
	stop.Store(true)
	latencies := <-result
	hogs.Wait()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	max := time.Duration(0)
	if len(latencies) > 0 {
		max = latencies[len(latencies)-1]
	}
	fmt.Printf("{\"bench\":\"preempt_latency\",\"runtime\":\"go\",\"workers\":%d,\"ticks\":%d,"+
		"\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,\"jobs\":%d,"+
		"\"go\":\"%s\"}\n",
		*workers, len(latencies), micros(quantile(latencies, 0.5)), micros(quantile(latencies, 0.99)),
		micros(quantile(latencies, 0.999)), micros(max), jobs.Load(), runtime.Version())
}
