#![cfg(not(loom))]
//! Spawning and joining: values come back through the join handle, on every flavour, from every
//! kind of thread, at scale; task ids are what the handles say.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::thread;

use common::{Counter, TIMEOUT, bounded, flavours, multi};
use maniac::runtime::Handle;
use maniac::task;

#[test]
fn spawn_returns_the_value_through_the_join_handle() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let values = rt.block_on(async {
                let a = maniac::spawn(async { 6 * 7 });
                let b = maniac::spawn(async { String::from("hello") });
                let c = maniac::spawn(async { vec![1u8, 2, 3] });
                (a.await.unwrap(), b.await.unwrap(), c.await.unwrap())
            });
            assert_eq!(values, (42, "hello".to_owned(), vec![1, 2, 3]), "{name}");
            // Runtime::spawn from outside block_on, joined inside it.
            let handle = rt.spawn(async { 7u64 });
            assert_eq!(rt.block_on(handle).unwrap(), 7, "{name}");
        });
    }
}

#[test]
fn many_tasks_each_return_their_own_value() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let sum = rt.block_on(async {
                let handles: Vec<_> = (0..10_000u64)
                    .map(|i| maniac::spawn(async move { i * 3 }))
                    .collect();
                let mut sum = 0;
                for (i, handle) in handles.into_iter().enumerate() {
                    let value = handle.await.unwrap();
                    assert_eq!(
                        value,
                        i as u64 * 3,
                        "{name}: a value went to the wrong handle"
                    );
                    sum += value;
                }
                sum
            });
            assert_eq!(sum, 3 * (10_000 * 9_999 / 2), "{name}");
        });
    }
}

/// 1,000,000 tasks on a 2-worker runtime, spawned from `block_on` (the injector path) and from
/// inside tasks (the LIFO slot / local queue path), every one joined.
#[test]
fn one_million_tasks_are_spawned_and_joined() {
    const TASKS: u64 = 1_000_000;
    const SPAWNERS: u64 = 10;
    bounded(|| {
        let rt = multi(2);
        let started = std::time::Instant::now();
        let total = rt.block_on(async {
            // Half from the block_on thread.
            let outside: Vec<_> = (0..TASKS / 2)
                .map(|i| maniac::spawn(async move { i }))
                .collect();
            // Half from inside tasks, which spawn on their own worker.
            let per_spawner = TASKS / 2 / SPAWNERS;
            let spawners: Vec<_> = (0..SPAWNERS)
                .map(|s| {
                    maniac::spawn(async move {
                        let base = TASKS / 2 + s * per_spawner;
                        let handles: Vec<_> = (base..base + per_spawner)
                            .map(|i| maniac::spawn(async move { i }))
                            .collect();
                        let mut sum = 0u64;
                        let mut count = 0u64;
                        for handle in handles {
                            sum += handle.await.unwrap();
                            count += 1;
                        }
                        (sum, count)
                    })
                })
                .collect();
            let mut sum = 0u64;
            let mut count = 0u64;
            for handle in outside {
                sum += handle.await.unwrap();
                count += 1;
            }
            for spawner in spawners {
                let (s, c) = spawner.await.unwrap();
                sum += s;
                count += c;
            }
            (sum, count)
        });
        assert_eq!(total, (TASKS * (TASKS - 1) / 2, TASKS));
        eprintln!("1M tasks in {:?}", started.elapsed());
        assert_eq!(
            rt.metrics().num_alive_tasks(),
            0,
            "finished tasks still registered"
        );
    });
}

#[test]
fn tasks_spawned_from_tasks_are_joined() {
    /// Spawns a binary tree of `depth` levels below itself; returns the number of leaves.
    fn tree(depth: u32) -> maniac::task::JoinHandle<u64> {
        maniac::spawn(async move {
            if depth == 0 {
                return 1;
            }
            let left = tree(depth - 1);
            let right = tree(depth - 1);
            left.await.unwrap() + right.await.unwrap()
        })
    }
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let leaves = rt.block_on(async { tree(12).await.unwrap() });
            assert_eq!(leaves, 1 << 12, "{name}");
        });
    }
}

#[test]
fn dropping_a_join_handle_detaches_the_task() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let (tx, rx) = tokio::sync::oneshot::channel();
            rt.block_on(async move {
                let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
                drop(maniac::spawn(async move {
                    go_rx.await.unwrap();
                    tx.send(99).unwrap();
                }));
                // The detached task still runs after its handle is gone.
                go_tx.send(()).unwrap();
                assert_eq!(rx.await.unwrap(), 99, "{name}");
            });
        });
    }
}

