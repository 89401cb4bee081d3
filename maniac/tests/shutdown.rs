#![cfg(not(loom))]
//! Shutdown: what dropping a runtime does to its tasks and blocking closures, the bounded
//! shutdowns, and shutting down from the runtime's own threads.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Counter, DropGuard, TIMEOUT, bounded, flavours, multi, with_timeout};
use maniac::runtime::{Builder, Runtime};

/// Busy-waits until `release` is set or `limit` has passed (the limit only keeps a broken runtime
/// from spinning forever); returns whether it was released.
fn spin_until(release: &AtomicBool, limit: Duration) -> bool {
    let start = Instant::now();
    while !release.load(SeqCst) {
        if start.elapsed() > limit {
            return false;
        }
        std::hint::spin_loop();
    }
    true
}

#[test]
fn dropping_the_runtime_drops_pending_futures_and_cancels_their_handles() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let drops = Counter::new();
            let polled = Arc::new(tokio::sync::Semaphore::new(0));
            let mut keep = Vec::new();
            let mut handles = Vec::new();
            // Idle tasks (waiting for a wake-up that never comes).
            for _ in 0..50 {
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                keep.push(tx);
                let guard = DropGuard(drops.clone());
                let polled = polled.clone();
                handles.push(rt.spawn(async move {
                    let _guard = guard;
                    polled.add_permits(1);
                    let _ = rx.await;
                }));
            }
            // Tasks that are always runnable (sitting in a queue at shutdown).
            for _ in 0..50 {
                let guard = DropGuard(drops.clone());
                handles.push(rt.spawn(async move {
                    let _guard = guard;
                    loop {
                        maniac::task::yield_now().await;
                    }
                }));
            }
            // Let the idle ones get to their await (on current_thread as well).
            rt.block_on(async { polled.acquire_many(50).await.unwrap().forget() });
            assert_eq!(drops.get(), 0, "{name}: a pending future was dropped early");
            drop(rt);
            // Drop returns after every future is gone.
            assert_eq!(
                drops.get(),
                100,
                "{name}: pending futures survived the runtime"
            );
            for handle in handles {
                let error = futures::executor::block_on(handle).expect_err("cancelled");
                assert!(error.is_cancelled(), "{name}: {error:?}");
            }
            // The receivers went with the futures.
            assert!(keep.iter().all(|tx| tx.is_closed()), "{name}");
        });
    }
}

#[test]
fn join_handles_of_a_dropped_runtime_resolve_on_another_runtime() {
    bounded(|| {
        let doomed = multi(2);
        let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = doomed.spawn(async move {
            let _ = rx.await;
        });
        let other = multi(1);
        let (waiting_tx, waiting_rx) = mpsc::channel();
        let joiner = other.spawn(async move {
            waiting_tx.send(()).unwrap();
            handle.await
        });
        waiting_rx.recv_timeout(TIMEOUT).unwrap();
        drop(doomed);
        let result = other.block_on(joiner).unwrap();
        assert!(result.unwrap_err().is_cancelled());
    });
}

#[test]
fn spawn_after_shutdown_is_cancelled_and_never_polled() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let handle = rt.handle().clone();
            drop(rt);
            let drops = Counter::new();
            let polled = Arc::new(AtomicBool::new(false));
            let join = {
                let guard = DropGuard(drops.clone());
                let polled = polled.clone();
                handle.spawn(async move {
                    let _guard = guard;
                    polled.store(true, SeqCst);
                    1
                })
            };
            assert_eq!(drops.get(), 1, "{name}: the future was not dropped at once");
            assert!(join.is_finished(), "{name}");
            let error = futures::executor::block_on(join).expect_err("cancelled");
            assert!(error.is_cancelled(), "{name}");
            assert!(
                !polled.load(SeqCst),
                "{name}: a task spawned after shutdown ran"
            );

            let ran = Arc::new(AtomicBool::new(false));
            let blocking = {
                let ran = ran.clone();
                handle.spawn_blocking(move || ran.store(true, SeqCst))
            };
            let error = futures::executor::block_on(blocking).expect_err("cancelled");
            assert!(error.is_cancelled(), "{name}");
            assert!(
                !ran.load(SeqCst),
                "{name}: a closure spawned after shutdown ran"
            );
        });
    }
}

