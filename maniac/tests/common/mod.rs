#![cfg(not(loom))]
//! Helpers shared by the integration tests: bounded waits, drop counters, quiet panics.
//!
//! Every wait that is expected to finish is bounded, so that a lost wake-up or a deadlock fails
//! the test with a message instead of stalling CI.
#![allow(dead_code)]

use std::any::Any;
use std::panic;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

/// The bound of an ordinary test body (generous: debug build, 2 cores, tests run in parallel).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The marker of every panic a test triggers on purpose (the quiet hook hides them).
pub const EXPECTED: &str = "[expected panic]";

/// Runs `body` on a thread of its own and waits at most `timeout` for it. A panic of the body is
/// resumed here; running out of time panics with a message that names the likely cause.
#[track_caller]
pub fn with_timeout<T, F>(timeout: Duration, body: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let caller = panic::Location::caller();
    thread::Builder::new()
        .name(format!("test-body@{}:{}", caller.file(), caller.line()))
        .spawn(move || {
            let result = panic::catch_unwind(panic::AssertUnwindSafe(body));
            let _ = tx.send(result);
        })
        .expect("cannot start the test body's thread");
    match rx.recv_timeout(timeout) {
        Ok(Ok(value)) => value,
        Ok(Err(payload)) => panic::resume_unwind(payload),
        Err(_) => panic!(
            "timed out after {timeout:?}: likely lost wake-up or deadlock (test body at {caller})"
        ),
    }
}

/// [`with_timeout`] with [`TIMEOUT`].
#[track_caller]
pub fn bounded<T, F>(body: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    with_timeout(TIMEOUT, body)
}

/// A counter that can be waited on (no polling, no sleeps).
#[derive(Debug, Default)]
pub struct Counter {
    value: Mutex<usize>,
    changed: Condvar,
}

impl Counter {
    pub fn new() -> Arc<Counter> {
        Arc::new(Counter::default())
    }

    pub fn inc(&self) {
        *self.value.lock().unwrap() += 1;
        self.changed.notify_all();
    }

    pub fn get(&self) -> usize {
        *self.value.lock().unwrap()
    }

    /// Waits until the value is at least `target`; returns the value seen (which is below
    /// `target` only if `timeout` ran out).
    pub fn wait_for(&self, target: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut value = self.value.lock().unwrap();
        while *value < target {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            value = self.changed.wait_timeout(value, left).unwrap().0;
        }
        *value
    }

    /// Waits until the value is at least `target`, and fails the test if it does not get there.
    #[track_caller]
    pub fn expect(&self, target: usize, timeout: Duration, what: &str) {
        let seen = self.wait_for(target, timeout);
        assert!(
            seen >= target,
            "timed out waiting for {what}: {seen} of {target} after {timeout:?}"
        );
    }
}

/// Increments its counter when dropped: put one in a future to count how often futures are
/// dropped.
#[derive(Debug)]
pub struct DropGuard(pub Arc<Counter>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.inc();
    }
}

/// A plain atomic counter, for hot paths where a mutex would distort the test.
pub fn atomic() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

pub fn load(counter: &AtomicUsize) -> usize {
    counter.load(SeqCst)
}

/// Installs (once per test binary) a panic hook that hides panics whose message contains
/// [`EXPECTED`] and reports every other panic as usual.
pub fn quiet_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if panic_message(info.payload()).is_some_and(|m| m.contains(EXPECTED)) {
                return;
            }
            default(info);
        }));
    });
}

/// The text of a panic payload (`panic!` with a message makes a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

/// Runs `f`, which must panic, and returns its panic message.
#[track_caller]
pub fn panic_text<R>(f: impl FnOnce() -> R) -> String {
    match panic::catch_unwind(panic::AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic, but the call returned"),
        Err(payload) => panic_message(&*payload)
            .unwrap_or("<non-string payload>")
            .to_owned(),
    }
}

/// Runs the test body on a fresh two-worker runtime, bounded by [`TIMEOUT`].
pub fn on_two_workers<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    bounded(move || multi(2).block_on(body()));
}

/// A multi-thread runtime with `workers` workers.
pub fn multi(workers: usize) -> maniac::runtime::Runtime {
    maniac::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .build()
        .expect("cannot build a multi-thread runtime")
}

/// A multi-thread runtime that never preempts: for tests that assert the run modes explicit
/// switches produce (a worker the OS takes off its core mid-poll looks like a long poll to the
/// monitor, and a preemption would add a Switch of its own).
pub fn multi_cooperative(workers: usize) -> maniac::runtime::Runtime {
    maniac::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .preemption(false)
        .build()
        .expect("cannot build a multi-thread runtime")
}

/// A current-thread runtime.
pub fn current() -> maniac::runtime::Runtime {
    maniac::runtime::Builder::new_current_thread()
        .build()
        .expect("cannot build a current-thread runtime")
}

/// Builds a runtime of one flavour.
pub type MakeRuntime = fn() -> maniac::runtime::Runtime;

/// The three flavours every basic behaviour is checked on.
pub fn flavours() -> Vec<(&'static str, MakeRuntime)> {
    vec![
        ("multi_thread(1)", || multi(1)),
        ("multi_thread(4)", || multi(4)),
        ("current_thread", current),
    ]
}

/// Spins for about `iterations` steps without yielding (a stand-in for computation).
pub fn spin(iterations: u32) {
    for i in 0..iterations {
        std::hint::black_box(i);
        std::hint::spin_loop();
    }
}

/// Waits (bounded) for a condition that nothing notifies, re-checking after yielding the thread.
/// Fails the test if `timeout` runs out.
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::yield_now();
    }
}

/// Spawns `future` on the current runtime either on a stack of its own (Poll mode,
/// `spawn_pinned`) or on the worker's generator (None mode, `maniac::spawn`): the coroutine and
/// preemption tests run their tasks both ways.
pub fn spawn_in_mode<F>(own_stack: bool, future: F) -> maniac::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    if own_stack {
        maniac::coroutine::spawn_pinned(future)
    } else {
        maniac::spawn(future)
    }
}
