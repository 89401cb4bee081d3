//! The cooperative budget: how many resource operations a task's poll may complete before the
//! resources make it yield (tokio's `coop`, written anew).
//!
//! 1. Every task poll starts with [`BUDGET`] units ([`with_budget`]); outside a task poll the
//!    budget is unlimited.
//! 2. A resource asks [`poll_proceed`] before it would wait: with units left it proceeds;
//!    with none, the task is woken (to the back of its worker's queue, as by `yield_now`) and the
//!    resource returns `Pending`. So a task that keeps finding its socket ready still lets the
//!    others run.
//! 3. An operation that completed takes one unit ([`made_progress`]).
//!
//! The budget is a thread-local of the poll in progress; a poll that is switched out and
//! resumed later keeps whatever the thread holds then, which at worst gives it a fresh budget.

use std::cell::Cell;
use std::task::{Context, Poll};

/// Units per poll (tokio's).
const BUDGET: u8 = 128;

thread_local! {
    /// `None`: unlimited (not inside a task's poll).
    static REMAINING: Cell<Option<u8>> = const { Cell::new(None) };
}

/// Rule 1: runs `poll` with a fresh budget.
#[inline]
pub(crate) fn with_budget<R>(poll: impl FnOnce() -> R) -> R {
    struct Restore(Option<u8>);
    impl Drop for Restore {
        fn drop(&mut self) {
            REMAINING.set(self.0);
        }
    }
    let _restore = Restore(REMAINING.replace(Some(BUDGET)));
    poll()
}

/// Rule 2.
pub(crate) fn poll_proceed(cx: &mut Context<'_>) -> Poll<()> {
    match REMAINING.get() {
        Some(0) => {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
        _ => Poll::Ready(()),
    }
}

/// Rule 3.
pub(crate) fn made_progress() {
    if let Some(units) = REMAINING.get() {
        REMAINING.set(Some(units.saturating_sub(1)));
    }
}

/// Whether the budget of the poll in progress is spent (for tests).
#[cfg(test)]
pub(crate) fn is_exhausted() -> bool {
    REMAINING.get() == Some(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_gets_budget_units_then_must_yield() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(poll_proceed(&mut cx).is_ready(), "unlimited outside a poll");
        with_budget(|| {
            for _ in 0..BUDGET {
                assert!(poll_proceed(&mut cx).is_ready());
                made_progress();
            }
            assert!(is_exhausted());
            assert!(poll_proceed(&mut cx).is_pending());
        });
        assert!(poll_proceed(&mut cx).is_ready(), "restored after the poll");
    }
}
