//! The calling thread's runtime context.
//!
//! One thread-local holds three facts about the current thread:
//! - `handle`: the runtime that `maniac::spawn`, `Handle::current` and friends use. Set on worker and
//!   blocking-pool threads for their whole life, and for the duration of `block_on` or an
//!   [`EnterGuard`](super::EnterGuard).
//! - `driving`: whether this thread is driving a runtime (a worker, or inside `block_on`). Blocking
//!   such a thread on another future would stall every task it is responsible for, so `block_on`
//!   refuses (with a panic that says what to do instead).
//! - `current_task`: the id of the task being polled, for `task::id()`.
//!
//! Every setter returns a guard that restores the previous value, so contexts nest.

use std::cell::{Cell, RefCell};

use super::{Handle, TryCurrentError};
use crate::task::Id;

struct Context {
    handle: RefCell<Option<Handle>>,
    driving: Cell<bool>,
    current_task: Cell<Option<Id>>,
}

thread_local! {
    static CONTEXT: Context = const {
        Context {
            handle: RefCell::new(None),
            driving: Cell::new(false),
            current_task: Cell::new(None),
        }
    };
}

/// Runs `f` with the current runtime's handle, without cloning it.
pub(crate) fn with_current<R>(f: impl FnOnce(&Handle) -> R) -> Result<R, TryCurrentError> {
    match CONTEXT.try_with(|cx| cx.handle.borrow().as_ref().map(f)) {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err(TryCurrentError::NoContext),
        Err(_) => Err(TryCurrentError::ThreadLocalDestroyed),
    }
}

/// Makes `handle` the current runtime until the guard is dropped.
pub(crate) fn set_current(handle: &Handle) -> SetCurrentGuard {
    let previous = CONTEXT.with(|cx| cx.handle.replace(Some(handle.clone())));
    SetCurrentGuard { previous }
}

#[must_use = "the context is restored when the guard is dropped"]
pub(crate) struct SetCurrentGuard {
    previous: Option<Handle>,
}

impl Drop for SetCurrentGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // If the thread-local is already gone (thread exit), there is nothing to restore.
        let _ = CONTEXT.try_with(|cx| cx.handle.replace(previous));
    }
}

/// Marks the thread as driving `handle`'s runtime (and makes it current).
///
/// # Panics
/// If the thread already drives a runtime.
#[track_caller]
pub(crate) fn enter_runtime(handle: &Handle) -> DrivingGuard {
    let already = CONTEXT.with(|cx| cx.driving.replace(true));
    if already {
        panic!(
            "maniac: cannot block_on here: this thread already drives a runtime (it is a worker, or \
             inside another block_on), and blocking it would stall every task it runs. `.await` \
             the future instead, or call block_on from a thread of your own or from \
             maniac::task::spawn_blocking."
        );
    }
    DrivingGuard {
        _current: set_current(handle),
    }
}

#[must_use = "the thread stops driving the runtime when the guard is dropped"]
pub(crate) struct DrivingGuard {
    _current: SetCurrentGuard,
}

impl Drop for DrivingGuard {
    fn drop(&mut self) {
        let _ = CONTEXT.try_with(|cx| cx.driving.set(false));
    }
}

/// Records that task `id` is being polled until the guard is dropped.
pub(crate) fn enter_task(id: Id) -> TaskGuard {
    let previous = CONTEXT.with(|cx| cx.current_task.replace(Some(id)));
    TaskGuard { previous }
}

#[must_use = "the task id is restored when the guard is dropped"]
pub(crate) struct TaskGuard {
    previous: Option<Id>,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        let _ = CONTEXT.try_with(|cx| cx.current_task.set(self.previous));
    }
}

pub(crate) fn current_task_id() -> Option<Id> {
    CONTEXT.try_with(|cx| cx.current_task.get()).ok().flatten()
}
