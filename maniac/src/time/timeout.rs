//! `timeout`: a future with a deadline.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::error::Elapsed;
use super::{Instant, Sleep, sleep, sleep_until};

/// Runs `future` with a time limit, as `tokio::time::timeout`: its output, or `Err(Elapsed)` if
/// `duration` passes first (the future is then dropped with the `Timeout`).
///
/// # Panics
/// Outside a runtime context.
#[track_caller]
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout {
        future,
        deadline: sleep(duration),
    }
}

/// As [`timeout`], with a deadline instead of a duration.
///
/// # Panics
/// Outside a runtime context.
#[track_caller]
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout {
        future,
        deadline: sleep_until(deadline),
    }
}

/// The future of [`timeout`] and [`timeout_at`].
pub struct Timeout<F> {
    future: F,
    deadline: Sleep,
}

impl<F> Timeout<F> {
    /// The inner future.
    pub fn get_ref(&self) -> &F {
        &self.future
    }

    /// The inner future.
    pub fn get_mut(&mut self) -> &mut F {
        &mut self.future
    }

    /// The inner future, giving up the time limit.
    pub fn into_inner(self) -> F {
        self.future
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `future` is structurally pinned (never moved out of a pinned `Timeout`);
        // `deadline` is `Unpin` and reached only through `&mut`.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        // The future first: a value that is ready when the time is up still counts.
        if let Poll::Ready(output) = future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        Pin::new(&mut this.deadline)
            .poll(cx)
            .map(|()| Err(Elapsed::new()))
    }
}

impl<F> fmt::Debug for Timeout<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("deadline", &self.deadline.deadline())
            .finish_non_exhaustive()
    }
}
