#![cfg(all(not(loom), target_os = "linux"))]
//! Preemption under pressure: many hogs on few workers with the shortest quantum.
//!
//! - A storm (16 hogs on 4 workers at 100 µs, half of them on their own generators, with polls of
//!   every length from a fraction of the quantum to many quanta) next to channel ping-pong and a
//!   stream of short tasks: every hog's result is right (checked in O(log n) against a closed
//!   form), every message arrives in order with the right value, every short task runs, and each
//!   short task's first poll runs in None mode (a fresh poll never runs on a worker generator that
//!   a preempted task took over).
//! - A preempted poll is resumed on its own OS thread, every time, while other workers steal
//!   whatever they can: the kernel thread id read inside one poll never changes, over thousands
//!   of preemptions, though the tasks move between workers from one poll to the next.

mod common;
mod preempt_common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TIMEOUT, spawn_in_mode};
use maniac::coroutine::{RunMode, run_mode};
use maniac::task::{JoinHandle, yield_now};
use preempt_common::{
    StopOnDrop, figures, gettid, join_within, lcg_jump, lcg_steps, preemptions, runtime, supported,
    work,
};

/// Steps of the `i`-th poll of hog `hog`: from a fraction of a quantum of 100 µs to tens of
/// quanta (an LCG step costs a few nanoseconds in a debug build).
fn poll_steps(hog: u64, i: u64) -> u64 {
    let scale = if cfg!(debug_assertions) { 1 } else { 8 };
    (5_000 + (hog * 7_919 + i * 104_729) % 500_000) * scale
}

/// A short task's first poll may see `RunMode::Switch`: when the OS deschedules its worker for
/// a quantum right after the poll began (4 workers share 2 cores here), the monitor asks for a
/// preemption, and the poll is switched out before its first statement. That is preemption
/// working, so the storm only counts such polls. What must never happen, a poll starting on a
/// worker generator that a switched poll has taken over, the worker loop itself asserts (in
/// debug builds, which the tests are).
#[test]
fn a_preemption_storm_keeps_every_result_correct() {
    storm();
}

/// The storm.
fn storm() {
    preempt_common::bounded_test(|| {
        if !supported("a_preemption_storm_keeps_every_result_correct") {
            return;
        }
        const HOGS: u64 = 16;
        const POLLS: u64 = 60;
        const PAIRS: u64 = 8;
        const ROUND_TRIPS: u64 = 1_000;
        const SHORT_TASKS: u64 = 4_000;
        let rt = runtime(4, maniac::preempt::MIN_QUANTUM);
        let started = Instant::now();
        let _enter = rt.enter();

        let hogs: Vec<JoinHandle<(u64, u64)>> = (0..HOGS)
            .map(|hog| {
                let task = async move {
                    let mut x = hog;
                    let mut steps = 0;
                    for i in 0..POLLS {
                        let n = poll_steps(hog, i);
                        x = lcg_steps(x, n);
                        steps += n;
                        yield_now().await;
                    }
                    (x, steps)
                };
                spawn_in_mode(hog % 2 == 1, task)
            })
            .collect();

        let pairs: Vec<JoinHandle<u64>> = (0..PAIRS)
            .flat_map(|pair| {
                let (to_echo, from_pinger) = async_channel::bounded::<u64>(1);
                let (to_pinger, from_echo) = async_channel::bounded::<u64>(1);
                let pinger = maniac::spawn(async move {
                    let mut sum = 0u64;
                    for i in 0..ROUND_TRIPS {
                        let sent = pair << 32 | i;
                        to_echo.send(sent).await.unwrap();
                        let back = from_echo.recv().await.unwrap();
                        assert_eq!(back, sent.wrapping_mul(3).wrapping_add(1), "pair {pair}");
                        sum = sum.wrapping_add(back);
                    }
                    sum
                });
                let echo = maniac::spawn(async move {
                    let mut echoed = 0;
                    while let Ok(value) = from_pinger.recv().await {
                        to_pinger
                            .send(value.wrapping_mul(3).wrapping_add(1))
                            .await
                            .unwrap();
                        echoed += 1;
                    }
                    echoed
                });
                [pinger, echo]
            })
            .collect();

        let wrong_mode = Arc::new(Mutex::new(Vec::new()));
        let spawner = maniac::spawn({
            let wrong_mode = wrong_mode.clone();
            async move {
                let mut sum = 0u64;
                for batch in 0..SHORT_TASKS / 100 {
                    let handles: Vec<_> = (0..100)
                        .map(|i| {
                            let wrong_mode = wrong_mode.clone();
                            maniac::spawn(async move {
                                let mode = run_mode();
                                if mode != Some(RunMode::None) {
                                    wrong_mode.lock().unwrap().push(mode);
                                }
                                work(batch * 100 + i, 100)
                            })
                        })
                        .collect();
                    for handle in handles {
                        sum = sum.wrapping_add(handle.await.unwrap());
                    }
                    maniac::time::sleep(Duration::from_micros(500)).await;
                }
                sum
            }
        });

        for (hog, handle) in hogs.into_iter().enumerate() {
            let (x, steps) = join_within(handle, TIMEOUT)
                .unwrap_or_else(|| panic!("hog {hog} did not finish ({})", figures(&rt)))
                .unwrap_or_else(|e| panic!("hog {hog} failed: {e:?}"));
            let expected_steps: u64 = (0..POLLS).map(|i| poll_steps(hog as u64, i)).sum();
            assert_eq!(steps, expected_steps);
            assert_eq!(
                x,
                lcg_jump(hog as u64, steps),
                "hog {hog} computed a wrong result"
            );
        }
        for (index, handle) in pairs.into_iter().enumerate() {
            let value = join_within(handle, TIMEOUT)
                .unwrap_or_else(|| {
                    panic!("ping-pong task {index} did not finish ({})", figures(&rt))
                })
                .unwrap_or_else(|e| panic!("ping-pong task {index} failed: {e:?}"));
            let pair = index as u64 / 2;
            if index % 2 == 0 {
                let expected = (0..ROUND_TRIPS).fold(0u64, |sum, i| {
                    sum.wrapping_add((pair << 32 | i).wrapping_mul(3).wrapping_add(1))
                });
                assert_eq!(value, expected, "pair {pair}: wrong sum");
            } else {
                assert_eq!(value, ROUND_TRIPS, "pair {pair}: wrong echo count");
            }
        }
        let sum = join_within(spawner, TIMEOUT)
            .expect("the spawner did not finish")
            .unwrap();
        let expected = (0..SHORT_TASKS).fold(0u64, |sum, i| sum.wrapping_add(work(i, 100)));
        assert_eq!(sum, expected, "the short tasks' results");
        println!(
            "storm: {HOGS} hogs x {POLLS} polls, {PAIRS} ping-pong pairs, {SHORT_TASKS} short tasks \
             in {:?}; {}",
            started.elapsed(),
            figures(&rt)
        );
        let wrong_mode = wrong_mode.lock().unwrap();
        println!(
            "fresh polls preempted before their first statement: {}",
            wrong_mode.len()
        );
    });
}

