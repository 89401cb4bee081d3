//! Time: `sleep`, `timeout` and `interval` with tokio's names and semantics.
//!
//! Timers live in a hierarchical wheel of 100 µs ticks (`wheel` module doc), one per runtime,
//! driven by the runtime (`driver` module doc): a worker that parks with nothing to do sleeps no
//! longer than until the next timer, and busy workers look at the wheel between polls (the
//! `scheduler` module doc, "Maintenance"). A timer never fires before its deadline; it fires
//! within about a tick after it when a worker is free, later only if every worker is in a long
//! poll. Cancelling a timer (dropping its future) is O(1).

mod driver;
pub mod error;
mod instant;
mod interval;
mod sleep;
mod timeout;
mod wheel;

pub(crate) use driver::{TickGrid, TimeDriver};
pub use instant::Instant;
pub use interval::{Interval, MissedTickBehavior, interval, interval_at};
pub use sleep::{Sleep, sleep, sleep_until};
pub use timeout::{Timeout, timeout, timeout_at};
