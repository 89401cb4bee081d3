#![cfg(not(loom))]
//! Panics in coroutine run modes: a panic in a Poll-mode task (before or after a `sync_await`),
//! in the interrupted poll of a switched task, or after `pin_stack`, fails only that task's join
//! handle; every worker keeps running tasks, switches and generators afterwards; and the stack
//! pool stays consistent (every stack unmapped at the drop, checked in a child process).

mod common;
mod coroutine_common;

use std::collections::HashSet;

use common::{Counter, EXPECTED, TIMEOUT, bounded, wait_until};
use coroutine_common::{
    checksum, gettid, in_child, join_panic_text, live_stacks, make_data, quiet_panics,
};
use maniac::coroutine::{
    RunMode, pin_stack, run_mode, spawn_pinned, stack_stats, switch_now, sync_await,
};
use maniac::runtime::Runtime;
use maniac::task::yield_now;

const WORKER_COUNTS: [usize; 3] = [1, 2, 4];

/// Where a panicking task panics.
#[derive(Debug, Clone, Copy)]
enum Panic {
    /// Poll mode (spawn_pinned), before any sync_await.
    PollBeforeSyncAwait,
    /// Poll mode, after a sync_await that suspended.
    PollAfterSyncAwait,
    /// Poll mode after `pin_stack` in a None-mode poll, in a later poll.
    AfterPinStack,
    /// The interrupted poll of a switched None-mode task.
    SwitchedNone,
    /// The interrupted poll of a switched Poll-mode task.
    SwitchedPoll,
    /// Poll mode, inside the future being sync_awaited.
    InsideSyncAwait,
}

const ALL: [Panic; 6] = [
    Panic::PollBeforeSyncAwait,
    Panic::PollAfterSyncAwait,
    Panic::AfterPinStack,
    Panic::SwitchedNone,
    Panic::SwitchedPoll,
    Panic::InsideSyncAwait,
];

/// Spawns (from inside the runtime) a task that panics as `kind` says, with `EXPECTED` and `i` in
/// its message.
fn spawn_panicking(kind: Panic, i: usize) -> maniac::task::JoinHandle<u64> {
    let data = make_data(i as u64, 64);
    match kind {
        Panic::PollBeforeSyncAwait => spawn_pinned(async move {
            assert_eq!(run_mode(), Some(RunMode::Poll));
            if checksum(&data) != 0 {
                panic!("{EXPECTED} {i} before sync_await");
            }
            sync_await(async { 1 })
        }),
        Panic::PollAfterSyncAwait => spawn_pinned(async move {
            let got = sync_await(async {
                yield_now().await;
                checksum(&data)
            });
            if got != 0 {
                panic!("{EXPECTED} {i} after sync_await");
            }
            got
        }),
        Panic::AfterPinStack => maniac::spawn(async move {
            pin_stack();
            yield_now().await;
            assert_eq!(run_mode(), Some(RunMode::Poll));
            yield_now().await;
            if checksum(&data) != 0 {
                panic!("{EXPECTED} {i} after pin_stack");
            }
            0
        }),
        Panic::SwitchedNone => maniac::spawn(async move {
            switch_now().expect("switch");
            assert_eq!(run_mode(), Some(RunMode::Switch));
            if checksum(&data) != 0 {
                panic!("{EXPECTED} {i} in a switched None-mode poll");
            }
            0
        }),
        Panic::SwitchedPoll => spawn_pinned(async move {
            switch_now().expect("switch");
            switch_now().expect("switch");
            if checksum(&data) != 0 {
                panic!("{EXPECTED} {i} in a switched Poll-mode poll");
            }
            0
        }),
        Panic::InsideSyncAwait => spawn_pinned(async move {
            sync_await(async move {
                yield_now().await;
                if checksum(&data) != 0 {
                    panic!("{EXPECTED} {i} inside sync_await");
                }
                0
            })
        }),
    }
}

