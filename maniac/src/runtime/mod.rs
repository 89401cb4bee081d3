//! The runtime: [`Builder`], [`Runtime`], [`Handle`], with tokio's names and behaviour.
//!
//! ## Ownership
//! A `Runtime` owns its worker threads; every `Handle` (and every task) shares the scheduler's
//! state through an `Arc`. Dropping the `Runtime` shuts the runtime down; a `Handle` that outlives
//! it can still be used, but everything it spawns is cancelled at once.
//!
//! ## Shutdown (`Runtime::drop`, [`Runtime::shutdown_timeout`], [`Runtime::shutdown_background`])
//! 1. The scheduler is marked shut down and every worker is woken. From here on a spawned task is
//!    cancelled before it runs.
//! 2. Each worker finishes the poll it is in (a poll is never interrupted), drops the tasks in its
//!    own queues and exits. The runtime waits for the workers: forever on drop, up to the timeout
//!    otherwise (a worker stuck in a poll is left to finish on its own; it cleans up after itself).
//! 3. When no worker is left, every task that is still alive (waiting for a wake-up that will never
//!    come) is woken into a queue and dropped there: its future's destructor runs, and its
//!    `JoinHandle` reports a cancelled `JoinError`.
//! 4. The blocking pool drops the closures that have not started and waits for the running ones
//!    (forever on drop, for what is left of the timeout otherwise: a blocking closure cannot be
//!    interrupted).

mod builder;
pub(crate) mod context;
mod handle;

use std::fmt;
use std::future::Future;
use std::io;
use std::thread;
use std::time::{Duration, Instant};

pub(crate) use builder::ThreadConfig;
pub use builder::{Builder, WORKER_THREADS_ENV};
pub use handle::{EnterGuard, Handle, RuntimeFlavor, TryCurrentError};

use crate::scheduler::{self, Shared};
use crate::task::JoinHandle;

/// A maniac runtime: worker threads, their scheduler and a blocking pool, like
/// `tokio::runtime::Runtime`.
pub struct Runtime {
    handle: Handle,
    workers: Vec<thread::JoinHandle<()>>,
    /// Set by the first shutdown, so that `Drop` after `shutdown_timeout` does not wait again.
    shut_down: bool,
}

impl Runtime {
    /// A multi-thread runtime with every driver enabled, as `Builder::new_multi_thread()
    /// .enable_all().build()`.
    pub fn new() -> io::Result<Runtime> {
        Builder::new_multi_thread().enable_all().build()
    }

    pub(crate) fn start(config: scheduler::Config) -> io::Result<Runtime> {
        let (shared, workers) = Shared::start(config)?;
        Ok(Runtime {
            handle: Handle { shared },
            workers,
            shut_down: false,
        })
    }

    /// Runs `future` to completion on the current thread, with this runtime as its context.
    ///
    /// On a multi-thread runtime the future runs on the calling thread while the workers run the
    /// spawned tasks; on a current-thread runtime the calling thread also runs the spawned tasks,
    /// while the future waits.
    ///
    /// # Panics
    /// When called on a thread that already drives a runtime (a worker, or inside another
    /// `block_on`): `.await` the future there instead.
    #[track_caller]
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.handle.block_on(future)
    }

    /// Spawns `future` on this runtime (see [`crate::spawn`]).
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// Runs `f` on this runtime's blocking pool (see [`crate::task::spawn_blocking`]).
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.handle.spawn_blocking(f)
    }

    /// A handle to this runtime.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Makes this runtime the current one until the guard is dropped, so that `maniac::spawn`
    /// works outside `block_on`.
    pub fn enter(&self) -> EnterGuard<'_> {
        self.handle.enter()
    }

    /// Figures about the running runtime.
    pub fn metrics(&self) -> RuntimeMetrics {
        self.handle.metrics()
    }

    /// Shuts down (module doc), waiting at most `timeout` for the workers and the blocking pool.
    pub fn shutdown_timeout(mut self, timeout: Duration) {
        self.shutdown(Some(timeout));
    }

    /// Shuts down without waiting for the workers' current polls or for blocking closures.
    pub fn shutdown_background(self) {
        self.shutdown_timeout(Duration::ZERO);
    }

    fn shutdown(&mut self, timeout: Option<Duration>) {
        if std::mem::replace(&mut self.shut_down, true) {
            return;
        }
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let shared = &self.handle.shared;
        shared.begin_shutdown(deadline);
        if shared.is_worker_thread() {
            // Dropped by one of its own tasks: joining would wait for this very thread. The last
            // worker out (or the current-thread driver, as it hands the core back) does steps 3
            // and 4 without waiting.
            self.workers.clear();
            return;
        }
        if shared.wait_for_workers(deadline) {
            for worker in self.workers.drain(..) {
                // A worker's body catches task panics, so a join error would be a runtime bug.
                worker.join().expect("maniac: a worker thread panicked");
            }
        } else {
            self.workers.clear(); // detached: they finish on their own
        }
        shared.finish_shutdown(deadline);
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown(None);
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("flavor", &self.handle.runtime_flavor())
            .field("workers", &self.workers.len())
            .finish()
    }
}

/// Figures about a runtime, read when [`Runtime::metrics`] or [`Handle::metrics`] is called.
#[derive(Clone, Debug)]
pub struct RuntimeMetrics {
    pub(crate) num_workers: usize,
    pub(crate) num_alive_tasks: usize,
    pub(crate) global_queue_depth: usize,
    /// Per worker, when preemption is on.
    pub(crate) preemption: Option<Vec<crate::preempt::WorkerPreemptionStats>>,
    pub(crate) preemption_monitor_realtime: bool,
}

impl RuntimeMetrics {
    /// Number of worker threads (1 for a current-thread runtime).
    pub fn num_workers(&self) -> usize {
        self.num_workers
    }

    /// Number of async tasks spawned and not yet finished.
    pub fn num_alive_tasks(&self) -> usize {
        self.num_alive_tasks
    }

    /// Number of tasks in the global queue.
    pub fn global_queue_depth(&self) -> usize {
        self.global_queue_depth
    }

    /// Whether preemption is on for this runtime.
    pub fn preemption_enabled(&self) -> bool {
        self.preemption.is_some()
    }

    /// Whether the preemption monitor may raise itself to a real-time priority while polls
    /// overrun ([`Builder::preemption_realtime_monitor`](crate::runtime::Builder::preemption_realtime_monitor):
    /// asked for, and permitted).
    pub fn preemption_monitor_realtime(&self) -> bool {
        self.preemption_monitor_realtime
    }

    /// Preemption figures of worker `worker` (preemptions taken, deferred by reason, longest
    /// poll), or `None` if preemption is off or there is no such worker.
    pub fn worker_preemption(
        &self,
        worker: usize,
    ) -> Option<crate::preempt::WorkerPreemptionStats> {
        self.preemption.as_ref()?.get(worker).cloned()
    }

    /// Polls preempted so far, all workers together (0 when preemption is off).
    pub fn preemptions(&self) -> u64 {
        self.preemption
            .iter()
            .flatten()
            .map(crate::preempt::WorkerPreemptionStats::preemptions)
            .sum()
    }

    /// Preemption requests deferred so far (no async-safe point), all workers together.
    pub fn preemptions_deferred(&self) -> u64 {
        self.preemption
            .iter()
            .flatten()
            .map(crate::preempt::WorkerPreemptionStats::deferred_total)
            .sum()
    }
}
