//! The blocking pool: threads for `spawn_blocking` closures, which may block for as long as they
//! like without holding up a worker.
//!
//! ## Rules
//! 1. A scheduled closure goes to the back of `queue`. If a thread is idle and not already
//!    notified, one is notified; else, below `max_threads`, a new thread is started; else the
//!    closure waits its turn. So at most `max_threads` closures run at once.
//! 2. A thread runs queued closures until the queue is empty, then waits up to `keep_alive` for
//!    more; a thread that times out with nothing queued exits.
//! 3. `num_notified` counts notifications not yet taken by a waiting thread, so that two closures
//!    scheduled back to back do not both count on the same idle thread.
//! 4. At shutdown the closures that have not started are dropped (their join handles report
//!    cancellation), and no new ones are accepted; running closures finish (they cannot be
//!    interrupted), and shutdown waits for their threads up to its deadline.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::preempt;
use crate::runtime::context;
use crate::scheduler::Shared;
use crate::task::Runnable;

thread_local! {
    /// The pool whose thread this is, or null: a runtime dropped by one of its own blocking
    /// closures must not wait for that closure's thread.
    static CURRENT_POOL: Cell<*const BlockingPool> = const { Cell::new(std::ptr::null()) };
}

pub(crate) struct BlockingPool {
    state: Mutex<PoolState>,
    /// Idle threads wait here for work (rule 2).
    work_available: Condvar,
    /// Shutdown waits here for the threads to exit (rule 4).
    threads_exited: Condvar,
    max_threads: usize,
    keep_alive: Duration,
}

#[derive(Default)]
struct PoolState {
    queue: VecDeque<Runnable>,
    num_threads: usize,
    num_idle: usize,
    num_notified: usize,
    shutdown: bool,
}

impl BlockingPool {
    pub(crate) fn new(max_threads: usize, keep_alive: Duration) -> BlockingPool {
        BlockingPool {
            state: Mutex::new(PoolState::default()),
            work_available: Condvar::new(),
            threads_exited: Condvar::new(),
            max_threads,
            keep_alive,
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // No code that can panic runs under this lock; a poisoned lock still guards a
        // consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rule 1.
    pub(crate) fn schedule(&self, shared: &Arc<Shared>, task: Runnable) {
        // Reached from polls (`spawn_blocking`): not preempted with the pool locked.
        let _hold = preempt::NoPreemptGuard::new();
        let mut state = self.lock();
        if state.shutdown {
            drop(state);
            drop(task); // rule 4: cancelled
            return;
        }
        state.queue.push_back(task);
        if state.num_idle > state.num_notified {
            state.num_notified += 1;
            self.work_available.notify_one();
            return;
        }
        if state.num_threads == self.max_threads {
            return;
        }
        state.num_threads += 1;
        drop(state);
        let thread_shared = shared.clone();
        let spawned = shared.threads.spawn(move || {
            thread_shared.blocking.run_thread(&thread_shared);
        });
        if let Err(error) = spawned {
            let mut state = self.lock();
            state.num_threads -= 1;
            if state.num_threads == 0 {
                // Nobody will ever run the queued closures.
                let stranded = std::mem::take(&mut state.queue);
                drop(state);
                drop(stranded);
                panic!(
                    "maniac: cannot start a blocking-pool thread ({error}), and none is running \
                     to run spawn_blocking closures; raise the process's thread limit or lower \
                     Builder::max_blocking_threads"
                );
            }
        }
    }

    /// A pool thread's body (rules 2 and 4).
    fn run_thread(&self, shared: &Arc<Shared>) {
        let handle = shared.handle();
        let _current = context::set_current(&handle);
        CURRENT_POOL.set(self);
        shared.threads.on_start();
        let mut state = self.lock();
        loop {
            if let Some(task) = state.queue.pop_front() {
                drop(state);
                task.run();
                state = self.lock();
                continue;
            }
            if state.shutdown {
                break;
            }
            state.num_idle += 1;
            let (woken, wait) = self
                .work_available
                .wait_timeout(state, self.keep_alive)
                .unwrap_or_else(|e| e.into_inner());
            state = woken;
            state.num_idle -= 1;
            if state.num_notified > 0 {
                state.num_notified -= 1; // rule 3: this wake-up was ours
                continue;
            }
            if wait.timed_out() && state.queue.is_empty() && !state.shutdown {
                break;
            }
        }
        drop(state);
        shared.threads.on_stop();
        let mut state = self.lock();
        state.num_threads -= 1;
        if state.num_threads == 0 {
            self.threads_exited.notify_all();
        }
    }

    /// Rule 4. Returns whether every pool thread exited before `deadline`.
    pub(crate) fn shutdown(&self, deadline: Option<Instant>) -> bool {
        let mut state = self.lock();
        state.shutdown = true;
        let not_started = std::mem::take(&mut state.queue);
        self.work_available.notify_all();
        drop(state);
        drop(not_started);
        // A pool thread shutting its own runtime down waits for the others only.
        let own_thread = usize::from(std::ptr::eq(CURRENT_POOL.get(), self));
        let mut state = self.lock();
        while state.num_threads > own_thread {
            state = match deadline {
                None => self
                    .threads_exited
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                        return false;
                    };
                    self.threads_exited
                        .wait_timeout(state, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        true
    }
}

impl fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingPool")
            .field("max_threads", &self.max_threads)
            .field("keep_alive", &self.keep_alive)
            .finish_non_exhaustive()
    }
}

/// A blocking closure as a future that completes in its first poll (on a pool thread).
pub(crate) struct BlockingTask<F> {
    f: Option<F>,
}

impl<F> BlockingTask<F> {
    pub(crate) fn new(f: F) -> BlockingTask<F> {
        BlockingTask { f: Some(f) }
    }
}

impl<F> Unpin for BlockingTask<F> {}

impl<F: FnOnce() -> R, R> Future for BlockingTask<F> {
    type Output = R;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<R> {
        let f = self
            .f
            .take()
            .expect("maniac: a blocking task was polled after it ran");
        Poll::Ready(f())
    }
}
