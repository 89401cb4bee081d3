//! `Builder`: tokio's builder, same names and defaults where the concept is the same.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::Runtime;
use crate::scheduler::{self, Flavor};

type Callback = Arc<dyn Fn() + Send + Sync + 'static>;
type ThreadNameFn = Arc<dyn Fn() -> String + Send + Sync + 'static>;

/// The environment variable that sets the default number of worker threads (as
/// `TOKIO_WORKER_THREADS` does for tokio); `Builder::worker_threads` overrides it.
pub const WORKER_THREADS_ENV: &str = "MANIAC_WORKER_THREADS";

/// Configures and builds a [`Runtime`], like `tokio::runtime::Builder`.
///
/// ```
/// let runtime = maniac::runtime::Builder::new_multi_thread()
///     .worker_threads(2)
///     .thread_name("my-worker")
///     .enable_all()
///     .build()
///     .unwrap();
/// assert_eq!(runtime.block_on(async { 6 * 7 }), 42);
/// ```
pub struct Builder {
    flavor: Flavor,
    worker_threads: Option<usize>,
    max_blocking_threads: usize,
    thread_keep_alive: Duration,
    global_queue_interval: u32,
    /// `None`: follow `thread_stack_size`, else the default.
    coroutine_stack_size: Option<usize>,
    preemption: bool,
    preemption_quantum: Duration,
    preemption_signal: i32,
    preemption_realtime_monitor: bool,
    threads: ThreadConfig,
    enable_io: bool,
    enable_time: bool,
}

/// How the runtime's threads (workers and blocking pool) are made.
#[derive(Clone)]
pub(crate) struct ThreadConfig {
    name: ThreadNameFn,
    stack_size: Option<usize>,
    on_start: Option<Callback>,
    on_stop: Option<Callback>,
}

impl ThreadConfig {
    /// Spawns a runtime thread running `body`. The body calls [`ThreadConfig::on_start`] and
    /// [`ThreadConfig::on_stop`] itself, inside the runtime context, as tokio does.
    pub(crate) fn spawn(
        &self,
        body: impl FnOnce() + Send + 'static,
    ) -> io::Result<thread::JoinHandle<()>> {
        let mut builder = thread::Builder::new().name((self.name)());
        if let Some(size) = self.stack_size {
            builder = builder.stack_size(size);
        }
        builder.spawn(body)
    }

    /// Runs the start callback; a runtime thread's first act once its context is set.
    pub(crate) fn on_start(&self) {
        if let Some(on_start) = &self.on_start {
            on_start();
        }
    }

    /// Runs the stop callback; a runtime thread's last act before its context goes.
    pub(crate) fn on_stop(&self) {
        if let Some(on_stop) = &self.on_stop {
            on_stop();
        }
    }
}

/// Default of `Builder::coroutine_stack_size`.
const DEFAULT_COROUTINE_STACK_SIZE: usize = 2 * 1024 * 1024;

/// The default number of worker threads: `MANIAC_WORKER_THREADS`, else one per core.
fn default_worker_threads() -> io::Result<usize> {
    match std::env::var(WORKER_THREADS_ENV) {
        Ok(value) => value.trim().parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{WORKER_THREADS_ENV}={value:?} is not a number of worker threads"),
            )
        }),
        Err(_) => Ok(thread::available_parallelism().map_or(1, usize::from)),
    }
}

impl Builder {
    /// A builder for the multi-threaded, work-stealing runtime.
    pub fn new_multi_thread() -> Builder {
        Builder::new(Flavor::MultiThread)
    }

    /// A builder for a runtime that runs every task on the thread that calls `block_on`.
    pub fn new_current_thread() -> Builder {
        Builder::new(Flavor::CurrentThread)
    }

    fn new(flavor: Flavor) -> Builder {
        Builder {
            flavor,
            worker_threads: None,
            // tokio's defaults.
            max_blocking_threads: 512,
            thread_keep_alive: Duration::from_secs(10),
            global_queue_interval: scheduler::DEFAULT_GLOBAL_QUEUE_INTERVAL,
            coroutine_stack_size: None,
            preemption: true,
            preemption_quantum: crate::preempt::DEFAULT_QUANTUM,
            preemption_signal: crate::preempt::DEFAULT_SIGNAL,
            preemption_realtime_monitor: true,
            threads: ThreadConfig {
                name: Arc::new(|| "maniac-runtime-worker".to_owned()),
                stack_size: None,
                on_start: None,
                on_stop: None,
            },
            enable_io: false,
            enable_time: false,
        }
    }

