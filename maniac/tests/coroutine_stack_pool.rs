#![cfg(not(loom))]
//! The coroutine stack pool (`maniac::coroutine` module doc, "Stacks"): stacks are reused, the
//! pool is bounded, every stack is unmapped once the runtime is dropped, and switching does not
//! leak. `stack_stats` counts for the whole process, so each test runs its body in a child
//! process of its own (`coroutine_common::in_child`).

mod common;
mod coroutine_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

use common::{Counter, TIMEOUT, bounded, spawn_in_mode, wait_until};
use coroutine_common::{in_child, live_stacks, rss_bytes};
use maniac::coroutine::{spawn_pinned, stack_stats, switch_now, sync_await};
use maniac::task::yield_now;

const WORKERS: usize = 2;
/// How many free stacks a worker keeps (`coroutine::stack::POOL_CAPACITY`); the runtime's
/// shared pool behind the workers' keeps as many again per worker (`coroutine::stack` module
/// doc, "Pools").
const POOL_CAPACITY: usize = 16;
/// Stacks that may stay mapped on an idle runtime: each worker's pool, the shared pool, and each
/// worker's generator.
const IDLE_BOUND: usize = WORKERS * (2 * POOL_CAPACITY + 1);

/// One short Poll-mode task: two polls and a `sync_await` that suspends.
async fn short_pinned(i: u64) -> u64 {
    yield_now().await;
    sync_await(async move {
        yield_now().await;
        i * 2
    })
}

/// What [`check_reuse`] holds the stack counters to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bound {
    /// At most `IDLE_BOUND + in_flight` stacks mapped in all (the pool reuses them).
    Mapped,
    /// At most `IDLE_BOUND` stacks still mapped once the tasks are done (the pool is bounded).
    Live,
}

/// Runs `tasks` short Poll-mode tasks on a fresh runtime with `run`, checks the stack counters
/// against `bound`, and checks that dropping the runtime unmapped every stack.
fn check_reuse(
    what: &str,
    tasks: u64,
    in_flight: usize,
    bound: Bound,
    run: impl Future<Output = u64> + Send + 'static,
) {
    let what = what.to_owned();
    bounded(move || {
        let before = stack_stats();
        let rt = common::multi(WORKERS);
        let total = rt.block_on(rt.spawn(run)).unwrap();
        assert_eq!(total, tasks * (tasks - 1), "{what}: wrong results");
        let during = stack_stats();
        let mapped = during.mapped - before.mapped;
        println!(
            "{what}: {tasks} pinned tasks, {mapped} stacks mapped, {} unmapped, {} live",
            during.unmapped - before.unmapped,
            live_stacks()
        );
        if bound == Bound::Mapped {
            assert!(
                mapped <= IDLE_BOUND + in_flight,
                "{what}: {mapped} stacks mapped for {tasks} pinned tasks (bound: {IDLE_BOUND} \
                 pooled or running worker generators + {in_flight} in flight)"
            );
        }
        // A Poll-mode task gives its stack back before its join handle is woken.
        assert!(
            live_stacks() <= IDLE_BOUND,
            "{what}: {} stacks live once the tasks are done (bound {IDLE_BOUND})",
            live_stacks()
        );
        drop(rt);
        let after = stack_stats();
        assert_eq!(
            after.mapped - before.mapped,
            after.unmapped - before.unmapped,
            "{what}: stacks left mapped after the runtime was dropped: {after:?}"
        );
    });
}

#[test]
fn stacks_of_ten_thousand_sequential_pinned_tasks_are_reused() {
    const TASKS: u64 = 10_000;
    let child = in_child(
        "stacks_of_ten_thousand_sequential_pinned_tasks_are_reused",
        || {
            check_reuse("one at a time", TASKS, 1, Bound::Mapped, async {
                let mut total = 0;
                for i in 0..TASKS {
                    total += spawn_pinned(short_pinned(i)).await.unwrap();
                }
                total
            });
        },
    );
    if let Some(child) = child {
        child.assert_passed();
    }
}

const WAVES: u64 = 625;
const WAVE: u64 = 16;

