#![cfg(not(loom))]
//! `sleep` and `sleep_until`: never early, on time when a worker is free, still on time when
//! every worker computes, cheap to have a million of, cancelled by drop, and tokio's `Sleep`
//! API (`reset`, `is_elapsed`, `deadline`).
//!
//! Timing bounds: a timer must never fire before its deadline (exact: `elapsed >= duration`),
//! and must fire within [`LATE`] after it. The late bound is generous because this runs in a
//! debug build on a shared 2-core machine, next to other tests; a broken timer (one that never
//! fires, or waits for an unrelated event) is late by far more. The tests that measure accuracy,
//! or that load the machine, take [`EXCLUSIVE`] so that they do not disturb each other.

mod common;

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{MakeRuntime, bounded, current, flavours, multi, panic_text, with_timeout};
use maniac::time::{Instant, Sleep, sleep, sleep_until};

/// How late a timer may fire (see the module doc).
const LATE: Duration = Duration::from_millis(200);

/// Serialises the tests that measure timer accuracy or load the machine.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fails unless `elapsed` is at least `duration` (never early) and at most `duration + late`.
#[track_caller]
fn assert_on_time(what: &str, elapsed: Duration, duration: Duration, late: Duration) {
    assert!(
        elapsed >= duration,
        "{what}: sleep({duration:?}) completed early, after {elapsed:?}"
    );
    assert!(
        elapsed <= duration + late,
        "{what}: sleep({duration:?}) completed {:?} late (bound {late:?})",
        elapsed - duration
    );
}

/// Sleeps for `duration` and returns how long it took, measured from before the `Sleep` was
/// created (so the measurement can only be longer than the sleep's own).
async fn timed_sleep(duration: Duration) -> Duration {
    let start = std::time::Instant::now();
    sleep(duration).await;
    start.elapsed()
}

const DURATIONS_MS: [u64; 11] = [0, 1, 2, 3, 5, 7, 10, 15, 20, 33, 50];

#[test]
fn sleep_never_completes_early_in_tasks_on_every_flavour() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let handles: Vec<_> = DURATIONS_MS
                .iter()
                .flat_map(|&ms| [ms; 3])
                .map(|ms| {
                    let duration = Duration::from_millis(ms);
                    (duration, rt.spawn(timed_sleep(duration)))
                })
                .collect();
            rt.block_on(async move {
                for (duration, handle) in handles {
                    let elapsed = handle.await.unwrap();
                    assert_on_time(name, elapsed, duration, LATE);
                }
            });
        });
    }
}

#[test]
fn sleep_never_completes_early_in_block_on_on_every_flavour() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            for ms in DURATIONS_MS {
                let duration = Duration::from_millis(ms);
                let elapsed = rt.block_on(timed_sleep(duration));
                assert_on_time(name, elapsed, duration, LATE);
            }
        });
    }
}

/// Sleeps of durations that are not whole milliseconds are rounded up, never down.
#[test]
fn sleeps_of_fractional_milliseconds_never_complete_early() {
    bounded(|| {
        let rt = multi(2);
        rt.block_on(async {
            for micros in [1, 10, 999, 1_001, 1_500, 2_999, 10_250] {
                let duration = Duration::from_micros(micros);
                let elapsed = timed_sleep(duration).await;
                assert_on_time("fractional", elapsed, duration, LATE);
            }
        });
    });
}

/// p50, p99 and max of `samples`, sorted in place.
fn percentiles(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (at(0.50), at(0.99), *samples.last().unwrap())
}