    /// Number of worker threads (multi-thread flavour; ignored by current-thread). Default: the
    /// `MANIAC_WORKER_THREADS` environment variable, else the number of cores. `0` makes `build`
    /// fail.
    pub fn worker_threads(&mut self, count: usize) -> &mut Builder {
        self.worker_threads = Some(count);
        self
    }

    /// The most threads the blocking pool may run at once (default 512). `0` makes `build` fail.
    pub fn max_blocking_threads(&mut self, count: usize) -> &mut Builder {
        self.max_blocking_threads = count;
        self
    }

    /// How long an idle blocking-pool thread waits for work before it exits (default 10 s).
    pub fn thread_keep_alive(&mut self, duration: Duration) -> &mut Builder {
        self.thread_keep_alive = duration;
        self
    }

    /// Name of every thread the runtime starts (default `maniac-runtime-worker`).
    pub fn thread_name(&mut self, name: impl Into<String>) -> &mut Builder {
        let name = name.into();
        self.threads.name = Arc::new(move || name.clone());
        self
    }

    /// A function that names each thread the runtime starts.
    pub fn thread_name_fn<F>(&mut self, f: F) -> &mut Builder
    where
        F: Fn() -> String + Send + Sync + 'static,
    {
        self.threads.name = Arc::new(f);
        self
    }

    /// Stack size of every thread the runtime starts (default: std's, 2 MiB).
    pub fn thread_stack_size(&mut self, bytes: usize) -> &mut Builder {
        self.threads.stack_size = Some(bytes);
        self
    }

    /// Runs `f` on each runtime thread when it starts.
    pub fn on_thread_start<F>(&mut self, f: F) -> &mut Builder
    where
        F: Fn() + Send + Sync + 'static,
    {
        self.threads.on_start = Some(Arc::new(f));
        self
    }

    /// Runs `f` on each runtime thread before it stops.
    pub fn on_thread_stop<F>(&mut self, f: F) -> &mut Builder
    where
        F: Fn() + Send + Sync + 'static,
    {
        self.threads.on_stop = Some(Arc::new(f));
        self
    }

    /// Every how many polls a worker looks at the global queue before its own (default 31, as
    /// tokio's). `0` makes `build` fail.
    pub fn global_queue_interval(&mut self, polls: u32) -> &mut Builder {
        self.global_queue_interval = polls;
        self
    }

    /// Size of every coroutine stack: the worker generators that run None-mode polls, and the
    /// generators of tasks in Poll mode (`maniac::coroutine`). Tasks run there, not on the
    /// worker threads' own stacks, so this is the stack a poll gets. Default: the
    /// `thread_stack_size` if one was set (so that a tokio program that raised it for deep
    /// recursion in tasks keeps working), else 2 MiB (a tokio worker thread's stack); only
    /// touched pages use memory. Below 16 KiB or above 1 TiB `build` fails. A poll that overflows it aborts the
    /// process with a message that names this setting.
    pub fn coroutine_stack_size(&mut self, bytes: usize) -> &mut Builder {
        self.coroutine_stack_size = Some(bytes);
        self
    }

    /// Whether a task that computes for longer than the quantum without an `.await` is preempted
    /// (`maniac::preempt`). Default: on, where supported (Linux on x86_64); multi-thread runtimes
    /// only (a current-thread runtime is always cooperative, as its next `block_on` may run on
    /// another thread).
    pub fn preemption(&mut self, enabled: bool) -> &mut Builder {
        self.preemption = enabled;
        self
    }