/// Cooperative scheduling (preemption off), like the test above: the stuck poll cannot be
/// interrupted, and shutdown_timeout returns while it still runs. (Preempted, it would be
/// abandoned at the deadline: `coroutine_shutdown`'s preempted-hog test.)
#[test]
fn shutdown_timeout_returns_after_the_timeout_while_a_task_is_stuck() {
    with_timeout(Duration::from_secs(60), || {
        let stops = Counter::new();
        let rt = {
            let stops = stops.clone();
            Builder::new_multi_thread()
                .worker_threads(2)
                .preemption(false)
                .on_thread_stop(move || stops.inc())
                .build()
                .unwrap()
        };
        let release = Arc::new(AtomicBool::new(false));
        let (stuck_tx, stuck_rx) = mpsc::channel();
        let stuck = {
            let release = release.clone();
            rt.spawn(async move {
                stuck_tx.send(()).unwrap();
                spin_until(&release, Duration::from_secs(8))
            })
        };
        stuck_rx.recv_timeout(TIMEOUT).unwrap();
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        rt.shutdown_timeout(timeout);
        let took = started.elapsed();
        release.store(true, SeqCst);
        let released = futures::executor::block_on(stuck).unwrap();
        stops.expect(2, TIMEOUT, "both workers to stop");
        assert!(
            took >= timeout,
            "returned after {took:?}, before its timeout"
        );
        assert!(
            took < timeout + Duration::from_secs(2),
            "shutdown_timeout({timeout:?}) took {took:?} with a stuck task"
        );
        assert!(
            released,
            "the stuck task was not still running when shutdown_timeout returned"
        );
    });
}

/// Cooperative scheduling (preemption off): a poll in progress cannot be interrupted, so it runs
/// to its end after `shutdown_timeout` has returned. (With preemption, the poll is switched out
/// and abandoned at the deadline: `coroutine_shutdown`'s preempted-hog test.)
#[test]
fn a_task_stuck_in_a_poll_during_shutdown_timeout_finishes_and_is_cleaned_up() {
    bounded(|| {
        let stops = Counter::new();
        let rt = {
            let stops = stops.clone();
            Builder::new_multi_thread()
                .worker_threads(2)
                .preemption(false)
                .on_thread_stop(move || stops.inc())
                .build()
                .unwrap()
        };
        let drops = Counter::new();
        let mut keep = Vec::new();
        for _ in 0..10 {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            keep.push(tx);
            let guard = DropGuard(drops.clone());
            rt.spawn(async move {
                let _guard = guard;
                let _ = rx.await;
            });
        }
        let (stuck_tx, stuck_rx) = mpsc::channel();
        let stuck = rt.spawn(async move {
            stuck_tx.send(()).unwrap();
            // A long synchronous poll (longer than the timeout below).
            let never = AtomicBool::new(false);
            spin_until(&never, Duration::from_millis(1500));
            "done"
        });
        stuck_rx.recv_timeout(TIMEOUT).unwrap();
        rt.shutdown_timeout(Duration::from_millis(100));
        // Whether or not shutdown waited, the stuck task completes, its worker leaves, and the
        // pending futures are dropped by whoever leaves last.
        assert_eq!(futures::executor::block_on(stuck).unwrap(), "done");
        stops.expect(2, TIMEOUT, "both workers to stop");
        drops.expect(10, TIMEOUT, "the pending futures to be dropped");
        assert_eq!(drops.get(), 10);
        assert_eq!(stops.get(), 2);
    });
}

