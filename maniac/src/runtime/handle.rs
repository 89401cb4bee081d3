//! `Handle`: a cheap, clonable reference to a runtime.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use super::{RuntimeMetrics, context};
use crate::scheduler::{Flavor, Shared};
use crate::task::JoinHandle;

/// A reference to a runtime that can spawn tasks and enter it, like `tokio::runtime::Handle`.
#[derive(Clone)]
pub struct Handle {
    pub(crate) shared: Arc<Shared>,
}

/// Which scheduler a runtime uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuntimeFlavor {
    /// Every task runs on the thread that calls `block_on`.
    CurrentThread,
    /// Tasks run on a pool of work-stealing worker threads.
    MultiThread,
}

impl Handle {
    /// The handle of the runtime the current thread is in.
    ///
    /// # Panics
    /// Outside a runtime context (a worker, a blocking-pool thread, `block_on`, or an
    /// [`EnterGuard`]), with a message saying so; see [`Handle::try_current`].
    #[track_caller]
    pub fn current() -> Handle {
        match Handle::try_current() {
            Ok(handle) => handle,
            Err(error) => panic!("{error}"),
        }
    }

    /// The handle of the runtime the current thread is in, if any.
    pub fn try_current() -> Result<Handle, TryCurrentError> {
        context::with_current(Handle::clone)
    }

    /// Spawns `future` on this runtime; see [`crate::spawn`].
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.shared.spawn(future)
    }

    /// Runs `f` on this runtime's blocking pool; see [`crate::task::spawn_blocking`].
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.shared.spawn_blocking(f)
    }

    /// Runs `future` to completion on the current thread; see [`super::Runtime::block_on`].
    ///
    /// # Panics
    /// When the thread already drives a runtime.
    #[track_caller]
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let _driving = context::enter_runtime(self);
        crate::scheduler::block_on(&self.shared, future)
    }

    /// Makes this runtime the current one until the guard is dropped.
    pub fn enter(&self) -> EnterGuard<'_> {
        EnterGuard {
            _current: context::set_current(self),
            _handle: PhantomData,
        }
    }

    /// Which scheduler this runtime uses.
    pub fn runtime_flavor(&self) -> RuntimeFlavor {
        match self.shared.flavor() {
            Flavor::CurrentThread => RuntimeFlavor::CurrentThread,
            Flavor::MultiThread => RuntimeFlavor::MultiThread,
        }
    }

    /// Figures about the runtime.
    pub fn metrics(&self) -> RuntimeMetrics {
        self.shared.metrics()
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("flavor", &self.runtime_flavor())
            .finish_non_exhaustive()
    }
}

/// Keeps a runtime current on this thread (see [`Handle::enter`]); not `Send`, since the context
/// is the thread's.
#[must_use = "the runtime stops being current when the guard is dropped"]
pub struct EnterGuard<'a> {
    _current: context::SetCurrentGuard,
    _handle: PhantomData<(&'a Handle, *const ())>,
}

impl fmt::Debug for EnterGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnterGuard")
    }
}

/// Why [`Handle::try_current`] found no runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryCurrentError {
    /// The thread is not in a runtime context.
    NoContext,
    /// The thread is exiting and its thread-locals are gone.
    ThreadLocalDestroyed,
}

impl TryCurrentError {
    /// Whether the thread simply is not in a runtime context.
    pub fn is_missing_context(&self) -> bool {
        matches!(self, TryCurrentError::NoContext)
    }

    /// Whether the thread-local context was already destroyed (thread exit).
    pub fn is_thread_local_destroyed(&self) -> bool {
        matches!(self, TryCurrentError::ThreadLocalDestroyed)
    }
}

impl fmt::Display for TryCurrentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryCurrentError::NoContext => f.write_str(
                "there is no maniac runtime here: this must be called from the context of a \
                 maniac runtime (inside Runtime::block_on, a task, spawn_blocking, or while a \
                 Runtime::enter guard is alive)",
            ),
            TryCurrentError::ThreadLocalDestroyed => f.write_str(
                "the maniac runtime context of this thread was already destroyed (the thread is \
                 exiting)",
            ),
        }
    }
}

impl std::error::Error for TryCurrentError {}
