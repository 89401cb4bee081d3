//! Tasks: spawning, joining, aborting, with tokio's names.
//!
//! ## A task's life
//! 1. `spawn` allocates the task (an async-task cell, `cell` module doc), registers it in its
//!    runtime's registry (`registry` module doc) and schedules it (`scheduler` module doc).
//! 2. A worker polls it. `Pending` leaves it waiting for its waker; a wake schedules it again.
//! 3. It ends in one of three ways, and its future is dropped at once in each: it completes
//!    (`Ok(value)` for the join handle), it panics (`Err`, `is_panic()`; the worker carries on), or
//!    it is cancelled (`Err`, `is_cancelled()`): by `abort()`, at its next poll boundary, or by the
//!    runtime's shutdown.
//!
//! ## Synchronisation
//! maniac has no channels or locks of its own: the ones of `tokio::sync`, `async-channel` and
//! `futures::channel` do not depend on an executor, and work on maniac, wake-ups across workers and
//! from foreign threads included (the crate's `tests/sync_interop.rs` proves it).

mod cell;
pub(crate) mod coop;
mod error;
mod id;
mod join;
mod join_set;
mod registry;
mod yield_now;

use std::future::Future;

pub(crate) use cell::{Runnable, TaskKind, TaskMeta, new_task};
pub use error::JoinError;
pub use id::{Id, id, try_id};
pub use join::{AbortHandle, JoinHandle};
pub use join_set::JoinSet;
pub(crate) use registry::TaskRegistry;
pub use yield_now::yield_now;

use crate::runtime::context;

/// Spawns `future` as a new task on the current runtime, like `tokio::spawn`.
///
/// The task starts at once, whether or not the returned [`JoinHandle`] is awaited; dropping the
/// handle detaches the task.
///
/// # Panics
/// Outside a runtime context, with a message that says where it may be called (inside
/// `Runtime::block_on`, a task, a blocking closure, or under `Runtime::enter`). Use
/// [`Handle::spawn`](crate::runtime::Handle::spawn) to spawn from anywhere else.
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match context::with_current(|handle| handle.spawn(future)) {
        Ok(join) => join,
        Err(error) => panic!("maniac::spawn: {error}"),
    }
}

/// Runs the blocking closure `f` on the current runtime's blocking pool, like
/// `tokio::task::spawn_blocking`.
///
/// Aborting the handle cancels the closure only if it has not started; once running it runs to the
/// end. A runtime's shutdown waits for running closures.
///
/// # Panics
/// Outside a runtime context, as [`spawn`].
#[track_caller]
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    match context::with_current(|handle| handle.spawn_blocking(f)) {
        Ok(join) => join,
        Err(error) => panic!("maniac::task::spawn_blocking: {error}"),
    }
}
