//! The time driver: the clock, the wheel of pending timers, and when the runtime must next look.
//!
//! ## Rules
//! 1. Time is counted in ticks of [`TICK`] (100 µs) since the driver started. A deadline becomes the tick at or
//!    after it (rounded up), and the wheel advances to the tick at or before now (rounded down),
//!    so a timer never fires before its deadline.
//! 2. Whoever processes the wheel (a parked worker that owns the runtime's driver when it wakes,
//!    or any worker's periodic maintenance) advances it to now under the lock, and wakes the
//!    fired timers' tasks after releasing it.
//! 3. A worker that parks on the driver first publishes the tick it will sleep until
//!    (`sleeping_until`). Registering a timer due earlier than that wakes it (through the
//!    `unpark` callback the runtime gives), so that it re-computes its timeout.
//! 4. After shutdown, registering a timer panics with a message saying the runtime is gone.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Waker;
use std::time::{Duration, Instant};

use super::wheel::{Inserted, Key, Wheel};
use crate::preempt;

/// The wheel's resolution. Finer than tokio's 1 ms: under CPU-bound load, timers are processed
/// whenever a poll is preempted, so their lateness is bounded by the quantum rather than by a tick
/// (a parked worker still waits in `epoll_wait`, whose timeout is in whole milliseconds).
pub(crate) const TICK: Duration = Duration::from_micros(100);
const TICK_NANOS: u128 = TICK.as_nanos();

/// `sleeping_until` when no worker is parked on the driver: no registration needs to wake
/// anyone (ticks of pending timers are at least 1).
const NOT_PARKED: u64 = 0;
/// `sleeping_until` of a worker parked on the driver with no timer pending: any new timer wakes
/// it.
const UNTIL_WOKEN: u64 = u64::MAX;

/// The driver's ticks (rule 1): tick `n` is `n` × [`TICK`] after the origin. Shared with the
/// preemption monitor, which preempts just after a tick (`monitor` rule 2).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TickGrid {
    origin: Instant,
}

impl TickGrid {
    pub(crate) fn new(origin: Instant) -> TickGrid {
        TickGrid { origin }
    }

    /// The tick `at` falls on, rounded up.
    pub(crate) fn tick_at_or_after(self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin);
        u64::try_from(since.as_nanos().div_ceil(TICK_NANOS)).unwrap_or(u64::MAX - 1)
    }

    /// The tick `at` falls in, rounded down.
    fn tick_at_or_before(self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin);
        u64::try_from(since.as_nanos() / TICK_NANOS).unwrap_or(u64::MAX - 1)
    }

    /// When `tick` comes (ticks beyond 584 years from the origin saturate there).
    pub(crate) fn instant(self, tick: u64) -> Instant {
        const NANOS: u64 = TICK_NANOS as u64;
        self.origin + Duration::from_nanos(tick.saturating_mul(NANOS))
    }
}

pub(crate) struct TimeDriver {
    ticks: TickGrid,
    wheel: Mutex<Wheel>,
    /// Rule 3.
    sleeping_until: AtomicU64,
    /// Wakes the worker parked on the driver.
    unpark: Box<dyn Fn() + Send + Sync>,
    shutdown: AtomicBool,
}

impl std::fmt::Debug for TimeDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeDriver")
            .field("ticks", &self.ticks)
            .finish_non_exhaustive()
    }
}

impl TimeDriver {
    pub(crate) fn new(unpark: Box<dyn Fn() + Send + Sync>) -> TimeDriver {
        TimeDriver {
            ticks: TickGrid::new(Instant::now()),
            wheel: Mutex::new(Wheel::new()),
            sleeping_until: AtomicU64::new(NOT_PARKED),
            unpark,
            shutdown: AtomicBool::new(false),
        }
    }

