#![cfg(not(loom))]
//! `JoinSet`: results in completion order, bookkeeping, aborting, detaching, dropping.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

use common::{Counter, DropGuard, bounded, flavours, multi, quiet_panics};
use futures::FutureExt;
use maniac::task::JoinSet;
use tokio::sync::oneshot;

#[test]
fn join_next_returns_results_in_completion_order() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            rt.block_on(async {
                let mut set = JoinSet::new();
                let mut releases = Vec::new();
                let mut ids = Vec::new();
                for i in 0..6u32 {
                    let (tx, rx) = oneshot::channel::<()>();
                    releases.push(Some(tx));
                    ids.push(
                        set.spawn(async move {
                            rx.await.unwrap();
                            i
                        })
                        .id(),
                    );
                }
                for i in [3usize, 1, 4, 0, 5, 2] {
                    releases[i].take().unwrap().send(()).unwrap();
                    let (id, value) = set.join_next_with_id().await.unwrap().unwrap();
                    assert_eq!(value, i as u32, "{name}: joined out of completion order");
                    assert_eq!(id, ids[i], "{name}: wrong id for task {i}");
                }
                assert!(set.join_next().await.is_none(), "{name}");
            });
        });
    }
}

#[test]
fn len_and_is_empty_count_members_until_they_are_joined() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            rt.block_on(async {
                let mut set = JoinSet::new();
                assert!(set.is_empty());
                assert_eq!(set.len(), 0);
                let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
                for i in 0..3 {
                    let done_tx = done_tx.clone();
                    set.spawn(async move {
                        done_tx.send(()).unwrap();
                        i
                    });
                }
                assert_eq!(set.len(), 3, "{name}");
                for _ in 0..3 {
                    done_rx.recv().await.unwrap();
                }
                assert_eq!(
                    set.len(),
                    3,
                    "{name}: finished tasks left before being joined"
                );
                let mut values = HashSet::new();
                for left in (0..3).rev() {
                    values.insert(set.join_next().await.unwrap().unwrap());
                    assert_eq!(set.len(), left, "{name}");
                }
                assert!(set.is_empty(), "{name}");
                assert_eq!(values, HashSet::from([0, 1, 2]), "{name}");
                assert!(set.join_next().await.is_none(), "{name}");
                assert!(set.try_join_next().is_none(), "{name}");
            });
        });
    }
}

#[test]
fn try_join_next_returns_only_finished_tasks() {
    bounded(|| {
        let rt = multi(2);
        rt.block_on(async {
            let mut set = JoinSet::new();
            let (tx, rx) = oneshot::channel::<()>();
            let (done_tx, done_rx) = oneshot::channel::<()>();
            set.spawn(async move {
                rx.await.unwrap();
                let _ = done_tx.send(());
                11
            });
            assert!(set.try_join_next().is_none(), "a waiting task was joined");
            assert_eq!(set.len(), 1);
            tx.send(()).unwrap();
            done_rx.await.unwrap();
            // It sent just before returning; finished a moment later.
            let mut tries = 0u32;
            let value = loop {
                if let Some(result) = set.try_join_next() {
                    break result.unwrap();
                }
                tries += 1;
                assert!(
                    tries < 1_000_000,
                    "a finished task never showed up in try_join_next"
                );
                maniac::task::yield_now().await;
            };
            assert_eq!(value, 11);
            assert!(set.is_empty());
            assert!(set.try_join_next().is_none());
        });
    });
}

#[test]
fn abort_all_cancels_every_unfinished_task() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let drops = Counter::new();
            let drops2 = drops.clone();
            rt.block_on(async move {
                let mut set = JoinSet::new();
                let (finished_tx, finished_rx) = oneshot::channel::<()>();
                set.spawn(async move {
                    let _ = finished_tx.send(());
                    100
                });
                finished_rx.await.unwrap();
                let mut keep = Vec::new();
                for i in 0..10 {
                    let (tx, rx) = oneshot::channel::<()>();
                    keep.push(tx);
                    let guard = DropGuard(drops2.clone());
                    set.spawn(async move {
                        let _guard = guard;
                        let _ = rx.await;
                        i
                    });
                }
                set.abort_all();
                assert_eq!(set.len(), 11, "{name}: abort_all removed members");
                let (mut cancelled, mut values) = (0, Vec::new());
                while let Some(result) = set.join_next().await {
                    match result {
                        Ok(value) => values.push(value),
                        Err(error) if error.is_cancelled() => cancelled += 1,
                        Err(error) => panic!("{name}: {error:?}"),
                    }
                }
                assert_eq!(cancelled, 10, "{name}");
                // The first task may have finished before or after the abort: either way it
                // produced its value and nothing else did.
                assert_eq!(values, vec![100], "{name}");
            });
            assert_eq!(drops.get(), 10, "{name}");
        });
    }
}

