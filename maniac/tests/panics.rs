#![cfg(not(loom))]
//! Panics: a panicking task fails only its own join handle, with its payload; panics in
//! destructors are contained; the runtime carries on.

mod common;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll};

use common::{Counter, DropGuard, EXPECTED, bounded, flavours, multi, quiet_panics};

/// Pending until dropped; panics when dropped.
struct PanicOnDrop {
    dropped: Arc<Counter>,
}

impl Future for PanicOnDrop {
    type Output = u32;
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<u32> {
        Poll::Pending
    }
}

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        self.dropped.inc();
        panic!("[expected panic] in drop");
    }
}

/// Completes at once; panics when dropped.
struct ReadyThenPanicOnDrop;

impl Future for ReadyThenPanicOnDrop {
    type Output = u32;
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<u32> {
        Poll::Ready(3)
    }
}

impl Drop for ReadyThenPanicOnDrop {
    fn drop(&mut self) {
        panic!("[expected panic] drop after completion");
    }
}

#[test]
fn a_panicking_task_fails_its_join_handle_with_its_str_payload() {
    quiet_panics();
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let handle = rt.spawn(async {
                panic!("[expected panic] str payload");
            });
            let id = handle.id();
            let error = rt.block_on(handle).expect_err("the task panicked");
            assert!(error.is_panic(), "{name}: {error:?}");
            assert!(!error.is_cancelled(), "{name}");
            assert_eq!(error.id(), id, "{name}");
            let display = error.to_string();
            assert!(display.contains("str payload"), "{name}: {display}");
            assert!(format!("{error:?}").contains("str payload"), "{name}");
            let payload = error.into_panic();
            assert_eq!(
                payload.downcast_ref::<&str>(),
                Some(&"[expected panic] str payload"),
                "{name}: the payload is not the &str that was panicked with"
            );
        });
    }
}

#[test]
fn a_panicking_task_fails_its_join_handle_with_its_string_payload() {
    quiet_panics();
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let error = rt
                .block_on(async {
                    maniac::spawn(async {
                        let n = 7;
                        panic!("{EXPECTED} formatted {n}");
                    })
                    .await
                })
                .expect_err("the task panicked");
            assert!(error.is_panic(), "{name}");
            assert!(error.to_string().contains("formatted 7"), "{name}: {error}");
            let payload = error.into_panic();
            let text = payload
                .downcast::<String>()
                .expect("a formatted panic has a String payload");
            assert_eq!(*text, format!("{EXPECTED} formatted 7"), "{name}");
        });
    }
}

#[test]
fn a_non_string_payload_is_kept_and_display_still_works() {
    quiet_panics();
    bounded(|| {
        let rt = multi(2);
        let error = rt
            .block_on(async { maniac::spawn(async { std::panic::panic_any(42i32) }).await })
            .expect_err("the task panicked");
        assert!(error.is_panic());
        let display = error.to_string();
        assert!(display.contains("panicked"), "{display}");
        assert_eq!(
            error.into_panic().downcast::<i32>().ok().map(|b| *b),
            Some(42)
        );
    });
}

#[test]
fn try_into_panic_returns_a_cancelled_error_unchanged() {
    bounded(|| {
        let rt = multi(1);
        let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = rt.spawn(async move {
            let _ = rx.await;
        });
        handle.abort();
        let error = rt.block_on(handle).unwrap_err();
        assert!(error.to_string().contains("cancelled"), "{error}");
        let error = error
            .try_into_panic()
            .expect_err("a cancelled task has no payload");
        assert!(error.is_cancelled());
        let message = common::panic_text(move || error.into_panic());
        assert!(message.contains("cancelled"), "{message}");
    });
}

#[test]
fn the_runtime_keeps_running_tasks_on_every_worker_after_panics() {
    quiet_panics();
    bounded(|| {
        const WORKERS: usize = 4;
        let rt = multi(WORKERS);
        let panicked = rt.block_on(async {
            let handles: Vec<_> = (0..10 * WORKERS)
                .map(|i| {
                    maniac::spawn(async move {
                        if i % 2 == 0 {
                            maniac::task::yield_now().await;
                        }
                        panic!("[expected panic] number {i}");
                    })
                })
                .collect();
            let mut panicked = 0;
            for handle in handles {
                if handle.await.unwrap_err().is_panic() {
                    panicked += 1;
                }
            }
            panicked
        });
        assert_eq!(panicked, 10 * WORKERS);
        // WORKERS tasks that hold their thread until all of them are in: only possible if
        // every worker survived and still takes tasks.
        for _round in 0..3 {
            let barrier = Arc::new(Barrier::new(WORKERS));
            let threads = rt.block_on(async {
                let handles: Vec<_> = (0..WORKERS)
                    .map(|_| {
                        let barrier = barrier.clone();
                        maniac::spawn(async move {
                            barrier.wait();
                            std::thread::current().id()
                        })
                    })
                    .collect();
                let mut threads = std::collections::HashSet::new();
                for handle in handles {
                    threads.insert(handle.await.unwrap());
                }
                threads
            });
            assert_eq!(threads.len(), WORKERS);
        }
    });
}

