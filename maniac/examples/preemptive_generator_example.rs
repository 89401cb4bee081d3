//! Preemption, as a tutorial: a task that computes without ever reaching an `.await` no longer
//! keeps its worker to itself.
//!
//! `cargo run --release -p maniac --example preemptive_generator_example`
//!
//! The story, on a runtime with a **single** worker thread:
//! - a *producer* task fills a buffer with primes from a generator-like iterator (trial
//!   division), in one long poll: there is no `.await` anywhere in its loop (think of a parser, a
//!   compressor, a solver, a call into a library that knows nothing of async);
//! - a *ticker* task, on the same worker, sleeps 1 ms in a loop and counts its ticks.
//!
//! With preemption on (the default: Linux on x86_64, multi-thread runtimes, 1 ms quantum), the
//! runtime's monitor notices that the producer's poll has run for a quantum and signals the
//! worker; the poll is interrupted where it is, parked with its whole stack, the worker runs the
//! ticker, and then resumes the producer exactly where it stopped, on the same thread (a
//! suspended poll always resumes on the thread that started it: the compiled code may hold the
//! addresses of that thread's thread-locals). Nothing in the producer's code changes.
//!
//! With preemption off, the same program is what tokio does: the ticker cannot tick until the
//! producer is done.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Primes, one after another: a generator written as an `Iterator`, pure computation.
struct Primes {
    found: Vec<u64>,
    candidate: u64,
}

impl Primes {
    fn new() -> Primes {
        Primes {
            found: Vec::new(),
            candidate: 1,
        }
    }
}

impl Iterator for Primes {
    type Item = u64;

    // Out of line, so that the computation is this program's own function, not the runtime's
    // poll function it would otherwise be inlined into (whose code is never preempted).
    #[inline(never)]
    fn next(&mut self) -> Option<u64> {
        loop {
            self.candidate += 1;
            let candidate = self.candidate;
            let is_prime = self
                .found
                .iter()
                .take_while(|&&p| p * p <= candidate)
                .all(|&p| candidate % p != 0);
            if is_prime {
                self.found.push(candidate);
                return Some(candidate);
            }
        }
    }
}

/// How many primes the producer computes (a few hundred milliseconds in release).
const PRIMES: usize = 400_000;

/// What the producer saw of its own poll.
#[derive(Debug)]
struct Report {
    largest: u64,
    elapsed: Duration,
    ticks_during: u64,
    same_thread: bool,
    thread: std::thread::ThreadId,
}

fn run(preemption: bool) -> (Report, u64, Duration) {
    let runtime = maniac::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .preemption(preemption)
        .enable_all()
        .build()
        .expect("building the runtime");

    let ticks = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let report = runtime.block_on(async {
        // The ticker: an ordinary task that sleeps 1 ms at a time.
        let ticker = {
            let (ticks, done) = (ticks.clone(), done.clone());
            maniac::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    maniac::time::sleep(Duration::from_millis(1)).await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        // Let it tick a few times, so that it is running when the producer starts.
        maniac::time::sleep(Duration::from_millis(5)).await;

        // The producer: one poll, no `.await`, from the first prime to the last.
        let producer = {
            let ticks = ticks.clone();
            maniac::spawn(async move {
                let thread_before = std::thread::current().id();
                let ticks_before = ticks.load(Ordering::Relaxed);
                let started = Instant::now();
                let mut buffer = Vec::with_capacity(PRIMES);
                for prime in Primes::new().take(PRIMES) {
                    buffer.push(prime);
                }
                let elapsed = started.elapsed();
                let thread_after = std::thread::current().id();
                Report {
                    largest: *buffer.last().expect("at least one prime"),
                    elapsed,
                    ticks_during: ticks.load(Ordering::Relaxed) - ticks_before,
                    same_thread: thread_before == thread_after,
                    thread: thread_after,
                }
            })
        };
        let report = producer.await.expect("the producer");
        done.store(true, Ordering::Relaxed);
        ticker.await.expect("the ticker");
        report
    });
    let metrics = runtime.metrics();
    let longest = metrics
        .worker_preemption(0)
        .map_or(Duration::ZERO, |stats| stats.longest_poll());
    (report, metrics.preemptions(), longest)
}

fn main() {
    // Read now what preemption needs to know about this program's code; otherwise the first
    // poll to run its quantum waits for that read (a few ms here) before it is preempted.
    maniac::preempt::prepare();
    for preemption in [true, false] {
        let (report, preemptions, longest) = run(preemption);
        let elapsed_ms = report.elapsed.as_secs_f64() * 1e3;
        if preemption {
            println!("1. preemption on (1 ms quantum), one worker thread:");
        } else {
            println!("\n2. the same with preemption off (what a cooperative runtime does):");
        }
        println!(
            "   the producer computed {PRIMES} primes (the largest is {}) in one poll of \
             {elapsed_ms:.0} ms, with no .await",
            report.largest
        );
        println!(
            "   meanwhile the ticker, on the same worker, ticked {} times (at most one a millisecond: {elapsed_ms:.0} \
             possible)",
            report.ticks_during
        );
        if preemption {
            println!(
                "   the producer's poll was preempted {preemptions} times; the longest stretch \
                 the monitor saw it run was {:.2} ms",
                longest.as_secs_f64() * 1e3
            );
            println!(
                "   it ran on {:?} before and after: same thread = {}",
                report.thread, report.same_thread
            );
            assert!(
                report.same_thread,
                "a preempted poll resumes on its own thread"
            );
        } else {
            println!("   (preemption off: no preemptions, the ticker waited for the whole poll)");
        }
    }
}
