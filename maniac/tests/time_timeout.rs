#![cfg(not(loom))]
//! `timeout` and `timeout_at`, with tokio's semantics: the output when the future finishes
//! first, `Err(Elapsed)` (never early) when the time runs out first, the future dropped with the
//! `Timeout`, and `Elapsed` as an error.

mod common;

use std::error::Error;
use std::future::{Future, pending, poll_fn, ready};
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{Counter, DropGuard, bounded, flavours, multi, panic_text};
use maniac::time::error::Elapsed;
use maniac::time::{Instant, sleep, timeout, timeout_at};

/// How late a timeout may fire (generous: debug build, shared 2-core machine).
const LATE: Duration = Duration::from_millis(200);

#[test]
fn timeout_gives_the_output_when_the_future_finishes_first() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            rt.block_on(async move {
                let start = std::time::Instant::now();
                let result = timeout(Duration::from_secs(10), async {
                    sleep(Duration::from_millis(10)).await;
                    7
                })
                .await;
                assert_eq!(result, Ok(7), "{name}");
                assert!(start.elapsed() < Duration::from_millis(10) + LATE, "{name}");
                // A ready future, with a spawned task's output.
                let task = maniac::spawn(async { "done" });
                assert_eq!(
                    timeout(Duration::from_secs(10), task)
                        .await
                        .unwrap()
                        .unwrap(),
                    "done"
                );
            });
        });
    }
}

#[test]
fn timeout_gives_elapsed_when_the_time_runs_out_first_and_never_early() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            rt.block_on(async move {
                for ms in [0, 1, 5, 20, 50] {
                    let limit = Duration::from_millis(ms);
                    let start = std::time::Instant::now();
                    let result = timeout(limit, pending::<()>()).await;
                    let elapsed = start.elapsed();
                    assert!(result.is_err(), "{name}: {result:?}");
                    assert!(
                        elapsed >= limit,
                        "{name}: timed out early, {elapsed:?} < {limit:?}"
                    );
                    assert!(elapsed <= limit + LATE, "{name}: {elapsed:?} for {limit:?}");
                }
                // The future was not ready in time, though it would have been later.
                let result =
                    timeout(Duration::from_millis(10), sleep(Duration::from_secs(3600))).await;
                assert!(result.is_err(), "{name}");
            });
        });
    }
}

/// An `Elapsed`, got the way users get one (it cannot be built outside maniac).
fn an_elapsed() -> Elapsed {
    let rt = multi(1);
    // Built inside the runtime: like tokio's, maniac's timers need its context when created.
    rt.block_on(async { timeout(Duration::ZERO, pending::<()>()).await })
        .unwrap_err()
}

/// The future is dropped when the time runs out (with the `Timeout`), not leaked or kept.
#[test]
fn the_future_is_dropped_when_the_time_runs_out() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            rt.block_on(async move {
                let drops = Counter::new();
                let guard = DropGuard(drops.clone());
                let result = timeout(Duration::from_millis(10), async move {
                    let _guard = guard;
                    pending::<()>().await
                })
                .await;
                assert!(result.is_err(), "{name}");
                assert_eq!(
                    drops.get(),
                    1,
                    "{name}: the timed-out future was not dropped"
                );
                // And when it finishes in time, it is dropped once too (after completing).
                let guard = DropGuard(drops.clone());
                let result = timeout(Duration::from_secs(10), async move {
                    let _guard = guard;
                })
                .await;
                assert!(result.is_ok(), "{name}");
                assert_eq!(drops.get(), 2, "{name}");
            });
        });
    }
}

/// A timed-out task's `JoinHandle` dropped by the timeout detaches the task, which still runs.
#[test]
fn a_timed_out_join_handle_leaves_its_task_running() {
    bounded(|| {
        let rt = multi(2);
        rt.block_on(async {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let task = maniac::spawn(async move {
                rx.await.unwrap();
                done_tx.send(()).unwrap();
            });
            assert!(timeout(Duration::from_millis(10), task).await.is_err());
            tx.send(()).unwrap();
            timeout(Duration::from_secs(10), done_rx)
                .await
                .expect("the detached task never finished")
                .unwrap();
        });
    });
}

#[test]
fn timeout_at_uses_its_deadline() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            rt.block_on(async move {
                let deadline = Instant::now() + Duration::from_millis(30);
                let result = timeout_at(deadline, pending::<()>()).await;
                assert!(result.is_err(), "{name}");
                assert!(Instant::now() >= deadline, "{name}: timed out early");
                assert!(Instant::now() <= deadline + LATE, "{name}: timed out late");
                let deadline = Instant::now() + Duration::from_secs(10);
                let result = timeout_at(deadline, async {
                    sleep(Duration::from_millis(5)).await;
                    "in time"
                })
                .await;
                assert_eq!(result, Ok("in time"), "{name}");
                assert!(Instant::now() < deadline);
            });
        });
    }
}

