#![cfg(not(loom))]
//! Aborting tasks: before they run, while they wait, while they are being polled, after they
//! finished; through the join handle and through an abort handle.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc;
use std::thread;

use common::{Counter, DropGuard, TIMEOUT, bounded, flavours, multi, wait_until};

#[test]
fn abort_before_the_first_poll_drops_the_future_unpolled() {
    bounded(|| {
        let rt = common::current();
        let polled = Arc::new(AtomicBool::new(false));
        let drops = Counter::new();
        let handle = {
            let polled = polled.clone();
            let guard = DropGuard(drops.clone());
            // A current-thread runtime runs nothing outside block_on: the task is only queued.
            rt.spawn(async move {
                let _guard = guard;
                polled.store(true, SeqCst);
                1
            })
        };
        assert!(!handle.is_finished());
        handle.abort();
        let result = rt.block_on(handle);
        let error = result.expect_err("an aborted task that never ran produced a value");
        assert!(error.is_cancelled(), "{error:?}");
        assert!(!error.is_panic());
        assert!(!polled.load(SeqCst), "the aborted future was polled");
        assert_eq!(
            drops.get(),
            1,
            "the aborted future was not dropped exactly once"
        );
    });
}

#[test]
fn abort_before_the_first_poll_on_a_busy_multi_thread_worker() {
    // The only worker is held in a poll; the second task is queued behind it when it is aborted.
    bounded(|| {
        let rt = multi(1);
        let (busy_tx, busy_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let blocker = rt.spawn(async move {
            busy_tx.send(()).unwrap();
            release_rx.recv_timeout(TIMEOUT).unwrap();
        });
        busy_rx.recv_timeout(TIMEOUT).unwrap();
        let polled = Arc::new(AtomicBool::new(false));
        let drops = Counter::new();
        let victim = {
            let polled = polled.clone();
            let guard = DropGuard(drops.clone());
            rt.spawn(async move {
                let _guard = guard;
                polled.store(true, SeqCst);
            })
        };
        victim.abort();
        release_tx.send(()).unwrap();
        rt.block_on(async {
            blocker.await.unwrap();
            assert!(victim.await.unwrap_err().is_cancelled());
        });
        assert!(!polled.load(SeqCst), "the aborted future was polled");
        assert_eq!(drops.get(), 1);
    });
}

#[test]
fn abort_while_pending_cancels_the_task_and_drops_its_future() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let drops = Counter::new();
            let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
            let (waiting_tx, waiting_rx) = tokio::sync::oneshot::channel::<()>();
            let after_wait = Arc::new(AtomicBool::new(false));
            let handle = {
                let guard = DropGuard(drops.clone());
                let after_wait = after_wait.clone();
                rt.spawn(async move {
                    let _guard = guard;
                    waiting_tx.send(()).unwrap();
                    let value = rx.await; // never sent
                    after_wait.store(true, SeqCst);
                    value.unwrap_or(0)
                })
            };
            rt.block_on(async move {
                waiting_rx.await.unwrap();
                handle.abort();
                let error = handle.await.expect_err("aborted");
                assert!(error.is_cancelled(), "{name}: {error:?}");
            });
            assert_eq!(drops.get(), 1, "{name}: future not dropped exactly once");
            assert!(!after_wait.load(SeqCst), "{name}: ran past the await");
            // The receiver went with the future.
            assert!(tx.is_closed(), "{name}: the receiver is still alive");
        });
    }
}

#[test]
fn abort_from_a_foreign_thread_cancels_a_waiting_task() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let drops = Counter::new();
            let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
            let (waiting_tx, waiting_rx) = mpsc::channel::<()>();
            let guard = DropGuard(drops.clone());
            let handle = rt.spawn(async move {
                let _guard = guard;
                waiting_tx.send(()).unwrap();
                let _ = rx.await;
            });
            let abort = handle.abort_handle();
            let aborter = thread::spawn(move || {
                waiting_rx.recv_timeout(TIMEOUT).unwrap();
                abort.abort();
            });
            let error = rt.block_on(handle).expect_err("aborted");
            assert!(error.is_cancelled(), "{name}");
            aborter.join().unwrap();
            assert_eq!(drops.get(), 1, "{name}");
        });
    }
}

