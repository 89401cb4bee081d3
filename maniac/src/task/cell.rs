//! The task cell: what maniac keeps in async-task's allocation beside the future, and the wrapper
//! future that runs there.
//!
//! async-task owns the allocation, its reference count, the waker and the hand-over of the output
//! to the join handle (its `state.rs` documents that protocol). On top of it every task carries:
//! - a [`TaskMeta`] in async-task's header. It lives exactly as long as the allocation, so the
//!   wrapper, the join handle, an abort handle and the schedule function may all reach it for as
//!   long as they hold a reference to the task;
//! - a [`TaskFuture`] around the user's future, which
//!   1. checks [`ABORT_REQUESTED`] before every poll, and when it is set drops the user's future
//!      and completes with `JoinError::Cancelled`: abort takes effect at a poll boundary, never
//!      inside one (a poll suspended half-way is first finished);
//!   2. catches a panic of the user's future, in poll or in drop, and completes with
//!      `JoinError::Panic`: a panic never unwinds into a worker;
//!   3. drops the user's future the moment it completes, not when the join handle goes;
//!   4. when it is itself dropped (completed or cancelled), sets [`FINISHED`] and takes the task
//!      out of its runtime's registry of live tasks;
//!   5. in Poll mode (`coroutine` module doc) runs each poll on the task's own generator; while
//!      such a poll is suspended half-way it records its worker in `affinity`, which sends every
//!      wake-up of the task to that worker's pinned queue.
//!
//! Dropping the future before deregistering matters at shutdown: a future's destructor may wake
//! other tasks, and shutdown keeps draining until the registry is empty (`scheduler` module doc).
//!
//! ## State bits of `TaskMeta::state`
//! - [`ABORT_REQUESTED`]: set by `abort()`; never cleared. Read at the start of every poll.
//! - [`FINISHED`]: set when the user's future has been dropped; never cleared.
//! - [`WANTS_OWN_STACK`]: set by `pin_stack()` / `spawn_pinned`; never cleared. Read at poll
//!   boundaries.
//! - [`ABANDONED`]: set when shutdown gave up on a switched poll of this task (`coroutine` module
//!   doc); never cleared. The join handle then reports cancellation. async-task itself will never
//!   complete such a task, so a waiting join handle also leaves its waker in the task's registry
//!   entry, which abandonment wakes (`registry` module doc).
//!
//! ## Size
//! The task's allocation (async-task's header, this metadata, the union of the wrapper and the
//! output) is kept small on purpose: with glibc's allocator, a task freed on another thread than
//! the one that allocated it is markedly cheaper in the smallest size classes (a 40-byte larger
//! cell made `spawn_many_local` 75% slower). Hence two-word `JoinError`s, a 32-byte `TaskMeta`,
//! a 32-bit registry slot, and the join waker kept out of the cell (a
//! `spawn_many_local` task then takes glibc's 128-byte chunks, as before Poll mode added 8
//! bytes to the wrapper).

use std::future::Future;
use std::marker::PhantomPinned;
use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32};
use std::task::{Context, Poll};

use super::{Id, JoinError, JoinHandle, coop};
use crate::coroutine::own_stack::{OwnStack, Polled};
use crate::runtime::context;
use crate::scheduler::{self, Flavor, Shared};

/// The task handle the scheduler queues and runs.
pub(crate) type Runnable = async_task::Runnable<TaskMeta>;

/// What a task's output looks like inside the cell.
pub(crate) type Output<T> = Result<T, JoinError>;

/// Set by `abort()`; never cleared. The wrapper reads it at the start of every poll.
const ABORT_REQUESTED: u8 = 1 << 0;
/// Set when the user's future has been dropped (the task completed or was cancelled); never
/// cleared.
const FINISHED: u8 = 1 << 1;
/// Set by `pin_stack()` or `spawn_pinned`: poll on a generator of the task's own from the next
/// poll boundary on. Never cleared.
const WANTS_OWN_STACK: u8 = 1 << 2;
/// Set when shutdown abandoned a switched poll of this task; never cleared.
const ABANDONED: u8 = 1 << 3;