/// Cooperative scheduling (preemption off), as above: the stuck task is still running, and is
/// released, after shutdown_background has returned.
#[test]
fn shutdown_background_returns_promptly() {
    with_timeout(Duration::from_secs(60), || {
        let rt = Builder::new_multi_thread()
            .worker_threads(2)
            .preemption(false)
            .build()
            .unwrap();
        let release = Arc::new(AtomicBool::new(false));
        let (stuck_tx, stuck_rx) = mpsc::channel();
        let stuck = {
            let release = release.clone();
            rt.spawn(async move {
                stuck_tx.send(()).unwrap();
                spin_until(&release, Duration::from_secs(8))
            })
        };
        let (blocking_tx, blocking_rx) = mpsc::channel();
        let (unblock_tx, unblock_rx) = mpsc::channel::<()>();
        let blocking = rt.spawn_blocking(move || {
            blocking_tx.send(()).unwrap();
            unblock_rx.recv_timeout(Duration::from_secs(8)).is_ok()
        });
        stuck_rx.recv_timeout(TIMEOUT).unwrap();
        blocking_rx.recv_timeout(TIMEOUT).unwrap();
        let started = Instant::now();
        rt.shutdown_background();
        let took = started.elapsed();
        release.store(true, SeqCst);
        let _ = unblock_tx.send(());
        assert!(
            took < Duration::from_secs(1),
            "shutdown_background took {took:?} with a stuck task and a running closure"
        );
        let task_released = futures::executor::block_on(stuck).unwrap();
        let closure_released = futures::executor::block_on(blocking).unwrap();
        assert!(task_released && closure_released);
    });
}

#[test]
fn shutdown_timeout_with_nothing_stuck_shuts_down_completely() {
    bounded(|| {
        let rt = multi(2);
        let drops = Counter::new();
        let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
        let guard = DropGuard(drops.clone());
        let handle = rt.spawn(async move {
            let _guard = guard;
            let _ = rx.await;
        });
        let started = Instant::now();
        rt.shutdown_timeout(Duration::from_secs(10));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited for nothing"
        );
        assert_eq!(drops.get(), 1);
        assert!(
            futures::executor::block_on(handle)
                .unwrap_err()
                .is_cancelled()
        );
    });
}

#[test]
fn dropping_a_multi_thread_runtime_inside_its_own_task_does_not_deadlock() {
    bounded(|| {
        let stops = Counter::new();
        let rt = {
            let stops = stops.clone();
            Builder::new_multi_thread()
                .worker_threads(2)
                .on_thread_stop(move || stops.inc())
                .build()
                .unwrap()
        };
        let drops = Counter::new();
        let (_keep, rx) = tokio::sync::oneshot::channel::<()>();
        let guard = DropGuard(drops.clone());
        let pending = rt.spawn(async move {
            let _guard = guard;
            let _ = rx.await;
        });
        let (rt_tx, rt_rx) = mpsc::channel::<Runtime>();
        let dropper = rt.spawn(async move {
            let rt = rt_rx.recv_timeout(TIMEOUT).unwrap();
            drop(rt);
            "dropped"
        });
        rt_tx.send(rt).unwrap();
        assert_eq!(futures::executor::block_on(dropper).unwrap(), "dropped");
        stops.expect(2, TIMEOUT, "both workers to stop");
        drops.expect(1, TIMEOUT, "the pending future to be dropped");
        assert!(
            futures::executor::block_on(pending)
                .unwrap_err()
                .is_cancelled()
        );
    });
}

#[test]
fn dropping_a_current_thread_runtime_inside_its_own_task_does_not_deadlock() {
    bounded(|| {
        let rt = common::current();
        let handle = rt.handle().clone();
        let drops = Counter::new();
        let (_keep, rx) = tokio::sync::oneshot::channel::<()>();
        let guard = DropGuard(drops.clone());
        let pending = rt.spawn(async move {
            let _guard = guard;
            let _ = rx.await;
        });
        let value = handle.block_on(async move {
            maniac::spawn(async move {
                drop(rt);
                7
            })
            .await
            .unwrap()
        });
        assert_eq!(value, 7);
        drops.expect(1, TIMEOUT, "the pending future to be dropped");
        assert!(
            futures::executor::block_on(pending)
                .unwrap_err()
                .is_cancelled()
        );
    });
}