/// 200 sleeps of 1 ms, one after another, on an idle runtime: each at least 1 ms, and the 99th
/// percentile within the 1 ms tick plus scheduling slack. Prints the figures (`--nocapture`).
#[test]
fn sleep_of_one_millisecond_wakes_within_the_timer_resolution() {
    const SAMPLES: usize = 200;
    const P99_BOUND: Duration = Duration::from_millis(20);
    let _exclusive = exclusive();
    type Measure = fn(MakeRuntime) -> Vec<Duration>;
    let in_task: Measure = |make| {
        let rt = make();
        rt.block_on(rt.spawn(async {
            let mut samples = Vec::with_capacity(SAMPLES);
            for _ in 0..SAMPLES {
                samples.push(timed_sleep(Duration::from_millis(1)).await);
            }
            samples
        }))
        .unwrap()
    };
    let in_block_on: Measure = |make| {
        let rt = make();
        rt.block_on(async {
            let mut samples = Vec::with_capacity(SAMPLES);
            for _ in 0..SAMPLES {
                samples.push(timed_sleep(Duration::from_millis(1)).await);
            }
            samples
        })
    };
    let cases: [(&str, MakeRuntime, Measure); 4] = [
        ("multi_thread(2), in a task", || multi(2), in_task),
        ("multi_thread(2), in block_on", || multi(2), in_block_on),
        ("current_thread, in a task", current, in_task),
        ("current_thread, in block_on", current, in_block_on),
    ];
    for (name, make, measure) in cases {
        let mut samples = bounded(move || measure(make));
        for &sample in &samples {
            assert!(
                sample >= Duration::from_millis(1),
                "{name}: sleep(1ms) completed early, after {sample:?}"
            );
        }
        let (p50, p99, max) = percentiles(&mut samples);
        eprintln!(
            "sleep(1ms) over {SAMPLES} sleeps, {name}: p50 {p50:?}, p99 {p99:?}, max {max:?}"
        );
        assert!(
            p99 < P99_BOUND,
            "{name}: sleep(1ms) p99 is {p99:?} (p50 {p50:?}, max {max:?}), bound {P99_BOUND:?}"
        );
    }
}

/// Polls `future` once with a waker that does nothing (inside the caller's runtime context).
fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn sleep_until_a_past_instant_completes_on_its_first_poll() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            rt.block_on(async move {
                // Before the runtime started.
                let long_ago = Instant::now() - Duration::from_secs(3600);
                let mut s = sleep_until(long_ago);
                assert!(poll_once(&mut s).is_ready(), "{name}: an hour ago");
                assert!(s.is_elapsed(), "{name}");
                // At or before a deadline the runtime has already seen pass: the one of a sleep
                // that has completed.
                let mut done = sleep(Duration::from_millis(5));
                (&mut done).await;
                let seen = done.deadline();
                for past in [
                    seen,
                    seen - Duration::from_millis(1),
                    seen - Duration::from_millis(3),
                ] {
                    let mut s = sleep_until(past);
                    assert!(
                        poll_once(&mut s).is_ready(),
                        "{name}: {past:?} (seen {seen:?})"
                    );
                }
                // And one just past, which the runtime has not seen yet: at once, in time terms.
                let start = std::time::Instant::now();
                sleep_until(Instant::now() - Duration::from_millis(1)).await;
                assert!(start.elapsed() < LATE, "{name}: {:?}", start.elapsed());
            });
        });
    }
}

#[test]
fn sleep_deadline_is_the_instant_it_was_created_plus_the_duration() {
    bounded(|| {
        let rt = multi(1);
        let _enter = rt.enter();
        let duration = Duration::from_millis(1234);
        let before = Instant::now();
        let s = sleep(duration);
        let after = Instant::now();
        assert!(s.deadline() >= before + duration && s.deadline() <= after + duration);
        let at = Instant::now() + Duration::from_secs(7);
        assert_eq!(sleep_until(at).deadline(), at);
        assert!(format!("{s:?}").contains("Sleep"), "{s:?}");
    });
}

#[test]
fn is_elapsed_is_false_until_the_sleep_completes() {
    bounded(|| {
        let rt = multi(1);
        rt.block_on(async {
            let mut s = sleep(Duration::from_millis(20));
            assert!(!s.is_elapsed(), "before any poll");
            assert!(poll_once(&mut s).is_pending());
            assert!(!s.is_elapsed(), "pending");
            (&mut s).await;
            assert!(s.is_elapsed(), "completed");
            // A completed sleep stays completed.
            assert!(poll_once(&mut s).is_ready());
            assert!(s.is_elapsed());
        });
    });
}

#[test]
fn reset_to_an_earlier_deadline_completes_at_the_new_deadline() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            rt.block_on(async move {
                let mut s = pin!(sleep(Duration::from_secs(3600)));
                // Registered with its hour-long deadline first.
                assert!(
                    poll_fn(|cx| Poll::Ready(s.as_mut().poll(cx)))
                        .await
                        .is_pending()
                );
                let start = std::time::Instant::now();
                let new_deadline = Instant::now() + Duration::from_millis(20);
                s.as_mut().reset(new_deadline);
                assert_eq!(s.deadline(), new_deadline);
                s.as_mut().await;
                let elapsed = start.elapsed();
                assert!(Instant::now() >= new_deadline, "{name}: completed early");
                assert_on_time(name, elapsed, Duration::from_millis(20), LATE);
            });
        });
    }
}