/// `TaskMeta::registry_slot` of a task not (yet) in the registry.
pub(crate) const NO_SLOT: u32 = u32::MAX;
/// `TaskMeta::affinity` of a task that may run anywhere.
const NO_AFFINITY: u16 = 0;

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
    /// The scheduler the task belongs to. This is the task's one strong reference to it: the
    /// schedule function reaches the scheduler through here.
    pub(crate) scheduler: Arc<Shared>,
    /// Where the task sits in `scheduler.tasks`; written once by `spawn` before the task is first
    /// scheduled, so every later reader is ordered after the write by that scheduling.
    registry_slot: AtomicU32,
    state: AtomicU8,
    pub(crate) kind: TaskKind,
    /// 0, or 1 + the index of the worker whose pinned queue the task must go to: set while a
    /// poll on the task's own generator is suspended half-way (rule 5). Written by that worker
    /// before the poll returns `Pending`, so every wake-up that follows sees it.
    affinity: AtomicU16,
}

impl TaskMeta {
    pub(crate) fn registry_slot(&self) -> u32 {
        self.registry_slot.load(Relaxed)
    }

    pub(crate) fn set_registry_slot(&self, slot: u32) {
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
        self.state.load(Acquire) & (FINISHED | ABANDONED) != 0
    }

    /// Sets [`WANTS_OWN_STACK`].
    pub(crate) fn request_own_stack(&self) {
        self.state.fetch_or(WANTS_OWN_STACK, Relaxed);
    }

    fn wants_own_stack(&self) -> bool {
        self.state.load(Relaxed) & WANTS_OWN_STACK != 0
    }

    /// Whether the next poll is a plain one: no abort to honour and no own stack to enter (one
    /// load for the hot path).
    fn is_plain_poll(&self) -> bool {
        self.state.load(Acquire) & (ABORT_REQUESTED | WANTS_OWN_STACK) == 0
    }

    /// The worker this task must be scheduled on, if any (rule 5).
    pub(crate) fn affinity(&self) -> Option<usize> {
        match self.affinity.load(Acquire) {
            NO_AFFINITY => None,
            worker => Some(worker as usize - 1),
        }
    }

    fn set_affinity(&self, worker: Option<usize>) {
        // `MAX_WORKERS` fits in 16 bits, so `index + 1` does too.
        let value = worker.map_or(NO_AFFINITY, |index| index as u16 + 1);
        self.affinity.store(value, Release);
    }

    /// Marks the task [`ABANDONED`]; the caller then wakes its join handle.
    pub(crate) fn mark_abandoned(&self) {
        self.state.fetch_or(ABANDONED, AcqRel);
    }

    pub(crate) fn is_abandoned(&self) -> bool {
        self.state.load(Acquire) & ABANDONED != 0
    }
}

/// Allocates a task for `future`, owned by `scheduler`. The caller registers and schedules the
/// returned runnable (see `Shared::spawn`).
pub(crate) fn new_task<F>(
    future: F,
    scheduler: Arc<Shared>,
    kind: TaskKind,
    own_stack: bool,
) -> (Runnable, JoinHandle<F::Output>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let meta = TaskMeta {
        id: Id::next(),
        scheduler,
        registry_slot: AtomicU32::new(NO_SLOT),
        state: AtomicU8::new(if own_stack { WANTS_OWN_STACK } else { 0 }),
        kind,
        affinity: AtomicU16::new(NO_AFFINITY),
    };
    // `spawn_unchecked` lifts the `'static` bound on the future so that the wrapper can borrow
    // the task's own metadata. Everything else `spawn` would check holds: the user's future and
    // output are `Send + 'static`, `TaskMeta` is `Send + Sync`, the schedule function a plain `fn`.
    // SAFETY: the borrow is sound: async-task drops the future (in place, inside the allocation)
    // before the header holding the metadata, and moves neither.
    let (runnable, task) = unsafe {
        async_task::Builder::new().metadata(meta).spawn_unchecked(
            |meta: &'static TaskMeta| TaskFuture::new(meta, future),
            async_task::WithInfo(scheduler::schedule_task),
        )
    };
    (runnable, JoinHandle::new(task))
}