#[test]
fn abort_after_completion_keeps_the_value() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            // The sender goes with the future, which is dropped as the task completes.
            let (gone_tx, gone_rx) = tokio::sync::oneshot::channel::<()>();
            let handle = rt.spawn(async move {
                let _gone = gone_tx;
                17
            });
            let abort = handle.abort_handle();
            assert!(rt.block_on(gone_rx).is_err());
            // Finished a moment after its future is dropped (at once on current_thread).
            wait_until(TIMEOUT, "JoinHandle::is_finished", || handle.is_finished());
            assert!(abort.is_finished(), "{name}");
            let late = handle.abort_handle(); // made after the task finished
            assert!(late.is_finished(), "{name}");
            handle.abort();
            abort.abort();
            late.abort();
            assert_eq!(
                rt.block_on(handle).unwrap(),
                17,
                "{name}: abort after completion"
            );
        });
    }
}

#[test]
fn abort_handle_works_after_the_join_handle_is_dropped() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let drops = Counter::new();
            let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
            let (waiting_tx, waiting_rx) = tokio::sync::oneshot::channel::<()>();
            // Dropped with the task's future: awaiting its receiver waits for the cancellation.
            let (gone_tx, gone_rx) = tokio::sync::oneshot::channel::<()>();
            let guard = DropGuard(drops.clone());
            let handle = rt.spawn(async move {
                // Locals drop in reverse: the guard counts before the sender says "gone".
                let _gone = gone_tx;
                let _guard = guard;
                waiting_tx.send(()).unwrap();
                let _ = rx.await;
            });
            let abort = handle.abort_handle();
            assert_eq!(abort.id(), handle.id());
            drop(handle);
            rt.block_on(async { waiting_rx.await.unwrap() });
            assert!(
                !abort.is_finished(),
                "{name}: a waiting task reported finished"
            );
            abort.abort();
            let gone = rt.block_on(gone_rx);
            assert!(
                gone.is_err(),
                "{name}: the task's sender was used, not dropped"
            );
            assert_eq!(drops.get(), 1, "{name}");
            wait_until(TIMEOUT, "AbortHandle::is_finished", || abort.is_finished());
        });
    }
}

#[test]
fn is_finished_is_false_while_running_and_true_after_abort_on_both_handles() {
    bounded(|| {
        let rt = multi(2);
        let drops = Counter::new();
        let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
        let guard = DropGuard(drops.clone());
        let handle = rt.spawn(async move {
            let _guard = guard;
            let _ = rx.await;
        });
        let abort = handle.abort_handle();
        assert!(!handle.is_finished());
        assert!(!abort.is_finished());
        abort.abort();
        drops.expect(1, TIMEOUT, "the aborted future's drop");
        wait_until(TIMEOUT, "both handles to report finished", || {
            handle.is_finished() && abort.is_finished()
        });
        assert!(rt.block_on(handle).unwrap_err().is_cancelled());
        assert!(abort.is_finished());
    });
}

#[test]
fn abort_during_a_poll_takes_effect_at_the_next_poll_boundary() {
    bounded(|| {
        let rt = multi(2);
        let (in_poll_tx, in_poll_rx) = mpsc::channel::<()>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let poll_finished = Arc::new(AtomicBool::new(false));
        let resumed = Arc::new(AtomicBool::new(false));
        let drops = Counter::new();
        let handle = {
            let (poll_finished, resumed) = (poll_finished.clone(), resumed.clone());
            let guard = DropGuard(drops.clone());
            rt.spawn(async move {
                let _guard = guard;
                in_poll_tx.send(()).unwrap();
                // Still inside the first poll: the abort arrives while we block here.
                go_rx.recv_timeout(TIMEOUT).unwrap();
                for i in 0..1_000 {
                    std::hint::black_box(i);
                }
                poll_finished.store(true, SeqCst);
                maniac::task::yield_now().await; // the poll boundary
                resumed.store(true, SeqCst);
                7
            })
        };
        in_poll_rx.recv_timeout(TIMEOUT).unwrap();
        handle.abort();
        assert_eq!(
            drops.get(),
            0,
            "the future was dropped in the middle of its poll"
        );
        go_tx.send(()).unwrap();
        let error = rt
            .block_on(handle)
            .expect_err("aborted before its second poll");
        assert!(error.is_cancelled(), "{error:?}");
        assert!(
            poll_finished.load(SeqCst),
            "the poll in progress was cut short"
        );
        assert!(
            !resumed.load(SeqCst),
            "the task was polled again after abort"
        );
        assert_eq!(drops.get(), 1);
    });
}

