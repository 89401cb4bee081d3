#![cfg(not(loom))]
//! `interval` and `interval_at`, with tokio's semantics: the first tick at once, then one every
//! period on the original schedule; after a stall, the missed ticks come as `MissedTickBehavior`
//! says (Burst, Delay, Skip); the resets; the period; a zero period panics.
//!
//! A tick returns the instant it was *scheduled* for (as tokio's). The schedule is checked
//! exactly where tokio specifies it exactly, and between measured bounds where it depends on
//! when a late tick was taken. A stall is made with `std::thread::sleep` inside the task (the
//! task blocks its worker, as computation would).

mod common;

use std::time::Duration;

use common::{MakeRuntime, bounded, current, multi, panic_text};
use maniac::time::{Instant, Interval, MissedTickBehavior, interval, interval_at};

/// How late a tick may come (generous: debug build, shared 2-core machine).
const LATE: Duration = Duration::from_millis(200);

/// The runtimes the schedule is checked on: the ticks run in `block_on` on both flavours, and in
/// a task of a multi-thread runtime.
fn run_each(test: fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) {
    let cases: [(&str, MakeRuntime); 2] = [
        ("multi_thread(2)", || multi(2)),
        ("current_thread", current),
    ];
    for (name, make) in cases {
        bounded(move || {
            let rt = make();
            let _ = name;
            rt.block_on(test());
            rt.block_on(rt.spawn(test())).unwrap();
        });
    }
}

/// Takes a tick and checks it did not come before the instant it returns.
async fn tick(interval: &mut Interval) -> (Instant, Instant) {
    let scheduled = interval.tick().await;
    let taken = Instant::now();
    assert!(
        taken >= scheduled,
        "a tick for {scheduled:?} came early, at {taken:?}"
    );
    (scheduled, taken)
}

#[test]
fn the_first_tick_is_immediate() {
    run_each(|| {
        Box::pin(async {
            let before = Instant::now();
            let mut ticks = interval(Duration::from_secs(3600));
            let after = Instant::now();
            let (scheduled, taken) = tick(&mut ticks).await;
            assert!(scheduled >= before && scheduled <= after, "{scheduled:?}");
            assert!(
                taken - before < LATE,
                "first tick after {:?}",
                taken - before
            );
            // interval_at: the first tick is at `start`.
            let start = Instant::now() + Duration::from_millis(20);
            let mut ticks = interval_at(start, Duration::from_secs(3600));
            let (scheduled, taken) = tick(&mut ticks).await;
            assert_eq!(scheduled, start);
            assert!(taken - start < LATE);
        })
    });
}

#[test]
fn ticks_follow_the_period_on_the_original_schedule() {
    run_each(|| {
        Box::pin(async {
            const PERIOD: Duration = Duration::from_millis(20);
            let start = Instant::now();
            let mut ticks = interval_at(start, PERIOD);
            assert_eq!(ticks.period(), PERIOD);
            for k in 0..6u32 {
                let (scheduled, taken) = tick(&mut ticks).await;
                assert_eq!(scheduled, start + PERIOD * k, "tick {k}");
                assert!(
                    taken - scheduled < LATE,
                    "tick {k} came {:?} late",
                    taken - scheduled
                );
            }
            assert!(start.elapsed() >= PERIOD * 5);
        })
    });
}

/// The period of these tests' stalls: long enough that scheduling noise is small against it.
const PERIOD: Duration = Duration::from_millis(50);

/// An interval at `PERIOD` with `behavior`: takes the tick at `start`, then blocks the thread
/// for 3.5 periods and returns the interval, `start`, and the instant the stall ended.
async fn stalled(behavior: MissedTickBehavior) -> (Interval, Instant, Instant) {
    let start = Instant::now();
    let mut ticks = interval_at(start, PERIOD);
    ticks.set_missed_tick_behavior(behavior);
    assert_eq!(ticks.missed_tick_behavior(), behavior);
    assert_eq!(tick(&mut ticks).await.0, start);
    std::thread::sleep(PERIOD * 7 / 2);
    (ticks, start, Instant::now())
}

