//! The [`Rt`] trait: the few runtime operations the workloads use, implemented once for maniac
//! ([`Maniac`]) and once for tokio ([`Tokio`]), so the workloads are written once, generically.
//!
//! Every method is a thin, `#[inline]` forward to the runtime's own API of the same name, so the
//! monomorphised workload is the code one would write against that runtime directly.

use std::fmt::Debug;
use std::future::Future;

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
}

/// Implements [`Rt`] for a runtime crate with tokio's API names. One template serves both
/// runtimes: that maniac's half compiles is the proof that moving from tokio is a rename.
macro_rules! impl_rt {
    ($(#[$doc:meta])* $name:ident, $krate:ident) => {
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
        }
    };
}

impl_rt!(
    /// The maniac runtime.
    Maniac,
    maniac
);
impl_rt!(
    /// The tokio multi-thread runtime.
    Tokio,
    tokio
);