#[test]
fn a_task_woken_from_a_foreign_std_thread_completes() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let sum = rt.block_on(async {
                let mut handles = Vec::new();
                let mut senders = Vec::new();
                for i in 0..64u64 {
                    let (tx, rx) = tokio::sync::oneshot::channel::<u64>();
                    senders.push(tx);
                    handles.push(maniac::spawn(async move { rx.await.unwrap() + i }));
                }
                // Every task is now (or soon) waiting; a plain thread sends.
                let sender = thread::spawn(move || {
                    for (i, tx) in senders.into_iter().enumerate() {
                        tx.send(i as u64 * 1000).unwrap();
                    }
                });
                let mut sum = 0;
                for handle in handles {
                    sum += handle.await.unwrap();
                }
                sender.join().unwrap();
                sum
            });
            let expected: u64 = (0..64u64).map(|i| i * 1000 + i).sum();
            assert_eq!(sum, expected, "{name}");
        });
    }
}

#[test]
fn a_task_parked_before_the_foreign_wake_completes() {
    // The task is known to be waiting (it said so) before the foreign thread sends, so the wake
    // really crosses from an idle task to a std thread.
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let (waiting_tx, waiting_rx) = std::sync::mpsc::channel();
            let (tx, rx) = tokio::sync::oneshot::channel::<&'static str>();
            let handle = rt.spawn(async move {
                waiting_tx.send(()).unwrap();
                rx.await.unwrap()
            });
            let sender = thread::spawn(move || {
                waiting_rx.recv_timeout(TIMEOUT).unwrap();
                tx.send("woken").unwrap();
            });
            assert_eq!(rt.block_on(handle).unwrap(), "woken", "{name}");
            sender.join().unwrap();
        });
    }
}

#[test]
fn handle_spawn_works_from_a_thread_outside_the_runtime() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let handle = rt.handle().clone();
            let spawner = thread::spawn(move || {
                assert!(
                    Handle::try_current().is_err(),
                    "a plain thread has no runtime"
                );
                (0..100u64)
                    .map(|i| handle.spawn(async move { i + 1 }))
                    .collect::<Vec<_>>()
            });
            let handles = spawner.join().unwrap();
            let sum = rt.block_on(async {
                let mut sum = 0;
                for handle in handles {
                    sum += handle.await.unwrap();
                }
                sum
            });
            assert_eq!(sum, (1..=100).sum::<u64>(), "{name}");
        });
    }
}

#[test]
fn a_join_handle_can_be_awaited_outside_the_runtime() {
    // futures' executor knows nothing of maniac: the join handle's wake-up must cross over.
    bounded(|| {
        let rt = multi(2);
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let handle = rt.spawn(async move { rx.await.unwrap() * 2 });
        let sender = thread::spawn(move || tx.send(21).unwrap());
        assert_eq!(futures::executor::block_on(handle).unwrap(), 42);
        sender.join().unwrap();
    });
}

#[test]
fn a_join_handle_can_be_awaited_on_another_runtime() {
    bounded(|| {
        let first = multi(2);
        let second = multi(1);
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let handle = first.spawn(async move { rx.await.unwrap() + 1 });
        let value = second.block_on(async move {
            let joiner = maniac::spawn(handle);
            tx.send(41).unwrap();
            joiner.await.unwrap().unwrap()
        });
        assert_eq!(value, 42);
    });
}

#[test]
fn is_finished_turns_true_when_the_task_completes() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            let handle = rt.spawn(async move {
                rx.await.unwrap();
                let _ = done_tx.send(());
                5
            });
            assert!(
                !handle.is_finished(),
                "{name}: finished before it was told to"
            );
            rt.block_on(async {
                tx.send(()).unwrap();
                done_rx.await.unwrap();
                // The task sent just before returning; it is finished once it is dropped.
                while !handle.is_finished() {
                    task::yield_now().await;
                }
            });
            assert!(handle.is_finished(), "{name}");
            assert_eq!(rt.block_on(handle).unwrap(), 5, "{name}");
        });
    }
}