#[test]
fn burst_fires_the_missed_ticks_at_once_then_resumes_the_schedule() {
    run_each(|| {
        Box::pin(async {
            let (mut ticks, start, stalled_until) = stalled(MissedTickBehavior::Burst).await;
            // The ticks due at P, 2P and 3P were missed: they come one after another, with
            // their original instants, without waiting.
            let mut taken = Vec::new();
            for k in 1..=3u32 {
                let (scheduled, at) = tick(&mut ticks).await;
                assert_eq!(scheduled, start + PERIOD * k, "missed tick {k}");
                taken.push(at);
            }
            let burst = taken[2] - stalled_until;
            assert!(
                burst < PERIOD,
                "the three missed ticks took {burst:?}: they waited for their period"
            );
            // Then the schedule goes on as planned: 4P, 5P.
            for k in 4..=5u32 {
                let (scheduled, at) = tick(&mut ticks).await;
                assert_eq!(scheduled, start + PERIOD * k, "tick {k}");
                assert!(at - scheduled < LATE);
            }
        })
    });
}

#[test]
fn delay_starts_a_new_schedule_a_period_after_the_late_tick() {
    run_each(|| {
        Box::pin(async {
            let (mut ticks, start, stalled_until) = stalled(MissedTickBehavior::Delay).await;
            // The late tick (due at P) comes at once, with its instant.
            let (scheduled, late_taken) = tick(&mut ticks).await;
            assert_eq!(scheduled, start + PERIOD);
            // The next is a period after the late one was taken (somewhere between the end of
            // the stall and the moment we saw it), and so on from there.
            let (next, _) = tick(&mut ticks).await;
            assert!(
                next >= stalled_until + PERIOD && next <= late_taken + PERIOD,
                "next tick at {:?} after start, late tick taken between {:?} and {:?}",
                next - start,
                stalled_until - start,
                late_taken - start
            );
            let mut previous = next;
            for _ in 0..2 {
                let (scheduled, taken) = tick(&mut ticks).await;
                // A period later, or, if that tick was late as well, a period after it was taken.
                assert!(
                    scheduled >= previous + PERIOD && scheduled <= previous + PERIOD + LATE,
                    "{:?} after the previous tick",
                    scheduled - previous
                );
                assert!(taken - scheduled < LATE);
                previous = scheduled;
            }
        })
    });
}

#[test]
fn skip_drops_the_missed_ticks_and_keeps_the_original_schedule() {
    run_each(|| {
        Box::pin(async {
            let (mut ticks, start, stalled_until) = stalled(MissedTickBehavior::Skip).await;
            let (scheduled, late_taken) = tick(&mut ticks).await;
            assert_eq!(scheduled, start + PERIOD);
            // The next tick is the first one of the original schedule after the late one was
            // taken (at 3.5P: the one at 4P), then 5P, 6P.
            let (next, _) = tick(&mut ticks).await;
            let offset = next - start;
            assert_eq!(
                offset.as_nanos() % PERIOD.as_nanos(),
                0,
                "{offset:?} is off the original schedule"
            );
            assert!(
                next > stalled_until && next <= late_taken + PERIOD,
                "next tick at {offset:?}, late tick taken between {:?} and {:?}",
                stalled_until - start,
                late_taken - start
            );
            for k in 1..=2u32 {
                let (scheduled, taken) = tick(&mut ticks).await;
                assert_eq!(scheduled, next + PERIOD * k);
                assert!(taken - scheduled < LATE);
            }
        })
    });
}

#[test]
fn missed_tick_behavior_defaults_to_burst() {
    bounded(|| {
        let rt = multi(1);
        let _enter = rt.enter();
        assert_eq!(
            interval(Duration::from_secs(1)).missed_tick_behavior(),
            MissedTickBehavior::Burst
        );
        assert_eq!(MissedTickBehavior::default(), MissedTickBehavior::Burst);
    });
}