    fn wheel(&self) -> preempt::Held<'_, Wheel> {
        // No user code runs under this lock (wakers are woken after it is released).
        preempt::lock(&self.wheel)
    }

    /// Rule 1's ticks.
    pub(crate) fn ticks(&self) -> TickGrid {
        self.ticks
    }

    /// Registers a timer due at `deadline`; `None` if it is already due (rule 4 of the wheel).
    ///
    /// # Panics
    /// After shutdown (rule 4).
    pub(crate) fn register(&self, deadline: Instant, waker: &Waker) -> Option<Key> {
        if self.shutdown.load(Ordering::Acquire) {
            panic!(
                "maniac::time: a timer was used after its runtime shut down; timers work only \
                 while their runtime runs"
            );
        }
        let tick = self.ticks.tick_at_or_after(deadline);
        let inserted = self.wheel().insert(tick, waker.clone());
        match inserted {
            Inserted::Due => None,
            Inserted::Pending(key) => {
                // Rule 3. SeqCst pairs with the parker's store before it sleeps: either it
                // sees this timer when it computes its timeout, or we see its tick here.
                if tick < self.sleeping_until.load(Ordering::SeqCst) {
                    (self.unpark)();
                }
                Some(key)
            }
        }
    }

    /// Whether timer `key` is still pending (then `waker` is the one it will wake).
    pub(crate) fn is_pending(&self, key: Key, waker: &Waker) -> bool {
        self.wheel().is_pending(key, waker)
    }

    /// Removes timer `key` (cancelling it if pending).
    pub(crate) fn remove(&self, key: Key) {
        let waker = self.wheel().remove(key);
        drop(waker); // outside the lock
    }

    /// Rule 2: fires every timer due by `now` (the caller's clock reading: maintenance shares
    /// it with the preemption monitor's spotting). Returns how many fired.
    pub(crate) fn process(&self, now: Instant) -> usize {
        let mut fired = Vec::new();
        self.wheel()
            .advance(self.ticks.tick_at_or_before(now), &mut fired);
        let count = fired.len();
        for waker in fired {
            waker.wake();
        }
        count
    }

    /// Rule 3, before a worker parks on the driver: how long it may sleep (`None`: until woken),
    /// published so that an earlier new timer wakes it.
    pub(crate) fn prepare_park(&self) -> Option<Duration> {
        let next = self.wheel().next_expiration();
        self.sleeping_until
            .store(next.unwrap_or(UNTIL_WOKEN), Ordering::SeqCst);
        // A timer registered between that read and this store may have seen NOT_PARKED and
        // woken nobody; it is in the wheel by now (its insert preceded its load, which preceded
        // our store), so a second read finds it.
        let next = match (self.wheel().next_expiration(), next) {
            (Some(again), Some(first)) => Some(again.min(first)),
            (again, first) => again.or(first),
        };
        next.map(|tick| {
            self.ticks
                .instant(tick)
                .saturating_duration_since(Instant::now())
        })
    }

    /// After the parked worker wakes: nobody sleeps on timers any more.
    pub(crate) fn finish_park(&self) {
        self.sleeping_until.store(NOT_PARKED, Ordering::SeqCst);
    }

    /// Rule 4.
    pub(crate) fn shut_down(&self) {
        self.shutdown.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule 1: deadlines round up, the present rounds down, so a timer never fires early.
    #[test]
    fn ticks_round_deadlines_up_and_the_present_down() {
        let origin = Instant::now();
        let ticks = TickGrid::new(origin);
        let at = |micros| origin + Duration::from_micros(micros);
        assert_eq!(ticks.tick_at_or_after(at(0)), 0);
        assert_eq!(ticks.tick_at_or_after(at(1)), 1);
        assert_eq!(ticks.tick_at_or_after(at(100)), 1);
        assert_eq!(ticks.tick_at_or_after(at(101)), 2);
        assert_eq!(ticks.tick_at_or_before(at(199)), 1);
        assert_eq!(ticks.tick_at_or_before(at(200)), 2);
        assert_eq!(ticks.instant(3), at(300));
        // Before the origin: tick 0.
        let before = origin.checked_sub(Duration::from_millis(1));
        if let Some(before) = before {
            assert_eq!(ticks.tick_at_or_after(before), 0);
        }
        // Exact beyond 2^32 ticks (five days): the driver's parking timeout for a timer due
        // then was once capped at tick 2^32, and so zero for every timer of a runtime that had
        // run that long.
        let days = origin + Duration::from_secs(6 * 24 * 3600);
        assert!(ticks.tick_at_or_after(days) > u64::from(u32::MAX));
        assert_eq!(ticks.instant(ticks.tick_at_or_after(days)), days);
        // The farthest tick saturates instead of overflowing.
        let far = ticks.instant(u64::MAX);
        assert!(far > origin + Duration::from_secs(500 * 365 * 24 * 3600));
    }
}
