//! # maniac
//!
//! A multi-threaded, work-stealing async runtime with tokio's API names, whose tasks are
//! **preempted** when they compute for longer than a quantum (1 ms by default) without an
//! `.await`, so that a CPU-heavy task never starves a latency-sensitive one: a monitor thread
//! notices the overrunning poll, a signal interrupts the worker, an assembly trampoline saves the
//! whole machine state, the task's stackful coroutine is parked and the worker goes on
//! ([`preempt`], which also lists the hazards of preemption and their remedies). Also: tasks,
//! the blocking pool, stackful coroutines ([`coroutine`]), timers ([`time`]), TCP, UDP and Unix
//! sockets on a mio reactor ([`net`]), the ecosystem's I/O traits ([`io`]) and hyper 1.x
//! (`maniac::hyper`, feature `hyper`).
//!
//! ```
//! let runtime = maniac::runtime::Runtime::new().unwrap();
//! let sum = runtime.block_on(async {
//!     let handles: Vec<_> = (0..10u64).map(|i| maniac::spawn(async move { i * i })).collect();
//!     let mut sum = 0;
//!     for handle in handles {
//!         sum += handle.await.unwrap();
//!     }
//!     sum
//! });
//! assert_eq!(sum, 285);
//! ```
//!
//! Moving from tokio is mostly a rename: `maniac::runtime::{Builder, Runtime, Handle}`,
//! `maniac::spawn`, `maniac::task::{JoinHandle, JoinError, JoinSet, AbortHandle, spawn_blocking,
//! yield_now}`, `maniac::time::{sleep, timeout, interval, Instant}`,
//! `maniac::net::{TcpListener, TcpStream, TcpSocket, UdpSocket, UnixListener, UnixStream,
//! UnixDatagram, lookup_host}`, `#[maniac::main]` and `#[maniac::test]`.
//! For channels and locks keep using `tokio::sync` (it does not need tokio's runtime),
//! `async-channel` or `futures::channel`: they work on maniac as they are, and maniac does not
//! duplicate them. What tokio has no counterpart of lives in modules of its own:
//! [`coroutine`] (run modes, `pin_stack`, `spawn_pinned`, `sync_await`), [`preempt`]
//! (`no_preempt`, the quantum and signal, statistics) and [`alloc`] (`NoPreempt`, for a global
//! allocator linked into the executable).
//!
//! Preemption is on by default on Linux x86_64 for multi-thread runtimes
//! (`Builder::preemption`, `preemption_quantum`, `preemption_signal`); current-thread runtimes
//! and other targets schedule cooperatively, as tokio does (other targets say so once at
//! start-up).
//!
//! ## Modules and how data flows
//! `runtime` builds the `scheduler`; the scheduler runs `task`s on its workers, whose loop runs
//! on `coroutine`s, hands `spawn_blocking` closures to the `blocking` pool, and sleeps in the
//! drivers (`time`, and the reactor of `io`) when idle; `time` and `net` only wake tasks.
//! `preempt`'s monitor watches the workers' polls and, through its signal handler and
//! trampoline, uses `coroutine`'s Switch operation to park an overrunning poll. Each
//! module's documentation opens with its protocol.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

pub mod alloc;
mod blocking;
pub mod coroutine;
#[cfg(feature = "hyper")]
pub mod hyper;
pub mod io;
pub(crate) mod loom;
pub mod net;
pub mod preempt;
pub mod runtime;
mod scheduler;
mod signals;
pub mod task;
pub mod time;

pub use task::spawn;

#[cfg(feature = "macros")]
pub use maniac_macros::{main, test};
