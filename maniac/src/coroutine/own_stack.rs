//! Poll mode: a task that owns a generator and runs each of its polls there.
//!
//! ## Protocol
//! 1. The task's future wrapper (`task::cell::TaskFuture`) creates an [`OwnStack`] at a poll
//!    boundary, after `pin_stack()` or for `spawn_pinned`. From then on every poll of the task
//!    is one [`OwnStack::poll`]: resume the generator, whose loop polls the future once and
//!    suspends with `PollDone`.
//! 2. Everything the generator's poll uses lives in [`Slots`] on the heap, not in the caller's
//!    frame, because a poll may stop half-way (switched, or waiting in `sync_await`) and the
//!    wrapper's poll then returns `Pending`: the `Context` the future was given must stay valid
//!    until that poll really ends. So the waker is kept in `Slots` and is never replaced while a
//!    poll is in progress.
//! 3. `target` points at the wrapper, refreshed at the start of each new poll from that poll's
//!    own reference (the wrapper is `!Unpin`, so that reference does not claim exclusive
//!    access, and the suspended frame's older one stays valid).
//! 4. A poll in progress is resumed with `Continue`, never with a new poll; the wrapper routes such
//!    a task to its worker's pinned queue so that this happens on the same thread.
//! 5. When the task no longer needs the generator (its future finished, or was dropped between
//!    polls), the generator is told to `Exit` and its stack goes back to the pool. A generator in
//!    the middle of a poll cannot be finished: it is abandoned (leaked, see `Generator::abandon`).
//! 6. A poll that was suspended half-way and ends `Pending` must be followed by a wake-up of the
//!    task (by the wrapper, told so by [`Polled::Done`]'s `after_suspension`). A wake-up that
//!    came before the suspension (a task that wakes itself, as `yield_now` does, and is then
//!    preempted) was spent on scheduling the resumption, so the task would otherwise never be
//!    polled again. The extra poll this may cost is a spurious one, which every future tolerates.
//!    `sync_await` keeps the same rule inside a poll: when the generator was switched out while
//!    it polled its future, it polls the future again instead of waiting for a wake-up that
//!    may already have been spent.

use std::cell::{Cell, UnsafeCell};
use std::io;
use std::ptr::NonNull;
use std::task::{Context, Poll, Waker};

use corosensei::CoroutineResult;

use super::generator::{self, Exit, Generator, Kind, Resume, Suspend};

/// Polls the task whose wrapper is at `target` once, with `cx`.
///
/// # Safety
/// `target` must point at a live wrapper of the type this function was made for, and no other
/// reference to it may be in use meanwhile.
pub(crate) type PollFn<T> = unsafe fn(target: *mut (), cx: &mut Context<'_>) -> Poll<T>;

/// What the generator's poll reads and writes (rule 2), shared through a raw pointer.
struct Slots<T> {
    target: Cell<*mut ()>,
    /// Written only between polls (rule 2).
    waker: UnsafeCell<Option<Waker>>,
    output: Cell<Option<Poll<T>>>,
}

/// How an [`OwnStack::poll`] ended.
#[derive(Debug)]
pub(crate) enum Polled<T> {
    /// The poll finished with this result; `after_suspension`: it had been suspended half-way
    /// (rule 6).
    Done {
        output: Poll<T>,
        after_suspension: bool,
    },
    /// The poll was switched out half-way: the task must be scheduled again, on this worker.
    Switched,
    /// The poll waits in `sync_await`: the task is woken (onto this worker) by its future.
    Waiting,
}

/// A task's own generator (Poll mode).
pub(crate) struct OwnStack<T> {
    generator: Option<Generator>,
    slots: NonNull<Slots<T>>,
    /// Whether the generator has been resumed once (its body is running).
    started: bool,
    poll_in_progress: bool,
}

// SAFETY: moved between threads only between polls (rule 4 keeps a poll in progress on its
// thread); then the generator holds only its poll loop's frame (`Generator`'s Send argument) and
// the slots hold a waker (Send) and a finished output (`T: Send`).
unsafe impl<T: Send> Send for OwnStack<T> {}

impl<T> std::fmt::Debug for OwnStack<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnStack")
            .field("poll_in_progress", &self.poll_in_progress)
            .finish_non_exhaustive()
    }
}

impl<T: 'static> OwnStack<T> {
    /// A generator for one task, on a stack from this thread's pool. `thread_bound_ok`: whether
    /// a poll may be left in progress (multi-thread runtimes only).
    pub(crate) fn new(thread_bound_ok: bool, poll_fn: PollFn<T>) -> io::Result<OwnStack<T>> {
        let stack = super::take_stack()?;
        let slots = NonNull::from(Box::leak(Box::new(Slots {
            target: Cell::new(std::ptr::null_mut()),
            waker: UnsafeCell::new(None),
            output: Cell::new(None),
        })));
        let generator = Generator::new(Kind::Task, stack, thread_bound_ok, move |_| {
            poll_loop(slots, poll_fn)
        });
        Ok(OwnStack {
            generator: Some(generator),
            slots,
            started: false,
            poll_in_progress: false,
        })
    }
}

