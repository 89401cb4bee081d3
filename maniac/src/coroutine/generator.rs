//! Generators: corosensei coroutines on our stacks, and which one this thread is running.
//!
//! A [`Generator`] is a coroutine plus a boxed [`Header`] that its body, the resume wrapper and
//! the thread-local `CURRENT` all reach:
//! - `yielder`: written by the body when it starts; how code running on the generator suspends it.
//! - `kind`: a worker generator runs the worker loop; a task generator runs one task's polls.
//! - `detached` (worker generators): set by the Switch operation, never cleared. From then on
//!   the generator belongs to the task whose poll it was in the middle of, and the worker-loop
//!   frames under that poll must return as soon as the poll does.
//! - `saved`: the thread's poll state (current task, no-preempt depth) while the generator is
//!   suspended (see below).
//!
//! ## The resume wrapper
//! [`Generator::resume`] points `CURRENT` at the header and swaps the thread's poll state with
//! `saved` for the time the generator runs, and swaps both back when it suspends or returns, even
//! by a panic. So a poll that is suspended half-way keeps its task as "current" and its no-preempt
//! depth when it is resumed, and the code that resumed it sees its own.
//!
//! ## Suspending
//! Only code running on a generator suspends it, always through its yielder, to whoever resumed
//! it: the Switch operation ([`switch_current`]) with [`Suspend::Switched`], `sync_await` with
//! [`Suspend::Waiting`], a task generator's poll loop with [`Suspend::PollDone`].

use std::cell::Cell;
use std::ptr;
use std::task::Waker;

use corosensei::{Coroutine, CoroutineResult, Yielder};

use super::stack::Stack;
use crate::runtime::context::{self, PollState, TaskRef};

/// What a generator is resumed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// The first resume.
    Start,
    /// Continue where it suspended (a switched or waiting poll; the next poll of a task
    /// generator).
    Continue,
    /// A task generator is no longer needed: return, so that its stack can be reused.
    Exit,
}

/// Why a generator suspended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suspend {
    /// The Switch operation: suspended in the middle of a task's poll, to be resumed on this
    /// thread only.
    Switched,
    /// `sync_await` is waiting for its future; resumed when the task is woken.
    Waiting,
    /// A task generator finished one poll.
    PollDone,
}

/// Why a generator's body returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// A worker generator's loop saw shutdown.
    Stopped,
    /// A detached worker generator finished the poll it was switched in.
    Detached,
    /// A task generator was told to exit.
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Worker,
    Task,
}

/// The part of a generator that code running on it reaches through `CURRENT` (or, for the
/// worker loop, directly: its body is given the header).
#[derive(Debug)]
pub(crate) struct Header {
    kind: Kind,
    yielder: Cell<*const Yielder<Resume, Suspend>>,
    detached: Cell<bool>,
    saved: Cell<PollState>,
    /// Task generators: the waker of the poll in progress (for `sync_await`).
    waker: Cell<*const Waker>,
    /// How many times the Switch operation suspended this generator (for `sync_await`).
    switches: Cell<u64>,
    /// Whether a poll suspended on this generator can be resumed later: only on a multi-thread
    /// runtime, whose workers never leave their thread (a current-thread runtime's `block_on`
    /// may next be called from another thread).
    thread_bound_ok: bool,
    /// The usable stack and its guard page, for the overflow handler (and, later, the
    /// preemption handler's safe-point check).
    stack: (usize, usize),
    guard: (usize, usize),
}

thread_local! {
    /// The header of the generator this thread is running, or null on the thread's own stack.
    /// Const-initialised and without a destructor: readable from a signal handler.
    static CURRENT: Cell<*const Header> = const { Cell::new(ptr::null()) };
}

/// A coroutine on one of our stacks, with its header.
pub(crate) struct Generator {
    // Declared (so dropped) before the header its body points to.
    coroutine: Coroutine<Resume, Suspend, Exit, Stack>,
    header: Box<Header>,
}

