//! The [`Rt`] trait: the few runtime operations the workloads use, implemented once for maniac
//! ([`Maniac`]) and once for tokio ([`Tokio`]), so the workloads are written once, generically.
//!
//! Every method is a thin, `#[inline]` forward to the runtime's own API of the same name, so the
//! monomorphised workload is the code one would write against that runtime directly.
//!
//! [`Maniac::build`] builds with the process-wide preemption setting ([`set_maniac_preemption`],
//! by default the runtime's own default: on, at a 1 ms quantum), so the suite can run maniac with
//! preemption on and off in the same process.

use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// maniac's preemption quantum for [`Maniac::build`], in nanoseconds: [`OFF`] for preemption
/// off, [`DEFAULT`] (the initial value) for the runtime's default.
static MANIAC_QUANTUM_NS: AtomicU64 = AtomicU64::new(DEFAULT);
const OFF: u64 = 0;
const DEFAULT: u64 = u64::MAX;

/// Makes every later [`Maniac::build`] preempt at `quantum`, or not at all (`None`).
pub fn set_maniac_preemption(quantum: Option<Duration>) {
    let nanos = quantum.map_or(OFF, |quantum| {
        u64::try_from(quantum.as_nanos()).map_or(DEFAULT - 1, |nanos| nanos.clamp(1, DEFAULT - 1))
    });
    MANIAC_QUANTUM_NS.store(nanos, Ordering::Relaxed);
}

/// The preemption setting [`Maniac::build`] uses: `Some(quantum)`, or `None` for off.
pub fn maniac_preemption() -> Option<Duration> {
    match MANIAC_QUANTUM_NS.load(Ordering::Relaxed) {
        OFF => None,
        DEFAULT => Some(maniac::preempt::DEFAULT_QUANTUM),
        nanos => Some(Duration::from_nanos(nanos)),
    }
}

/// `Builder::preemption_realtime_monitor` of [`Maniac::build`] (the runtime's default: `true`).
static MANIAC_REALTIME_MONITOR: AtomicBool = AtomicBool::new(true);

/// Makes every later [`Maniac::build`] ask for a real-time monitor, or not.
pub fn set_maniac_realtime_monitor(realtime: bool) {
    MANIAC_REALTIME_MONITOR.store(realtime, Ordering::Relaxed);
}

/// `Builder::preemption` of [`Maniac::build`].
fn maniac_preempts() -> bool {
    maniac_preemption().is_some()
}

/// `Builder::preemption_quantum` of [`Maniac::build`] (the default when preemption is off).
fn maniac_quantum() -> Duration {
    maniac_preemption().unwrap_or(maniac::preempt::DEFAULT_QUANTUM)
}

/// A multi-thread runtime, seen through the operations tokio's `rt_multi_threaded` benches use.
pub trait Rt: Sized + 'static {
    /// Name shown in reports (`"maniac"` or `"tokio"`).
    const NAME: &'static str;
    /// The runtime's cheap, clonable handle (`Handle`).
    type Handle: Clone + Send + Sync + 'static;
    /// The runtime's join error.
    type JoinError: Debug + Send + 'static;
    /// The runtime's join handle for a task whose output is `T`.
    type JoinHandle<T: Send + 'static>: Future<Output = Result<T, Self::JoinError>>
        + Send
        + Unpin
        + 'static;

    /// `Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap()`.
    fn build(workers: usize) -> Self;
    /// `Runtime::block_on`.
    fn block_on<F: Future>(&self, future: F) -> F::Output;
    /// `Runtime::spawn`: spawns from outside the runtime (here: the benchmark's main thread).
    fn rt_spawn<F>(&self, future: F) -> Self::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static;
    /// `Runtime::handle`.
    fn handle(&self) -> &Self::Handle;
    /// `Handle::spawn`.
    fn handle_spawn<F>(handle: &Self::Handle, future: F) -> Self::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static;
    /// The free `spawn` function (`tokio::spawn` / `maniac::spawn`), whose join handle the
    /// workloads always drop at once (as tokio's benches do), detaching the task.
    fn spawn<F>(future: F)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static;
    /// `task::yield_now`.
    fn yield_now() -> impl Future<Output = ()> + Send;
    /// `time::sleep`.
    fn sleep(duration: Duration) -> impl Future<Output = ()> + Send;
}

