#![cfg(not(loom))]
//! The blocking pool: values, the thread cap, idle threads leaving, panics.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use common::{Counter, TIMEOUT, bounded, flavours, quiet_panics};
use maniac::runtime::Builder;

#[test]
fn spawn_blocking_returns_the_closure_value() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let outside = rt.spawn_blocking(|| 1u64);
            let via_handle = rt.handle().spawn_blocking(|| 2u64);
            let sum = rt.block_on(async {
                let inside = maniac::task::spawn_blocking(|| String::from("three"));
                let from_task =
                    maniac::spawn(async { maniac::task::spawn_blocking(|| 4u64).await.unwrap() });
                assert_eq!(inside.await.unwrap(), "three");
                outside.await.unwrap() + via_handle.await.unwrap() + from_task.await.unwrap()
            });
            assert_eq!(sum, 7, "{name}");
        });
    }
}

#[test]
fn many_blocking_closures_all_complete() {
    bounded(|| {
        let rt = common::multi(2);
        let sum = rt.block_on(async {
            let handles: Vec<_> = (0..300u64)
                .map(|i| maniac::task::spawn_blocking(move || i * 2))
                .collect();
            let mut sum = 0;
            for handle in handles {
                sum += handle.await.unwrap();
            }
            sum
        });
        assert_eq!(sum, 2 * (300 * 299 / 2));
    });
}

#[test]
fn max_blocking_threads_caps_how_many_closures_run_at_once() {
    bounded(|| {
        const MAX: usize = 2;
        const CLOSURES: usize = 10;
        let starts = Counter::new();
        // current_thread: the only threads the runtime starts are blocking ones.
        let rt = {
            let starts = starts.clone();
            Builder::new_current_thread()
                .max_blocking_threads(MAX)
                .on_thread_start(move || starts.inc())
                .build()
                .unwrap()
        };
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let threads = Arc::new(Mutex::new(HashSet::new()));
        // Closures meet in pairs: the pool must run two at once to get through, and a third
        // running at once would show in `most`.
        let barrier = Arc::new(Barrier::new(MAX));
        let handles: Vec<_> = (0..CLOSURES)
            .map(|_| {
                let (running, most, done, threads, barrier) = (
                    running.clone(),
                    most.clone(),
                    done.clone(),
                    threads.clone(),
                    barrier.clone(),
                );
                rt.spawn_blocking(move || {
                    let now = running.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(now, SeqCst);
                    threads.lock().unwrap().insert(thread::current().id());
                    barrier.wait();
                    running.fetch_sub(1, SeqCst);
                    done.fetch_add(1, SeqCst);
                })
            })
            .collect();
        rt.block_on(async {
            for handle in handles {
                handle.await.unwrap();
            }
        });
        assert_eq!(done.load(SeqCst), CLOSURES);
        assert_eq!(most.load(SeqCst), MAX, "closures running at once");
        assert_eq!(
            threads.lock().unwrap().len(),
            MAX,
            "distinct blocking threads"
        );
        assert_eq!(starts.get(), MAX, "blocking threads started");
    });
}

#[test]
fn idle_blocking_threads_exit_after_keep_alive() {
    bounded(|| {
        let starts = Counter::new();
        let stops = Counter::new();
        let rt = {
            let (starts, stops) = (starts.clone(), stops.clone());
            Builder::new_current_thread()
                .thread_keep_alive(Duration::from_millis(50))
                .on_thread_start(move || starts.inc())
                .on_thread_stop(move || stops.inc())
                .build()
                .unwrap()
        };
        // Three closures that wait for each other: three threads.
        let barrier = Arc::new(Barrier::new(3));
        rt.block_on(async {
            let handles: Vec<_> = (0..3)
                .map(|_| {
                    let barrier = barrier.clone();
                    maniac::task::spawn_blocking(move || {
                        barrier.wait();
                    })
                })
                .collect();
            for handle in handles {
                handle.await.unwrap();
            }
        });
        assert_eq!(starts.get(), 3);
        // Idle for longer than the keep-alive, they leave while the runtime is still up.
        stops.expect(3, TIMEOUT, "idle blocking threads to exit");
        assert_eq!(stops.get(), 3);
        // The pool starts a new thread for new work.
        let value = rt.block_on(async { maniac::task::spawn_blocking(|| 8).await.unwrap() });
        assert_eq!(value, 8);
        assert_eq!(starts.get(), 4);
        drop(rt);
        assert_eq!(stops.get(), 4, "starts and stops do not balance after drop");
    });
}

#[test]
fn spawn_blocking_on_a_current_thread_runtime_runs_on_another_thread() {
    bounded(|| {
        let rt = common::current();
        let me = thread::current().id();
        let (ran_on, value) = rt.block_on(async {
            maniac::task::spawn_blocking(|| (thread::current().id(), 99))
                .await
                .unwrap()
        });
        assert_eq!(value, 99);
        assert_ne!(ran_on, me, "the closure ran on the block_on thread");
    });
}

#[test]
fn a_blocking_closure_does_not_hold_up_the_workers() {
    // One worker; the closure waits for a message that only an async task sends.
    for (name, make) in [
        ("multi_thread(1)", (|| common::multi(1)) as fn() -> _),
        ("current_thread", common::current),
    ] {
        bounded(move || {
            let rt = make();
            let value = rt.block_on(async {
                let (tx, rx) = std::sync::mpsc::channel::<u32>();
                let blocking =
                    maniac::task::spawn_blocking(move || rx.recv_timeout(TIMEOUT).unwrap() + 1);
                let sender = maniac::spawn(async move {
                    maniac::task::yield_now().await;
                    tx.send(41).unwrap();
                });
                sender.await.unwrap();
                blocking.await.unwrap()
            });
            assert_eq!(value, 42, "{name}");
        });
    }
}

#[test]
fn a_panic_in_spawn_blocking_fails_only_its_join_handle() {
    quiet_panics();
    bounded(|| {
        let rt = Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .build()
            .unwrap();
        let (first, second, third) = rt.block_on(async {
            let first = maniac::task::spawn_blocking(|| thread::current().id()).await;
            let second = maniac::task::spawn_blocking(|| -> thread::ThreadId {
                panic!("[expected panic] blocking")
            })
            .await;
            let third = maniac::task::spawn_blocking(|| thread::current().id()).await;
            (first, second, third)
        });
        let error = second.expect_err("the closure panicked");
        assert!(error.is_panic());
        assert!(error.to_string().contains("blocking"), "{error}");
        assert_eq!(
            error.into_panic().downcast_ref::<&str>(),
            Some(&"[expected panic] blocking")
        );
        // With one blocking thread, the same thread ran the closure after the panic.
        assert_eq!(first.unwrap(), third.unwrap(), "the blocking thread died");
        // Async tasks are unaffected.
        assert_eq!(
            rt.block_on(async { maniac::spawn(async { 1 }).await.unwrap() }),
            1
        );
    });
}

#[test]
fn spawn_blocking_inside_a_blocking_closure() {
    bounded(|| {
        let rt = Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(2)
            .build()
            .unwrap();
        let value = rt.block_on(async {
            maniac::task::spawn_blocking(|| {
                let inner = maniac::task::spawn_blocking(|| 5);
                futures::executor::block_on(inner).unwrap() * 2
            })
            .await
            .unwrap()
        });
        assert_eq!(value, 10);
    });
}