#[test]
fn reset_to_a_later_deadline_does_not_complete_at_the_old_one() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            rt.block_on(async move {
                let start = std::time::Instant::now();
                let mut s = pin!(sleep(Duration::from_millis(10)));
                assert!(
                    poll_fn(|cx| Poll::Ready(s.as_mut().poll(cx)))
                        .await
                        .is_pending()
                );
                let new_deadline = Instant::now() + Duration::from_millis(80);
                s.as_mut().reset(new_deadline);
                s.as_mut().await;
                assert!(
                    Instant::now() >= new_deadline,
                    "{name}: completed at the old deadline, after {:?}",
                    start.elapsed()
                );
                assert_on_time(name, start.elapsed(), Duration::from_millis(80), LATE);
            });
        });
    }
}

#[test]
fn reset_after_completion_makes_the_sleep_wait_again() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            rt.block_on(async move {
                let mut s = pin!(sleep(Duration::from_millis(5)));
                s.as_mut().await;
                assert!(s.is_elapsed());
                let start = std::time::Instant::now();
                let new_deadline = Instant::now() + Duration::from_millis(30);
                s.as_mut().reset(new_deadline);
                assert!(!s.is_elapsed(), "{name}: still elapsed after reset");
                assert_eq!(s.deadline(), new_deadline);
                s.as_mut().await;
                assert!(s.is_elapsed());
                assert!(Instant::now() >= new_deadline, "{name}: completed early");
                assert_on_time(name, start.elapsed(), Duration::from_millis(30), LATE);
                // Reset into the past: completes on the next poll.
                s.as_mut().reset(Instant::now() - Duration::from_secs(3600));
                assert!(
                    poll_fn(|cx| Poll::Ready(s.as_mut().poll(cx)))
                        .await
                        .is_ready()
                );
            });
        });
    }
}

/// A sleep first polled by one waker (here, a no-op one) and then awaited by a task wakes that
/// task: the waker it keeps is the latest one.
#[test]
fn a_sleep_wakes_the_waker_of_its_latest_poll() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            rt.block_on(async move {
                let mut s = sleep(Duration::from_millis(20));
                assert!(poll_once(&mut s).is_pending());
                let start = std::time::Instant::now();
                maniac::spawn(s).await.unwrap();
                assert!(start.elapsed() < Duration::from_millis(20) + LATE, "{name}");
            });
        });
    }
}

/// 10,000 tasks sleeping random durations up to 200 ms at the same time: all complete, none early.
#[test]
fn ten_thousand_concurrent_random_sleeps_all_complete_and_none_early() {
    const SLEEPS: usize = 10_000;
    const MAX_MS: u64 = 200;
    let _exclusive = exclusive();
    let cases: [(&str, MakeRuntime); 2] = [
        ("multi_thread(2)", || multi(2)),
        ("current_thread", current),
    ];
    for (name, make) in cases {
        bounded(move || {
            let rt = make();
            let rng = fastrand::Rng::with_seed(0x5eed);
            let worst = rt.block_on(async move {
                let mut rng = rng;
                let handles: Vec<_> = (0..SLEEPS)
                    .map(|_| {
                        let duration = Duration::from_micros(rng.u64(0..=MAX_MS * 1000));
                        maniac::spawn(async move { (duration, timed_sleep(duration).await) })
                    })
                    .collect();
                let mut worst = Duration::ZERO;
                for handle in handles {
                    let (duration, elapsed) = handle.await.unwrap();
                    assert!(
                        elapsed >= duration,
                        "{name}: sleep({duration:?}) completed early, after {elapsed:?}"
                    );
                    worst = worst.max(elapsed - duration);
                }
                worst
            });
            eprintln!("{SLEEPS} concurrent sleeps, {name}: latest {worst:?} late");
            // Spawning 10,000 tasks in a debug build delays the last sleeps' first polls.
            assert!(
                worst < Duration::from_secs(5),
                "{name}: a sleep was {worst:?} late"
            );
        });
    }
}

