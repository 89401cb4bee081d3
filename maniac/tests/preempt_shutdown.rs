#![cfg(all(not(loom), target_os = "linux"))]
//! Abort and shutdown while tasks are preempted in the middle of their polls, with real
//! preemption (the `maniac::coroutine` module doc, "Abort and shutdown of a task suspended
//! mid-poll"):
//! - `abort()` of a preempted task never cuts its poll short: the poll runs to its end (through
//!   more preemptions), the task is then dropped before its next poll and its handle reports
//!   cancellation; if that poll completes the task, the handle gets the value.
//! - Dropping the runtime finishes every preempted poll first, then drops the tasks (their
//!   destructors run, their handles report cancellation), without hanging.
//! - `shutdown_timeout` returns at its deadline although polls that never end are preempted on
//!   every worker; it abandons them (no destructor runs on their stacks, their handles report
//!   cancellation, stderr says how many), and every worker thread exits. That test runs in a
//!   child process, to read its stderr and to keep the abandoned stacks out of the others' way.

mod common;
mod coroutine_common;
mod preempt_common;

use std::future::pending;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Counter, DropGuard, TIMEOUT, spawn_in_mode};
use coroutine_common::in_child;
use maniac::runtime::Builder;
use maniac::task::{JoinHandle, yield_now};
use preempt_common::{
    StopOnDrop, bounded_test, figures, hog_for, hog_until, join_within, preemptions, runtime,
    supported,
};

