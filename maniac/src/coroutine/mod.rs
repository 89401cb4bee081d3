//! Stackful coroutines ("generators") under the scheduler: the machinery preemption stands on.
//!
//! ## Run modes
//! Every task is polled in one of three modes:
//! - **None**: on the worker generator's stack, the stack the worker loop itself runs on. The
//!   common case: a poll is a plain function call, with no switch at all.
//! - **Switch**: the task's poll was interrupted half-way by the Switch operation
//!   ([`switch_now`] here; the preemption handler later). The worker generator, with the poll
//!   still on it, now belongs to the task; the worker went on with a fresh generator from the
//!   pool. Resuming the task finishes the interrupted poll once. Then the generator's stack goes
//!   back to the pool, and the task's next poll runs in None mode, or in Poll mode if it asked.
//! - **Poll**: the task owns a generator whose body polls it once per resume (`own_stack`
//!   module). Entered at a poll boundary after [`pin_stack`], or from the start with
//!   [`spawn_pinned`]. Only here may synchronous code wait for a future: [`sync_await`] suspends
//!   the task's generator, and the worker runs other tasks meanwhile.
//!
//! Transitions: None → Switch (switched), Switch → None or Poll (interrupted poll finished),
//! None → Poll (`pin_stack`, at the next poll boundary), Poll → Switch (switched inside its own
//! generator: its poll is then resumed in its own generator, which it keeps).
//!
//! ## Thread affinity
//! A generator suspended anywhere but at a clean poll boundary (a switched poll; a `sync_await`
//! in progress) is resumed only on the OS thread that suspended it. Compiled code may keep the
//! address of a thread-local in a register across any point of a function, so a half-run function
//! moved to another thread would use the first thread's thread-locals. Such a task is therefore
//! queued on its worker's *pinned* queue, which no other worker steals from:
//! - a switched None-mode poll is the worker generator itself, which the worker puts there;
//! - a task whose own generator is suspended mid-poll records its worker in its metadata, and
//!   the scheduler sends every wake-up of it to that worker's pinned queue.
//!
//! Tasks between polls, in None or Poll mode, stay stealable, and that is sound: a None-mode task
//! has no frames of its own between polls; a Poll-mode task's generator then holds only the frame
//! of its poll loop, which keeps nothing thread-bound (each poll runs in a separate, non-inlined
//! function, so addresses it computed from thread-locals die with that call), and its future is
//! `Send`.
//!
//! A current-thread runtime runs its polls on the calling thread's own stack, and its next
//! `block_on` may be on another thread: tasks there may use Poll mode, but a poll can be neither
//! switched nor suspended by `sync_await` (both say so).
//!
//! ## Abort and shutdown of a task suspended mid-poll
//! Such a poll is never unwound: unwinding from an arbitrary instruction is not supported.
//! `abort()` takes effect at the task's next poll boundary, after the interrupted poll finished.
//! Runtime shutdown resumes switched polls until they end, up to the shutdown timeout
//! (`Runtime::shutdown_timeout`; dropping the runtime waits without limit). Whatever is still
//! suspended then is *abandoned*: its destructors do not run, its join handle reports
//! cancellation, it is counted, and one line on stderr says how many there were. An abandoned
//! task's stack and memory are leaked rather than freed, on purpose: other code may still point at
//! objects pinned there (the waiter list of a lock, for instance), and freeing them would turn
//! that into a use after free.
//!
//! ## Stacks
//! Each worker keeps a bounded pool of mmap'd stacks with a guard page (`stack` module); a new
//! generator from the pool costs well under a microsecond, a freshly mapped one ~9 µs. Their size
//! is `Builder::coroutine_stack_size`, 2 MiB by default: None-mode polls run on the worker
//! generator, so it must give a poll the room a tokio worker thread's 2 MiB stack gives it, and
//! only touched pages use memory. A poll that overflows hits the guard page, and the process
//! aborts with a message that names the setting (`overflow` module).

mod generator;
mod overflow;
pub(crate) mod own_stack;
pub(crate) mod stack;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::pin;
use std::ptr;
use std::task::{Context, Poll};

pub use generator::SwitchError;
pub(crate) use generator::{
    Exit, Generator, Header, Kind, Resume, Suspend, current_switchable_stack,
};
pub(crate) use overflow::AltStack;
use stack::{Stack, StackPool};
pub use stack::{StackStats, stack_stats};

use crate::runtime::context;
use crate::task::JoinHandle;

/// How the task being polled runs (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// On the worker's own generator.
    None,
    /// In the rest of a None-mode poll that was switched out (the task holds the worker
    /// generator it was polled on).
    Switch,
    /// On the task's own generator, including the rest of a poll switched out of it (the task
    /// keeps its generator, so its mode does not change).
    Poll,
}

/// How the task being polled runs now, or `None` outside a task's poll.
pub fn run_mode() -> Option<RunMode> {
    context::current_task()?;
    Some(match generator::current_kind() {
        Some((Kind::Task, _)) => RunMode::Poll,
        Some((Kind::Worker, true)) => RunMode::Switch,
        Some((Kind::Worker, false)) | None => RunMode::None,
    })
}

/// Asks for the task being polled to run on a generator of its own (Poll mode) from its next
/// poll on, so that it may call [`sync_await`]. A no-op if it already does.
///
/// # Panics
/// Outside a task's poll.
#[track_caller]
pub fn pin_stack() {
    context::with_current_task(|task| task.request_own_stack()).expect(
        "maniac::coroutine::pin_stack() called outside a task; call it from inside a task, or \
         spawn the task with maniac::coroutine::spawn_pinned",
    );
}

