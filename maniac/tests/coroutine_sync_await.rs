#![cfg(not(loom))]
//! `sync_await`: synchronous code in a Poll-mode task waits for a future, while its worker runs
//! other tasks; anywhere else it panics with a message that says where it may be called.

mod common;
mod coroutine_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::thread;

use common::{EXPECTED, bounded, panic_text};
use coroutine_common::{SYNC_AWAIT_REFUSAL, checksum, join_panic_text, make_data, quiet_panics};
use maniac::coroutine::{RunMode, pin_stack, run_mode, spawn_pinned, switch_now, sync_await};
use maniac::task::yield_now;

const WORKER_COUNTS: [usize; 3] = [1, 2, 4];

/// Synchronous code, as a library that cannot be async would be: it waits for `rx`.
fn blocking_library_call(rx: tokio::sync::oneshot::Receiver<u64>) -> u64 {
    sync_await(rx).expect("the sender was dropped")
}

#[test]
fn sync_await_of_a_future_completed_by_another_task() {
    bounded(|| {
        for workers in WORKER_COUNTS {
            let rt = common::multi(workers);
            let (value, mode) = rt.block_on(async {
                spawn_pinned(async {
                    let data = make_data(3, 100);
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    maniac::spawn(async move {
                        for _ in 0..10 {
                            yield_now().await;
                        }
                        tx.send(41).unwrap();
                    });
                    let got = blocking_library_call(rx);
                    (got + 1 + checksum(&data), run_mode())
                })
                .await
                .unwrap()
            });
            assert_eq!(
                value,
                42 + checksum(&make_data(3, 100)),
                "{workers} worker(s)"
            );
            assert_eq!(mode, Some(RunMode::Poll), "{workers} worker(s)");
        }
    });
}

#[test]
fn sync_await_of_a_future_completed_by_a_foreign_thread() {
    bounded(|| {
        for workers in WORKER_COUNTS {
            let rt = common::multi(workers);
            let values = rt.block_on(async {
                let handles: Vec<_> = (0..8u64)
                    .map(|i| {
                        spawn_pinned(async move {
                            let (tx, rx) = tokio::sync::oneshot::channel();
                            let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
                            let thread = thread::spawn(move || {
                                // Sends only once the task is (about to be) waiting.
                                ready_rx.recv().unwrap();
                                tx.send(i * 10).unwrap();
                            });
                            ready_tx.send(()).unwrap();
                            let got = blocking_library_call(rx);
                            thread.join().unwrap();
                            got
                        })
                    })
                    .collect();
                let mut values = Vec::new();
                for handle in handles {
                    values.push(handle.await.unwrap());
                }
                values
            });
            assert_eq!(
                values,
                (0..8).map(|i| i * 10).collect::<Vec<_>>(),
                "{workers}"
            );
        }
    });
}

#[test]
fn sync_await_of_an_async_channel_and_a_futures_oneshot() {
    bounded(|| {
        for workers in WORKER_COUNTS {
            let rt = common::multi(workers);
            let (sum, last) = rt.block_on(async {
                let (tx, rx) = async_channel::bounded::<u64>(2);
                let (done_tx, done_rx) = futures::channel::oneshot::channel::<&'static str>();
                let consumer = spawn_pinned(async move {
                    let mut sum = 0;
                    while let Ok(value) = sync_await(rx.recv()) {
                        sum += value;
                    }
                    (sum, sync_await(done_rx).unwrap())
                });
                for value in 1..=100 {
                    tx.send(value).await.unwrap();
                }
                drop(tx);
                done_tx.send("done").unwrap();
                consumer.await.unwrap()
            });
            assert_eq!((sum, last), (5050, "done"), "{workers} worker(s)");
        }
    });
}

#[test]
fn many_sync_awaits_in_a_loop() {
    bounded(|| {
        const WAITS: u64 = 2000;
        for workers in WORKER_COUNTS {
            let rt = common::multi(workers);
            let (sum, yielded) = rt.block_on(async {
                let (tx, rx) = async_channel::bounded::<u64>(1);
                let producer = maniac::spawn(async move {
                    for value in 0..WAITS {
                        tx.send(value).await.unwrap();
                    }
                });
                let consumer = spawn_pinned(async move {
                    let mut sum = 0;
                    let mut yielded = 0;
                    for _ in 0..WAITS {
                        sum += sync_await(rx.recv()).unwrap();
                        // A future that is pending once, on every other round.
                        if sum % 2 == 0 {
                            sync_await(yield_now());
                            yielded += 1;
                        }
                    }
                    (sum, yielded)
                });
                producer.await.unwrap();
                consumer.await.unwrap()
            });
            assert_eq!(sum, WAITS * (WAITS - 1) / 2, "{workers} worker(s)");
            assert!(yielded > 0, "{workers} worker(s)");
        }
    });
}

