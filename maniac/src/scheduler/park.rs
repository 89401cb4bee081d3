//! A parker: the one thread that owns it sleeps in [`Parker::park`] until another thread calls
//! [`Parker::unpark`]. An `unpark` that comes first is kept as a token, so the next `park` returns at
//! once (the same contract as `std::thread::park`); several `unpark`s before a `park` make one token.
//! A worker that holds the runtime's driver sleeps instead in the driver's wait
//! ([`Parker::park_on_driver`]), and `unpark` then wakes the driver.
//!
//! ## State (`state`)
//! - [`EMPTY`]: no token, nobody asleep.
//! - [`PARKED`]: the owner is asleep on `condvar` (or about to be: it holds `mutex`).
//! - [`PARKED_ON_DRIVER`]: the owner waits in the driver (or is about to).
//! - [`NOTIFIED`]: a token is waiting for the next `park`.
//!
//! ## Rules
//! 1. Only the owner moves the state out of `NOTIFIED` (consuming the token) or into `PARKED` or
//!    `PARKED_ON_DRIVER`.
//! 2. `unpark` swaps in `NOTIFIED` unconditionally. If it replaced `PARKED` it takes `mutex` before
//!    `notify_one`, so that the owner cannot be between its `PARKED` transition and its `wait`
//!    (where a notification would be lost). If it replaced `PARKED_ON_DRIVER` it wakes the driver,
//!    whose wake-up is kept until the next wait if none is in progress.
//! 3. The owner leaves `park` only by consuming a token, so a spurious condvar wake-up re-waits. A
//!    driver wait ends by itself (an event, a timer): the owner returns from it either way, and
//!    consumes a token if one came.
//!
//! Orderings are `SeqCst` throughout: parking is the slow path, and the token hands over the
//! memory the unparker wrote before `unpark` (the owner's acquire of `NOTIFIED` sees it).

use crate::loom::atomic::AtomicUsize;
use crate::loom::atomic::Ordering::SeqCst;
use crate::loom::{Condvar, Mutex};

/// Wakes the driver a parker may sleep in.
pub(crate) type DriverUnpark = Box<dyn Fn() + Send + Sync>;

/// No token, nobody asleep.
const EMPTY: usize = 0;
/// The owner sleeps (or holds the mutex on its way to sleep).
const PARKED: usize = 1;
/// A wake-up token waits for the next `park`.
const NOTIFIED: usize = 2;
/// The owner waits in the driver.
const PARKED_ON_DRIVER: usize = 3;

pub(crate) struct Parker {
    state: AtomicUsize,
    mutex: Mutex<()>,
    condvar: Condvar,
    driver_unpark: Option<DriverUnpark>,
}

impl std::fmt::Debug for Parker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parker")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Parker {
    /// A parker that only ever sleeps on its condvar.
    #[cfg_attr(not(loom), allow(dead_code))] // the loom models use it
    pub(crate) fn new() -> Parker {
        Parker::with_driver(None)
    }

    /// A parker whose owner may also sleep in a driver that `driver_unpark` wakes.
    pub(crate) fn with_driver(driver_unpark: Option<DriverUnpark>) -> Parker {
        Parker {
            state: AtomicUsize::new(EMPTY),
            mutex: Mutex::new(()),
            condvar: Condvar::new(),
            driver_unpark,
        }
    }

    /// Sleeps in the driver: runs `wait` (the driver's wait, which returns on an event, a timer
    /// or a driver wake-up) unless a token is already here. Only the owner calls this, while it
    /// holds the driver.
    pub(crate) fn park_on_driver(&self, wait: impl FnOnce()) {
        match self
            .state
            .compare_exchange(EMPTY, PARKED_ON_DRIVER, SeqCst, SeqCst)
        {
            Ok(_) => wait(),
            Err(NOTIFIED) => {}
            Err(actual) => panic!("maniac: parker in impossible state {actual} (two owners?)"),
        }
        // Rule 3: back to EMPTY, consuming a token that came meanwhile.
        self.state.swap(EMPTY, SeqCst);
    }

    /// Sleeps until a token is available, then consumes it. Only the owner thread calls this.
    pub(crate) fn park(&self) {
        // Fast path: a token is already here (rule 1).
        if self
            .state
            .compare_exchange(NOTIFIED, EMPTY, SeqCst, SeqCst)
            .is_ok()
        {
            return;
        }
        let mut guard = self.mutex.lock().unwrap();
        match self.state.compare_exchange(EMPTY, PARKED, SeqCst, SeqCst) {
            Ok(_) => {}
            Err(NOTIFIED) => {
                // A token arrived between the fast path and the lock. Consume it with a swap (not a
                // plain store) so that this read-modify-write synchronises with the unparker's.
                let previous = self.state.swap(EMPTY, SeqCst);
                debug_assert_eq!(previous, NOTIFIED);
                return;
            }
            Err(actual) => panic!("maniac: parker in impossible state {actual} (two owners?)"),
        }
        loop {
            guard = self.condvar.wait(guard).unwrap();
            // Rule 3: only a token ends the sleep.
            if self
                .state
                .compare_exchange(NOTIFIED, EMPTY, SeqCst, SeqCst)
                .is_ok()
            {
                return;
            }
        }
    }

    /// Leaves a token and wakes the owner if it sleeps. Any thread may call this.
    pub(crate) fn unpark(&self) {
        match self.state.swap(NOTIFIED, SeqCst) {
            EMPTY | NOTIFIED => {}
            PARKED => {
                // Rule 2: taking the lock waits out an owner that is between its PARKED
                // transition and `wait`, so the notification cannot fall in that gap.
                drop(self.mutex.lock().unwrap());
                self.condvar.notify_one();
            }
            PARKED_ON_DRIVER => {
                let unpark = self.driver_unpark.as_ref();
                unpark.expect("maniac: parked on a driver without one")();
            }
            actual => panic!("maniac: parker in impossible state {actual}"),
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::Parker;
    use crate::loom::Arc;
    use crate::loom::atomic::AtomicUsize;
    use crate::loom::atomic::Ordering::{Acquire, Release};

    /// Whatever the interleaving, an `unpark` wakes the `park` (before or after it started), and
    /// what the unparker wrote before `unpark` is visible after `park`.
    #[test]
    fn unpark_is_never_lost_and_publishes_memory() {
        loom::model(|| {
            let parker = Arc::new(Parker::new());
            let value = Arc::new(AtomicUsize::new(0));
            let remote = {
                let (parker, value) = (parker.clone(), value.clone());
                loom::thread::spawn(move || {
                    value.store(42, Release);
                    parker.unpark();
                })
            };
            parker.park();
            assert_eq!(value.load(Acquire), 42);
            remote.join().unwrap();
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn tokens_do_not_accumulate() {
        let parker = Parker::new();
        parker.unpark();
        parker.unpark();
        parker.park();
        assert_eq!(
            parker.state.load(SeqCst),
            EMPTY,
            "two unparks must leave one token"
        );
    }
}