/// Waits (bounded) until `rt` has counted at least `count` preemptions.
#[track_caller]
fn wait_for_preemptions(rt: &maniac::runtime::Runtime, count: u64) {
    let deadline = Instant::now() + TIMEOUT;
    while preemptions(rt) < count {
        assert!(
            Instant::now() < deadline,
            "only {} preemptions ({})",
            preemptions(rt),
            figures(rt)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What a task that is aborted in the middle of a preempted poll went through.
#[derive(Default)]
struct Progress {
    poll_started: AtomicBool,
    poll_ended: AtomicBool,
    after_boundary: AtomicBool,
}

/// Spawns, in `pinned` (Poll) mode or not, a task whose first poll computes for 300 ms (many
/// quanta, so it is preempted again and again) and then either completes with `value` or goes on
/// to a second poll.
fn spawn_long_poll(
    rt: &maniac::runtime::Runtime,
    pinned: bool,
    progress: &Arc<Progress>,
    drops: &Arc<Counter>,
    value: Option<u64>,
) -> JoinHandle<u64> {
    let (progress, guard) = (progress.clone(), DropGuard(drops.clone()));
    let task = async move {
        let _guard = guard;
        progress.poll_started.store(true, Ordering::SeqCst);
        hog_for(1, Duration::from_millis(300));
        progress.poll_ended.store(true, Ordering::SeqCst);
        if let Some(value) = value {
            return value;
        }
        yield_now().await;
        progress.after_boundary.store(true, Ordering::SeqCst);
        pending::<u64>().await
    };
    let _enter = rt.enter();
    spawn_in_mode(pinned, task)
}

#[test]
fn abort_of_a_preempted_task_takes_effect_at_its_next_poll_boundary() {
    bounded_test(|| {
        if !supported("abort_of_a_preempted_task_takes_effect_at_its_next_poll_boundary") {
            return;
        }
        for pinned in [false, true] {
            let rt = runtime(1, maniac::preempt::MIN_QUANTUM);
            let drops = Counter::new();
            let progress = Arc::new(Progress::default());
            let handle = spawn_long_poll(&rt, pinned, &progress, &drops, None);
            common::wait_until(TIMEOUT, "the long poll to start", || {
                progress.poll_started.load(Ordering::SeqCst)
            });
            let before = preemptions(&rt);
            wait_for_preemptions(&rt, before + 20);
            assert!(
                !progress.poll_ended.load(Ordering::SeqCst),
                "pinned {pinned}: the poll ended before the abort (too fast a machine?)"
            );
            // The task is in the middle of its first poll, preempted again and again.
            handle.abort();
            assert_eq!(
                drops.get(),
                0,
                "pinned {pinned}: dropped in the middle of a poll"
            );
            let error = join_within(handle, TIMEOUT)
                .expect("the aborted task's handle never resolved")
                .expect_err("the aborted task completed");
            assert!(error.is_cancelled(), "pinned {pinned}: {error:?}");
            assert!(
                progress.poll_ended.load(Ordering::SeqCst),
                "pinned {pinned}: the poll was cut short"
            );
            assert!(
                !progress.after_boundary.load(Ordering::SeqCst),
                "pinned {pinned}: polled again after the abort"
            );
            assert_eq!(
                drops.get(),
                1,
                "pinned {pinned}: not dropped after the abort"
            );
            // The worker is fine.
            let value = join_within(rt.spawn(async { 7 }), TIMEOUT)
                .unwrap()
                .unwrap();
            assert_eq!(value, 7);
        }
    });
}

#[test]
fn abort_of_a_preempted_task_whose_poll_completes_keeps_the_value() {
    bounded_test(|| {
        if !supported("abort_of_a_preempted_task_whose_poll_completes_keeps_the_value") {
            return;
        }
        for pinned in [false, true] {
            let rt = runtime(1, maniac::preempt::MIN_QUANTUM);
            let drops = Counter::new();
            let progress = Arc::new(Progress::default());
            let handle = spawn_long_poll(&rt, pinned, &progress, &drops, Some(42));
            common::wait_until(TIMEOUT, "the long poll to start", || {
                progress.poll_started.load(Ordering::SeqCst)
            });
            let before = preemptions(&rt);
            wait_for_preemptions(&rt, before + 20);
            assert!(!progress.poll_ended.load(Ordering::SeqCst));
            handle.abort();
            let value = join_within(handle, TIMEOUT)
                .expect("the aborted task's handle never resolved")
                .expect("the task completed in the poll the abort came during");
            assert_eq!(value, 42, "pinned {pinned}");
            assert_eq!(drops.get(), 1, "pinned {pinned}");
        }
    });
}

#[test]
fn dropping_the_runtime_finishes_the_preempted_polls_first() {
    bounded_test(|| {
        if !supported("dropping_the_runtime_finishes_the_preempted_polls_first") {
            return;
        }
        const HOGS: usize = 6;
        let rt = runtime(2, maniac::preempt::MIN_QUANTUM);
        let drops = Counter::new();
        let started = Counter::new();
        let finished = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..HOGS)
            .map(|i| {
                let (guard, started, finished) =
                    (DropGuard(drops.clone()), started.clone(), finished.clone());
                let task = async move {
                    let _guard = guard;
                    started.inc();
                    hog_for(i as u64, Duration::from_millis(250));
                    finished.fetch_add(1, Ordering::SeqCst);
                    pending::<()>().await
                };
                let _enter = rt.enter();
                spawn_in_mode(i % 2 == 1, task)
            })
            .collect();
        // Every hog has started (so every one of them was preempted at least once: three per
        // worker, and a poll never ends before its 250 ms are up).
        started.expect(HOGS, TIMEOUT, "every hog to start");
        wait_for_preemptions(&rt, 50);
        assert!(finished.load(Ordering::SeqCst) < HOGS as u64);
        let dropping = Instant::now();
        drop(rt);
        let took = dropping.elapsed();
        println!("drop with {HOGS} preempted hogs took {took:?}");
        assert_eq!(
            finished.load(Ordering::SeqCst),
            HOGS as u64,
            "dropping the runtime did not finish every preempted poll"
        );
        assert_eq!(
            drops.get(),
            HOGS,
            "the tasks were not dropped after their polls"
        );
        for handle in handles {
            let error = join_within(handle, TIMEOUT)
                .expect("a handle did not resolve after the drop")
                .expect_err("a pending task completed");
            assert!(error.is_cancelled(), "{error:?}");
        }
    });
}

thread_local! {
    /// Counts the thread's exit when dropped, after everything its body did (for a worker, its
    /// part of the shutdown, the report of what it abandoned included).
    static ON_EXIT: std::cell::Cell<Option<DropGuard>> = const { std::cell::Cell::new(None) };
}

#[test]
fn shutdown_timeout_abandons_polls_still_preempted_at_its_deadline() {
    const NAME: &str = "shutdown_timeout_abandons_polls_still_preempted_at_its_deadline";
    const WORKERS: usize = 2;
    const HOGS: usize = 5;
    if !supported(NAME) {
        return;
    }
    let child = in_child(NAME, || {
        bounded_test(|| {
            let stopped = Counter::new();
            maniac::preempt::prepare();
            let rt = Builder::new_multi_thread()
                .worker_threads(WORKERS)
                .preemption_quantum(maniac::preempt::MIN_QUANTUM)
                .on_thread_start({
                    let stopped = stopped.clone();
                    move || ON_EXIT.set(Some(DropGuard(stopped.clone())))
                })
                .build()
                .unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let _stop = StopOnDrop(stop.clone());
            let drops = Counter::new();
            let started = Counter::new();
            let handles: Vec<_> = (0..HOGS)
                .map(|i| {
                    let (guard, started, stop) =
                        (DropGuard(drops.clone()), started.clone(), stop.clone());
                    let task = async move {
                        let _guard = guard;
                        started.inc();
                        // Never ends while the runtime lives: set only after the shutdown.
                        hog_until(i as u64, &stop);
                    };
                    let _enter = rt.enter();
                    spawn_in_mode(i % 2 == 1, task)
                })
                .collect();
            started.expect(HOGS, TIMEOUT, "every hog to start");
            wait_for_preemptions(&rt, 50);
            let timeout = Duration::from_millis(200);
            let shutting = Instant::now();
            rt.shutdown_timeout(timeout);
            let took = shutting.elapsed();
            println!("shutdown_timeout({timeout:?}) with {HOGS} endless hogs took {took:?}");
            assert!(
                took < timeout + Duration::from_secs(5),
                "shutdown_timeout({timeout:?}) took {took:?}"
            );
            for handle in handles {
                let error = join_within(handle, TIMEOUT)
                    .expect("an abandoned task's handle did not resolve")
                    .expect_err("an endless hog completed");
                assert!(error.is_cancelled(), "{error:?}");
            }
            // The workers abandon what they still hold, report it and exit on their own.
            stopped.expect(WORKERS, TIMEOUT, "every worker thread to exit");
            assert_eq!(drops.get(), 0, "an abandoned task's destructors ran");
        });
    });
    if let Some(child) = child {
        child.assert_passed();
        let reported: usize = child
            .stderr
            .lines()
            .filter_map(|line| line.strip_prefix("maniac: shutdown abandoned "))
            .map(|rest| rest.split(' ').next().unwrap().parse::<usize>().unwrap())
            .sum();
        assert_eq!(
            reported, HOGS,
            "abandoned tasks reported on stderr:\n{}",
            child.stderr
        );
    }
}
