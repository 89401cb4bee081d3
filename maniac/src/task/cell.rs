//! The task cell: what maniac keeps in async-task's allocation beside the future, and the wrapper
//! future that runs there.
//!
//! async-task owns the allocation, its reference count, the waker and the hand-over of the output
//! to the join handle (its `state.rs` documents that protocol). On top of it every task carries:
//! - a [`TaskMeta`] in async-task's header. It lives exactly as long as the allocation, so the
//!   wrapper, the join handle, an abort handle and the schedule function may all reach it for as long
//!   as they hold a reference to the task;
//! - a [`TaskFuture`] around the user's future, which
//!   1. checks [`ABORT_REQUESTED`] before every poll, and when it is set drops the user's future and
//!      completes with `JoinError::Cancelled`: abort takes effect at a poll boundary, never inside one;
//!   2. catches a panic of the user's future, in poll or in drop, and completes with
//!      `JoinError::Panic`: a panic never unwinds into a worker;
//!   3. drops the user's future the moment it completes, not when the join handle goes;
//!   4. when it is itself dropped (completed or cancelled), sets [`FINISHED`] and takes the task out
//!      of its runtime's registry of live tasks.
//!
//! Dropping the future before deregistering matters at shutdown: a future's destructor may wake
//! other tasks, and shutdown keeps draining until the registry is empty (`scheduler` module doc).

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::sync::atomic::{AtomicU8, AtomicUsize};
use std::task::{Context, Poll};

use super::{Id, JoinError, JoinHandle};
use crate::runtime::context;
use crate::scheduler::{self, Shared};

/// The task handle the scheduler queues and runs.
pub(crate) type Runnable = async_task::Runnable<TaskMeta>;

/// What a task's output looks like inside the cell.
pub(crate) type Output<T> = Result<T, JoinError>;

/// Set by `abort()`; never cleared. The wrapper reads it at the start of every poll.
const ABORT_REQUESTED: u8 = 1 << 0;
/// Set when the user's future has been dropped (the task completed or was cancelled); never
/// cleared.
const FINISHED: u8 = 1 << 1;

/// `TaskMeta::registry_slot` of a task not (yet) in the registry.
pub(crate) const NO_SLOT: usize = usize::MAX;

/// Which queue a task is scheduled on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TaskKind {
    /// An async task: the workers' queues.
    Async,
    /// A `spawn_blocking` closure: the blocking pool.
    Blocking,
}

/// Maniac's part of a task's header.
#[derive(Debug)]
pub(crate) struct TaskMeta {
    pub(crate) id: Id,
    pub(crate) kind: TaskKind,
    /// The scheduler the task belongs to. This is the task's one strong reference to it: the
    /// schedule function reaches the scheduler through here.
    pub(crate) scheduler: Arc<Shared>,
    state: AtomicU8,
    /// Where the task sits in `scheduler.tasks`; written once by `spawn` before the task is first
    /// scheduled, so every later reader is ordered after the write by that scheduling.
    registry_slot: AtomicUsize,
}

impl TaskMeta {
    pub(crate) fn registry_slot(&self) -> usize {
        self.registry_slot.load(Relaxed)
    }

    pub(crate) fn set_registry_slot(&self, slot: usize) {
        self.registry_slot.store(slot, Relaxed);
    }

    /// Sets [`ABORT_REQUESTED`]; the caller must then wake the task so that it reaches a poll.
    pub(crate) fn request_abort(&self) {
        // Release: the poll that sees the bit also sees what the aborting thread did before.
        self.state.fetch_or(ABORT_REQUESTED, AcqRel);
    }

    fn is_abort_requested(&self) -> bool {
        self.state.load(Acquire) & ABORT_REQUESTED != 0
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.state.load(Acquire) & FINISHED != 0
    }
}