/// `workers` tasks that each hold their worker until all of them run at once (only possible if
/// every worker survived and still runs tasks), then switch and sync_await on that worker (so
/// every worker still runs generators). Returns the OS threads they ran on.
fn every_worker_still_runs(rt: &Runtime, workers: usize) -> HashSet<libc::pid_t> {
    let arrived = Counter::new();
    let handles: Vec<_> = (0..workers)
        .map(|i| {
            let arrived = arrived.clone();
            let _enter = rt.enter();
            spawn_pinned(async move {
                // First the rendezvous: a task suspended mid-poll could not move to a free
                // worker, so switching before it could leave two of them on one worker.
                arrived.inc();
                let seen = arrived.wait_for(workers, TIMEOUT);
                assert_eq!(seen, workers, "not every worker is running tasks");
                let before = gettid();
                switch_now().expect("switch after the panics");
                let waited = sync_await(async move {
                    yield_now().await;
                    i
                });
                assert_eq!(waited, i);
                assert_eq!(before, gettid());
                before
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|handle| rt.block_on(handle).expect("a task after the panics failed"))
        .collect()
}

#[test]
fn a_panic_in_any_run_mode_fails_only_its_join_handle_and_every_worker_survives() {
    quiet_panics();
    bounded(|| {
        for workers in WORKER_COUNTS {
            let rt = common::multi(workers);
            for kind in ALL {
                let messages = rt.block_on(async move {
                    let handles: Vec<_> = (0..8 * workers)
                        .map(|i| (i, spawn_panicking(kind, i)))
                        .collect();
                    // Healthy tasks alongside, in every mode.
                    let healthy: Vec<_> = (0..4u64)
                        .map(|i| {
                            if i % 2 == 0 {
                                spawn_pinned(async move {
                                    switch_now().expect("switch");
                                    sync_await(async move { i })
                                })
                            } else {
                                maniac::spawn(async move {
                                    switch_now().expect("switch");
                                    yield_now().await;
                                    i
                                })
                            }
                        })
                        .collect();
                    let mut messages = Vec::new();
                    for (i, handle) in handles {
                        let error = handle.await.expect_err("the task did not panic");
                        messages.push((i, join_panic_text(error)));
                    }
                    for (i, handle) in (0..).zip(healthy) {
                        assert_eq!(handle.await.unwrap(), i);
                    }
                    messages
                });
                for (i, message) in messages {
                    assert!(
                        message.contains(EXPECTED) && message.contains(&format!(" {i} ")),
                        "{workers} worker(s), {kind:?}: wrong panic message: {message}"
                    );
                }
            }
            let threads = every_worker_still_runs(&rt, workers);
            assert_eq!(threads.len(), workers, "{workers} worker(s): {threads:?}");
        }
    });
}

#[test]
fn a_task_that_catches_a_panic_in_a_switched_poll_goes_on() {
    quiet_panics();
    bounded(|| {
        let rt = common::multi(2);
        let (none, poll) = rt.block_on(async {
            let none = maniac::spawn(async {
                let data = make_data(5, 32);
                let caught = std::panic::catch_unwind(|| {
                    switch_now().expect("switch");
                    panic!("{EXPECTED} caught after a switch");
                });
                assert!(caught.is_err());
                yield_now().await;
                (run_mode(), checksum(&data))
            });
            let poll = spawn_pinned(async {
                let data = make_data(6, 32);
                let caught = std::panic::catch_unwind(|| {
                    switch_now().expect("switch");
                    sync_await(async {
                        yield_now().await;
                        panic!("{EXPECTED} caught inside sync_await");
                    })
                });
                assert!(caught.is_err());
                yield_now().await;
                (run_mode(), checksum(&data))
            });
            (none.await.unwrap(), poll.await.unwrap())
        });
        assert_eq!(none, (Some(RunMode::None), checksum(&make_data(5, 32))));
        assert_eq!(poll, (Some(RunMode::Poll), checksum(&make_data(6, 32))));
    });
}

#[test]
fn panics_leave_the_stack_pool_consistent() {
    let child = in_child("panics_leave_the_stack_pool_consistent", || {
        quiet_panics();
        bounded(|| {
            const WORKERS: usize = 2;
            let rt = common::multi(WORKERS);
            let panicked = rt.block_on(async {
                let mut panicked = 0;
                for round in 0..20 {
                    let handles: Vec<_> = ALL
                        .iter()
                        .flat_map(|&kind| (0..4).map(move |i| spawn_panicking(kind, round * 4 + i)))
                        .collect();
                    for handle in handles {
                        if handle.await.unwrap_err().is_panic() {
                            panicked += 1;
                        }
                    }
                }
                panicked
            });
            assert_eq!(panicked, 20 * 4 * ALL.len());
            // Idle: at most each worker's full pool, the runtime's shared pool (as many again per
            // worker) and each worker generator are mapped (`coroutine::stack` module doc,
            // "Pools"; a switched task's join handle is woken before its generator is back in
            // the pool).
            wait_until(TIMEOUT, "at most the full pools after the panics", || {
                live_stacks() <= WORKERS * (2 * 16 + 1)
            });
            // The pool still works: more generators, then a clean drop.
            let threads = every_worker_still_runs(&rt, WORKERS);
            assert_eq!(threads.len(), WORKERS);
            drop(rt);
            let stats = stack_stats();
            println!("after {panicked} panics: {stats:?}");
            assert_eq!(
                stats.mapped, stats.unmapped,
                "stacks left mapped: {stats:?}"
            );
        });
    });
    if let Some(child) = child {
        child.assert_passed();
    }
}

#[test]
fn a_panicking_pinned_task_does_not_disturb_a_task_waiting_in_sync_await() {
    quiet_panics();
    bounded(|| {
        // On one worker, a task waits in sync_await while tasks panic in every mode around it.
        let rt = common::multi(1);
        let waited = rt.block_on(async {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let waiter = spawn_pinned(async move {
                let data = make_data(11, 128);
                let got = sync_await(rx).unwrap();
                (got, checksum(&data))
            });
            for (i, kind) in ALL.into_iter().enumerate() {
                let error = spawn_panicking(kind, i).await.unwrap_err();
                assert!(error.is_panic());
            }
            tx.send(99u64).unwrap();
            waiter.await.unwrap()
        });
        assert_eq!(waited, (99, checksum(&make_data(11, 128))));
    });
}