#[test]
fn detach_all_lets_the_tasks_run_on() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            rt.block_on(async {
                let mut set = JoinSet::new();
                let (result_tx, mut result_rx) = tokio::sync::mpsc::unbounded_channel();
                let mut releases = Vec::new();
                for i in 0..5 {
                    let (tx, rx) = oneshot::channel::<()>();
                    releases.push(tx);
                    let result_tx = result_tx.clone();
                    set.spawn(async move {
                        rx.await.unwrap();
                        result_tx.send(i).unwrap();
                    });
                }
                set.detach_all();
                assert!(set.is_empty(), "{name}");
                assert!(set.join_next().await.is_none(), "{name}");
                drop(set); // must not abort the detached tasks
                drop(result_tx);
                for tx in releases {
                    tx.send(()).unwrap();
                }
                let mut seen = HashSet::new();
                while let Some(i) = result_rx.recv().await {
                    seen.insert(i);
                }
                assert_eq!(seen, (0..5).collect(), "{name}: a detached task was lost");
            });
        });
    }
}

#[test]
fn dropping_a_join_set_aborts_its_tasks() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let drops = Counter::new();
            let resumed = Arc::new(AtomicBool::new(false));
            let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
            let mut gone = Vec::new();
            let mut set = JoinSet::new();
            for _ in 0..8 {
                let guard = DropGuard(drops.clone());
                let mut rx = tx.subscribe();
                let resumed = resumed.clone();
                // Dropped with the future (after the guard): its receiver then resolves.
                let (gone_tx, gone_rx) = oneshot::channel::<()>();
                gone.push(gone_rx);
                set.spawn_on(
                    async move {
                        let _gone = gone_tx;
                        let _guard = guard;
                        let _ = rx.recv().await;
                        resumed.store(true, SeqCst);
                    },
                    rt.handle(),
                );
            }
            drop(set);
            // Waiting here lets a current-thread runtime run the cancellations.
            rt.block_on(async move {
                for gone_rx in gone {
                    assert!(
                        gone_rx.await.is_err(),
                        "the future sent instead of dropping"
                    );
                }
            });
            // A future that was never polled drops its captures in capture order, the
            // receiver's sender first; the guard's drop may come a moment later, on a worker
            // thread (and that worker may be preempted in between).
            drops.expect(8, common::TIMEOUT, name);
            assert_eq!(drops.get(), 8, "{name}");
            let _ = tx.send(());
            assert!(
                !resumed.load(SeqCst),
                "{name}: a task of a dropped set ran on"
            );
            // Each future's receiver may drop a moment after its guard, on a worker thread.
            common::wait_until(common::TIMEOUT, "every receiver to be dropped", || {
                tx.receiver_count() == 0
            });
        });
    }
}

#[test]
fn join_all_returns_every_value() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let mut values = rt.block_on(async {
                let mut set = JoinSet::new();
                for i in 0..100u32 {
                    set.spawn(async move {
                        if i % 3 == 0 {
                            maniac::task::yield_now().await;
                        }
                        i * 2
                    });
                }
                set.join_all().await
            });
            values.sort_unstable();
            assert_eq!(
                values,
                (0..100).map(|i| i * 2).collect::<Vec<_>>(),
                "{name}"
            );
        });
    }
}

#[test]
fn join_all_resumes_a_task_panic_and_panics_on_a_cancelled_task() {
    quiet_panics();
    bounded(|| {
        let rt = multi(2);
        rt.block_on(async {
            let mut set = JoinSet::new();
            set.spawn(async { 1 });
            set.spawn(async { panic!("[expected panic] member") });
            let payload = std::panic::AssertUnwindSafe(set.join_all())
                .catch_unwind()
                .await
                .expect_err("join_all swallowed a task's panic");
            assert_eq!(
                common::panic_message(&*payload),
                Some("[expected panic] member")
            );

            let mut set = JoinSet::new();
            let (_tx, rx) = oneshot::channel::<()>();
            set.spawn(async move {
                let _ = rx.await;
                1
            })
            .abort();
            let payload = std::panic::AssertUnwindSafe(set.join_all())
                .catch_unwind()
                .await
                .expect_err("join_all swallowed a cancellation");
            let message = common::panic_message(&*payload).unwrap_or("");
            assert!(message.contains("cancelled"), "{message}");
        });
    });
}

