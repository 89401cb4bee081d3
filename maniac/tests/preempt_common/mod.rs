#![cfg(all(not(loom), target_os = "linux"))]
//! Helpers shared by the `preempt_*` tests: runtimes with a quantum, the skip on unsupported
//! machines, CPU hogs that never reach an `.await`, a ticker that measures how late its sleeps
//! end, a watch for the machine's own stalls, and the preemption figures summed over the workers.
//!
//! A hog here is plain Rust arithmetic in the test executable, written without calls even in a
//! debug build (never libc, never a lock, never a `core` helper: see [`opaque`]), so that nearly
//! every instruction it runs is an async-safe point (`maniac::preempt` module doc). Every test
//! body runs under [`bounded_test`]: a deadlocked runtime fails the test instead of hanging it.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use maniac::preempt::DeferReason;
use maniac::runtime::{Builder, Runtime, RuntimeMetrics};

/// Whether preemption can run here; if not, says on stderr that `test` is skipped.
pub fn supported(test: &str) -> bool {
    let supported = maniac::preempt::is_supported();
    if !supported {
        eprintln!("{test}: skipped, preemption is not supported on this machine");
    }
    supported
}

/// A multi-thread runtime with `workers` workers and preemption at `quantum`, from its first
/// poll on (the code map read first: `maniac::preempt::prepare`).
pub fn runtime(workers: usize, quantum: Duration) -> Runtime {
    maniac::preempt::prepare();
    let rt = Builder::new_multi_thread()
        .worker_threads(workers)
        .preemption_quantum(quantum)
        .build()
        .expect("cannot build a preempting runtime");
    assert!(
        rt.metrics().preemption_enabled(),
        "preemption is supported but off"
    );
    rt
}

/// The OS thread id of the calling thread (`gettid(2)`).
pub fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// Polls preempted so far on every worker of `rt`.
pub fn preemptions(rt: &Runtime) -> u64 {
    rt.metrics().preemptions()
}

/// Requests deferred for `reason` so far on every worker of `rt`.
pub fn deferred(rt: &Runtime, reason: DeferReason) -> u64 {
    let metrics = rt.metrics();
    (0..metrics.num_workers())
        .filter_map(|worker| metrics.worker_preemption(worker))
        .map(|stats| stats.deferred(reason))
        .sum()
}

/// A one-line summary of `rt`'s preemption figures, for failure messages and `--nocapture`.
pub fn figures(rt: &Runtime) -> String {
    let metrics = rt.metrics();
    let mut out = format!(
        "preemptions {} deferred {}",
        metrics.preemptions(),
        metrics.preemptions_deferred()
    );
    for reason in DeferReason::ALL {
        out.push_str(&format!(" {reason:?}={}", deferred(rt, reason)));
    }
    let longest = (0..metrics.num_workers())
        .filter_map(|worker| metrics.worker_preemption(worker))
        .map(|stats| stats.longest_poll())
        .max()
        .unwrap_or_default();
    let renewed: u64 = (0..metrics.num_workers())
        .filter_map(|worker| metrics.worker_preemption(worker))
        .map(|stats| stats.requests_renewed())
        .sum();
    out.push_str(&format!(
        "; longest poll seen {longest:?}; requests renewed {renewed}; library calls preempted {}",
        library_calls_preempted(&metrics)
    ));
    out
}

/// Preemptions inside pure library functions called from a task's code, all workers of the
/// runtime `metrics` (a snapshot) is of together.
pub fn library_calls_preempted(metrics: &RuntimeMetrics) -> u64 {
    (0..metrics.num_workers())
        .filter_map(|worker| metrics.worker_preemption(worker))
        .map(|stats| stats.library_calls_preempted())
        .sum()
}

/// One step of the hogs' arithmetic (xorshift-multiply: every bit of the state matters).
/// `wrapping_mul` and the shifts compile to plain instructions even in a debug build.
#[inline(always)]
pub fn mix(x: u64) -> u64 {
    let x = x ^ (x << 13);
    let x = x ^ (x >> 7);
    (x ^ (x << 17)).wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// An optimisation barrier that is not a call. The hogs use it instead of `black_box`, and
/// `while` loops instead of ranges, because in a debug build `black_box` and `Range::next` are
/// out-of-line functions of `core`, whose code the runtime never preempts (it denies std, core
/// and alloc whole): a loop that spends most of its steps in them is preempted only when a
/// request happens to land in its own few instructions. These hogs give every request a chance;
/// `preempt_latency` also measures the `black_box` loop a user would write.
#[inline(always)]
pub fn opaque(mut x: u64) -> u64 {
    // SAFETY: an empty assembly block that touches nothing: it only hides `x` from the optimiser.
    unsafe { std::arch::asm!("/* {0} */", inout(reg) x, options(nomem, nostack, preserves_flags)) };
    x
}

/// `iterations` steps of [`mix`] from `seed`: a fixed amount of work with a checkable result.
#[inline(never)]
pub fn work(seed: u64, iterations: u64) -> u64 {
    let mut x = seed | 1;
    let mut i = 0;
    while i < iterations {
        x = opaque(mix(x));
        i += 1;
    }
    x
}

/// Pure arithmetic until `stop` is set (no `.await`, no call out of the executable, the flag
/// read every 64 steps). Returns the number of steps and the final state, which [`work`]
/// reproduces.
#[inline(never)]
pub fn hog_until(seed: u64, stop: &AtomicBool) -> (u64, u64) {
    let mut x = seed | 1;
    let mut steps = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut i = 0;
        while i < 64 {
            x = opaque(mix(x));
            i += 1;
        }
        steps += 64;
    }
    (steps, x)
}

