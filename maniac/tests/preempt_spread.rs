#![cfg(all(not(loom), target_os = "linux"))]
//! How preempted hogs spread over the workers. A task is pinned to the worker that first polled
//! it once it is preempted (its poll resumes on its own thread), so only tasks not yet started
//! can be stolen; the scheduler's "Spreading started work" keeps one busy worker from starting
//! them all. Four hogs spawned onto two idle workers end two and two in all runs but at most one
//! of twelve. In a file of its own so that no other test competes for the cores while it runs.

mod common;
mod preempt_common;

use std::collections::HashMap;
use std::time::Duration;

use common::TIMEOUT;
use maniac::task::{JoinHandle, yield_now};
use preempt_common::{figures, gettid, hog_for, join_within, runtime, supported};

#[test]
fn four_hogs_spawned_onto_two_workers_end_two_on_each() {
    preempt_common::bounded_test(|| {
        if !supported("four_hogs_spawned_onto_two_workers_end_two_on_each") {
            return;
        }
        /// Runs, each on a fresh runtime at the default quantum. Without the spreading, about one
        /// run in seven ended three and one, and this test failed in 5 of 11 tries; with it, about
        /// one run in 300 does (debug build, the test alone), when a worker's thread is off its
        /// core for milliseconds. At 100 µs about one run in twenty still ends uneven: not
        /// asserted.
        const RUNS: usize = 12;
        /// Runs that may end uneven, for the host's stalls.
        const UNEVEN_ALLOWED: usize = 1;
        let quantum = maniac::preempt::DEFAULT_QUANTUM;
        let mut uneven = Vec::new();
        for run in 0..RUNS {
            let rt = runtime(2, quantum);
            // Both workers up and idle first, as in a program that spawns its work later.
            rt.block_on(async {
                for _ in 0..8 {
                    maniac::spawn(yield_now()).await.unwrap();
                }
            });
            let hogs: Vec<JoinHandle<libc::pid_t>> = (0..4)
                .map(|hog| {
                    rt.spawn(async move {
                        let tid = gettid();
                        hog_for(hog, Duration::from_millis(60));
                        assert_eq!(gettid(), tid, "a preempted poll resumed on another thread");
                        tid
                    })
                })
                .collect();
            let mut per_thread = HashMap::new();
            for handle in hogs {
                let tid = join_within(handle, TIMEOUT)
                    .expect("a hog hung")
                    .expect("a hog failed");
                *per_thread.entry(tid).or_insert(0) += 1;
            }
            let mut counts: Vec<u32> = per_thread.values().copied().collect();
            counts.sort_unstable();
            if counts != [2, 2] {
                uneven.push(format!("run {run}: {counts:?} ({})", figures(&rt)));
            }
        }
        assert!(
            uneven.len() <= UNEVEN_ALLOWED,
            "four hogs on two workers at {quantum:?} did not end two and two on each thread in \
             {} of {RUNS} runs:\n{}",
            uneven.len(),
            uneven.join("\n")
        );
    });
}
