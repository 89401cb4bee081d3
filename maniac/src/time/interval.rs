//! `Interval`: ticks at a fixed period, with tokio's behaviours for missed ticks.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::{Instant, Sleep, sleep_until};

/// How late a tick may be and still count as on time (tokio's threshold): later than this, the
/// interval applies its [`MissedTickBehavior`].
const LATE_THRESHOLD: Duration = Duration::from_millis(5);

/// Ticks every `period`, the first tick at once, as `tokio::time::interval`.
///
/// # Panics
/// If `period` is zero, or outside a runtime context.
#[track_caller]
pub fn interval(period: Duration) -> Interval {
    interval_at(Instant::now(), period)
}

/// Ticks every `period` from `start` on, as `tokio::time::interval_at`.
///
/// # Panics
/// If `period` is zero, or outside a runtime context.
#[track_caller]
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(
        !period.is_zero(),
        "maniac::time::interval: the period must be non-zero"
    );
    Interval {
        delay: sleep_until(start),
        period,
        missed_tick_behavior: MissedTickBehavior::default(),
    }
}

/// What an [`Interval`] does when a tick comes late (the task was busy), as tokio's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissedTickBehavior {
    /// Catch up: the missed ticks come at once, then the schedule resumes as planned.
    #[default]
    Burst,
    /// Start again: the next tick is a full period after the late one was taken.
    Delay,
    /// Drop the missed ticks: the next tick is the next one of the original schedule.
    Skip,
}

impl MissedTickBehavior {
    /// When the tick after a late one (due at `due`, taken at `now`) is due.
    fn next_after_late(self, due: Instant, now: Instant, period: Duration) -> Instant {
        match self {
            MissedTickBehavior::Burst => due + period,
            MissedTickBehavior::Delay => now + period,
            MissedTickBehavior::Skip => {
                let late = now.duration_since(due).as_nanos();
                let period_nanos = period.as_nanos();
                let into_period = (late % period_nanos) as u64;
                now + period - Duration::from_nanos(into_period)
            }
        }
    }
}

/// The ticker of [`interval`] and [`interval_at`].
#[derive(Debug)]
pub struct Interval {
    delay: Sleep,
    period: Duration,
    missed_tick_behavior: MissedTickBehavior,
}

impl Interval {
    /// Waits for the next tick and returns when it was due.
    pub async fn tick(&mut self) -> Instant {
        poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        if Pin::new(&mut self.delay).poll(cx).is_pending() {
            return Poll::Pending;
        }
        let due = self.delay.deadline();
        let now = Instant::now();
        let next = if now > due + LATE_THRESHOLD {
            self.missed_tick_behavior
                .next_after_late(due, now, self.period)
        } else {
            due.checked_add(self.period)
                .unwrap_or_else(Instant::far_future)
        };
        Pin::new(&mut self.delay).reset(next);
        Poll::Ready(due)
    }

    /// The next tick is a period from now.
    pub fn reset(&mut self) {
        self.reset_at(Instant::now() + self.period);
    }

    /// The next tick is now.
    pub fn reset_immediately(&mut self) {
        self.reset_at(Instant::now());
    }

    /// The next tick is `after` from now.
    pub fn reset_after(&mut self, after: Duration) {
        self.reset_at(Instant::now() + after);
    }

    /// The next tick is at `deadline`.
    pub fn reset_at(&mut self, deadline: Instant) {
        Pin::new(&mut self.delay).reset(deadline);
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// What happens to missed ticks.
    pub fn missed_tick_behavior(&self) -> MissedTickBehavior {
        self.missed_tick_behavior
    }

    /// Sets what happens to missed ticks.
    pub fn set_missed_tick_behavior(&mut self, behavior: MissedTickBehavior) {
        self.missed_tick_behavior = behavior;
    }
}