/// A million timers pending at once (registered by a first poll), then dropped: quick, and a
/// short timer registered among them still fires on time.
#[test]
fn a_million_pending_timers_register_and_drop_quickly() {
    const TIMERS: usize = 1_000_000;
    let _exclusive = exclusive();
    with_timeout(Duration::from_secs(60), || {
        let rt = multi(2);
        let start = std::time::Instant::now();
        let (registered, fired_late, dropped) = rt.block_on(async {
            let base = Instant::now() + Duration::from_secs(3600);
            let mut sleeps: Vec<Sleep> = (0..TIMERS)
                .map(|i| sleep_until(base + Duration::from_millis((i % 100_000) as u64)))
                .collect();
            poll_fn(|cx| {
                for s in &mut sleeps {
                    assert!(Pin::new(s).poll(cx).is_pending());
                }
                Poll::Ready(())
            })
            .await;
            let registered = start.elapsed();
            let elapsed = timed_sleep(Duration::from_millis(10)).await;
            assert_on_time("among a million", elapsed, Duration::from_millis(10), LATE);
            let before_drop = std::time::Instant::now();
            drop(sleeps);
            (registered, elapsed, before_drop.elapsed())
        });
        let total = start.elapsed();
        eprintln!(
            "{TIMERS} timers: registered in {registered:?}, a 10 ms sleep among them took \
             {fired_late:?}, dropped in {dropped:?}, {total:?} in all"
        );
        assert!(
            total < Duration::from_secs(20),
            "a million timers took {total:?}"
        );
        // The wheel is usable afterwards.
        let elapsed = rt.block_on(timed_sleep(Duration::from_millis(5)));
        assert_on_time("after a million", elapsed, Duration::from_millis(5), LATE);
    });
}

/// Tasks sleeping until the same instant on a current-thread runtime run in the order they
/// registered their timers (which is their spawn order: each registers on its first poll).
/// The timers fire in order (wheel rule 5), and their wake-ups, which come from the driver on
/// the runtime's own thread, go to the back of the queue, not the LIFO slot (it was
/// `[15, 0, 1, ..., 14]` while they went through it).
#[test]
fn equal_deadlines_run_in_registration_order_on_current_thread() {
    bounded(|| {
        let rt = current();
        let order = rt.block_on(async {
            let log = Arc::new(Mutex::new(Vec::new()));
            let deadline = Instant::now() + Duration::from_millis(30);
            let handles: Vec<_> = (0..16)
                .map(|i| {
                    let log = log.clone();
                    maniac::spawn(async move {
                        sleep_until(deadline).await;
                        log.lock().unwrap().push(i);
                    })
                })
                .collect();
            for handle in handles {
                handle.await.unwrap();
            }
            Arc::try_unwrap(log).unwrap().into_inner().unwrap()
        });
        assert_eq!(order, (0..16).collect::<Vec<_>>());
    });
}

/// Counts the polls of the future it wraps.
struct CountPolls<F> {
    polls: Arc<AtomicUsize>,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for CountPolls<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, SeqCst);
        self.future.as_mut().poll(cx)
    }
}

/// A sleep dropped before its deadline never wakes the task that polled it.
#[test]
fn a_dropped_sleep_never_wakes_its_task() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            rt.block_on(async move {
                let polls = Arc::new(AtomicUsize::new(0));
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                let registered = Arc::new(AtomicBool::new(false));
                let task = maniac::spawn(CountPolls {
                    polls: polls.clone(),
                    future: Box::pin({
                        let registered = registered.clone();
                        async move {
                            let mut s = sleep(Duration::from_millis(20));
                            assert!(
                                poll_fn(|cx| Poll::Ready(Pin::new(&mut s).poll(cx)))
                                    .await
                                    .is_pending()
                            );
                            drop(s);
                            registered.store(true, SeqCst);
                            rx.await.unwrap();
                        }
                    }),
                });
                // Well past the dropped sleep's deadline.
                sleep(Duration::from_millis(150)).await;
                assert!(registered.load(SeqCst), "{name}: the task never ran");
                assert_eq!(
                    polls.load(SeqCst),
                    1,
                    "{name}: the dropped sleep woke its task"
                );
                tx.send(()).unwrap();
                task.await.unwrap();
                assert_eq!(polls.load(SeqCst), 2, "{name}");
            });
        });
    }
}

#[test]
fn sleep_outside_a_runtime_panics_naming_the_maniac_runtime() {
    for message in [
        panic_text(|| sleep(Duration::from_millis(1))),
        panic_text(|| sleep_until(Instant::now())),
    ] {
        assert!(message.contains("maniac runtime"), "{message}");
    }
}

