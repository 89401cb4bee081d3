package main

import (
	"math"
	"sync/atomic"
	"time"
	_ "unsafe" // go:linkname
)

//go:linkname nanotime runtime.nanotime
func nanotime() int64

// gap is the shortest time between two clock reads that counts as not running.
const gap = 500 * time.Microsecond

// sink keeps the compiler from dropping the computations.
var sink atomic.Uint64

// compute runs `steps` steps of the LCG with an xor-shift. Every 2^14 steps it reads the
// monotonic clock (runtime.nanotime: no stack check, so no cooperative preemption point) and
// counts a gap of more than `gap` since the previous read as a time it did not run; then it
// looks at stop, if given. It returns the value and the gaps.
func compute(steps uint64, stop *atomic.Bool) (uint64, uint64) {
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
			if stop != nil && stop.Load() {
				break
			}
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
		x, _ := compute(steps, nil)
		sink.Store(x)
		if elapsed := time.Since(started); elapsed < best {
			best = elapsed
		}
	}
	return uint64(float64(steps) * length.Seconds() / best.Seconds())
}
