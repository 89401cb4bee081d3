package main

import (
	"fmt"
	"math"
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

// readTheClock computes for `length`, reading the clock at every step to know when to end (as
// `for time.Since(start) < length` does), or until stop, looked at every 2^16 steps: the
// workload of maniac-bench's `preempt_latency --clock-hogs`.
func readTheClock(length time.Duration, stop *atomic.Bool) uint64 {
	start := time.Now()
	x := uint64(0x9E3779B97F4A7C15)
	for steps := uint64(1); time.Since(start) < length; steps++ {
		x = x*6364136223846793005 + 1442695040888963407
		if steps&0xFFFF == 0 && stop.Load() {
			break
		}
	}
	return x
}

// runLatency: 2W goroutines compute job after job of about 200 ms (runtime.Gosched between
// jobs; with `clock`, jobs of readTheClock), while a ticker goroutine sleeps 1 ms in a loop and
// records its wake latency (the moment it runs again minus the deadline it asked for). The main
// goroutine keeps the time, then stops the hogs and the ticker. Prints ticks, p50/p99/p99.9/max
// in µs, and jobs.
func runLatency(workers int, measure time.Duration, clock bool) {
	steps := calibrate(job)
	var stop atomic.Bool
	var jobs atomic.Uint64
	var hogs sync.WaitGroup
	for i := 0; i < 2*workers; i++ {
		hogs.Add(1)
		go func() {
			defer hogs.Done()
			for !stop.Load() {
				var x uint64
				if clock {
					x = readTheClock(job, &stop)
				} else {
					x, _ = compute(steps, &stop)
				}
				sink.Store(x)
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

	time.Sleep(measure)
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
		workers, len(latencies), micros(quantile(latencies, 0.5)), micros(quantile(latencies, 0.99)),
		micros(quantile(latencies, 0.999)), micros(max), jobs.Load(), runtime.Version())
}