/// 10,000 short Poll-mode tasks, WAVE in flight at a time, spawned from a task so that they start
/// in a worker's queues, where the other worker steals them between polls.
async fn pinned_waves() -> u64 {
    let mut total = 0;
    for wave in 0..WAVES {
        let handles: Vec<_> = (0..WAVE)
            .map(|i| spawn_pinned(short_pinned(wave * WAVE + i)))
            .collect();
        for handle in handles {
            total += handle.await.unwrap();
        }
    }
    total
}

#[test]
fn ten_thousand_pinned_tasks_in_waves_leave_at_most_a_full_pool_mapped() {
    let child = in_child(
        "ten_thousand_pinned_tasks_in_waves_leave_at_most_a_full_pool_mapped",
        || {
            check_reuse(
                "in waves",
                WAVES * WAVE,
                WAVE as usize,
                Bound::Live,
                pinned_waves(),
            )
        },
    );
    if let Some(child) = child {
        child.assert_passed();
    }
}

#[test]
fn stacks_of_ten_thousand_pinned_tasks_in_waves_are_reused() {
    let child = in_child(
        "stacks_of_ten_thousand_pinned_tasks_in_waves_are_reused",
        || {
            check_reuse(
                "in waves",
                WAVES * WAVE,
                WAVE as usize,
                Bound::Mapped,
                pinned_waves(),
            )
        },
    );
    if let Some(child) = child {
        child.assert_passed();
    }
}

#[test]
fn the_pool_keeps_at_most_its_capacity_after_a_burst() {
    const PINNED: usize = 200;
    const SWITCHED: usize = 100;
    let child = in_child("the_pool_keeps_at_most_its_capacity_after_a_burst", || {
        bounded(|| {
            let rt = common::multi(WORKERS);
            // A burst of Poll-mode tasks, all waiting at once on their own stacks.
            let started = Counter::new();
            let gate = Arc::new(tokio::sync::Semaphore::new(0));
            let handles: Vec<_> = (0..PINNED)
                .map(|i| {
                    let started = started.clone();
                    let gate = gate.clone();
                    let _enter = rt.enter();
                    spawn_pinned(async move {
                        started.inc();
                        sync_await(gate.acquire()).unwrap().forget();
                        i
                    })
                })
                .collect();
            started.expect(PINNED, TIMEOUT, "pinned tasks to start");
            let peak = live_stacks();
            assert!(peak >= PINNED, "only {peak} stacks live at the peak");
            gate.add_permits(PINNED);
            let sum: usize = handles
                .into_iter()
                .map(|handle| rt.block_on(handle).unwrap())
                .sum();
            assert_eq!(sum, PINNED * (PINNED - 1) / 2);
            let after_pinned = live_stacks();
            assert!(
                after_pinned <= IDLE_BOUND,
                "{after_pinned} stacks live after the pinned burst (bound {IDLE_BOUND})"
            );

            // A burst of switched None-mode polls, each holding a worker generator.
            let started = Counter::new();
            let open = Arc::new(AtomicBool::new(false));
            let handles: Vec<_> = (0..SWITCHED)
                .map(|i| {
                    let started = started.clone();
                    let open = open.clone();
                    rt.spawn(async move {
                        started.inc();
                        while !open.load(SeqCst) {
                            switch_now().expect("switch");
                        }
                        i
                    })
                })
                .collect();
            started.expect(SWITCHED, TIMEOUT, "switching tasks to start");
            let peak = live_stacks();
            assert!(
                peak >= SWITCHED,
                "only {peak} stacks live with {SWITCHED} switched polls"
            );
            open.store(true, SeqCst);
            let sum: usize = handles
                .into_iter()
                .map(|handle| rt.block_on(handle).unwrap())
                .sum();
            assert_eq!(sum, SWITCHED * (SWITCHED - 1) / 2);
            // A switched task's join handle is woken before its worker generator has returned
            // to the pool.
            wait_until(
                TIMEOUT,
                "the switched burst's stacks to be pooled or unmapped",
                || live_stacks() <= IDLE_BOUND,
            );
            let after_switched = live_stacks();
            println!(
                "live stacks: {after_pinned} after {PINNED} pinned, {after_switched} after \
                 {SWITCHED} switched"
            );
            drop(rt);
            assert_eq!(live_stacks(), 0, "stacks left mapped: {:?}", stack_stats());
        });
    });
    if let Some(child) = child {
        child.assert_passed();
    }
}