#[test]
fn reset_moves_the_next_tick_a_period_from_now() {
    run_each(|| {
        Box::pin(async {
            const PERIOD: Duration = Duration::from_millis(40);
            let mut ticks = interval(PERIOD);
            tick(&mut ticks).await;
            let before = Instant::now();
            ticks.reset();
            let after = Instant::now();
            let (scheduled, _) = tick(&mut ticks).await;
            assert!(scheduled >= before + PERIOD && scheduled <= after + PERIOD);
            // And the schedule continues from there.
            assert_eq!(tick(&mut ticks).await.0, scheduled + PERIOD);
        })
    });
}

#[test]
fn reset_immediately_makes_the_next_tick_now() {
    run_each(|| {
        Box::pin(async {
            const PERIOD: Duration = Duration::from_secs(3600);
            let mut ticks = interval(PERIOD);
            tick(&mut ticks).await;
            let before = Instant::now();
            ticks.reset_immediately();
            let after = Instant::now();
            let (scheduled, taken) = tick(&mut ticks).await;
            assert!(scheduled >= before && scheduled <= after);
            assert!(taken - before < LATE, "{:?}", taken - before);
        })
    });
}

#[test]
fn reset_after_and_reset_at_move_the_next_tick() {
    run_each(|| {
        Box::pin(async {
            const PERIOD: Duration = Duration::from_secs(3600);
            let mut ticks = interval(PERIOD);
            tick(&mut ticks).await;
            let after_by = Duration::from_millis(30);
            let before = Instant::now();
            ticks.reset_after(after_by);
            let after = Instant::now();
            let (scheduled, taken) = tick(&mut ticks).await;
            assert!(scheduled >= before + after_by && scheduled <= after + after_by);
            assert!(taken - scheduled < LATE);
            let at = Instant::now() + Duration::from_millis(25);
            ticks.reset_at(at);
            let (scheduled, taken) = tick(&mut ticks).await;
            assert_eq!(scheduled, at);
            assert!(taken - at < LATE);
            // Then a period on, from the instant it was reset to.
            let mut ticks = interval(Duration::from_millis(20));
            tick(&mut ticks).await;
            let at = Instant::now() + Duration::from_millis(5);
            ticks.reset_at(at);
            assert_eq!(tick(&mut ticks).await.0, at);
            assert_eq!(tick(&mut ticks).await.0, at + Duration::from_millis(20));
        })
    });
}

#[test]
fn period_returns_the_period() {
    bounded(|| {
        let rt = multi(1);
        let _enter = rt.enter();
        assert_eq!(
            interval(Duration::from_millis(123)).period(),
            Duration::from_millis(123)
        );
        assert_eq!(
            interval_at(Instant::now(), Duration::from_nanos(1)).period(),
            Duration::from_nanos(1)
        );
    });
}

#[test]
fn a_zero_period_panics_with_a_message() {
    bounded(|| {
        let rt = multi(1);
        let _enter = rt.enter();
        let message = panic_text(|| interval(Duration::ZERO));
        assert!(message.contains("period must be non-zero"), "{message}");
        let message = panic_text(|| interval_at(Instant::now(), Duration::ZERO));
        assert!(message.contains("period must be non-zero"), "{message}");
    });
}

#[test]
fn interval_outside_a_runtime_panics_naming_the_maniac_runtime() {
    let message = panic_text(|| interval(Duration::from_secs(1)));
    assert!(message.contains("maniac runtime"), "{message}");
}

/// `poll_tick` with tokio's contract: `Pending` until due, then `Ready(scheduled instant)`.
#[test]
fn poll_tick_is_pending_until_the_tick_is_due() {
    bounded(|| {
        let rt = multi(1);
        rt.block_on(async {
            let start = Instant::now();
            let mut ticks = interval_at(start + Duration::from_millis(30), Duration::from_secs(1));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(ticks.poll_tick(&mut cx).is_pending());
            let scheduled = std::future::poll_fn(|cx| ticks.poll_tick(cx)).await;
            assert_eq!(scheduled, start + Duration::from_millis(30));
            assert!(Instant::now() >= scheduled);
            assert!(
                ticks.poll_tick(&mut cx).is_pending(),
                "the next is a second away"
            );
        });
    });
}