    /// How long a poll may run before it is preempted (default 1 ms; 100 µs to 100 ms, else
    /// `build` fails). The monitor asks for a preemption once a poll has run for one quantum,
    /// or a little more (up to a quarter if it first saw the poll at one of its periodic looks,
    /// up to an eighth to fall just after a timer tick; up to two quanta when the poll starts
    /// unseen, while every other poll is short and the monitor looks less often). Right after a
    /// preemption the worker's own timer does the timing; should it fire late, the monitor steps
    /// in after two quanta (quanta up to 200 µs) or eight (longer ones). After a calm
    /// period (only short polls for ten quanta, so the monitor looks once every eight quanta), a
    /// poll that begins beside a worker running short polls is spotted by that worker and
    /// preempted about a quantum and a quarter after it began; with no such worker (one worker,
    /// or the others parked), after eight to sixteen quanta (`maniac::preempt`, monitor rule 7;
    /// Go's sysmon takes up to 20 ms). The
    /// request is honoured at the next async-safe
    /// point: at once in the task's own code, later if the task is inside the standard library
    /// or another denied crate (`maniac::preempt`, "What is and is not enforced").
    pub fn preemption_quantum(&mut self, quantum: Duration) -> &mut Builder {
        self.preemption_quantum = quantum;
        self
    }

    /// The signal that carries preemption requests (default `SIGURG`: ignored by default, unused
    /// by libc, harmless when spurious). Other handlers of it keep receiving the signals that are
    /// not the runtime's, a `pthread_kill` to a worker thread included (but while the user's
    /// `RLIMIT_SIGPENDING` is reached, a foreign signal whose sender the kernel could not record
    /// may be taken for one: `maniac::preempt`, "The mechanism"). Of a standard signal the
    /// kernel keeps one pending instance per thread: one sent to a worker while the runtime's is
    /// pending there is merged into it (as between any two senders); a real-time signal keeps
    /// both. A real-time signal is not sent at all while that limit is reached (nothing is
    /// preempted meanwhile; one line on stderr says so); a standard one always is. `SIGKILL`,
    /// `SIGSTOP`, `SIGSEGV`, `SIGBUS`, `SIGFPE`, `SIGILL`, `SIGTRAP`, `SIGABRT`, the job-control
    /// signals and numbers out of range make `build` fail.
    pub fn preemption_signal(&mut self, signal: i32) -> &mut Builder {
        self.preemption_signal = signal;
        self
    }

    /// Whether the preemption monitor raises itself to the lowest real-time priority
    /// (`SCHED_FIFO` 1) while polls overrun their quantum (default `true`). It sleeps between
    /// looks and does a few loads and sends at most one signal per worker at each, so it takes
    /// little CPU at any priority; what the priority buys is that it runs *when* it wakes: at
    /// normal priority, on a machine whose cores the workers' hogs keep busy, it queues behind
    /// them and preemptions come late (BENCHMARKS.md, "Preemption", measures both). It drops
    /// back to normal priority ten quanta after its last request, since at real-time priority
    /// every wake-up takes a core from somebody at once, which costs workloads of short polls.
    /// Without the permission (`CAP_SYS_NICE`, or an `RLIMIT_RTPRIO` of at least 1) it stays
    /// at normal priority, silently;
    /// [`RuntimeMetrics::preemption_monitor_realtime`](crate::runtime::RuntimeMetrics::preemption_monitor_realtime)
    /// tells which it got.
    pub fn preemption_realtime_monitor(&mut self, realtime: bool) -> &mut Builder {
        self.preemption_realtime_monitor = realtime;
        self
    }

    /// Enables the I/O and time drivers. Accepted for tokio compatibility: maniac's drivers are
    /// always on (idle workers wait in them, and a program that never registers a socket or a
    /// timer pays nothing for them), so this and the two below change nothing.
    pub fn enable_all(&mut self) -> &mut Builder {
        self.enable_io().enable_time()
    }

    /// Enables the I/O driver (see [`Builder::enable_all`]).
    pub fn enable_io(&mut self) -> &mut Builder {
        self.enable_io = true;
        self
    }

    /// Enables the time driver (see [`Builder::enable_all`]).
    pub fn enable_time(&mut self) -> &mut Builder {
        self.enable_time = true;
        self
    }

