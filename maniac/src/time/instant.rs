//! `Instant`: tokio's wrapper of `std::time::Instant`, so that code written against
//! `tokio::time::Instant` compiles unchanged.

use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::time::Duration;

/// A measurement of a monotonic clock, as `tokio::time::Instant`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(std::time::Instant);

impl Instant {
    /// The current instant.
    pub fn now() -> Instant {
        Instant(std::time::Instant::now())
    }

    /// Wraps a `std::time::Instant`.
    pub fn from_std(std: std::time::Instant) -> Instant {
        Instant(std)
    }

    /// The `std::time::Instant` this wraps.
    pub fn into_std(self) -> std::time::Instant {
        self.0
    }

    /// Time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn duration_since(&self, earlier: Instant) -> Duration {
        self.0.saturating_duration_since(earlier.0)
    }

    /// Time from `earlier` to `self`, or `None` if `earlier` is later.
    pub fn checked_duration_since(&self, earlier: Instant) -> Option<Duration> {
        self.0.checked_duration_since(earlier.0)
    }

    /// Time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(&self, earlier: Instant) -> Duration {
        self.0.saturating_duration_since(earlier.0)
    }

    /// Time since this instant.
    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }

    /// `self + duration`, or `None` past what an instant can represent.
    pub fn checked_add(&self, duration: Duration) -> Option<Instant> {
        self.0.checked_add(duration).map(Instant)
    }

    /// `self - duration`, or `None` before what an instant can represent.
    pub fn checked_sub(&self, duration: Duration) -> Option<Instant> {
        self.0.checked_sub(duration).map(Instant)
    }

    /// About 30 years from now: what "sleep forever" means (as in tokio).
    pub(crate) fn far_future() -> Instant {
        Instant::now() + Duration::from_secs(86_400 * 365 * 30)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// # Panics
    /// Past what an instant can represent, with a message that says what to use instead.
    #[track_caller]
    fn add(self, duration: Duration) -> Instant {
        self.checked_add(duration).unwrap_or_else(|| {
            panic!(
                "maniac::time::Instant + {duration:?} is past what an instant can represent; \
                 use Instant::checked_add, or maniac::time::sleep (which treats such a wait as \
                 forever)"
            )
        })
    }
}

impl AddAssign<Duration> for Instant {
    #[track_caller]
    fn add_assign(&mut self, duration: Duration) {
        *self = *self + duration;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;

    /// # Panics
    /// Before what an instant can represent.
    #[track_caller]
    fn sub(self, duration: Duration) -> Instant {
        self.checked_sub(duration).unwrap_or_else(|| {
            panic!("maniac::time::Instant - {duration:?} is before what an instant can represent")
        })
    }
}

impl SubAssign<Duration> for Instant {
    #[track_caller]
    fn sub_assign(&mut self, duration: Duration) {
        *self = *self - duration;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    /// Time from `earlier` to `self`, or zero if `earlier` is later (as tokio's).
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl From<std::time::Instant> for Instant {
    fn from(std: std::time::Instant) -> Instant {
        Instant(std)
    }
}

impl From<Instant> for std::time::Instant {
    fn from(instant: Instant) -> std::time::Instant {
        instant.0
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