/// `total` switch/resume cycles spread over `tasks` tasks, half None mode and half Poll mode.
fn switch_cycles(rt: &maniac::runtime::Runtime, tasks: u64, total: u64) {
    let per_task = total / tasks;
    let done: u64 = rt.block_on(async move {
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let body = async move {
                    let data = coroutine_common::make_data(task, 32);
                    let mut switches = 0;
                    for round in 0..per_task {
                        switch_now().expect("switch");
                        switches += 1;
                        if round % 10 == 9 {
                            yield_now().await;
                        }
                    }
                    assert_eq!(coroutine_common::checksum(&data), {
                        coroutine_common::checksum(&coroutine_common::make_data(task, 32))
                    });
                    switches
                };
                spawn_in_mode(task % 2 == 1, body)
            })
            .collect();
        let mut done = 0;
        for handle in handles {
            done += handle.await.unwrap();
        }
        done
    });
    assert_eq!(done, per_task * tasks);
}

#[test]
fn a_hundred_thousand_switches_do_not_leak() {
    const TASKS: u64 = 20;
    const LIMIT: usize = 8 << 20;
    let child = in_child("a_hundred_thousand_switches_do_not_leak", || {
        bounded(|| {
            let rt = common::multi(WORKERS);
            switch_cycles(&rt, TASKS, 10_000); // warm-up
            let rss_before = rss_bytes();
            let before = stack_stats();
            switch_cycles(&rt, TASKS, 100_000);
            let rss_after = rss_bytes();
            let after = stack_stats();
            let grown = rss_after.saturating_sub(rss_before);
            let mapped = after.mapped - before.mapped;
            println!(
                "100000 switches: RSS {rss_before} -> {rss_after} (+{grown} bytes), {mapped} \
                 stacks mapped, {} live",
                live_stacks()
            );
            assert!(
                grown < LIMIT,
                "RSS grew by {grown} bytes over 100000 switches"
            );
            assert!(
                mapped <= IDLE_BOUND + TASKS as usize,
                "{mapped} stacks mapped during 100000 switches"
            );
            wait_until(
                TIMEOUT,
                "the switched stacks to be pooled or unmapped",
                || live_stacks() <= IDLE_BOUND,
            );
            drop(rt);
            assert_eq!(live_stacks(), 0, "stacks left mapped: {:?}", stack_stats());
        });
    });
    if let Some(child) = child {
        child.assert_passed();
    }
}

#[test]
fn a_current_thread_runtime_unmaps_its_stacks_when_dropped() {
    let child = in_child(
        "a_current_thread_runtime_unmaps_its_stacks_when_dropped",
        || {
            bounded(|| {
                let rt = common::current();
                let total: u64 = rt.block_on(async {
                    let mut total = 0;
                    for i in 0..1000 {
                        total += spawn_pinned(async move {
                            yield_now().await;
                            i
                        })
                        .await
                        .unwrap();
                    }
                    total
                });
                assert_eq!(total, 999 * 1000 / 2);
                let mapped = stack_stats().mapped;
                assert!(
                    mapped <= POOL_CAPACITY + 1,
                    "{mapped} stacks mapped for 1000 tasks"
                );
                // Pinned tasks idle between polls at the drop.
                let (_tx, rx) = tokio::sync::watch::channel(());
                let idle = Arc::new(tokio::sync::Semaphore::new(0));
                let handles: Vec<_> = (0..50)
                    .map(|_| {
                        let mut rx = rx.clone();
                        let idle = idle.clone();
                        rt.spawn(async move {
                            maniac::coroutine::pin_stack();
                            yield_now().await;
                            idle.add_permits(1);
                            let _ = rx.changed().await;
                        })
                    })
                    .collect();
                rt.block_on(async { idle.acquire_many(50).await.unwrap().forget() });
                drop(rt);
                for handle in handles {
                    let result = futures::executor::block_on(handle).unwrap_err();
                    assert!(result.is_cancelled());
                }
                assert_eq!(live_stacks(), 0, "stacks left mapped: {:?}", stack_stats());
            });
        },
    );
    if let Some(child) = child {
        child.assert_passed();
    }
}