#[test]
fn a_task_that_aborts_itself_stops_at_its_next_await() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let (abort_tx, abort_rx) = tokio::sync::oneshot::channel::<maniac::task::AbortHandle>();
            let reached_end = Arc::new(AtomicBool::new(false));
            let handle = {
                let reached_end = reached_end.clone();
                rt.spawn(async move {
                    let me = abort_rx.await.unwrap();
                    me.abort();
                    maniac::task::yield_now().await;
                    reached_end.store(true, SeqCst);
                })
            };
            abort_tx.send(handle.abort_handle()).unwrap();
            assert!(rt.block_on(handle).unwrap_err().is_cancelled(), "{name}");
            assert!(!reached_end.load(SeqCst), "{name}");
        });
    }
}

#[test]
fn abort_is_idempotent() {
    bounded(|| {
        let rt = multi(2);
        let drops = Counter::new();
        let guard = DropGuard(drops.clone());
        let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = rt.spawn(async move {
            let _guard = guard;
            let _ = rx.await;
        });
        let abort = handle.abort_handle();
        for _ in 0..10 {
            handle.abort();
            abort.abort();
        }
        assert!(rt.block_on(handle).unwrap_err().is_cancelled());
        abort.abort();
        assert_eq!(drops.get(), 1);
    });
}

#[test]
fn aborting_a_task_detaches_the_tasks_it_was_awaiting() {
    // The outer task's future owns the inner join handle; dropping it detaches the inner task,
    // which still runs to the end.
    bounded(|| {
        let rt = multi(2);
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<u32>();
        let (spawned_tx, spawned_rx) = tokio::sync::oneshot::channel::<()>();
        let outer = rt.spawn(async move {
            let inner = maniac::spawn(async move {
                go_rx.await.unwrap();
                done_tx.send(5).unwrap();
            });
            spawned_tx.send(()).unwrap();
            inner.await.unwrap();
        });
        rt.block_on(async move {
            spawned_rx.await.unwrap();
            outer.abort();
            assert!(outer.await.unwrap_err().is_cancelled());
            go_tx.send(()).unwrap();
            assert_eq!(done_rx.await.unwrap(), 5);
        });
    });
}

#[test]
fn abort_cancels_a_blocking_closure_that_has_not_started() {
    bounded(|| {
        let rt = maniac::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .build()
            .unwrap();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let first = rt.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            release_rx.recv_timeout(TIMEOUT).unwrap();
            1
        });
        started_rx.recv_timeout(TIMEOUT).unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let drops = Counter::new();
        let queued = {
            let ran = ran.clone();
            let guard = DropGuard(drops.clone());
            rt.spawn_blocking(move || {
                let _guard = guard;
                ran.store(true, SeqCst);
                2
            })
        };
        queued.abort();
        release_tx.send(()).unwrap();
        rt.block_on(async {
            assert_eq!(first.await.unwrap(), 1);
            assert!(queued.await.unwrap_err().is_cancelled());
        });
        assert!(!ran.load(SeqCst), "an aborted, not yet started closure ran");
        assert_eq!(drops.get(), 1);
    });
}

#[test]
fn abort_handle_of_a_queued_blocking_closure_reports_and_cancels_it() {
    bounded(|| {
        let rt = maniac::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .build()
            .unwrap();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let first = rt.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            release_rx.recv_timeout(TIMEOUT).unwrap();
        });
        started_rx.recv_timeout(TIMEOUT).unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let queued = {
            let ran = ran.clone();
            rt.spawn_blocking(move || ran.store(true, SeqCst))
        };
        let abort = queued.abort_handle();
        let running = first.abort_handle();
        let still_queued = !abort.is_finished();
        let still_running = !running.is_finished();
        abort.abort();
        release_tx.send(()).unwrap();
        let queued_result = rt.block_on(async {
            first.await.unwrap();
            queued.await
        });
        let cancelled = queued_result.is_err_and(|e| e.is_cancelled());
        let ran = ran.load(SeqCst);
        assert!(
            still_running && still_queued && cancelled && !ran,
            "AbortHandle of spawn_blocking: running closure reported unfinished: {still_running}, \
             queued closure reported unfinished: {still_queued}, abort cancelled the queued \
             closure: {cancelled}, the queued closure ran: {ran}"
        );
    });
}
