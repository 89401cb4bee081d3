//! The scheduler: where runnable tasks wait, which worker runs them next, and how workers sleep.
//!
//! ## Queues
//! Each worker owns a **LIFO slot** (one task, not stealable), a bounded FIFO **local queue**
//! (256 tasks, an `st3` queue: other workers steal half of it at a time) and a **pinned queue**
//! that nobody steals from, for polls suspended half-way that must resume on this thread
//! (`coroutine` module doc; `worker` module doc, "The pinned queue"). The runtime has one
//! unbounded global **injector** (`crossbeam-deque`).
//!
//! ## Where a scheduled task goes ([`schedule_task`])
//! 1. Woken (or spawned) on one of its own runtime's workers, by another task: into the LIFO slot.
//!    The task it displaces goes to the back of the local queue. A message passed to a task is then
//!    handled next, while it is hot in the cache.
//! 2. Woken by itself while running (`yield_now`): the worker's *deferred* list, never the LIFO
//!    slot. A yield is a lower priority than a spawn or a wake-up (as in tokio): deferred tasks go
//!    back to the local queue when the worker has nothing else to run (before it parks), and at
//!    the latest every [`DEFERRED_INTERVAL`] polls, so a yield lets every queued task run first and
//!    is never starved.
//! 3. From any other thread: the injector.
//! 4. A task whose poll is suspended half-way on its own generator (it has an *affinity*): that
//!    worker's pinned queue, or its pinned inbox from other threads (the worker is then unparked
//!    directly).
//!
//! A full local queue moves half of itself, with the new task, to the injector. Whenever a task
//! lands where other workers could take it (local queue or injector), the idle protocol's rule 1
//! runs ([`idle`] module doc): a sleeping worker is woken if nobody is searching.
//!
//! ## Which task a worker runs next ([`worker`])
//! - The LIFO slot, if it holds a task: what the last poll or the drivers just woke runs next,
//!   not a quantum later behind a preempted poll's resumption. It puts off a due turn (below)
//!   for one LIFO chain (at most [`MAX_LIFO_POLLS`] + 1 polls), not two in a row: the drivers
//!   may refill it after every preemption. (So a task they wake right after such a chain waits
//!   for the turn's task: rare, as it needs a long task in the LIFO slot when a turn is due.)
//! - Every `global_queue_interval`-th poll (default 31) the injector comes next, so that a worker
//!   busy with its own queue still takes injected tasks; every [`PINNED_INTERVAL`]-th, the pinned
//!   queue (`worker` module doc).
//! - Otherwise the LIFO slot, the local queue, the injector, then the pinned queue.
//! - The injector is always read as a batch: one task to run, and a fair share of the rest
//!   (`len / workers`, at most half the local queue) moved into the local queue, so that a worker
//!   busy with its own tasks still drains injected ones at the rate they arrive.
//! - After polling a task, the task it put in the LIFO slot runs at once, but at most
//!   [`MAX_LIFO_POLLS`] times in a row; then the slot's task goes to the back of the local queue.
//!   (tokio found that two tasks passing a message back and forth otherwise starve everyone else.)
//! - With nothing local: steal half of another worker's local queue (victims tried from a random
//!   start), then the injector, as a searcher (idle rules 2 and 3).
//! - Then the worker's own deferred (yielded) tasks.
//! - Nothing anywhere: park (idle rules 4 and 5).
//!
//! ## Drivers and maintenance
//! The runtime's timers (`time`) and I/O reactor (`io::reactor`) have no thread of their own. A
//! worker about to sleep takes the driver if nobody holds it and sleeps in it (in `epoll_wait`,
//! no longer than until the next timer); the others sleep on their condvars. A busy worker looks
//! at both drivers without waiting every [`MAINTENANCE_INTERVAL`] polls, after a preemption,
//! and when only yielded tasks are left, so timers and sockets are served even when nobody
//! sleeps.
//!
//! ## Shutdown
//! [`Shared::begin_shutdown`] sets `shutdown` (and the deadline) and unparks every worker. Each
//! worker notices it between polls, finishes the polls suspended on its pinned queue up to the
//! deadline (abandoning the rest), drops the tasks of its own queues, and exits. Once no worker
//! runs, [`Shared::finish_shutdown`] (or the last worker out, if the runtime stopped waiting)
//! repeatedly wakes every task still in the registry and drops whatever reaches the injector, until
//! the registry is empty; then it shuts the blocking pool down. A task spawned after `shutdown` is
//! cancelled before it runs.
//!
//! ## Current-thread flavour
//! The same `Core` and queues with one worker, driven by whichever thread is in `block_on`
//! (`worker::block_on_core`). Between `block_on` calls the core waits in `Shared::parked_core`.