/// Spawns `future` as a task that runs on a generator of its own from its first poll (Poll
/// mode), on the current runtime.
///
/// # Panics
/// Outside a runtime context, as [`crate::spawn`].
#[track_caller]
pub fn spawn_pinned<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match context::with_current(|handle| handle.shared.spawn_pinned(future)) {
        Ok(join) => join,
        Err(error) => panic!("maniac::coroutine::spawn_pinned: {error}"),
    }
}

/// Waits for `future` from synchronous code, by suspending the task's own generator until the
/// future is ready; the worker runs other tasks meanwhile.
///
/// It may be called only from a task that runs on its own generator (spawned with
/// [`spawn_pinned`], or polled after [`pin_stack`] took effect) on a multi-thread runtime. Until
/// it returns, the task stays on its current worker (module doc, "Thread affinity"), and an
/// `abort()` waits for the poll to end.
///
/// # Panics
/// Anywhere else, with a message saying where it may be called.
#[track_caller]
pub fn sync_await<F: Future>(future: F) -> F::Output {
    if !generator::can_wait_on_own_stack() {
        panic!(
            "maniac::coroutine::sync_await called outside a task that runs on its own stack: \
             call it from a task spawned with maniac::coroutine::spawn_pinned (or after \
             maniac::coroutine::pin_stack() took effect), on a multi-thread runtime"
        );
    }
    let mut future = pin!(future);
    loop {
        let waker = generator::current_waker().expect("maniac: sync_await lost its waker");
        let switches = generator::switches();
        if let Poll::Ready(output) = future.as_mut().poll(&mut Context::from_waker(waker)) {
            return output;
        }
        // Switched out (preempted) during that poll: a wake-up the future arranged before the
        // switch may have been spent on resuming it (`own_stack` rule 6). Poll again rather
        // than wait for a wake-up that may have come already.
        if generator::switches() != switches {
            continue;
        }
        let waited = generator::wait_on_own_stack();
        debug_assert!(waited);
    }
}

/// Performs the Switch operation on the poll in progress, as the preemption handler will: the
/// generator running it is suspended and handed to the task, and this returns when the task is
/// resumed (on the same thread). A test hook, until preemption calls it.
#[doc(hidden)]
pub fn switch_now() -> Result<(), SwitchError> {
    generator::switch_current()
}

thread_local! {
    /// The stack pool of the worker running on this thread, or null.
    static POOL: Cell<*const RefCell<StackPool>> = const { Cell::new(ptr::null()) };
}

/// Makes `pool` this thread's stack pool until the guard is dropped.
pub(crate) fn enter_pool(pool: &RefCell<StackPool>) -> PoolGuard {
    PoolGuard {
        previous: POOL.replace(pool),
    }
}

#[must_use = "the pool stops being current when the guard is dropped"]
pub(crate) struct PoolGuard {
    previous: *const RefCell<StackPool>,
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        POOL.set(self.previous);
    }
}

fn with_pool<R>(f: impl FnOnce(&mut StackPool) -> R) -> Option<R> {
    // Reached from polls (entering Poll mode): not preempted with the pool borrowed.
    let _hold = crate::preempt::NoPreemptGuard::new();
    // SAFETY: `POOL` is non-null only while a `PoolGuard` lives, which borrows the pool.
    let pool = unsafe { POOL.get().as_ref()? };
    // Never borrowed across a resume, so never already borrowed here.
    let mut pool = pool.try_borrow_mut().ok()?;
    Some(f(&mut pool))
}

/// A stack from this thread's pool.
pub(crate) fn take_stack() -> io::Result<Stack> {
    with_pool(StackPool::take).unwrap_or_else(|| {
        Err(io::Error::other(
            "maniac: no stack pool on this thread (a generator is needed outside a worker)",
        ))
    })
}

/// Back to this thread's pool, or unmapped if it has none (or a full one).
pub(crate) fn give_back_stack(stack: Stack) {
    let mut stack = Some(stack);
    with_pool(|pool| pool.give_back(stack.take().expect("taken once")));
    drop(stack);
}

/// What a worker thread needs before it runs generators: the overflow handler, and an alternate
/// signal stack for it (kept until the returned value is dropped).
pub(crate) fn prepare_thread() -> AltStack {
    overflow::install_handler();
    AltStack::ensure()
}

/// Measurement hooks for `maniac-bench` (not a public API).
#[doc(hidden)]
pub mod bench {
    use std::cell::RefCell;
    use std::time::{Duration, Instant};

    use super::generator::{Exit, Generator, Kind, Resume};
    use super::stack::{SharedStacks, Stack, StackPool};

    /// Time to make, run to completion and retire `count` generators of `stack_size` bytes,
    /// taking each stack from a warm pool (`pooled`) or from a fresh mmap (then unmapped).
    pub fn generator_lifecycle(count: usize, stack_size: usize, pooled: bool) -> Duration {
        let pool = RefCell::new(StackPool::new(SharedStacks::new(stack_size, 1)));
        let started = Instant::now();
        for _ in 0..count {
            let stack = if pooled {
                pool.borrow_mut().take()
            } else {
                Stack::new(stack_size)
            }
            .expect("mapping a stack");
            let mut generator = Generator::new(Kind::Task, stack, false, |_| {
                std::hint::black_box(Exit::Finished)
            });
            let _ = generator.resume(Resume::Start);
            let stack = generator.into_stack();
            if pooled {
                pool.borrow_mut().give_back(stack);
            }
        }
        started.elapsed()
    }
}