// SAFETY: a generator is moved to another thread only while it is suspended at a clean poll
// boundary (a task generator between polls: its stack holds only the poll loop's frame, which
// keeps nothing thread-bound; see the `coroutine` module doc), or before it started. Generators
// suspended anywhere else (switched, waiting) stay with their worker: the scheduler routes their
// tasks to that worker's pinned queue, which no other thread pops.
unsafe impl Send for Generator {}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("kind", &self.header.kind)
            .field("detached", &self.header.detached.get())
            .finish_non_exhaustive()
    }
}

impl Generator {
    /// A generator that runs `body` on `stack` when first resumed (with [`Resume::Start`]); the
    /// body is given the generator's header.
    pub(crate) fn new(
        kind: Kind,
        stack: Stack,
        thread_bound_ok: bool,
        body: impl FnOnce(&Header) -> Exit + 'static,
    ) -> Generator {
        let header = Box::new(Header {
            kind,
            yielder: Cell::new(ptr::null()),
            detached: Cell::new(false),
            saved: Cell::new(PollState::default()),
            waker: Cell::new(ptr::null()),
            switches: Cell::new(0),
            thread_bound_ok,
            stack: stack.usable(),
            guard: stack.guard(),
        });
        let header_ptr: *const Header = &*header;
        let coroutine =
            Coroutine::with_stack(stack, move |yielder: &Yielder<Resume, Suspend>, first| {
                debug_assert_eq!(first, Resume::Start);
                // SAFETY: the header is boxed (its address is stable) and owned by the `Generator`
                // together with this coroutine, which is dropped first.
                let header = unsafe { &*header_ptr };
                header.yielder.set(yielder);
                body(header)
            });
        Generator { coroutine, header }
    }

    /// Runs the generator until it suspends or returns (module doc: "the resume wrapper").
    /// Never inlined: corosensei's switch is inlined into it, and the preemption denylist
    /// (`preempt::safepoint`, rule 3) recognises that code by this function's symbol.
    #[inline(never)]
    pub(crate) fn resume(&mut self, input: Resume) -> CoroutineResult<Suspend, Exit> {
        struct Restore<'a> {
            header: &'a Header,
            outer: *const Header,
            outer_state: PollState,
        }
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                CURRENT.set(self.outer);
                self.header
                    .saved
                    .set(context::replace_poll_state(self.outer_state));
            }
        }
        let header: &Header = &self.header;
        let outer = CURRENT.replace(header);
        let outer_state = context::replace_poll_state(header.saved.take());
        let _restore = Restore {
            header,
            outer,
            outer_state,
        };
        self.coroutine.resume(input)
    }

    /// The task whose poll this generator was suspended in (a switched worker generator's).
    pub(crate) fn suspended_task(&self) -> Option<TaskRef> {
        self.header.saved.get().task()
    }

    /// The stack of a generator that has returned (or never started), for reuse.
    pub(crate) fn into_stack(self) -> Stack {
        debug_assert!(self.coroutine.done() || !self.coroutine.started());
        let Generator { coroutine, header } = self;
        let stack = coroutine.into_stack();
        drop(header);
        stack
    }

    /// Gives up on a generator suspended in the middle of a poll: nothing on its stack is
    /// unwound or dropped (unwinding from an arbitrary instruction is unsupported), and, because
    /// code elsewhere may still point into objects pinned on that stack (a waiter list of a
    /// lock, say), the stack is never unmapped or reused either: it is leaked, on purpose.
    pub(crate) fn abandon(self) {
        std::mem::forget(self);
    }
}

/// Why the Switch operation refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SwitchError {
    /// Not inside a task's poll.
    NotInTask,
    /// The poll does not run on a generator (a current-thread runtime runs polls on the thread's
    /// own stack).
    NotOnGenerator,
    /// A current-thread runtime: its tasks may not be suspended mid-poll, because its next
    /// `block_on` may run on another thread.
    CurrentThreadRuntime,
}

impl std::fmt::Display for SwitchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SwitchError::NotInTask => "not inside a task's poll",
            SwitchError::NotOnGenerator => "the poll does not run on a generator",
            SwitchError::CurrentThreadRuntime => {
                "a current-thread runtime cannot suspend a task in the middle of a poll"
            }
        })
    }
}

impl std::error::Error for SwitchError {}