/// The future async-task runs: the user's future plus rules 1–5 of the module doc.
struct TaskFuture<F: Future> {
    meta: &'static TaskMeta,
    /// `None` once dropped. Pinned: only ever dropped in place, never moved out. Manually
    /// dropped, because a poll suspended on an abandoned generator must never see it dropped.
    future: ManuallyDrop<Option<F>>,
    /// Poll mode: the task's own generator.
    own_stack: Option<Box<OwnStack<Output<F::Output>>>>,
    /// `!Unpin`: a suspended poll on the task's own generator keeps pointing into this value
    /// while the next `poll` holds `&mut` to it (`own_stack` rule 3).
    _pinned: PhantomPinned,
}

impl<F: Future> TaskFuture<F> {
    fn new(meta: &'static TaskMeta, future: F) -> TaskFuture<F> {
        TaskFuture {
            meta,
            future: ManuallyDrop::new(Some(future)),
            own_stack: None,
            _pinned: PhantomPinned,
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

/// One poll of the user's future, wherever it runs (rules 2 and 3).
#[inline]
fn poll_user<F: Future>(
    meta: &TaskMeta,
    mut future: Pin<&mut Option<F>>,
    cx: &mut Context<'_>,
) -> Poll<Output<F::Output>> {
    let id = meta.id;
    let _current = context::enter_task(meta);
    // Rule 2: catch the panic here so that it never unwinds through async-task or a worker.
    let polled = panic::catch_unwind(AssertUnwindSafe(|| {
        let running = future
            .as_mut()
            .as_pin_mut()
            .expect("maniac: a task was polled after it completed");
        coop::with_budget(|| running.poll(cx))
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

/// [`poll_user`] as the task's own generator calls it (`own_stack::PollFn`).
///
/// # Safety
/// `target` is a `TaskFuture<F>` that does not touch its `future` field meanwhile.
unsafe fn poll_on_own_stack<F: Future>(
    target: *mut (),
    cx: &mut Context<'_>,
) -> Poll<Output<F::Output>> {
    let this = target.cast::<TaskFuture<F>>();
    // SAFETY: per the contract, `this` is live and only its `future` field is reached here; the
    // field is structurally pinned (the wrapper is pinned and never moves it).
    unsafe {
        let meta = (*this).meta;
        let future: &mut Option<F> = &mut *ptr::addr_of_mut!((*this).future).cast::<Option<F>>();
        poll_user(meta, Pin::new_unchecked(future), cx)
    }
}

impl<F: Future> TaskFuture<F>
where
    F::Output: 'static,
{
    fn future(&mut self) -> Pin<&mut Option<F>> {
        // SAFETY: `future` is structurally pinned: reached only through `Pin`, dropped in place
        // (`Pin::set`), never moved.
        unsafe { Pin::new_unchecked(&mut *self.future) }
    }

    /// Rule 5: one poll (or the rest of the one in progress) on the task's own generator.
    fn poll_own_stack(&mut self, cx: &mut Context<'_>) -> Poll<Output<F::Output>> {
        let target = ptr::from_mut(self).cast::<()>();
        let own = self.own_stack.as_mut().expect("called in Poll mode");
        match own.poll(target, cx) {
            Polled::Done {
                output,
                after_suspension,
            } => {
                self.meta.set_affinity(None);
                if output.is_ready() {
                    self.own_stack = None; // the generator goes back to the pool
                } else if after_suspension {
                    cx.waker().wake_by_ref(); // `own_stack` rule 6
                }
                output
            }
            Polled::Switched => {
                self.meta.set_affinity(Some(self.current_worker()));
                scheduler::poll_switched_out(&self.meta.scheduler);
                // Runnable at once, on this worker only.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Polled::Waiting => {
                self.meta.set_affinity(Some(self.current_worker()));
                Poll::Pending
            }
        }
    }

    fn current_worker(&self) -> usize {
        scheduler::current_worker_index(&self.meta.scheduler)
            .expect("maniac: a poll was suspended half-way off its runtime's workers")
    }

    /// Enters Poll mode if asked to, at this poll boundary.
    fn enter_own_stack_if_wanted(&mut self) {
        if self.own_stack.is_some() || !self.meta.wants_own_stack() {
            return;
        }
        let thread_bound_ok = self.meta.scheduler.flavor() == Flavor::MultiThread;
        match OwnStack::new(thread_bound_ok, poll_on_own_stack::<F>) {
            Ok(own) => self.own_stack = Some(Box::new(own)),
            // Without a stack the task still runs, in None mode; `sync_await` will then refuse.
            Err(error) => eprintln!(
                "maniac: task {} asked for its own stack but none could be mapped ({error}); it \
                 runs on the worker's stack",
                self.meta.id
            ),
        }
    }
}

impl<F: Future> Future for TaskFuture<F>
where
    F::Output: 'static,
{
    type Output = Output<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: only `future` is structurally pinned, and `Self::future` keeps it so.
        let this = unsafe { self.get_unchecked_mut() };
        // The hot path: None mode, no abort.
        if this.own_stack.is_none() && this.meta.is_plain_poll() {
            let meta = this.meta;
            return poll_user(meta, this.future(), cx);
        }
        this.poll_slow(cx)
    }
}

impl<F: Future> TaskFuture<F>
where
    F::Output: 'static,
{
    /// Every poll but the hot path: an abort, an own stack to enter or to run on.
    #[inline(never)]
    fn poll_slow(&mut self, cx: &mut Context<'_>) -> Poll<Output<F::Output>> {
        let this = self;
        // A poll suspended half-way is finished before anything else (rule 1).
        if this
            .own_stack
            .as_ref()
            .is_some_and(|own| own.poll_in_progress())
        {
            return this.poll_own_stack(cx);
        }
        // Rule 1: an abort takes effect here, at a poll boundary.
        if this.meta.is_abort_requested() {
            this.own_stack = None;
            let id = this.meta.id;
            return Poll::Ready(drop_future(this.future(), id).and(Err(JoinError::cancelled(id))));
        }
        this.enter_own_stack_if_wanted();
        if this.own_stack.is_some() {
            this.poll_own_stack(cx)
        } else {
            let meta = this.meta;
            poll_user(meta, this.future(), cx)
        }
    }
}

impl<F: Future> Drop for TaskFuture<F> {
    fn drop(&mut self) {
        let abandoned = self
            .own_stack
            .as_ref()
            .is_some_and(|own| own.poll_in_progress());
        // Releases the generator, or leaks it if a poll is suspended on it (`own_stack` rule 5).
        // A leaked generator keeps the task's waker, and with it the task's allocation, where
        // the suspended poll's future lives.
        drop(self.own_stack.take());
        if abandoned {
            // The suspended poll still borrows the future: it is never dropped (module doc of
            // `coroutine`, "Abort and shutdown").
            self.meta.scheduler.count_abandoned();
        } else {
            // SAFETY: `drop` runs on the pinned value in place; dropping the field in place
            // keeps the pinning promise, and it is not used afterwards.
            let future = unsafe { Pin::new_unchecked(&mut *self.future) };
            // A cancelled task's future is dropped here (shutdown, or a runtime that could not
            // run it): a panic from its destructor has nobody to report to, and must not unwind
            // into the worker or async-task.
            let _ = drop_future(future, self.meta.id);
            // SAFETY: the option is `None` now; dropping it runs no user code.
            unsafe { ManuallyDrop::drop(&mut self.future) };
        }
        // Rule 4.
        self.meta.state.fetch_or(FINISHED, AcqRel);
        self.meta
            .scheduler
            .tasks
            .remove(self.meta.registry_slot(), self.meta.id);
    }
}

#[cfg(test)]
mod tests {
    /// The sizes the module doc's "Size" section promises.
    #[test]
    fn the_cell_stays_small() {
        assert_eq!(std::mem::size_of::<super::TaskMeta>(), 24);
        assert_eq!(std::mem::size_of::<super::JoinError>(), 16);
    }
}