#[test]
fn the_worker_runs_other_tasks_while_a_task_is_in_sync_await() {
    bounded(|| {
        // One worker, and the waiting task spawns the task that completes its future just before
        // it waits: if `sync_await` blocked the thread, that task could never run.
        const STEPS: usize = 500;
        let rt = common::multi(1);
        let (waited, seen, progress) = rt.block_on(async {
            spawn_pinned(async move {
                let progress = Arc::new(AtomicUsize::new(0));
                let (tx, rx) = tokio::sync::oneshot::channel();
                let other = {
                    let progress = progress.clone();
                    maniac::spawn(async move {
                        for _ in 0..STEPS {
                            progress.fetch_add(1, SeqCst);
                            yield_now().await;
                        }
                        tx.send(7).unwrap();
                    })
                };
                assert_eq!(
                    progress.load(SeqCst),
                    0,
                    "the other task ran before the wait"
                );
                let got = blocking_library_call(rx);
                // Everything the other task did happened while this one waited.
                let seen = progress.load(SeqCst);
                other.await.unwrap();
                (got, seen, progress.load(SeqCst))
            })
            .await
            .unwrap()
        });
        assert_eq!(waited, 7);
        assert_eq!(seen, STEPS);
        assert_eq!(progress, STEPS);
    });
}

#[test]
fn two_tasks_in_sync_await_on_one_worker_complete_each_other() {
    bounded(|| {
        // Each waits in turn for the other, 100 times: only possible if a waiting task leaves
        // the worker to the other one.
        const ROUNDS: u64 = 100;
        let rt = common::multi(1);
        let (a, b) = rt.block_on(async {
            let (to_b, from_a) = async_channel::bounded::<u64>(1);
            let (to_a, from_b) = async_channel::bounded::<u64>(1);
            let a = spawn_pinned(async move {
                let mut last = 0;
                for round in 0..ROUNDS {
                    sync_await(to_b.send(round)).unwrap();
                    last = sync_await(from_b.recv()).unwrap();
                }
                last
            });
            let b = spawn_pinned(async move {
                let mut sum = 0;
                for _ in 0..ROUNDS {
                    let got = sync_await(from_a.recv()).unwrap();
                    sum += got;
                    sync_await(to_a.send(got * 2)).unwrap();
                }
                sum
            });
            (a.await.unwrap(), b.await.unwrap())
        });
        assert_eq!(a, (ROUNDS - 1) * 2);
        assert_eq!(b, ROUNDS * (ROUNDS - 1) / 2);
    });
}

#[test]
fn sync_await_of_a_ready_future_returns_at_once() {
    bounded(|| {
        let rt = common::multi(1);
        let value = rt.block_on(async {
            spawn_pinned(async { sync_await(async { 5 }) + sync_await(std::future::ready(6)) })
                .await
                .unwrap()
        });
        assert_eq!(value, 11);
    });
}

#[test]
fn nested_sync_await_of_a_future_that_itself_spawns() {
    bounded(|| {
        for workers in WORKER_COUNTS {
            let rt = common::multi(workers);
            let value = rt.block_on(async {
                spawn_pinned(async {
                    sync_await(async {
                        // Spawns a None-mode task and a pinned one that sync_awaits itself.
                        let plain = maniac::spawn(async {
                            yield_now().await;
                            1
                        });
                        let pinned = spawn_pinned(async {
                            let (tx, rx) = tokio::sync::oneshot::channel();
                            thread::spawn(move || tx.send(10).unwrap());
                            blocking_library_call(rx)
                        });
                        // A sync_await inside the future being sync_awaited: still on the task's
                        // own stack.
                        let inner = sync_await(async {
                            yield_now().await;
                            maniac::spawn(async { 100 }).await.unwrap()
                        });
                        plain.await.unwrap() + pinned.await.unwrap() + inner
                    })
                })
                .await
                .unwrap()
            });
            assert_eq!(value, 111, "{workers} worker(s)");
        }
    });
}

#[test]
fn sync_await_of_a_join_handle() {
    bounded(|| {
        let rt = common::multi(2);
        let value = rt.block_on(async {
            spawn_pinned(async {
                let handle = maniac::spawn(async {
                    yield_now().await;
                    checksum(&make_data(9, 10))
                });
                sync_await(handle).unwrap()
            })
            .await
            .unwrap()
        });
        assert_eq!(value, checksum(&make_data(9, 10)));
    });
}

#[track_caller]
fn assert_refusal(message: &str, where_: &str) {
    assert!(
        message.contains("sync_await") && message.contains(SYNC_AWAIT_REFUSAL),
        "{where_}: unexpected panic message: {message}"
    );
}