#[test]
fn task_id_is_some_inside_tasks_and_none_outside() {
    for (name, make) in flavours() {
        bounded(move || {
            assert_eq!(task::try_id(), None, "{name}: a plain thread is not a task");
            let message = common::panic_text(task::id);
            assert!(message.contains("outside a task"), "{name}: {message}");

            let rt = make();
            rt.block_on(async {
                assert_eq!(
                    task::try_id(),
                    None,
                    "{name}: block_on's own future is not a task"
                );
                let handle = maniac::spawn(async { (task::id(), task::try_id()) });
                let expected = handle.id();
                let (id, try_id) = handle.await.unwrap();
                assert_eq!(id, expected, "{name}: JoinHandle::id differs from task::id");
                assert_eq!(try_id, Some(expected), "{name}");
                // Running tasks does not leave their id behind on the thread.
                assert_eq!(
                    task::try_id(),
                    None,
                    "{name}: a task's id leaked into block_on"
                );

                let blocking = maniac::task::spawn_blocking(task::try_id);
                let expected = blocking.id();
                assert_eq!(
                    blocking.await.unwrap(),
                    Some(expected),
                    "{name}: spawn_blocking"
                );
            });
            assert_eq!(task::try_id(), None, "{name}");
        });
    }
}

#[test]
fn task_ids_are_unique_and_nested_tasks_see_their_own() {
    bounded(|| {
        let rt = multi(2);
        let ids = rt.block_on(async {
            let handles: Vec<_> = (0..1000)
                .map(|_| {
                    maniac::spawn(async {
                        let outer = task::id();
                        let inner = maniac::spawn(async { task::id() });
                        let inner_expected = inner.id();
                        let inner_seen = inner.await.unwrap();
                        assert_eq!(inner_seen, inner_expected);
                        assert_ne!(inner_seen, outer);
                        // Awaiting another task does not change ours.
                        assert_eq!(task::id(), outer);
                        (outer, inner_seen)
                    })
                })
                .collect();
            let mut ids = Vec::new();
            for handle in handles {
                let expected = handle.id();
                let (outer, inner) = handle.await.unwrap();
                assert_eq!(outer, expected);
                ids.push(outer);
                ids.push(inner);
            }
            ids
        });
        let unique: HashSet<_> = ids.iter().copied().collect();
        assert_eq!(unique.len(), 2000, "task ids collide");
    });
}

#[test]
fn tasks_run_on_every_worker() {
    // Four tasks that each block their thread until all four are in: only possible if four
    // different workers run them at once.
    bounded(|| {
        let rt = multi(4);
        let barrier = Arc::new(std::sync::Barrier::new(4));
        let threads = rt.block_on(async {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let barrier = barrier.clone();
                    maniac::spawn(async move {
                        barrier.wait();
                        thread::current().id()
                    })
                })
                .collect();
            let mut threads = HashSet::new();
            for handle in handles {
                threads.insert(handle.await.unwrap());
            }
            threads
        });
        assert_eq!(threads.len(), 4);
        assert!(!threads.contains(&thread::current().id()));
    });
}

#[test]
fn current_thread_runs_tasks_on_the_block_on_thread() {
    bounded(|| {
        let rt = common::current();
        let me = thread::current().id();
        let ran = Arc::new(AtomicUsize::new(0));
        let ran2 = ran.clone();
        rt.block_on(async move {
            let handles: Vec<_> = (0..100)
                .map(|_| {
                    let ran = ran2.clone();
                    maniac::spawn(async move {
                        ran.fetch_add(1, SeqCst);
                        thread::current().id()
                    })
                })
                .collect();
            for handle in handles {
                assert_eq!(handle.await.unwrap(), me);
            }
        });
        assert_eq!(ran.load(SeqCst), 100);
    });
}

#[test]
fn wakes_from_many_foreign_threads_are_not_lost() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let done = Counter::new();
            let total = rt.block_on(async {
                let mut handles = Vec::new();
                let mut threads = Vec::new();
                for t in 0..4u64 {
                    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
                    handles.push(maniac::spawn(async move {
                        let mut sum = 0;
                        while let Some(v) = rx.recv().await {
                            sum += v;
                        }
                        sum
                    }));
                    let done = done.clone();
                    threads.push(thread::spawn(move || {
                        for i in 0..2_000 {
                            tx.send(t * 10_000 + i).unwrap();
                            if i % 100 == 0 {
                                thread::yield_now();
                            }
                        }
                        done.inc();
                    }));
                }
                let mut total = 0;
                for handle in handles {
                    total += handle.await.unwrap();
                }
                for thread in threads {
                    thread.join().unwrap();
                }
                total
            });
            assert_eq!(done.get(), 4);
            let expected: u64 = (0..4u64)
                .map(|t| (0..2_000u64).map(|i| t * 10_000 + i).sum::<u64>())
                .sum();
            assert_eq!(total, expected, "{name}");
        });
    }
}