mod block_on;
pub(crate) mod idle;
pub(crate) mod park;
mod worker;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::Waker;
use std::thread;
use std::time::Instant;

use crossbeam_deque::{Injector, Steal};
use crossbeam_utils::CachePadded;

pub(crate) use block_on::block_on;
use idle::Idle;
use park::Parker;
use worker::Core;
pub(crate) use worker::{current_worker_index, poll_switched_out, schedule_task};

use crate::blocking::BlockingPool;
use crate::coroutine::Generator;
use crate::coroutine::stack::SharedStacks;
use crate::io::reactor::{PollState, Reactor};
use crate::preempt::{Preemption, PreemptionConfig};
use crate::runtime::{Handle, RuntimeMetrics, ThreadConfig};
use crate::task::{self, JoinHandle, Runnable, TaskKind, TaskMeta, TaskRegistry};
use crate::time::TimeDriver;

/// The most workers a runtime may have.
pub(crate) const MAX_WORKERS: usize = idle::MAX_WORKERS;
/// Default of `Builder::global_queue_interval` (tokio's).
pub(crate) const DEFAULT_GLOBAL_QUEUE_INTERVAL: u32 = 31;
/// Capacity of each worker's local queue (tokio's and Go's).
const LOCAL_QUEUE_CAPACITY: usize = 256;
/// Most LIFO-slot polls in a row (tokio's cap).
const MAX_LIFO_POLLS: usize = 3;
/// Every how many polls a busy worker looks at the drivers (tokio's `event_interval`).
const MAINTENANCE_INTERVAL: u32 = 61;
/// Every how many polls the pinned queue comes before the local queue (tokio's
/// `global_queue_interval` default, the same fairness for maniac's own queue).
const PINNED_INTERVAL: u32 = 31;
/// At the latest every how many polls yielded tasks go back to the local queue (tokio's
/// `event_interval`, at which it re-schedules its deferred tasks).
const DEFERRED_INTERVAL: u32 = 61;

/// Which scheduler a runtime uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    CurrentThread,
    MultiThread,
}

/// What `Builder::build` decided.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) flavor: Flavor,
    pub(crate) workers: usize,
    pub(crate) max_blocking_threads: usize,
    pub(crate) thread_keep_alive: std::time::Duration,
    pub(crate) global_queue_interval: u32,
    pub(crate) coroutine_stack_size: usize,
    pub(crate) preemption: Option<PreemptionConfig>,
    pub(crate) threads: ThreadConfig,
}

/// What other threads may reach of one worker.
#[derive(Debug)]
struct Remote {
    stealer: st3::fifo::Stealer<Runnable>,
    /// Wake-ups, from other threads, of tasks that must resume on this worker (rule 4).
    pinned_inbox: Injector<Runnable>,
    parker: Parker,
}

impl Remote {
    /// Rule 4 from another thread: queue, then unpark this worker directly (the idle protocol
    /// cannot send a specific worker).
    fn push_pinned_inbox(&self, task: Runnable) {
        self.pinned_inbox.push(task);
        self.parker.unpark();
    }

    fn pop_pinned_inbox(&self) -> Option<Runnable> {
        loop {
            match self.pinned_inbox.steal() {
                Steal::Success(task) => return Some(task),
                Steal::Empty => return None,
                Steal::Retry => std::hint::spin_loop(),
            }
        }
    }