#[test]
fn dropping_a_runtime_inside_its_own_blocking_closure_does_not_deadlock() {
    bounded(|| {
        let rt = multi(2);
        let drops = Counter::new();
        let (_keep, rx) = tokio::sync::oneshot::channel::<()>();
        let guard = DropGuard(drops.clone());
        rt.spawn(async move {
            let _guard = guard;
            let _ = rx.await;
        });
        let (rt_tx, rt_rx) = mpsc::channel::<Runtime>();
        let dropper = rt.spawn_blocking(move || {
            drop(rt_rx.recv_timeout(TIMEOUT).unwrap());
            "dropped"
        });
        rt_tx.send(rt).unwrap();
        assert_eq!(futures::executor::block_on(dropper).unwrap(), "dropped");
        assert_eq!(drops.get(), 1);
    });
}

#[test]
fn a_runtime_dropped_inside_its_own_task_cancels_later_blocking_closures() {
    bounded(|| {
        for flavour in ["current_thread", "multi_thread"] {
            let stops = Counter::new();
            let mut builder = match flavour {
                "multi_thread" => Builder::new_multi_thread(),
                _ => Builder::new_current_thread(),
            };
            let rt = {
                let stops = stops.clone();
                builder
                    .worker_threads(1)
                    .on_thread_stop(move || stops.inc())
                    .build()
                    .unwrap()
            };
            let handle = rt.handle().clone();
            // One blocking thread, idle when the runtime goes.
            handle.block_on(handle.spawn_blocking(|| {})).unwrap();
            let workers = usize::from(flavour == "multi_thread");
            handle.block_on(async move {
                maniac::spawn(async move { drop(rt) }).await.unwrap();
            });
            let ran = Arc::new(AtomicBool::new(false));
            let blocking = {
                let ran = ran.clone();
                handle.spawn_blocking(move || ran.store(true, SeqCst))
            };
            let result = futures::executor::block_on(blocking);
            assert!(
                result.is_err_and(|e| e.is_cancelled()) && !ran.load(SeqCst),
                "{flavour}: a closure spawned after the runtime was dropped (from its own \
                 task) still ran"
            );
            // The idle blocking thread should leave at shutdown, not at its 10 s keep-alive.
            let seen = stops.wait_for(workers + 1, Duration::from_secs(3));
            assert_eq!(
                seen,
                workers + 1,
                "{flavour}: the blocking thread outlived shutdown"
            );
        }
    });
}

#[test]
fn drop_waits_for_running_blocking_closures() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let finished = Arc::new(AtomicBool::new(false));
            let (started_tx, started_rx) = mpsc::channel();
            let handle = {
                let finished = finished.clone();
                rt.spawn_blocking(move || {
                    started_tx.send(()).unwrap();
                    // Work that takes a while (not a synchronisation: drop must wait for it).
                    thread::sleep(Duration::from_millis(300));
                    finished.store(true, SeqCst);
                    5
                })
            };
            started_rx.recv_timeout(TIMEOUT).unwrap();
            drop(rt);
            assert!(
                finished.load(SeqCst),
                "{name}: drop returned before the running closure finished"
            );
            assert_eq!(futures::executor::block_on(handle).unwrap(), 5, "{name}");
        });
    }
}

#[test]
fn blocking_closures_not_started_at_shutdown_are_cancelled() {
    for (name, make_builder) in [
        ("multi_thread", Builder::new_multi_thread as fn() -> Builder),
        ("current_thread", Builder::new_current_thread),
    ] {
        bounded(move || {
            const QUEUED: usize = 4;
            let rt = make_builder()
                .worker_threads(1)
                .max_blocking_threads(1)
                .build()
                .unwrap();
            let dropped = Counter::new();
            let ran = Arc::new(AtomicUsize::new(0));
            let (started_tx, started_rx) = mpsc::channel();
            // Holds the only blocking thread until shutdown has dropped the queued closures (or
            // gives up after a while if it never does).
            let first = {
                let dropped = dropped.clone();
                rt.spawn_blocking(move || {
                    started_tx.send(()).unwrap();
                    dropped.wait_for(QUEUED, Duration::from_secs(10))
                })
            };
            started_rx.recv_timeout(TIMEOUT).unwrap();
            let queued: Vec<_> = (0..QUEUED)
                .map(|_| {
                    let guard = DropGuard(dropped.clone());
                    let ran = ran.clone();
                    rt.spawn_blocking(move || {
                        let _guard = guard;
                        ran.fetch_add(1, SeqCst);
                    })
                })
                .collect();
            drop(rt);
            assert_eq!(
                ran.load(SeqCst),
                0,
                "{name}: a queued closure ran during shutdown"
            );
            assert_eq!(dropped.get(), QUEUED, "{name}");
            assert_eq!(
                futures::executor::block_on(first).unwrap(),
                QUEUED,
                "{name}: the running closure was not still running at shutdown"
            );
            for handle in queued {
                let error = futures::executor::block_on(handle).expect_err("cancelled");
                assert!(error.is_cancelled(), "{name}");
            }
        });
    }
}