#[test]
fn yield_now_lets_the_tasks_queued_before_it_run_first() {
    // One thread runs everything. A task spawns the yielder, then ten more: whatever ran before
    // the yield, all ten must have run by the time the yielder resumes.
    for (name, make) in [
        ("multi_thread(1)", (|| multi(1)) as common::MakeRuntime),
        ("current_thread", common::current),
    ] {
        bounded(move || {
            let rt = make();
            let (before, after) = rt.block_on(async {
                maniac::spawn(async {
                    let ran = Arc::new(AtomicUsize::new(0));
                    let yielder = {
                        let ran = ran.clone();
                        maniac::spawn(async move {
                            let before = ran.load(SeqCst);
                            task::yield_now().await;
                            (before, ran.load(SeqCst))
                        })
                    };
                    let others: Vec<_> = (0..10)
                        .map(|_| {
                            let ran = ran.clone();
                            maniac::spawn(async move {
                                ran.fetch_add(1, SeqCst);
                            })
                        })
                        .collect();
                    let result = yielder.await.unwrap();
                    for other in others {
                        other.await.unwrap();
                    }
                    result
                })
                .await
                .unwrap()
            });
            assert!(
                before < 10,
                "{name}: the yielder ran last anyway ({before})"
            );
            assert_eq!(
                after, 10,
                "{name}: yield_now resumed before the queued tasks ran"
            );
        });
    }
}

#[test]
fn message_passing_tasks_do_not_starve_a_queued_task() {
    // Two tasks that wake each other forever would keep the LIFO slot busy; the LIFO cap must let
    // the third task (in the local queue) run, and it stops them.
    bounded(|| {
        let rt = multi(1);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (a_tx, mut a_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let (b_tx, mut b_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let ping = {
            let stop = stop.clone();
            let b_tx = b_tx.clone();
            rt.spawn(async move {
                let mut n = 0u64;
                while let Some(v) = a_rx.recv().await {
                    n += 1;
                    if stop.load(SeqCst) {
                        break;
                    }
                    b_tx.send(v + 1).unwrap();
                }
                n
            })
        };
        let pong = {
            let stop = stop.clone();
            let a_tx = a_tx.clone();
            rt.spawn(async move {
                let mut n = 0u64;
                while let Some(v) = b_rx.recv().await {
                    n += 1;
                    if stop.load(SeqCst) {
                        break;
                    }
                    a_tx.send(v + 1).unwrap();
                }
                n
            })
        };
        a_tx.send(0).unwrap();
        let stopper = {
            let stop = stop.clone();
            let (a_tx, b_tx) = (a_tx.clone(), b_tx.clone());
            rt.spawn(async move {
                stop.store(true, SeqCst);
                // Whoever waits next sees the flag.
                let _ = a_tx.send(0);
                let _ = b_tx.send(0);
            })
        };
        drop((a_tx, b_tx));
        rt.block_on(async move {
            stopper.await.unwrap();
            assert!(ping.await.unwrap() >= 1);
            assert!(pong.await.unwrap() >= 1);
        });
    });
}

#[test]
fn a_busy_worker_still_runs_injected_tasks() {
    // The only worker is kept busy by a task that yields forever; tasks spawned from outside
    // (the injector) still get their turn.
    bounded(|| {
        let rt = multi(1);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let busy = {
            let stop = stop.clone();
            rt.spawn(async move {
                let mut yields = 0u64;
                while !stop.load(SeqCst) {
                    task::yield_now().await;
                    yields += 1;
                }
                yields
            })
        };
        let handles: Vec<_> = (0..100u64)
            .map(|i| rt.handle().spawn(async move { i }))
            .collect();
        let sum: u64 = handles
            .into_iter()
            .map(|h| futures::executor::block_on(h).unwrap())
            .sum();
        assert_eq!(sum, 4950);
        stop.store(true, SeqCst);
        assert!(futures::executor::block_on(busy).unwrap() >= 1);
    });
}