/// Allocates a task for `future`, owned by `scheduler`. The caller registers and schedules the
/// returned runnable (see `Shared::spawn`).
pub(crate) fn new_task<F>(
    future: F,
    scheduler: Arc<Shared>,
    kind: TaskKind,
) -> (Runnable, JoinHandle<F::Output>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let meta = TaskMeta {
        id: Id::next(),
        kind,
        scheduler,
        state: AtomicU8::new(0),
        registry_slot: AtomicUsize::new(NO_SLOT),
    };
    // SAFETY: `spawn_unchecked` lifts the `'static` bound on the future so that the wrapper can
    // borrow the task's own metadata. That borrow is sound: async-task drops the future (in place,
    // inside the allocation) before it drops the header holding the metadata, and never moves
    // either. Everything else `spawn` would check holds: the user's future and output are
    // `Send + 'static`, `TaskMeta` is `Send + Sync`, and the schedule function is a plain `fn`.
    let (runnable, task) = unsafe {
        async_task::Builder::new().metadata(meta).spawn_unchecked(
            |meta: &'static TaskMeta| TaskFuture::new(meta, future),
            async_task::WithInfo(scheduler::schedule_task),
        )
    };
    (runnable, JoinHandle::new(task))
}

/// The future async-task runs: the user's future plus rules 1–4 of the module doc.
struct TaskFuture<F> {
    meta: &'static TaskMeta,
    /// `None` once dropped. Pinned: only ever dropped in place, never moved out.
    future: Option<F>,
}

impl<F: Future> TaskFuture<F> {
    fn new(meta: &'static TaskMeta, future: F) -> TaskFuture<F> {
        TaskFuture {
            meta,
            future: Some(future),
        }
    }
}

/// Drops the user's future in place, catching a panic of its destructor as task `id`'s failure.
fn drop_future<F>(future: Pin<&mut Option<F>>, id: Id) -> Result<(), JoinError> {
    panic::catch_unwind(AssertUnwindSafe(|| {
        let mut future = future;
        future.set(None)
    }))
    .map_err(|payload| JoinError::panic(id, payload))
}

impl<F: Future> Future for TaskFuture<F> {
    type Output = Output<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `future` is structurally pinned: it is only reached through `Pin` below and is
        // dropped in place (`Pin::set`), never moved; `meta` is a plain reference.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above, `this.future` never moves while `self` is pinned.
        let mut future = unsafe { Pin::new_unchecked(&mut this.future) };
        let id = this.meta.id;

        // Rule 1: an abort takes effect here, at a poll boundary.
        if this.meta.is_abort_requested() {
            return Poll::Ready(drop_future(future, id).and(Err(JoinError::cancelled(id))));
        }

        let _current = context::enter_task(id);
        // Rule 2: catch the panic here so that it never unwinds through async-task or a worker.
        let polled = panic::catch_unwind(AssertUnwindSafe(|| {
            let running = future
                .as_mut()
                .as_pin_mut()
                .expect("maniac: a task was polled after it completed");
            running.poll(cx)
        }));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            // Rule 3: drop the future now; a panic of its destructor fails the task.
            Ok(Poll::Ready(value)) => Poll::Ready(drop_future(future, id).map(|()| value)),
            Err(payload) => {
                // The payload of the poll's panic is the one to report; a second panic from the
                // destructor is swallowed by `drop_future`.
                let _ = drop_future(future, id);
                Poll::Ready(Err(JoinError::panic(id, payload)))
            }
        }
    }
}

impl<F> Drop for TaskFuture<F> {
    fn drop(&mut self) {
        // SAFETY: `drop` runs on the pinned value in place; dropping the field in place keeps
        // the pinning promise.
        let future = unsafe { Pin::new_unchecked(&mut self.future) };
        // A cancelled task's future is dropped here (shutdown, or a runtime that could not run
        // it): a panic from its destructor has nobody to report to, and must not unwind into the
        // worker or async-task.
        let _ = drop_future(future, self.meta.id);
        // Rule 4.
        self.meta.state.fetch_or(FINISHED, AcqRel);
        self.meta
            .scheduler
            .tasks
            .remove(self.meta.registry_slot(), self.meta.id);
    }
}