    fn has_pinned_inbox_work(&self) -> bool {
        !self.pinned_inbox.is_empty()
    }
}

/// The state every worker, handle and task of one runtime shares.
#[derive(Debug)]
pub(crate) struct Shared {
    flavor: Flavor,
    remotes: Box<[Remote]>,
    injector: Injector<Runnable>,
    /// Written by every search and park: on a cache line of its own.
    idle: CachePadded<Idle>,
    /// Set once by `begin_shutdown`; never cleared. Read by every worker at every turn of its
    /// loop: on a cache line of its own, so that no write to a neighbour bounces it.
    shutdown: CachePadded<AtomicBool>,
    /// Every live async task (`task::registry` module doc).
    pub(crate) tasks: TaskRegistry,
    pub(crate) blocking: BlockingPool,
    /// The timers of this runtime (`time` module doc).
    pub(crate) time: Arc<TimeDriver>,
    /// The I/O reactor of this runtime (`io::reactor` module doc).
    pub(crate) io: Arc<Reactor>,
    /// The preemption machinery, when on (`preempt` module doc).
    pub(crate) preemption: Option<Preemption>,
    global_queue_interval: u32,
    /// The runtime's free coroutine stacks, behind the workers' pools
    /// (`coroutine::stack` module doc).
    pub(crate) stacks: Arc<SharedStacks>,
    pub(crate) threads: ThreadConfig,
    /// Set by `begin_shutdown`: how long workers may go on finishing suspended polls.
    shutdown_deadline: Mutex<Option<Instant>>,
    /// Tasks abandoned by shutdown (`coroutine` module doc).
    abandoned: AtomicUsize,
    /// Current-thread flavour: the one core while no `block_on` drives it.
    parked_core: Mutex<Option<Box<Core>>>,
    /// Current-thread flavour: `block_on` calls waiting for the core to come back.
    core_waiters: Mutex<Vec<Waker>>,
    /// Worker threads that have not yet left their loop.
    running_workers: Mutex<usize>,
    workers_exited: Condvar,
}

impl Shared {
    /// Creates the scheduler and, for the multi-thread flavour, starts its workers.
    pub(crate) fn start(config: Config) -> io::Result<(Arc<Shared>, Vec<thread::JoinHandle<()>>)> {
        let cores: Vec<Box<Core>> = (0..config.workers).map(Core::new).collect();
        let io = Arc::new(Reactor::new()?);
        let time = Arc::new(TimeDriver::new({
            let io = io.clone();
            Box::new(move || io.unpark())
        }));
        let preemption = match config.preemption {
            Some(preemption) => Preemption::start(config.workers, preemption, time.ticks())?,
            None => None,
        };
        let remotes = cores
            .iter()
            .map(|core| Remote {
                stealer: core.stealer(),
                pinned_inbox: Injector::new(),
                parker: Parker::with_driver(Some({
                    let io = io.clone();
                    Box::new(move || io.unpark())
                })),
            })
            .collect();
        let shared = Arc::new(Shared {
            flavor: config.flavor,
            remotes,
            injector: Injector::new(),
            idle: CachePadded::new(Idle::new(config.workers)),
            shutdown: CachePadded::new(AtomicBool::new(false)),
            tasks: TaskRegistry::new(),
            blocking: BlockingPool::new(config.max_blocking_threads, config.thread_keep_alive),
            time,
            io,
            preemption,
            global_queue_interval: config.global_queue_interval,
            stacks: SharedStacks::new(config.coroutine_stack_size, config.workers),
            threads: config.threads,
            shutdown_deadline: Mutex::new(None),
            abandoned: AtomicUsize::new(0),
            parked_core: Mutex::new(None),
            core_waiters: Mutex::new(Vec::new()),
            running_workers: Mutex::new(0),
            workers_exited: Condvar::new(),
        });
        let mut threads = Vec::new();
        match shared.flavor {
            Flavor::CurrentThread => {
                *shared.parked_core.lock().unwrap() = cores.into_iter().next();
            }
            Flavor::MultiThread => {
                for core in cores {
                    *shared.running_workers.lock().unwrap() += 1;
                    let worker_shared = shared.clone();
                    let spawned = shared.threads.spawn(move || {
                        // Counts the worker out even if its loop panics (a runtime bug), so that
                        // shutdown does not wait for it forever.
                        struct Exited(Arc<Shared>);
                        impl Drop for Exited {
                            fn drop(&mut self) {
                                self.0.worker_exited();
                            }
                        }
                        let exited = Exited(worker_shared);
                        worker::run(exited.0.clone(), core);
                    });
                    match spawned {
                        Ok(thread) => threads.push(thread),
                        Err(error) => {
                            *shared.running_workers.lock().unwrap() -= 1;
                            shared.begin_shutdown(None);
                            shared.wait_for_workers(None);
                            shared.finish_shutdown(None);
                            return Err(error);
                        }
                    }
                }
            }
        }
        Ok((shared, threads))
    }

