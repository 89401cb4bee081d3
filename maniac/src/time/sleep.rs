//! `Sleep`: a future that completes at a deadline.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use super::Instant;
use super::driver::TimeDriver;
use super::wheel::Key;
use crate::runtime::context;

/// Waits until `duration` has passed, as `tokio::time::sleep`. A duration too long to be an
/// instant waits (about 30 years) forever.
///
/// # Panics
/// Outside a runtime context.
#[track_caller]
pub fn sleep(duration: Duration) -> Sleep {
    let deadline = Instant::now()
        .checked_add(duration)
        .unwrap_or_else(Instant::far_future);
    sleep_until(deadline)
}

/// Waits until `deadline`, as `tokio::time::sleep_until`.
///
/// # Panics
/// Outside a runtime context.
#[track_caller]
pub fn sleep_until(deadline: Instant) -> Sleep {
    let driver = match context::with_current(|handle| handle.shared.time.clone()) {
        Ok(driver) => driver,
        Err(error) => panic!("maniac::time: {error}"),
    };
    Sleep {
        driver,
        deadline,
        state: State::Unregistered,
    }
}

/// The future of [`sleep`] and [`sleep_until`].
pub struct Sleep {
    driver: Arc<TimeDriver>,
    deadline: Instant,
    state: State,
}

#[derive(Clone, Copy, Debug)]
enum State {
    /// Not in the wheel yet (registers on its first poll).
    Unregistered,
    /// In the wheel.
    Registered(Key),
    /// Completed.
    Elapsed,
}

impl Sleep {
    /// The instant this completes at.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed (and was seen by a poll).
    pub fn is_elapsed(&self) -> bool {
        matches!(self.state, State::Elapsed)
    }

    /// Moves the deadline, whether or not this has completed; it then completes at `deadline`.
    pub fn reset(self: Pin<&mut Self>, deadline: Instant) {
        let this = self.get_mut();
        if let State::Registered(key) = this.state {
            this.driver.remove(key);
        }
        this.deadline = deadline;
        this.state = State::Unregistered;
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        match this.state {
            State::Elapsed => Poll::Ready(()),
            State::Unregistered => match this.driver.register(this.deadline.into_std(), cx.waker())
            {
                None => {
                    this.state = State::Elapsed;
                    Poll::Ready(())
                }
                Some(key) => {
                    this.state = State::Registered(key);
                    Poll::Pending
                }
            },
            State::Registered(key) => {
                if this.driver.is_pending(key, cx.waker()) {
                    return Poll::Pending;
                }
                this.driver.remove(key);
                this.state = State::Elapsed;
                Poll::Ready(())
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let State::Registered(key) = self.state {
            self.driver.remove(key);
        }
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .field("state", &self.state)
            .finish()
    }
}