#[test]
fn destructors_that_wake_and_spawn_during_shutdown_are_handled() {
    // A dropped future sends to another task (waking it during the drain) and spawns a new task
    // (after shutdown: cancelled). Every future is dropped exactly once and drop returns.
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let drops = Counter::new();
            let spawned_polled = Arc::new(AtomicBool::new(false));
            struct OnDrop<F: FnMut()>(F);
            impl<F: FnMut()> Drop for OnDrop<F> {
                fn drop(&mut self) {
                    (self.0)();
                }
            }
            let waiting_tasks = Arc::new(tokio::sync::Semaphore::new(0));
            for _ in 0..20 {
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                let (_never, never_rx) = tokio::sync::oneshot::channel::<()>();
                let guard = DropGuard(drops.clone());
                let waiting = waiting_tasks.clone();
                rt.spawn(async move {
                    let _guard = guard;
                    waiting.add_permits(1);
                    let _ = rx.await; // woken by the other task's destructor
                });
                let guard = DropGuard(drops.clone());
                let polled = spawned_polled.clone();
                let handle = rt.handle().clone();
                let waiting = waiting_tasks.clone();
                rt.spawn(async move {
                    let _guard = guard;
                    waiting.add_permits(1);
                    let mut tx = Some(tx);
                    let _on_drop = OnDrop(move || {
                        let _ = tx.take().unwrap().send(());
                        let polled = polled.clone();
                        drop(handle.spawn(async move { polled.store(true, SeqCst) }));
                    });
                    let _ = never_rx.await;
                    drop(_never);
                });
            }
            // Every task waits in its await (on current_thread as well) before the drop.
            rt.block_on(async { waiting_tasks.acquire_many(40).await.unwrap().forget() });
            drop(rt);
            assert_eq!(drops.get(), 40, "{name}");
            assert!(
                !spawned_polled.load(SeqCst),
                "{name}: spawned during shutdown and ran"
            );
        });
    }
}

#[test]
fn a_current_thread_runtime_dropped_while_another_thread_drives_it() {
    bounded(|| {
        let rt = common::current();
        let handle = rt.handle().clone();
        let drops = Counter::new();
        let (_keep, pending_rx) = tokio::sync::oneshot::channel::<()>();
        let guard = DropGuard(drops.clone());
        let (polled_tx, polled_rx) = tokio::sync::oneshot::channel::<()>();
        let pending = rt.spawn(async move {
            let _guard = guard;
            polled_tx.send(()).unwrap();
            let _ = pending_rx.await;
        });
        let (driving_tx, driving_rx) = mpsc::channel();
        let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<()>();
        let driver = thread::spawn(move || {
            handle.block_on(async move {
                // The driver runs the pending task's first poll.
                polled_rx.await.unwrap();
                driving_tx.send(()).unwrap();
                finish_rx.await.unwrap();
            })
        });
        driving_rx.recv_timeout(TIMEOUT).unwrap();
        drop(rt); // the driver holds the core
        finish_tx.send(()).unwrap();
        driver.join().unwrap();
        // The driver handed the core back to a shut-down runtime: the pending task is gone.
        drops.expect(1, TIMEOUT, "the pending future to be dropped");
        assert!(
            futures::executor::block_on(pending)
                .unwrap_err()
                .is_cancelled()
        );
    });
}
