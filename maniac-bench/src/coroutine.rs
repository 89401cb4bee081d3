//! Costs of maniac's coroutine machinery (maniac only: tokio has no counterpart).
//!
//! - `poll_none` / `poll_pinned`: one task yielding 100,000 times on a 1-worker runtime, in None
//!   mode (polled on the worker generator) and in Poll mode (`spawn_pinned`: each poll is a
//!   resume and a suspend of the task's own generator). Their difference is what Poll mode adds
//!   to a poll.
//! - `switch_none` / `switch_pinned`: one task calling the Switch operation 20,000 times in one
//!   poll, in None mode (the worker generator is handed to the task, the worker continues on a
//!   fresh generator from the pool, finds the switched poll in its pinned queue and resumes it)
//!   and in Poll mode (the task's own generator is suspended, the task rescheduled on its worker
//!   and resumed). Per round trip.
//! - `generator_pooled` / `generator_fresh_mmap`: make, run and retire one generator with a 2 MiB
//!   stack from a warm pool, or from a fresh mmap.

use std::time::{Duration, Instant};

use crate::stats::Summary;

/// One measurement: its name and what one repetition measures, in ns per operation.
pub struct Measurement {
    /// Name in the report.
    pub name: &'static str,
    /// Runs one repetition; returns ns per operation.
    pub run: fn(quick: bool) -> f64,
}

/// Every coroutine measurement, in report order.
pub const MEASUREMENTS: &[Measurement] = &[
    Measurement {
        name: "poll_none",
        run: |quick| yield_loop(false, quick),
    },
    Measurement {
        name: "poll_pinned",
        run: |quick| yield_loop(true, quick),
    },
    Measurement {
        name: "switch_none",
        run: |quick| switch_loop(false, quick),
    },
    Measurement {
        name: "switch_pinned",
        run: |quick| switch_loop(true, quick),
    },
    Measurement {
        name: "generator_pooled",
        run: |quick| generator(true, quick),
    },
    Measurement {
        name: "generator_fresh_mmap",
        run: |quick| generator(false, quick),
    },
];

fn one_worker() -> maniac::runtime::Runtime {
    maniac::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("building a maniac runtime")
}

fn per_op(elapsed: Duration, ops: usize) -> f64 {
    elapsed.as_nanos() as f64 / ops as f64
}

fn yield_loop(pinned: bool, quick: bool) -> f64 {
    let polls = if quick { 20_000 } else { 100_000 };
    let runtime = one_worker();
    runtime.block_on(async {
        let body = async move {
            let started = Instant::now();
            for _ in 0..polls {
                maniac::task::yield_now().await;
            }
            started.elapsed()
        };
        let task = if pinned {
            maniac::coroutine::spawn_pinned(body)
        } else {
            maniac::spawn(body)
        };
        per_op(task.await.expect("the yielding task"), polls)
    })
}

fn switch_loop(pinned: bool, quick: bool) -> f64 {
    let switches = if quick { 5_000 } else { 20_000 };
    let runtime = one_worker();
    runtime.block_on(async {
        let body = async move {
            let started = Instant::now();
            for _ in 0..switches {
                maniac::coroutine::switch_now().expect("switching");
            }
            started.elapsed()
        };
        let task = if pinned {
            maniac::coroutine::spawn_pinned(body)
        } else {
            maniac::spawn(body)
        };
        per_op(task.await.expect("the switching task"), switches)
    })
}

fn generator(pooled: bool, quick: bool) -> f64 {
    let count = match (pooled, quick) {
        (true, false) => 100_000,
        (true, true) => 20_000,
        (false, false) => 2_000,
        (false, true) => 500,
    };
    let elapsed = maniac::coroutine::bench::generator_lifecycle(count, 2 * 1024 * 1024, pooled);
    per_op(elapsed, count)
}

/// Runs `measurement` `reps` times.
pub fn run(measurement: &Measurement, reps: usize, quick: bool) -> Summary {
    let figures: Vec<f64> = (0..reps).map(|_| (measurement.run)(quick)).collect();
    Summary::of(&figures)
}