#[test]
fn sync_await_outside_a_task_panics_with_a_message() {
    quiet_panics();
    bounded(|| {
        let message = panic_text(|| sync_await(async { 1 }));
        assert_refusal(&message, "no runtime");
        let rt = common::multi(2);
        let message = rt.block_on(async { panic_text(|| sync_await(async { 1 })) });
        assert_refusal(&message, "block_on future");
        let current = common::current();
        let message = current.block_on(async { panic_text(|| sync_await(async { 1 })) });
        assert_refusal(&message, "current-thread block_on future");
        let message = rt.block_on(async {
            maniac::task::spawn_blocking(|| panic_text(|| sync_await(async { 1 })))
                .await
                .unwrap()
        });
        assert_refusal(&message, "blocking closure");
    });
}

#[test]
fn sync_await_in_a_none_mode_task_panics_and_fails_the_join_handle() {
    quiet_panics();
    bounded(|| {
        for workers in WORKER_COUNTS {
            let rt = common::multi(workers);
            // Caught in the task: the task goes on and returns.
            let (message, after) = rt.block_on(async {
                maniac::spawn(async {
                    let message = panic_text(|| sync_await(async { 1 }));
                    yield_now().await;
                    (message, run_mode())
                })
                .await
                .unwrap()
            });
            assert_refusal(&message, "None-mode task (caught)");
            assert_eq!(after, Some(RunMode::None));
            // Not caught: the join handle reports the panic and its message.
            let error = rt
                .block_on(rt.spawn(async { sync_await(async { 1 }) }))
                .unwrap_err();
            assert_refusal(&join_panic_text(error), "None-mode task");
        }
    });
}

#[test]
fn sync_await_in_the_poll_that_calls_pin_stack_panics() {
    quiet_panics();
    bounded(|| {
        let rt = common::multi(2);
        let (message, waited) = rt.block_on(async {
            maniac::spawn(async {
                pin_stack();
                // Poll mode starts at the next poll boundary, not here.
                let message = panic_text(|| sync_await(async { 1 }));
                yield_now().await;
                (message, sync_await(async { 2 }))
            })
            .await
            .unwrap()
        });
        assert_refusal(&message, "same poll as pin_stack");
        assert_eq!(waited, 2);
    });
}

#[test]
fn sync_await_in_a_switched_none_mode_poll_panics() {
    quiet_panics();
    bounded(|| {
        let rt = common::multi(2);
        let (mode, message) = rt.block_on(async {
            maniac::spawn(async {
                switch_now().expect("switch");
                (run_mode(), panic_text(|| sync_await(async { 1 })))
            })
            .await
            .unwrap()
        });
        assert_eq!(mode, Some(RunMode::Switch));
        assert_refusal(&message, "switched None-mode poll");
    });
}

#[test]
fn sync_await_on_a_current_thread_runtime_panics_with_a_message() {
    quiet_panics();
    bounded(|| {
        let rt = common::current();
        let (pinned, none) = rt.block_on(async {
            let pinned = spawn_pinned(async {
                assert_eq!(run_mode(), Some(RunMode::Poll));
                sync_await(async { 1 })
            });
            let none = maniac::spawn(async { sync_await(async { 1 }) });
            (pinned.await.unwrap_err(), none.await.unwrap_err())
        });
        let message = join_panic_text(pinned);
        assert_refusal(&message, "current-thread pinned task");
        assert!(
            message.contains("multi-thread"),
            "the message does not say a multi-thread runtime is needed: {message}"
        );
        assert_refusal(&join_panic_text(none), "current-thread None-mode task");
        // The runtime is fine afterwards.
        let value = rt.block_on(async { spawn_pinned(async { 3 }).await.unwrap() });
        assert_eq!(value, 3);
    });
}

#[test]
fn a_panic_of_the_awaited_future_reaches_the_caller_of_sync_await() {
    quiet_panics();
    bounded(|| {
        let rt = common::multi(2);
        let finished = Arc::new(AtomicBool::new(false));
        let (message, next) = rt.block_on({
            let finished = finished.clone();
            async move {
                spawn_pinned(async move {
                    let message = panic_text(|| {
                        sync_await(async {
                            yield_now().await;
                            panic!("{EXPECTED} in the awaited future");
                        })
                    });
                    // The task's generator is still usable.
                    let next = sync_await(async {
                        yield_now().await;
                        9
                    });
                    finished.store(true, SeqCst);
                    (message, next)
                })
                .await
                .unwrap()
            }
        });
        assert!(message.contains("in the awaited future"), "{message}");
        assert_eq!(next, 9);
        assert!(finished.load(SeqCst));
    });
}