    /// Builds the runtime and, for the multi-thread flavour, starts its workers.
    ///
    /// # Errors
    /// `InvalidInput` for a configuration that cannot run (zero worker or blocking threads, more
    /// workers than the scheduler can count, a zero global queue interval, an unparsable
    /// `MANIAC_WORKER_THREADS`); the OS's error if a thread cannot be started.
    pub fn build(&mut self) -> io::Result<Runtime> {
        let invalid = |message: String| Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        let workers = match self.flavor {
            Flavor::CurrentThread => 1,
            Flavor::MultiThread => match self.worker_threads {
                Some(count) => count,
                None => default_worker_threads()?,
            },
        };
        if workers == 0 {
            return invalid("worker_threads must be at least 1 (got 0)".into());
        }
        if workers > scheduler::MAX_WORKERS {
            return invalid(format!(
                "worker_threads must be at most {} (got {workers})",
                scheduler::MAX_WORKERS
            ));
        }
        if self.max_blocking_threads == 0 {
            return invalid("max_blocking_threads must be at least 1 (got 0)".into());
        }
        use crate::coroutine::stack::{MAX_STACK_SIZE, MIN_STACK_SIZE};
        let coroutine_stack_size = match self.coroutine_stack_size {
            Some(size) if !(MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&size) => {
                return invalid(format!(
                    "coroutine_stack_size must be between {MIN_STACK_SIZE} and {MAX_STACK_SIZE} \
                     bytes (got {size})"
                ));
            }
            Some(size) => size,
            // Like std and tokio for a small thread stack: rounded up to what works.
            None => self
                .threads
                .stack_size
                .map_or(DEFAULT_COROUTINE_STACK_SIZE, |size| {
                    size.clamp(MIN_STACK_SIZE, MAX_STACK_SIZE)
                }),
        };
        let quantum = self.preemption_quantum;
        if !(crate::preempt::MIN_QUANTUM..=crate::preempt::MAX_QUANTUM).contains(&quantum) {
            return invalid(format!(
                "preemption_quantum must be between {:?} and {:?} (got {quantum:?})",
                crate::preempt::MIN_QUANTUM,
                crate::preempt::MAX_QUANTUM
            ));
        }
        let signal = self.preemption_signal;
        // Signals the kernel, debuggers, job control or `abort` use for themselves.
        let reserved = [
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGILL,
            libc::SIGTRAP,
            libc::SIGABRT,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
            libc::SIGCONT,
        ];
        if !(1..=64).contains(&signal) || reserved.contains(&signal) {
            return invalid(format!(
                "preemption_signal must be a signal number from 1 to 64 other than SIGKILL, \
                 SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGTSTP, SIGTTIN, \
                 SIGTTOU and SIGCONT (got {signal}); the default, SIGURG, suits almost every \
                 program"
            ));
        }
        if self.global_queue_interval == 0 {
            return invalid("global_queue_interval must be at least 1 (got 0)".into());
        }
        Runtime::start(scheduler::Config {
            flavor: self.flavor,
            workers,
            max_blocking_threads: self.max_blocking_threads,
            thread_keep_alive: self.thread_keep_alive,
            global_queue_interval: self.global_queue_interval,
            coroutine_stack_size,
            preemption: (self.preemption && self.flavor == Flavor::MultiThread).then_some(
                crate::preempt::PreemptionConfig {
                    quantum,
                    signal,
                    realtime_monitor: self.preemption_realtime_monitor,
                },
            ),
            threads: self.threads.clone(),
        })
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("flavor", &self.flavor)
            .field("worker_threads", &self.worker_threads)
            .field("max_blocking_threads", &self.max_blocking_threads)
            .field("thread_keep_alive", &self.thread_keep_alive)
            .field("global_queue_interval", &self.global_queue_interval)
            .field("coroutine_stack_size", &self.coroutine_stack_size)
            .field("preemption", &self.preemption)
            .field("preemption_quantum", &self.preemption_quantum)
            .field("preemption_signal", &self.preemption_signal)
            .field(
                "preemption_realtime_monitor",
                &self.preemption_realtime_monitor,
            )
            .field("enable_io", &self.enable_io)
            .field("enable_time", &self.enable_time)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ThreadConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadConfig")
            .field("stack_size", &self.stack_size)
            .finish_non_exhaustive()
    }
}