#[test]
fn instant_arithmetic_past_its_range_panics_naming_instant() {
    let message = panic_text(|| Instant::now() + Duration::MAX);
    assert!(message.contains("Instant"), "{message}");
    let message = panic_text(|| {
        let mut at = Instant::now();
        at += Duration::MAX;
        at
    });
    assert!(message.contains("Instant"), "{message}");
    let message = panic_text(|| Instant::now() - Duration::MAX);
    assert!(message.contains("Instant"), "{message}");
    assert_eq!(Instant::now().checked_add(Duration::MAX), None);
    assert_eq!(Instant::now().checked_sub(Duration::MAX), None);
    // Subtracting a later instant saturates (as tokio's).
    let now = Instant::now();
    assert_eq!(now - (now + Duration::from_secs(1)), Duration::ZERO);
    assert_eq!((now + Duration::from_secs(1)) - now, Duration::from_secs(1));
    let std_now = std::time::Instant::now();
    assert_eq!(Instant::from_std(std_now).into_std(), std_now);
}

/// `sleep(Duration::MAX)` (past what an instant can hold) waits "forever" instead of panicking.
#[test]
fn sleep_of_duration_max_waits_forever_without_panicking() {
    bounded(|| {
        let rt = multi(1);
        rt.block_on(async {
            let mut s = sleep(Duration::MAX);
            assert!(poll_once(&mut s).is_pending());
            assert!(s.deadline() > Instant::now() + Duration::from_secs(86_400 * 365));
            let start = std::time::Instant::now();
            // Still pending after a while.
            let raced = futures::future::select(&mut s, sleep(Duration::from_millis(20))).await;
            assert!(matches!(raced, futures::future::Either::Right(_)));
            assert!(start.elapsed() >= Duration::from_millis(20));
        });
    });
}

/// A `Sleep` polled after its runtime shut down panics with a message saying so.
#[test]
fn a_sleep_polled_after_its_runtime_shut_down_panics_saying_so() {
    bounded(|| {
        let rt = multi(1);
        let mut s = {
            let _enter = rt.enter();
            sleep(Duration::from_millis(10))
        };
        drop(rt);
        let message = panic_text(move || poll_once(&mut s));
        assert!(message.contains("shut down"), "{message}");
    });
}

/// Spins for about `duration` (a stand-in for a task's computation).
fn compute_for(duration: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < duration {
        std::hint::spin_loop();
    }
}

/// Starts `count` tasks that compute in slices of about 1 ms, yielding between slices, until
/// `stop`: every worker is busy, none ever parks.
fn start_busy_tasks(count: usize, stop: &Arc<AtomicBool>) -> Vec<maniac::task::JoinHandle<()>> {
    (0..count)
        .map(|_| {
            let stop = stop.clone();
            maniac::spawn(async move {
                while !stop.load(SeqCst) {
                    compute_for(Duration::from_millis(1));
                    maniac::task::yield_now().await;
                }
            })
        })
        .collect()
}

/// Timers fire while every worker is busy with tasks that compute and yield (the maintenance
/// path: no worker parks in the driver).
#[test]
fn timers_fire_while_every_worker_computes() {
    const BUSY_BOUND: Duration = Duration::from_secs(1);
    let _exclusive = exclusive();
    let cases: [(&str, MakeRuntime, usize); 3] = [
        ("multi_thread(2)", || multi(2), 4),
        ("multi_thread(1)", || multi(1), 2),
        ("current_thread", current, 2),
    ];
    for (name, make, busy) in cases {
        let samples = bounded(move || {
            let rt = make();
            rt.block_on(async move {
                let stop = Arc::new(AtomicBool::new(false));
                let busy = start_busy_tasks(busy, &stop);
                // Measured in a task (queued behind the busy ones) and in block_on.
                let in_task = maniac::spawn(async {
                    let mut samples = Vec::new();
                    for _ in 0..5 {
                        samples.push(timed_sleep(Duration::from_millis(5)).await);
                    }
                    samples
                });
                let mut samples = Vec::new();
                for _ in 0..5 {
                    samples.push(timed_sleep(Duration::from_millis(5)).await);
                }
                samples.extend(in_task.await.unwrap());
                stop.store(true, SeqCst);
                for task in busy {
                    task.await.unwrap();
                }
                samples
            })
        });
        let max = *samples.iter().max().unwrap();
        eprintln!("sleep(5ms) while every worker computes, {name}: {samples:?}");
        for sample in samples {
            assert_on_time(name, sample, Duration::from_millis(5), BUSY_BOUND);
        }
        assert!(max < BUSY_BOUND + Duration::from_millis(5));
    }
}