fn current() -> Option<&'static Header> {
    // SAFETY: `CURRENT` is non-null only between `resume`'s set and restore, while the
    // generator, and so its boxed header, is alive and running on this thread.
    unsafe { CURRENT.get().as_ref() }
}

/// The Switch operation: suspends the generator this thread runs, in the middle of the task poll
/// it is in, and gives it to that task. The caller (a worker loop, or the task's own poll on a
/// task generator) decides where the suspended poll waits; it is resumed on this thread only,
/// and this function then returns.
pub(crate) fn switch_current() -> Result<(), SwitchError> {
    if context::current_task().is_none() {
        return Err(SwitchError::NotInTask);
    }
    let header = current().ok_or(SwitchError::NotOnGenerator)?;
    if !header.thread_bound_ok {
        return Err(SwitchError::CurrentThreadRuntime);
    }
    if header.kind == Kind::Worker {
        header.detached.set(true);
    }
    header.switches.set(header.switches.get() + 1);
    suspend(header, Suspend::Switched);
    Ok(())
}

/// Whether this thread runs a task generator whose poll may wait (multi-thread runtime).
pub(crate) fn can_wait_on_own_stack() -> bool {
    context::current_task().is_some()
        && current().is_some_and(|header| header.kind == Kind::Task && header.thread_bound_ok)
}

/// For `sync_await`: suspends the task generator this thread runs until the task is woken.
/// Returns `false`, without suspending, if [`can_wait_on_own_stack`] does not hold.
pub(crate) fn wait_on_own_stack() -> bool {
    if !can_wait_on_own_stack() {
        return false;
    }
    let header = current().expect("checked above");
    suspend(header, Suspend::Waiting);
    true
}

/// For a task generator's poll: the waker the poll in progress was given, which `sync_await`
/// polls its future with. It must stay valid until the poll ends (`own_stack` rule 2).
pub(crate) fn set_current_waker(waker: &Waker) {
    if let Some(header) = current() {
        header.waker.set(waker);
    }
}

/// How many times the generator this thread runs has been switched out so far (0 off one).
pub(crate) fn switches() -> u64 {
    current().map_or(0, |header| header.switches.get())
}

/// The waker of the poll in progress on this thread's task generator.
pub(crate) fn current_waker() -> Option<&'static Waker> {
    let header = current()?;
    // SAFETY: set by the poll in progress, from the waker its owner keeps unchanged until that
    // poll ends (`own_stack` rule 2); the caller runs inside that poll.
    unsafe { header.waker.get().as_ref() }
}

/// For a task generator's poll loop: the current poll is done.
pub(crate) fn poll_done() -> Resume {
    let header = current().expect("maniac: poll loop running off its generator");
    suspend(header, Suspend::PollDone)
}

/// Never inlined, for the reason given at [`Generator::resume`].
#[inline(never)]
fn suspend(header: &Header, why: Suspend) -> Resume {
    let yielder = header.yielder.get();
    debug_assert!(!yielder.is_null());
    // SAFETY: the yielder was set by the body when the generator started and lives on the
    // generator's own stack, which is the stack we are running on now.
    unsafe { (*yielder).suspend(why) }
}

impl Header {
    /// Whether a task took this worker generator over (module doc: `detached`).
    pub(crate) fn is_detached(&self) -> bool {
        self.detached.get()
    }
}

/// Which kind of generator this thread runs, and whether it is detached.
pub(crate) fn current_kind() -> Option<(Kind, bool)> {
    current().map(|header| (header.kind, header.detached.get()))
}

/// The usable stack (lowest address first) of the generator this thread runs, if a poll on it
/// may be switched out (a multi-thread worker's or task's generator). Async-signal-safe (one
/// const thread-local read).
pub(crate) fn current_switchable_stack() -> Option<(usize, usize)> {
    current()
        .filter(|header| header.thread_bound_ok)
        .map(|header| header.stack)
}

/// If `address` lies in the guard page of the generator this thread runs, that generator's
/// usable stack size. Async-signal-safe (one const thread-local read).
pub(crate) fn guard_page_hit(address: usize) -> Option<usize> {
    let header = current()?;
    let (start, end) = header.guard;
    (start..end)
        .contains(&address)
        .then(|| header.stack.1 - header.stack.0)
}