/// The future is polled before the deadline: a future that is ready counts even when the
/// deadline has passed (as tokio's).
#[test]
fn a_ready_future_wins_over_a_passed_deadline() {
    bounded(|| {
        let rt = multi(1);
        rt.block_on(async {
            let long_ago = Instant::now() - Duration::from_secs(3600);
            assert_eq!(timeout_at(long_ago, ready(5)).await, Ok(5));
            assert_eq!(timeout(Duration::ZERO, ready(6)).await, Ok(6));
            assert!(timeout_at(long_ago, pending::<()>()).await.is_err());
        });
    });
}

#[test]
fn timeout_of_duration_max_works() {
    bounded(|| {
        let rt = multi(1);
        rt.block_on(async {
            assert_eq!(timeout(Duration::MAX, ready(1)).await, Ok(1));
            let result = timeout(Duration::MAX, async {
                sleep(Duration::from_millis(5)).await;
                2
            })
            .await;
            assert_eq!(result, Ok(2));
            // And it does not fire: still pending after a while.
            let forever = pin!(timeout(Duration::MAX, pending::<()>()));
            let later = pin!(sleep(Duration::from_millis(20)));
            let raced = futures::future::select(forever, later).await;
            assert!(matches!(raced, futures::future::Either::Right(_)));
        });
    });
}

#[test]
fn elapsed_displays_and_converts_into_a_timed_out_io_error() {
    let elapsed = an_elapsed();
    assert_eq!(elapsed.to_string(), "deadline has elapsed");
    assert_eq!(elapsed, elapsed.clone());
    assert!(format!("{elapsed:?}").contains("Elapsed"));
    let as_error: &dyn Error = &elapsed;
    assert!(as_error.source().is_none());
    let error = io::Error::from(elapsed);
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert!(
        error.to_string().contains("deadline has elapsed"),
        "{error}"
    );
    assert!(error.get_ref().is_some_and(|inner| inner.is::<Elapsed>()));
    // As `?` in a function returning io::Result.
    fn convert(result: Result<(), Elapsed>) -> io::Result<()> {
        result?;
        Ok(())
    }
    assert_eq!(
        convert(Err(elapsed)).unwrap_err().kind(),
        io::ErrorKind::TimedOut
    );
}

#[test]
fn nested_timeouts_fire_innermost_first_when_it_is_shorter() {
    bounded(|| {
        let rt = multi(2);
        rt.block_on(async {
            let start = std::time::Instant::now();
            let result = timeout(
                Duration::from_secs(10),
                timeout(Duration::from_millis(10), pending::<()>()),
            )
            .await;
            assert!(matches!(result, Ok(Err(_))), "{result:?}");
            assert!(start.elapsed() < Duration::from_millis(10) + LATE);
            let result = timeout(
                Duration::from_millis(10),
                timeout(Duration::from_secs(10), pending::<()>()),
            )
            .await;
            assert!(result.is_err(), "{result:?}");
        });
    });
}

#[test]
fn get_ref_get_mut_and_into_inner_reach_the_future() {
    bounded(|| {
        let rt = multi(1);
        let _enter = rt.enter();
        let mut t = timeout(Duration::from_secs(1), ready(3));
        assert!(format!("{t:?}").contains("Timeout"));
        let _: &std::future::Ready<i32> = t.get_ref();
        // `get_mut` reaches the very future `into_inner` returns: replace it through one.
        *t.get_mut() = ready(4);
        let inner = t.into_inner();
        // The inner future without its time limit.
        let mut inner = pin!(inner);
        assert_eq!(
            inner.as_mut().poll(&mut Context::from_waker(Waker::noop())),
            Poll::Ready(4)
        );
    });
}

/// A pending timeout is cancelled by drop: its timer does not wake the task later.
#[test]
fn a_dropped_timeout_does_not_wake_its_task() {
    bounded(|| {
        let rt = multi(1);
        rt.block_on(async {
            let polls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let counted = polls.clone();
            let task = maniac::spawn(async move {
                let mut t = timeout(Duration::from_millis(10), pending::<()>());
                poll_fn(|cx| {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    assert!(Pin::new(&mut t).poll(cx).is_pending());
                    Poll::Ready(())
                })
                .await;
                drop(t);
                let mut rx = rx;
                poll_fn(|cx| {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Pin::new(&mut rx).poll(cx)
                })
                .await
                .unwrap();
            });
            sleep(Duration::from_millis(100)).await;
            // One poll of each `poll_fn`, in the task's first poll; none since.
            assert_eq!(polls.load(std::sync::atomic::Ordering::SeqCst), 2);
            tx.send(()).unwrap();
            task.await.unwrap();
            assert_eq!(polls.load(std::sync::atomic::Ordering::SeqCst), 3);
        });
    });
}

#[test]
fn timeout_outside_a_runtime_panics_naming_the_maniac_runtime() {
    for message in [
        panic_text(|| timeout(Duration::from_secs(1), ready(()))),
        panic_text(|| timeout_at(Instant::now(), ready(()))),
    ] {
        assert!(message.contains("maniac runtime"), "{message}");
    }
}
