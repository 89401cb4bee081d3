//! # maniac
//!
//! A multi-threaded, work-stealing async runtime with tokio's API names, built so that a task
//! that computes for too long without an `.await` can be preempted instead of starving the
//! others. Today: the scheduler, tasks, the blocking pool, stackful coroutines under the worker
//! loop (the machinery preemption stands on), timers, and TCP on a mio reactor. Preemption
//! itself, UDP/Unix sockets and the hyper adapters are the next steps.
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
//! `maniac::net::{TcpListener, TcpStream, lookup_host}`, `#[maniac::main]` and `#[maniac::test]`.
//! For channels and locks keep using `tokio::sync` (it does not need tokio's runtime),
//! `async-channel` or `futures::channel`: they work on maniac as they are, and maniac does not
//! duplicate them. What tokio has no counterpart of lives in modules of its own:
//! [`coroutine`] (run modes, `pin_stack`, `spawn_pinned`, `sync_await`).
//!
//! ## Modules and how data flows
//! `runtime` builds the `scheduler`; the scheduler runs `task`s on its workers, whose loop runs
//! on `coroutine`s, hands `spawn_blocking` closures to the `blocking` pool, and sleeps in the
//! drivers (`time`, and the reactor of `io`) when idle; `time` and `net` only wake tasks. Each
//! module's documentation opens with its protocol.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

mod blocking;
pub mod coroutine;
pub mod io;
pub(crate) mod loom;
pub mod net;
pub mod runtime;
mod scheduler;
pub mod task;
pub mod time;

pub use task::spawn;

#[cfg(feature = "macros")]
pub use maniac_macros::{main, test};
