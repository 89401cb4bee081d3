//! The calling thread's runtime context.
//!
//! One thread-local holds three facts about the current thread:
//! - `handle`: the runtime that `maniac::spawn`, `Handle::current` and friends use. Set on worker and
//!   blocking-pool threads for their whole life, and for the duration of `block_on` or an
//!   [`EnterGuard`](super::EnterGuard).
//! - `driving`: whether this thread is driving a runtime (a worker, or inside `block_on`). Blocking
//!   such a thread on another future would stall every task it is responsible for, so `block_on`
//!   refuses (with a panic that says what to do instead).
//! - `current_task`: the task being polled, for `task::id()`, `coroutine::pin_stack` and the Switch
//!   operation, and the poll's no-preempt depth (`preempt::no_preempt`). A generator suspended in
//!   the middle of a poll takes both along and puts them back when resumed
//!   (`coroutine::generator`, "the resume wrapper").
//!
//! Every setter returns a guard that restores the previous value, so contexts nest.

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;

use super::{Handle, TryCurrentError};
use crate::task::{Id, TaskMeta};

/// The task being polled. Valid while its poll runs: the poll's caller holds a reference to the
/// task.
pub(crate) type TaskRef = NonNull<TaskMeta>;

struct Context {
    handle: RefCell<Option<Handle>>,
    driving: Cell<bool>,
}

thread_local! {
    static CONTEXT: Context = const {
        Context {
            handle: RefCell::new(None),
            driving: Cell::new(false),
        }
    };

    /// Apart from `CONTEXT`: it is read and written several times per poll (and by the
    /// preemption handler), and a const thread-local without a destructor is a plain load or
    /// store, with no lazy-state check.
    static CURRENT_TASK: Cell<Option<TaskRef>> = const { Cell::new(None) };

    /// The no-preempt depth of the code running on this thread (as `CURRENT_TASK`).
    static NO_PREEMPT_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f` with the current runtime's handle, without cloning it.
pub(crate) fn with_current<R>(f: impl FnOnce(&Handle) -> R) -> Result<R, TryCurrentError> {
    // Reached from polls (spawns, timers, sockets): a preemption must not leave the handle's
    // `RefCell` borrowed while other tasks run on this thread (`preempt` module doc).
    let _hold = crate::preempt::NoPreemptGuard::new();
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

/// Records that `task` is being polled until the guard is dropped.
pub(crate) fn enter_task(task: &TaskMeta) -> TaskGuard {
    let previous = replace_task(Some(NonNull::from(task)));
    TaskGuard { previous }
}

#[must_use = "the current task is restored when the guard is dropped"]
pub(crate) struct TaskGuard {
    previous: Option<TaskRef>,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        replace_task(self.previous);
    }
}

/// Sets the current task, returning the previous one.
pub(crate) fn replace_task(task: Option<TaskRef>) -> Option<TaskRef> {
    CURRENT_TASK.replace(task)
}

/// The task being polled on this thread, if any. Async-signal-safe.
pub(crate) fn current_task() -> Option<TaskRef> {
    CURRENT_TASK.get()
}

/// What a poll suspended half-way takes along (module doc).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PollState {
    task: Option<TaskRef>,
    no_preempt_depth: u32,
}

/// Sets this thread's poll state, returning the previous one.
pub(crate) fn replace_poll_state(state: PollState) -> PollState {
    PollState {
        task: CURRENT_TASK.replace(state.task),
        no_preempt_depth: NO_PREEMPT_DEPTH.replace(state.no_preempt_depth),
    }
}

impl PollState {
    /// The task this state belongs to, if any.
    pub(crate) fn task(&self) -> Option<TaskRef> {
        self.task
    }
}

/// The no-preempt depth now. Async-signal-safe.
#[inline]
pub(crate) fn no_preempt_depth() -> u32 {
    NO_PREEMPT_DEPTH.get()
}

/// Raises (`+1`) or lowers (`-1`) the no-preempt depth. `#[inline]`: every wake-up and spawn
/// holds a `NoPreemptGuard`, from other modules, which may be in other codegen units, where only
/// what says `#[inline]` is sure to be inlined (a change elsewhere in the crate once made this a
/// call, 20 instructions a poll of `yield_many`).
#[inline]
pub(crate) fn add_no_preempt_depth(delta: i32) {
    let depth = NO_PREEMPT_DEPTH.get();
    NO_PREEMPT_DEPTH.set(
        depth
            .checked_add_signed(delta)
            .expect("maniac: no-preempt depth underflow"),
    );
}

/// Runs `f` with the task being polled on this thread, if any.
pub(crate) fn with_current_task<R>(f: impl FnOnce(&TaskMeta) -> R) -> Option<R> {
    // SAFETY: `current_task` is set only while that task's poll runs on this thread (the guard
    // and the resume wrapper restore it), and the poll's caller keeps the task alive meanwhile.
    current_task().map(|task| f(unsafe { task.as_ref() }))
}

pub(crate) fn current_task_id() -> Option<Id> {
    with_current_task(|task| task.id)
}