impl<T> OwnStack<T> {
    /// Whether a poll is in progress (switched or waiting): the task must resume here.
    pub(crate) fn poll_in_progress(&self) -> bool {
        self.poll_in_progress
    }

    /// Runs one poll of the task (or the rest of the one in progress) on the generator.
    pub(crate) fn poll(&mut self, target: *mut (), cx: &Context<'_>) -> Polled<T> {
        let slots_ptr = self.slots;
        // SAFETY: the slots are leaked from a box by `new` and freed only by `release`, after
        // the generator (their only other user) has returned; all their fields are cells, and
        // the waker is written only between polls.
        let slots = unsafe { slots_ptr.as_ref() };
        let after_suspension = self.poll_in_progress;
        let input = if self.poll_in_progress {
            Resume::Continue // rule 4
        } else {
            slots.target.set(target); // rule 3
            // SAFETY: no poll is in progress, so nothing borrows the waker (rule 2).
            let waker = unsafe { &mut *slots.waker.get() };
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
            if std::mem::replace(&mut self.started, true) {
                Resume::Continue
            } else {
                Resume::Start
            }
        };
        let generator = self
            .generator
            .as_mut()
            .expect("maniac: OwnStack used after release");
        match generator.resume(input) {
            CoroutineResult::Yield(Suspend::PollDone) => {
                self.poll_in_progress = false;
                let output = slots
                    .output
                    .take()
                    .expect("maniac: a generator poll ended without a result");
                Polled::Done {
                    output,
                    after_suspension,
                }
            }
            CoroutineResult::Yield(Suspend::Switched) => {
                self.poll_in_progress = true;
                Polled::Switched
            }
            CoroutineResult::Yield(Suspend::Waiting) => {
                self.poll_in_progress = true;
                Polled::Waiting
            }
            CoroutineResult::Return(exit) => {
                unreachable!("maniac: a task generator returned ({exit:?}) without being told to")
            }
        }
    }

    /// Rule 5: ends the generator and returns its stack to this thread's pool (or leaks both if
    /// a poll is in progress). Called once, when the task no longer needs it.
    pub(crate) fn release(&mut self) {
        let Some(mut generator) = self.generator.take() else {
            return;
        };
        if self.poll_in_progress {
            generator.abandon();
            return; // the slots stay too: the abandoned frames point at them
        }
        if self.started {
            match generator.resume(Resume::Exit) {
                CoroutineResult::Return(Exit::Finished) => {}
                other => unreachable!("maniac: a task generator did not exit: {other:?}"),
            }
        }
        super::give_back_stack(generator.into_stack());
        // SAFETY: the generator has returned, so nothing else refers to the slots.
        drop(unsafe { Box::from_raw(self.slots.as_ptr()) });
    }
}

impl<T> Drop for OwnStack<T> {
    fn drop(&mut self) {
        self.release();
    }
}

/// The body of a task generator: one poll per resume, until told to exit.
fn poll_loop<T>(slots: NonNull<Slots<T>>, poll_fn: PollFn<T>) -> Exit {
    loop {
        poll_once(slots, poll_fn);
        match generator::poll_done() {
            Resume::Continue => {}
            Resume::Exit => return Exit::Finished,
            Resume::Start => unreachable!("maniac: a task generator was started twice"),
        }
    }
}

/// One poll, on the generator. Not inlined, so that nothing this poll computes from
/// thread-locals (their addresses included) stays in the loop's frame across a suspension: the
/// loop may next run on another thread.
#[inline(never)]
fn poll_once<T>(slots: NonNull<Slots<T>>, poll_fn: PollFn<T>) {
    // SAFETY: the slots outlive the generator (`release`); only cells are touched.
    let slots = unsafe { slots.as_ref() };
    // SAFETY: the waker is written only between polls (rule 2), and a poll is in progress.
    let waker = unsafe { (*slots.waker.get()).as_ref() }
        .expect("maniac: a task generator polled without a waker");
    generator::set_current_waker(waker);
    let mut cx = Context::from_waker(waker);
    // SAFETY: `target` was set from the wrapper's own reference at the start of this poll
    // (rule 3), and the wrapper does not touch itself while the generator runs.
    let output = unsafe { poll_fn(slots.target.get(), &mut cx) };
    slots.output.set(Some(output));
}