/// Pure arithmetic for about `duration` of wall-clock time (the clock is read every 4096 steps;
/// the rest is arithmetic). Returns the number of steps and the final state.
#[inline(never)]
pub fn hog_for(seed: u64, duration: Duration) -> (u64, u64) {
    let start = Instant::now();
    let mut x = seed | 1;
    let mut steps = 0u64;
    while start.elapsed() < duration {
        let mut i = 0;
        while i < 4096 {
            x = opaque(mix(x));
            i += 1;
        }
        steps += 4096;
    }
    (steps, x)
}

/// The CPU time the calling thread has used.
pub fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass; this clock always exists on Linux.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// What a ticker saw: how late each of its sleeps ended, and how much of each sleep its worker
/// thread spent off the CPU (taken away by the OS, not by the runtime).
#[derive(Debug, Clone, Default)]
pub struct Lateness {
    /// How much longer than asked each sleep took, in order.
    pub late: Vec<Duration>,
    /// For each sleep, its wall-clock length minus the CPU time the thread used meanwhile.
    /// Meaningful on a one-worker runtime whose worker is never idle (a hog keeps it busy): the
    /// ticker then runs on that thread before and after every sleep, and the thread is off the
    /// CPU only when the OS runs something else.
    pub off_cpu: Vec<Duration>,
    /// When each sleep ended.
    pub ended: Vec<Instant>,
}

fn percentile_of(values: &[Duration], p: usize) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) * p) / 100]
}

impl Lateness {
    pub fn ticks(&self) -> usize {
        self.late.len()
    }

    pub fn max(&self) -> Duration {
        self.late.iter().copied().max().unwrap_or_default()
    }

    /// The `p`-th percentile (0..=100).
    pub fn percentile(&self, p: usize) -> Duration {
        percentile_of(&self.late, p)
    }

    /// Each sleep's lateness without the time its thread was off the CPU: what the runtime itself
    /// added (see [`Lateness::off_cpu`]).
    pub fn own_late(&self) -> Vec<Duration> {
        self.late
            .iter()
            .zip(&self.off_cpu)
            .map(|(late, off)| late.saturating_sub(*off))
            .collect()
    }

    /// The `p`-th percentile of [`Lateness::own_late`].
    pub fn own_percentile(&self, p: usize) -> Duration {
        percentile_of(&self.own_late(), p)
    }

    pub fn own_max(&self) -> Duration {
        self.own_late().into_iter().max().unwrap_or_default()
    }

    /// Records a sleep that ended at `ended`, `late` after it was due.
    pub fn push(&mut self, late: Duration, ended: Instant) {
        self.late.push(late);
        self.ended.push(ended);
    }

    /// The latest a sleep ended, not counting the part of its lateness in which the machine
    /// stalled (`stalls`): what the runtime, not the host, made it wait.
    pub fn max_beside(&self, stalls: &Stalls) -> Duration {
        self.late
            .iter()
            .zip(&self.ended)
            .map(|(&late, &ended)| late.saturating_sub(stalls.overlap(ended - late, ended)))
            .max()
            .unwrap_or_default()
    }

    pub fn summary(&self) -> String {
        let mut summary = format!(
            "{} ticks, lateness p50 {:?} p90 {:?} p99 {:?} max {:?}",
            self.ticks(),
            self.percentile(50),
            self.percentile(90),
            self.percentile(99),
            self.max(),
        );
        if !self.off_cpu.is_empty() {
            let own = self.own_late();
            summary += &format!(
                "; without the time off the CPU: p50 {:?} p99 {:?} max {:?}",
                percentile_of(&own, 50),
                percentile_of(&own, 99),
                self.own_max(),
            );
        }
        summary
    }
}

/// How much later than asked the stall watch's sleep must end to count as a stall of the machine:
/// more than an ordinary thread waits for a core beside busy workers (a few ms), far less than
/// the stalls it is for (the host pausing the whole VM for seconds).
pub const STALL_AFTER: Duration = Duration::from_millis(20);

/// A stretch of time in which a plain thread outside the runtime could not run either.
#[derive(Debug, Clone, Copy)]
pub struct Stall {
    pub from: Instant,
    pub to: Instant,
}

/// The machine's stalls over a stretch of time, as a [`StallWatch`] saw them.
#[derive(Debug, Clone, Default)]
pub struct Stalls(pub Vec<Stall>);