#[test]
fn shutdown_aborts_every_task_and_waits_for_them() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let drops = Counter::new();
            let drops2 = drops.clone();
            rt.block_on(async move {
                let mut set = JoinSet::new();
                let mut keep = Vec::new();
                for _ in 0..10 {
                    let (tx, rx) = oneshot::channel::<()>();
                    keep.push(tx);
                    let guard = DropGuard(drops2.clone());
                    set.spawn(async move {
                        let _guard = guard;
                        let _ = rx.await;
                    });
                }
                set.shutdown().await;
                // When shutdown returns, every future is gone.
                assert_eq!(drops2.get(), 10, "{name}");
                assert!(set.is_empty(), "{name}");
                // The set is reusable.
                set.spawn(async {});
                assert!(set.join_next().await.unwrap().is_ok(), "{name}");
            });
            assert_eq!(drops.get(), 10, "{name}");
        });
    }
}

#[test]
fn spawn_blocking_into_a_join_set() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let mut values = rt.block_on(async {
                let mut set = JoinSet::new();
                for i in 0..8u64 {
                    set.spawn_blocking(move || i * i);
                }
                set.spawn(async { 1000 });
                let mut values = Vec::new();
                while let Some(result) = set.join_next().await {
                    values.push(result.unwrap());
                }
                values
            });
            values.sort_unstable();
            assert_eq!(values, vec![0, 1, 4, 9, 16, 25, 36, 49, 1000], "{name}");
        });
    }
}

#[test]
fn spawn_on_and_spawn_blocking_on_work_from_outside_the_runtime() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let handle = rt.handle().clone();
            // Filled on a plain thread that has no runtime context.
            let mut set = std::thread::spawn(move || {
                let mut set = JoinSet::new();
                for i in 0..5u32 {
                    set.spawn_on(async move { i }, &handle);
                    set.spawn_blocking_on(move || i + 100, &handle);
                }
                set
            })
            .join()
            .unwrap();
            assert_eq!(set.len(), 10);
            let mut values = rt.block_on(async move {
                let mut values = Vec::new();
                while let Some(result) = set.join_next().await {
                    values.push(result.unwrap());
                }
                values
            });
            values.sort_unstable();
            assert_eq!(
                values,
                vec![0, 1, 2, 3, 4, 100, 101, 102, 103, 104],
                "{name}"
            );
        });
    }
}

#[test]
fn a_join_set_of_many_tasks_loses_none() {
    bounded(|| {
        let rt = multi(2);
        let (sum, count) = rt.block_on(async {
            let mut set = JoinSet::new();
            for i in 0..20_000u64 {
                set.spawn(async move {
                    if i % 7 == 0 {
                        maniac::task::yield_now().await;
                    }
                    i
                });
            }
            let (mut sum, mut count) = (0, 0);
            while let Some(result) = set.join_next().await {
                sum += result.unwrap();
                count += 1;
            }
            (sum, count)
        });
        assert_eq!(count, 20_000);
        assert_eq!(sum, 20_000 * 19_999 / 2);
    });
}

#[test]
fn join_set_polled_from_a_task_while_members_finish_on_other_workers() {
    bounded(|| {
        let rt = multi(4);
        let total = rt.block_on(async {
            maniac::spawn(async {
                let mut set = JoinSet::new();
                for round in 0..50u64 {
                    for i in 0..20u64 {
                        set.spawn(async move {
                            maniac::task::yield_now().await;
                            round * 100 + i
                        });
                    }
                    // Join half now, the rest with the next rounds.
                    for _ in 0..10 {
                        set.join_next().await.unwrap().unwrap();
                    }
                }
                let mut rest = 0;
                while let Some(result) = set.join_next().await {
                    result.unwrap();
                    rest += 1;
                }
                rest
            })
            .await
            .unwrap()
        });
        assert_eq!(total, 500);
    });
}