#[test]
fn a_panic_in_drop_during_abort_is_contained() {
    quiet_panics();
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let dropped = Counter::new();
            let handle = rt.spawn(PanicOnDrop {
                dropped: dropped.clone(),
            });
            let value = rt.block_on(async move {
                maniac::task::yield_now().await; // let it be polled once (multi-thread: maybe)
                handle.abort();
                let error = handle.await.expect_err("aborted");
                assert!(
                    error.is_panic(),
                    "{name}: the destructor's panic is the task's failure"
                );
                assert!(error.to_string().contains("in drop"), "{name}: {error}");
                maniac::spawn(async { 9 }).await.unwrap()
            });
            assert_eq!(value, 9, "{name}: the runtime stopped working");
            assert_eq!(dropped.get(), 1, "{name}");
        });
    }
}

#[test]
fn a_panic_in_drop_after_completion_fails_the_task() {
    quiet_panics();
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let (result, after) = rt.block_on(async {
                let result = maniac::spawn(ReadyThenPanicOnDrop).await;
                (result, maniac::spawn(async { 1 }).await.unwrap())
            });
            let error = result.expect_err("the destructor panicked");
            assert!(error.is_panic(), "{name}");
            assert!(
                error.to_string().contains("drop after completion"),
                "{name}"
            );
            assert_eq!(after, 1, "{name}");
        });
    }
}

#[test]
fn a_panic_in_poll_is_reported_even_if_drop_panics_too() {
    quiet_panics();
    struct PanicTwice;
    impl Future for PanicTwice {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
            panic!("[expected panic] in poll");
        }
    }
    impl Drop for PanicTwice {
        fn drop(&mut self) {
            panic!("[expected panic] in drop after poll panic");
        }
    }
    bounded(|| {
        let rt = multi(2);
        let error = rt
            .block_on(async { maniac::spawn(PanicTwice).await })
            .expect_err("panicked");
        let payload = error.into_panic();
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"[expected panic] in poll")
        );
        assert_eq!(
            rt.block_on(async { maniac::spawn(async { 2 }).await.unwrap() }),
            2
        );
    });
}

#[test]
fn a_panic_in_drop_at_shutdown_is_contained() {
    quiet_panics();
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let dropped = Counter::new();
            let others = Counter::new();
            let polled = Arc::new(tokio::sync::Semaphore::new(0));
            let panicking = {
                let (polled, dropped) = (polled.clone(), dropped.clone());
                rt.spawn(async move {
                    polled.add_permits(1);
                    PanicOnDrop { dropped }.await
                })
            };
            let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
            let guard = DropGuard(others.clone());
            let quiet = {
                let polled = polled.clone();
                rt.spawn(async move {
                    let _guard = guard;
                    polled.add_permits(1);
                    let _ = rx.await;
                })
            };
            // Both are waiting in their first await when the runtime goes.
            rt.block_on(async { polled.acquire_many(2).await.unwrap().forget() });
            drop(rt);
            assert_eq!(dropped.get(), 1, "{name}");
            assert_eq!(
                others.get(),
                1,
                "{name}: shutdown stopped at the panicking destructor"
            );
            let panicking = futures::executor::block_on(panicking).expect_err("dropped");
            assert!(panicking.is_cancelled(), "{name}: {panicking:?}");
            let quiet = futures::executor::block_on(quiet).expect_err("dropped");
            assert!(quiet.is_cancelled(), "{name}");
        });
    }
}

#[test]
fn a_panic_in_the_block_on_future_reaches_the_caller_and_the_runtime_survives() {
    quiet_panics();
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let message = common::panic_text(|| {
                rt.block_on(async {
                    maniac::spawn(async {}).await.unwrap();
                    panic!("[expected panic] in block_on");
                })
            });
            assert!(message.contains("in block_on"), "{name}: {message}");
            let value = rt.block_on(async { maniac::spawn(async { 5 }).await.unwrap() });
            assert_eq!(value, 5, "{name}");
        });
    }
}

#[test]
fn a_join_error_converts_into_an_io_error() {
    quiet_panics();
    bounded(|| {
        let rt = multi(1);
        let error = rt
            .block_on(async { maniac::spawn(async { panic!("[expected panic] io") }).await })
            .unwrap_err();
        let io_error: io::Error = error.into();
        assert_eq!(io_error.kind(), io::ErrorKind::Other);
        assert!(io_error.to_string().contains("io"), "{io_error}");

        let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = rt.spawn(async move {
            let _ = rx.await;
        });
        handle.abort();
        let io_error = io::Error::from(rt.block_on(handle).unwrap_err());
        assert!(io_error.to_string().contains("cancelled"), "{io_error}");

        // The `?` operator works in an io::Result function.
        fn join(rt: &maniac::runtime::Runtime) -> io::Result<u32> {
            let value = rt.block_on(async { maniac::spawn(async { 4 }).await })?;
            Ok(value)
        }
        assert_eq!(join(&rt).unwrap(), 4);
    });
}