/// Implements [`Rt`] for a runtime crate with tokio's API names. One template serves both
/// runtimes: that maniac's half compiles is the proof that moving from tokio is a rename.
///
/// After the crate name come builder calls of the runtime's own (maniac's preemption setting),
/// applied after `worker_threads`.
macro_rules! impl_rt {
    ($(#[$doc:meta])* $name:ident, $krate:ident $(, .$method:ident($arg:expr))*) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name($krate::runtime::Runtime);

        impl Rt for $name {
            const NAME: &'static str = stringify!($krate);
            type Handle = $krate::runtime::Handle;
            type JoinError = $krate::task::JoinError;
            type JoinHandle<T: Send + 'static> = $krate::task::JoinHandle<T>;

            fn build(workers: usize) -> Self {
                let runtime = $krate::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    $(.$method($arg))*
                    .enable_all()
                    .build()
                    .expect(concat!("building a ", stringify!($krate), " runtime"));
                $name(runtime)
            }

            #[inline]
            fn block_on<F: Future>(&self, future: F) -> F::Output {
                self.0.block_on(future)
            }

            #[inline]
            fn rt_spawn<F>(&self, future: F) -> Self::JoinHandle<F::Output>
            where
                F: Future + Send + 'static,
                F::Output: Send + 'static,
            {
                self.0.spawn(future)
            }

            #[inline]
            fn handle(&self) -> &Self::Handle {
                self.0.handle()
            }

            #[inline]
            fn handle_spawn<F>(handle: &Self::Handle, future: F) -> Self::JoinHandle<F::Output>
            where
                F: Future + Send + 'static,
                F::Output: Send + 'static,
            {
                handle.spawn(future)
            }

            #[inline]
            fn spawn<F>(future: F)
            where
                F: Future + Send + 'static,
                F::Output: Send + 'static,
            {
                drop($krate::spawn(future));
            }

            #[inline]
            fn yield_now() -> impl Future<Output = ()> + Send {
                $krate::task::yield_now()
            }

            #[inline]
            fn sleep(duration: Duration) -> impl Future<Output = ()> + Send {
                $krate::time::sleep(duration)
            }
        }
    };
}

impl_rt!(
    /// The maniac runtime.
    Maniac,
    maniac,
    .preemption(maniac_preempts()),
    .preemption_quantum(maniac_quantum()),
    .preemption_realtime_monitor(MANIAC_REALTIME_MONITOR.load(Ordering::Relaxed))
);

impl Maniac {
    /// A maniac runtime of `workers` workers preempting at `quantum` (`None`: preemption off),
    /// whatever [`set_maniac_preemption`] says, its monitor at real-time priority or not.
    pub fn with_preemption(
        workers: usize,
        quantum: Option<Duration>,
        realtime_monitor: bool,
    ) -> Maniac {
        let mut builder = maniac::runtime::Builder::new_multi_thread();
        builder
            .worker_threads(workers)
            .enable_all()
            .preemption(quantum.is_some())
            .preemption_realtime_monitor(realtime_monitor);
        if let Some(quantum) = quantum {
            builder.preemption_quantum(quantum);
        }
        Maniac(builder.build().expect("building a maniac runtime"))
    }

    /// `Runtime::metrics`.
    pub fn metrics(&self) -> maniac::runtime::RuntimeMetrics {
        self.0.metrics()
    }
}
impl_rt!(
    /// The tokio multi-thread runtime.
    Tokio,
    tokio
);