/// Tasks that keep every worker busy and their queues full until `stop`: yielders, and spawners
/// whose short tasks other workers steal.
fn start_pressure(stop: &Arc<AtomicBool>, storms: usize) -> Vec<JoinHandle<()>> {
    (0..storms)
        .map(|i| {
            let stop = stop.clone();
            maniac::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if i % 2 == 0 {
                        for _ in 0..4 {
                            maniac::spawn(async {
                                yield_now().await;
                            });
                        }
                    }
                    yield_now().await;
                }
            })
        })
        .collect()
}

#[test]
fn a_preempted_poll_never_leaves_its_os_thread_under_stealing_pressure() {
    preempt_common::bounded_test(|| {
        if !supported("a_preempted_poll_never_leaves_its_os_thread_under_stealing_pressure") {
            return;
        }
        const HOGS: u64 = 8;
        /// Polls each hog runs at least, and at most.
        const POLLS: (u64, u64) = (8, 1_000);
        /// The hogs go on until the runtime counted this many preemptions (or `PATIENCE` ran out:
        /// a loaded machine runs the monitor less often).
        const TARGET: u64 = 1_500;
        const PATIENCE: Duration = Duration::from_secs(8);
        let rt = runtime(4, maniac::preempt::MIN_QUANTUM);
        let _enter = rt.enter();
        let stop = Arc::new(AtomicBool::new(false));
        let _stop = StopOnDrop(stop.clone());
        let pressure = start_pressure(&stop, 6);
        let moved_within_a_poll = Arc::new(AtomicU64::new(0));
        let enough = Arc::new(AtomicBool::new(false));
        let hogs: Vec<JoinHandle<HashSet<libc::pid_t>>> = (0..HOGS)
            .map(|hog| {
                let (moved, enough) = (moved_within_a_poll.clone(), enough.clone());
                let task = async move {
                    let mut threads = HashSet::new();
                    let mut x = hog;
                    for poll in 0..POLLS.1 {
                        if poll >= POLLS.0 && enough.load(Ordering::Relaxed) {
                            break;
                        }
                        // One poll of ~6 ms (60 quanta), the thread checked every 4096 steps.
                        let tid = gettid();
                        threads.insert(tid);
                        let poll = Instant::now();
                        while poll.elapsed() < Duration::from_millis(6) {
                            x = work(x, 4_096);
                            if gettid() != tid {
                                moved.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        yield_now().await;
                    }
                    threads
                };
                spawn_in_mode(hog % 2 == 1, task)
            })
            .collect();
        let started = Instant::now();
        while preemptions(&rt) < TARGET && started.elapsed() < PATIENCE {
            std::thread::sleep(Duration::from_millis(5));
        }
        enough.store(true, Ordering::Relaxed);
        let mut thread_sets = Vec::new();
        for (hog, handle) in hogs.into_iter().enumerate() {
            thread_sets.push(
                join_within(handle, TIMEOUT)
                    .unwrap_or_else(|| panic!("hog {hog} did not finish ({})", figures(&rt)))
                    .unwrap_or_else(|e| panic!("hog {hog} failed: {e:?}")),
            );
        }
        stop.store(true, Ordering::Relaxed);
        for handle in pressure {
            join_within(handle, TIMEOUT).unwrap().unwrap();
        }
        let moved_between_polls = thread_sets.iter().filter(|set| set.len() > 1).count();
        println!(
            "affinity: {moved_between_polls} of {HOGS} hogs ran on more than one thread across \
             polls; {}",
            figures(&rt)
        );
        assert_eq!(
            moved_within_a_poll.load(Ordering::Relaxed),
            0,
            "a preempted poll was resumed on another OS thread"
        );
        assert!(
            preemptions(&rt) >= TARGET,
            "too few preemptions to say in {PATIENCE:?}: {}",
            figures(&rt)
        );
        // The pressure is real: tasks do move between workers at poll boundaries.
        assert!(
            moved_between_polls > 0,
            "no hog ever moved to another worker between polls: no stealing pressure"
        );
    });
}