impl Stalls {
    /// How much of `from..to` the machine spent stalled.
    pub fn overlap(&self, from: Instant, to: Instant) -> Duration {
        self.0
            .iter()
            .map(|stall| {
                to.min(stall.to)
                    .saturating_duration_since(from.max(stall.from))
            })
            .sum()
    }

    pub fn summary(&self, since: Instant) -> String {
        let longest = self.0.iter().map(|stall| stall.to - stall.from).max();
        match longest {
            None => format!("no stall of the machine over {STALL_AFTER:?}"),
            Some(longest) => format!(
                "{} stalls of the machine over {STALL_AFTER:?}, the longest {longest:?}, at {:?}",
                self.0.len(),
                self.0
                    .iter()
                    .map(|stall| stall.from - since)
                    .collect::<Vec<_>>()
            ),
        }
    }
}

/// A plain thread, outside any runtime, that sleeps 1 ms in a loop and records each sleep that
/// ends more than [`STALL_AFTER`] late: the times when the whole machine stood still (the host
/// pausing the VM), which no runtime could have used, as opposed to delays a runtime caused,
/// which this thread, free to run on any core, does not suffer.
#[derive(Debug)]
pub struct StallWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Stalls>,
}

impl StallWatch {
    pub fn start() -> StallWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let period = Duration::from_millis(1);
            let mut stalls = Stalls::default();
            while !stopped.load(Ordering::Relaxed) {
                let due = Instant::now() + period;
                std::thread::sleep(period);
                let woke = Instant::now();
                if woke.saturating_duration_since(due) > STALL_AFTER {
                    stalls.0.push(Stall {
                        from: due,
                        to: woke,
                    });
                }
            }
            stalls
        });
        StallWatch { stop, thread }
    }

    pub fn stop(self) -> Stalls {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the stall watch panicked")
    }
}

/// A ticker body: `sleep(period)` in a loop for `run_for` (wall clock), recording how late each
/// sleep ended and how long its thread was off the CPU meanwhile; bumps `ticks` after every
/// sleep.
pub async fn ticker(period: Duration, run_for: Duration, ticks: Arc<AtomicU64>) -> Lateness {
    let start = Instant::now();
    let mut lateness = Lateness::default();
    while start.elapsed() < run_for {
        let (before, cpu_before) = (Instant::now(), thread_cpu_time());
        maniac::time::sleep(period).await;
        let (wall, cpu) = (
            before.elapsed(),
            thread_cpu_time().saturating_sub(cpu_before),
        );
        lateness.push(wall.saturating_sub(period), before + wall);
        lateness.off_cpu.push(wall.saturating_sub(cpu));
        ticks.fetch_add(1, Ordering::Relaxed);
    }
    lateness
}

/// Sets the flag when dropped: stops hogs even when the test fails half-way.
#[derive(Debug)]
pub struct StopOnDrop(pub Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Awaits `handle` on a thread of its own for at most `timeout` (a worker that never comes back
/// from a poll must fail the test, not hang it). `None` if it ran out of time.
pub fn join_within<T: Send + 'static>(
    handle: maniac::task::JoinHandle<T>,
    timeout: Duration,
) -> Option<Result<T, maniac::task::JoinError>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(futures::executor::block_on(handle));
    });
    rx.recv_timeout(timeout).ok()
}

/// The multiplier and increment of the hogs' LCG (Knuth's MMIX constants).
pub const LCG_A: u64 = 6_364_136_223_846_793_005;
pub const LCG_C: u64 = 1_442_695_040_888_963_407;

/// `n` steps of `x = A x + C`, one at a time (the hog's way, call-free as [`opaque`] says).
#[inline(never)]
pub fn lcg_steps(mut x: u64, n: u64) -> u64 {
    let mut i = 0;
    while i < n {
        x = opaque(x.wrapping_mul(LCG_A).wrapping_add(LCG_C));
        i += 1;
    }
    x
}

/// The same `n` steps in O(log n) (the checker's way): the affine map raised to the `n`-th power
/// by squaring (its powers commute, so the order of composition does not matter).
pub fn lcg_jump(x: u64, mut n: u64) -> u64 {
    let (mut a, mut c) = (LCG_A, LCG_C);
    let (mut ra, mut rc) = (1u64, 0u64);
    while n > 0 {
        if n & 1 == 1 {
            rc = rc.wrapping_mul(a).wrapping_add(c);
            ra = ra.wrapping_mul(a);
        }
        c = c.wrapping_mul(a).wrapping_add(c);
        a = a.wrapping_mul(a);
        n >>= 1;
    }
    ra.wrapping_mul(x).wrapping_add(rc)
}

/// The bound of a whole test: longer than the inner waits (`common::TIMEOUT`), so that those
/// report first, but a runtime that deadlocked (and so never finishes dropping) fails the test
/// instead of hanging the run.
pub const TEST_BOUND: Duration = Duration::from_secs(45);

/// Runs a test body on a thread of its own, bounded by [`TEST_BOUND`].
#[track_caller]
pub fn bounded_test(body: impl FnOnce() + Send + 'static) {
    crate::common::with_timeout(TEST_BOUND, body);
}