#[test]
fn stacks_are_reused_when_the_stack_size_is_not_a_multiple_of_the_page_size() {
    const TASKS: u64 = 1000;
    let child = in_child(
        "stacks_are_reused_when_the_stack_size_is_not_a_multiple_of_the_page_size",
        || {
            bounded(|| {
                // 100,000 bytes: 24.4 pages of 4 KiB.
                let rt = coroutine_common::multi_with_stack(WORKERS, 100_000);
                let before = stack_stats();
                let total = rt.block_on(async {
                    let mut total = 0;
                    for i in 0..TASKS {
                        total += spawn_pinned(short_pinned(i)).await.unwrap();
                        // And a switched None-mode poll, which takes a fresh worker generator.
                        total += maniac::spawn(async move {
                            switch_now().expect("switch");
                            0
                        })
                        .await
                        .unwrap();
                    }
                    total
                });
                assert_eq!(total, TASKS * (TASKS - 1));
                let after = stack_stats();
                let mapped = after.mapped - before.mapped;
                println!(
                    "stack size 100000: {mapped} stacks mapped for {} generators",
                    2 * TASKS
                );
                assert!(
                    mapped <= IDLE_BOUND,
                    "{mapped} stacks mapped for {TASKS} pinned tasks and {TASKS} switches, one at \
                     a time"
                );
                drop(rt);
                assert_eq!(live_stacks(), 0, "stacks left mapped: {:?}", stack_stats());
            });
        },
    );
    if let Some(child) = child {
        child.assert_passed();
    }
}

/// 1 GiB: coroutine stacks of this size are only reserved, but a few fill an address-space
/// limit.
const GIB: usize = 1 << 30;

#[test]
fn a_pinned_task_runs_in_none_mode_when_no_stack_can_be_mapped() {
    let child = in_child(
        "a_pinned_task_runs_in_none_mode_when_no_stack_can_be_mapped",
        || {
            bounded(|| {
                let rt = coroutine_common::multi_with_stack(1, GIB);
                rt.block_on(rt.spawn(async {})).unwrap();
                coroutine_common::limit_address_space(GIB / 2);
                let (mode, refused) = rt.block_on(async {
                    spawn_pinned(async {
                        let refused = std::panic::catch_unwind(|| sync_await(async { 1 })).is_err();
                        yield_now().await;
                        (maniac::coroutine::run_mode(), refused)
                    })
                    .await
                    .unwrap()
                });
                assert_eq!(mode, Some(maniac::coroutine::RunMode::None));
                assert!(
                    refused,
                    "sync_await worked without a stack of the task's own"
                );
            });
        },
    );
    if let Some(child) = child {
        child.assert_passed();
        assert!(
            child
                .stderr
                .contains("asked for its own stack but none could be mapped"),
            "no message about the failed mapping:\n{}",
            child.stderr
        );
    }
}

#[test]
fn a_worker_survives_when_no_stack_can_be_mapped_after_a_switch() {
    let child = in_child(
        "a_worker_survives_when_no_stack_can_be_mapped_after_a_switch",
        || {
            // Shorter than `bounded`: with the bug, dropping the runtime hangs.
            common::with_timeout(std::time::Duration::from_secs(10), || {
                // 1 GiB stacks (reserved, not committed); the worker maps one for its generator.
                let rt = coroutine_common::multi_with_stack(1, GIB);
                rt.block_on(rt.spawn(async {})).unwrap();
                // From now on no further 1 GiB mapping fits in the address space limit.
                coroutine_common::limit_address_space(GIB / 2);
                // The switch needs a fresh worker generator, which cannot be mapped: the worker
                // goes on on its thread's stack, and must still finish the switched poll.
                let switched = rt.block_on(rt.spawn(async {
                    let switched = switch_now();
                    yield_now().await;
                    switched
                }));
                assert_eq!(switched.unwrap(), Ok(()));
                // And keeps running tasks (None mode, on the thread's stack).
                let value = rt.block_on(rt.spawn(async { 5 })).unwrap();
                assert_eq!(value, 5);
            });
        },
    );
    if let Some(child) = child {
        child.assert_passed();
        assert!(
            child
                .stderr
                .contains("maniac: cannot map a stack for the worker generator"),
            "no message about the failed mapping:\n{}",
            child.stderr
        );
    }
}
