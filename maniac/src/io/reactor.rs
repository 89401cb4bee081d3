//! The I/O reactor: mio's `Poll`, the resources registered with it, and who may wait on it.
//!
//! ## Rules
//! 1. Every resource is registered under a token that is its key in `resources`; its readiness
//!    lives in a [`ScheduledIo`] shared by the resource and the reactor.
//! 2. Only the holder of the `poll` lock waits for events (a worker parking on the driver, or a
//!    worker's non-blocking maintenance turn); everyone else parks elsewhere or skips.
//! 3. [`Reactor::unpark`] (mio's `Waker`) ends a wait from any thread; a wake before the wait
//!    makes the wait return at once (the eventfd stays readable).
//! 4. An event for a key that was deregistered and reused meanwhile reaches the new resource as
//!    spurious readiness, which its next operation clears (`scheduled_io` rule 3): harmless.
//! 5. At shutdown every resource is marked shut down and its waiters woken
//!    (`scheduled_io` rule 4); registering afterwards fails.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mio::event::Source;
use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;

use super::scheduled_io::{
    READ_CLOSED, READABLE, SHUTDOWN, ScheduledIo, WRITABLE, WRITE_CLOSED, shutdown_error,
};
use crate::preempt;

/// The token of the reactor's own waker (rule 3); resource keys never reach it.
const WAKE_TOKEN: Token = Token(usize::MAX);
/// Events handled per wait.
const EVENTS_CAPACITY: usize = 1024;

/// What the lock holder of rule 2 owns.
pub(crate) struct PollState {
    poll: Poll,
    events: Events,
}

pub(crate) struct Reactor {
    poll: Mutex<PollState>,
    registry: Registry,
    waker: mio::Waker,
    resources: Mutex<Slab<Arc<ScheduledIo>>>,
    /// How many resources are registered: with none, a non-blocking turn has nothing to find.
    registered: AtomicUsize,
    shutdown: AtomicBool,
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor").finish_non_exhaustive()
    }
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = mio::Waker::new(&registry, WAKE_TOKEN)?;
        Ok(Reactor {
            poll: Mutex::new(PollState {
                poll,
                events: Events::with_capacity(EVENTS_CAPACITY),
            }),
            registry,
            waker,
            resources: Mutex::new(Slab::new()),
            registered: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
        })
    }

    fn resources(&self) -> preempt::Held<'_, Slab<Arc<ScheduledIo>>> {
        // No user code runs under this lock.
        preempt::lock(&self.resources)
    }

    /// Rule 2: the right to wait for events, if nobody else has it.
    pub(crate) fn try_lock_poll(&self) -> Option<MutexGuard<'_, PollState>> {
        self.poll.try_lock().ok()
    }

    /// Registers `source` for `interest` (rule 1).
    pub(crate) fn register(
        &self,
        source: &mut impl Source,
        interest: Interest,
    ) -> io::Result<(usize, Arc<ScheduledIo>)> {
        if self.shutdown.load(Ordering::Acquire) {
            return Err(shutdown_error());
        }
        let io = Arc::new(ScheduledIo::default());
        let key = self.resources().insert(io.clone());
        if let Err(error) = self.registry.register(source, Token(key), interest) {
            self.resources().remove(key);
            return Err(error);
        }
        self.registered.fetch_add(1, Ordering::Relaxed);
        // A shutdown that ran between the check and the insert missed this resource.
        if self.shutdown.load(Ordering::Acquire) {
            io.set_readiness(SHUTDOWN);
        }
        Ok((key, io))
    }

    /// Deregisters `source`, registered under `key`.
    pub(crate) fn deregister(&self, source: &mut impl Source, key: usize) {
        // An error here means the descriptor is already gone from epoll (closed): nothing to do.
        let _ = self.registry.deregister(source);
        let removed = self.resources().try_remove(key);
        if removed.is_some() {
            self.registered.fetch_sub(1, Ordering::Relaxed);
        }
        drop(removed);
    }

    /// Waits for events up to `timeout` (`None`: until one comes or [`Reactor::unpark`]) and
    /// hands them to their resources. The caller holds the poll lock (rule 2).
    pub(crate) fn turn(&self, state: &mut PollState, timeout: Option<Duration>) {
        let PollState { poll, events } = state;
        if let Err(error) = poll.poll(events, timeout) {
            // EINTR (a signal, e.g. a preemption request) is a short wait, not a failure.
            if error.kind() != io::ErrorKind::Interrupted {
                eprintln!("maniac: waiting for I/O events failed: {error}");
            }
            return;
        }
        let mut ready = Vec::with_capacity(events.iter().count());
        {
            let resources = self.resources();
            for event in events.iter() {
                if event.token() == WAKE_TOKEN {
                    continue;
                }
                let Some(io) = resources.get(event.token().0) else {
                    continue; // deregistered meanwhile
                };
                let mut bits = 0;
                if event.is_readable() {
                    bits |= READABLE;
                }
                if event.is_writable() {
                    bits |= WRITABLE;
                }
                if event.is_read_closed() || event.is_error() {
                    bits |= READ_CLOSED;
                }
                if event.is_write_closed() || event.is_error() {
                    bits |= WRITE_CLOSED;
                }
                ready.push((io.clone(), bits));
            }
        }
        // Outside the resources lock: waking may schedule, and scheduling may drop a resource.
        for (io, bits) in ready {
            io.set_readiness(bits);
        }
    }

    /// Whether any resource is registered (a hint: stale as soon as read).
    pub(crate) fn has_resources(&self) -> bool {
        self.registered.load(Ordering::Relaxed) > 0
    }

    /// Rule 3.
    pub(crate) fn unpark(&self) {
        if let Err(error) = self.waker.wake() {
            eprintln!("maniac: waking the I/O driver failed: {error}");
        }
    }

    /// Rule 5.
    pub(crate) fn shut_down(&self) {
        self.shutdown.store(true, Ordering::Release);
        let all: Vec<Arc<ScheduledIo>> =
            self.resources().iter().map(|(_, io)| io.clone()).collect();
        for io in all {
            io.set_readiness(SHUTDOWN);
        }
    }
}