    pub(crate) fn flavor(&self) -> Flavor {
        self.flavor
    }

    pub(crate) fn is_shutdown(&self) -> bool {
        // Relaxed is enough to notice shutdown eventually; the places where shutdown must not be
        // missed (spawn, the final drain) are ordered by the registry's locks.
        self.shutdown.load(Ordering::Relaxed)
    }

    /// Spawns an async task (see `task::registry` rule 1 for the order of the steps).
    pub(crate) fn spawn<F>(self: &Arc<Self>, future: F) -> JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_async(future, false)
    }

    /// Spawns an async task that runs on a generator of its own (Poll mode).
    pub(crate) fn spawn_pinned<F>(self: &Arc<Self>, future: F) -> JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_async(future, true)
    }

    fn spawn_async<F>(self: &Arc<Self>, future: F, own_stack: bool) -> JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (runnable, handle) = task::new_task(future, self.clone(), TaskKind::Async, own_stack);
        let meta = runnable.metadata();
        meta.set_registry_slot(
            self.tasks
                .insert(meta.id, TaskKind::Async, runnable.waker()),
        );
        // After the insert: the final drain either sees the entry (and drops the task) or ran
        // before the insert's lock, in which case this load sees `shutdown`.
        if self.shutdown.load(Ordering::SeqCst) {
            drop(runnable); // cancelled: its JoinHandle reports it
            return handle;
        }
        worker::schedule(runnable, false);
        handle
    }

    /// Spawns a blocking closure on the blocking pool.
    pub(crate) fn spawn_blocking<F, R>(self: &Arc<Self>, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (runnable, handle) = task::new_task(
            crate::blocking::BlockingTask::new(f),
            self.clone(),
            TaskKind::Blocking,
            false,
        );
        let meta = runnable.metadata();
        meta.set_registry_slot(
            self.tasks
                .insert(meta.id, TaskKind::Blocking, runnable.waker()),
        );
        // As for `spawn`: once shutdown has begun, nothing new runs (the pool itself may not be
        // shut down yet when the runtime was dropped from one of its own threads).
        if self.shutdown.load(Ordering::SeqCst) {
            drop(runnable);
            return handle;
        }
        self.blocking.schedule(self, runnable);
        handle
    }

    /// A parked worker's wait in the driver (it holds the poll lock): until the next timer, an
    /// I/O event, or an unpark; then the due timers fire.
    fn drive(&self, poll: &mut PollState) {
        let timeout = self.time.prepare_park();
        self.io.turn(poll, timeout);
        self.time.finish_park();
        self.time.process(Instant::now());
    }

    /// Maintenance (module doc): a look at the drivers without waiting, so that timers and I/O
    /// make progress while every worker is busy. Returns the time it read.
    fn maintain(&self) -> Instant {
        // Without registered resources there is no event to collect: spare the system call.
        if self.io.has_resources()
            && let Some(mut poll) = self.io.try_lock_poll()
        {
            self.io.turn(&mut poll, Some(std::time::Duration::ZERO));
        }
        let now = Instant::now();
        self.time.process(now);
        now
    }

    /// Sleeps worker `index` until it is unparked, in the driver if nobody else waits there.
    /// Returns whether it waited in the driver (its wait may have woken tasks).
    fn sleep(&self, index: usize) -> bool {
        let parker = &self.remotes[index].parker;
        match self.io.try_lock_poll() {
            Some(mut poll) => {
                parker.park_on_driver(|| self.drive(&mut poll));
                true
            }
            None => {
                parker.park();
                false
            }
        }
    }

    /// Rule 3 of "where a scheduled task goes".
    fn schedule_remote(&self, task: Runnable) {
        self.injector.push(task);
        self.notify_parked();
    }

    /// Idle rule 1.
    fn notify_parked(&self) {
        if let Some(worker) = self.idle.worker_to_notify() {
            self.remotes[worker].parker.unpark();
        }
    }

    fn pop_injector(&self) -> Option<Runnable> {
        loop {
            match self.injector.steal() {
                Steal::Success(task) => return Some(task),
                Steal::Empty => return None,
                Steal::Retry => std::hint::spin_loop(),
            }
        }
    }

    /// Shutdown step 1 (runtime module doc); `deadline` bounds how long workers finish polls
    /// suspended half-way (`None`: until they end).
    pub(crate) fn begin_shutdown(&self, deadline: Option<Instant>) {
        *self.shutdown_deadline.lock().unwrap() = deadline;
        self.shutdown.store(true, Ordering::SeqCst);
        for remote in self.remotes.iter() {
            remote.parker.unpark();
        }
    }

    pub(crate) fn shutdown_deadline(&self) -> Option<Instant> {
        *self.shutdown_deadline.lock().unwrap()
    }

    /// Counts a task abandoned by shutdown (`coroutine` module doc).
    pub(crate) fn count_abandoned(&self) {
        self.abandoned.fetch_add(1, Ordering::Relaxed);
    }

    /// Abandons a switched worker generator and the task whose poll is suspended on it: the task
    /// leaves the registry (async-task will never complete it) and its join handle reports
    /// cancellation.
    pub(crate) fn abandon_switched(&self, generator: Generator, task: &TaskMeta) {
        generator.abandon();
        task.mark_abandoned();
        self.tasks.abandon(task.registry_slot(), task.id);
        self.count_abandoned();
    }

    /// Whether the calling thread is one of this runtime's workers (or drives its core).
    pub(crate) fn is_worker_thread(&self) -> bool {
        worker::current_shared().is_some_and(|current| std::ptr::eq(current, self))
    }

    /// Waits until every worker thread has left its loop, or until `deadline`. Returns whether
    /// they all did.
    pub(crate) fn wait_for_workers(&self, deadline: Option<Instant>) -> bool {
        let mut running = self.running_workers.lock().unwrap();
        while *running > 0 {
            running = match deadline {
                None => self.workers_exited.wait(running).unwrap(),
                Some(deadline) => {
                    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                        return false;
                    };
                    self.workers_exited.wait_timeout(running, left).unwrap().0
                }
            };
        }
        true
    }

    fn worker_exited(&self) {
        let last = {
            let mut running = self.running_workers.lock().unwrap();
            *running -= 1;
            *running == 0
        };
        self.workers_exited.notify_all();
        if last {
            // If the runtime stopped waiting (shutdown_timeout), or was dropped by one of its own
            // tasks, nobody else will.
            self.drop_leftovers();
        }
    }

    /// What shutdown leaves to the last thread of the runtime out: dropping the remaining tasks
    /// and the blocking closures that have not started (without waiting for running ones).
    fn drop_leftovers(&self) {
        // No worker runs any more: nobody to preempt, and no thread to signal.
        if let Some(preemption) = &self.preemption {
            preemption.stop();
        }
        self.drop_remaining_tasks();
        self.blocking.shutdown(Some(Instant::now()));
        self.shut_down_drivers();
        self.report_abandoned();
    }

    /// Shutdown steps 3 and 4, once no worker runs.
    pub(crate) fn finish_shutdown(&self, deadline: Option<Instant>) {
        match self.flavor {
            Flavor::CurrentThread => {
                // Dropping the core drops the tasks in its queues. If a `block_on` on another
                // thread holds it, `return_core` does this when it hands the core back (both take
                // the same lock after `shutdown` is set, so exactly one of them sees the core).
                if let Some(core) = self.take_core() {
                    drop(core);
                    self.drop_remaining_tasks();
                }
            }
            Flavor::MultiThread => {
                if *self.running_workers.lock().unwrap() == 0 {
                    self.drop_remaining_tasks();
                }
            }
        }
        self.blocking.shutdown(deadline);
        self.shut_down_drivers();
        self.report_abandoned();
    }

    /// Shutdown of the drivers: from now on timers panic and sockets fail (`time::driver` rule 4,
    /// `io::reactor` rule 5). After the tasks are dropped, so that their destructors may still
    /// cancel timers and close sockets.
    fn shut_down_drivers(&self) {
        self.time.shut_down();
        self.io.shut_down();
    }

    /// The log line of the `coroutine` module doc, "Abort and shutdown".
    fn report_abandoned(&self) {
        let abandoned = self.abandoned.swap(0, Ordering::Relaxed);
        if abandoned > 0 {
            eprintln!(
                "maniac: shutdown abandoned {abandoned} task(s) suspended in the middle of a poll: \
                 their destructors did not run and their memory is leaked (see \
                 maniac::coroutine, \"Abort and shutdown\")"
            );
        }
    }

    /// Shutdown step 3: drops every task that is still alive. Only called when no thread runs or
    /// holds a core of this runtime, so every live task is either in the injector, about to be
    /// pushed there by a thread that is waking it, or idle (then `wake_all` pushes it).
    fn drop_remaining_tasks(&self) {
        loop {
            let mut dropped = false;
            while let Some(task) = self.pop_injector() {
                drop(task);
                dropped = true;
            }
            // Wake-ups of tasks with an affinity land in the inbox of their (exited) worker.
            for remote in self.remotes.iter() {
                while let Some(task) = remote.pop_pinned_inbox() {
                    drop(task);
                    dropped = true;
                }
            }
            if self.tasks.async_len() == 0 {
                return;
            }
            self.tasks.wake_all_async();
            if !dropped && self.injector.is_empty() {
                // A waking thread is between marking a task scheduled and pushing it.
                thread::yield_now();
            }
        }
    }

    /// Current-thread flavour: takes the core to drive it.
    fn take_core(&self) -> Option<Box<Core>> {
        self.parked_core.lock().unwrap().take()
    }

    /// Current-thread flavour: a `block_on` hands the core back.
    fn return_core(&self, core: Box<Core>) {
        let unwanted = {
            let mut parked = self.parked_core.lock().unwrap();
            if self.is_shutdown() {
                Some(core)
            } else {
                *parked = Some(core);
                None
            }
        };
        if let Some(core) = unwanted {
            drop(core);
            self.drop_leftovers();
        }
        let waiters = std::mem::take(&mut *self.core_waiters.lock().unwrap());
        for waiter in waiters {
            waiter.wake();
        }
    }

    pub(crate) fn metrics(&self) -> RuntimeMetrics {
        RuntimeMetrics {
            num_workers: self.remotes.len(),
            num_alive_tasks: self.tasks.async_len(),
            global_queue_depth: self.injector.len(),
            preemption: self.preemption.as_ref().map(Preemption::stats),
            preemption_monitor_realtime: self
                .preemption
                .as_ref()
                .is_some_and(Preemption::monitor_is_realtime),
        }
    }

    pub(crate) fn handle(self: &Arc<Self>) -> Handle {
        Handle {
            shared: self.clone(),
        }
    }
}
