//! The readiness of one registered I/O resource, and the tasks waiting for it.
//!
//! ## State (`readiness`)
//! Bits [`READABLE`], [`WRITABLE`], [`READ_CLOSED`], [`WRITE_CLOSED`] and [`SHUTDOWN`], and above
//! [`TICK_SHIFT`] a *tick* that counts the events the reactor delivered.
//!
//! ## Rules
//! 1. The reactor ORs the event's bits in and increments the tick, then wakes the waiters of
//!    each direction the event made ready. It takes the waiters' lock to do so.
//! 2. A task that wants a direction reads `readiness`: if that direction is ready it gets a
//!    [`ReadyEvent`] (the bits and the tick it saw). Otherwise it stores its waker under the
//!    waiters' lock and reads `readiness` again before returning `Pending`: an event that came
//!    between the two reads is seen by the second, and one that comes after it finds the waker
//!    (rule 1 takes the same lock).
//! 3. After an operation fails with `WouldBlock`, the task clears the bits it saw, but only if
//!    the tick is still the one it saw (a compare-and-swap): an event that arrived meanwhile
//!    keeps its bits, so no readiness is lost.
//! 4. [`SHUTDOWN`] is set once, when the runtime shuts down, and wakes everyone; then every
//!    readiness wait fails with an error saying so.
//! 5. Several tasks may wait for the same direction (say two `readable()` futures): all are
//!    woken. A waker that is no longer wanted stays until the next event, which wakes it once,
//!    spuriously, and drops it.

use crate::preempt;
use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

/// The resource can be read (or accepted from).
pub(crate) const READABLE: usize = 1 << 0;
/// The resource can be written.
pub(crate) const WRITABLE: usize = 1 << 1;
/// The peer closed its writing side (reads will return 0), or an error occurred.
pub(crate) const READ_CLOSED: usize = 1 << 2;
/// The peer closed its reading side (writes will fail), or an error occurred.
pub(crate) const WRITE_CLOSED: usize = 1 << 3;
/// The runtime shut down (rule 4); set once, never cleared.
pub(crate) const SHUTDOWN: usize = 1 << 4;
/// Where the tick starts in `readiness`.
const TICK_SHIFT: u32 = 16;
const BITS_MASK: usize = (1 << TICK_SHIFT) - 1;

/// A direction a task waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

impl Direction {
    /// The bits that make this direction ready (a closed side is "ready": the operation will
    /// not block, it will return the end or the error).
    fn mask(self) -> usize {
        match self {
            Direction::Read => READABLE | READ_CLOSED,
            Direction::Write => WRITABLE | WRITE_CLOSED,
        }
    }
}

/// What a task saw when a direction was ready (rule 2), to clear it with (rule 3).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadyEvent {
    pub(crate) ready: usize,
    tick: usize,
}

#[derive(Debug, Default)]
struct Waiters {
    readers: Vec<Waker>,
    writers: Vec<Waker>,
}

#[derive(Debug, Default)]
pub(crate) struct ScheduledIo {
    readiness: AtomicUsize,
    waiters: Mutex<Waiters>,
}

impl ScheduledIo {
    fn waiters(&self) -> preempt::Held<'_, Waiters> {
        // No user code runs under this lock (wakers are called after it is released).
        preempt::lock(&self.waiters)
    }

    /// Rule 1 (and rule 4 with `SHUTDOWN`).
    pub(crate) fn set_readiness(&self, bits: usize) {
        // AcqRel: the task that sees the bits also sees what came before the event.
        let _ = self
            .readiness
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                let tick = (current >> TICK_SHIFT).wrapping_add(1);
                Some((tick << TICK_SHIFT) | (current & BITS_MASK) | bits)
            });
        let woken = {
            let mut waiters = self.waiters();
            let mut woken = Vec::new();
            if bits & (Direction::Read.mask() | SHUTDOWN) != 0 {
                woken.append(&mut waiters.readers);
            }
            if bits & (Direction::Write.mask() | SHUTDOWN) != 0 {
                woken.append(&mut waiters.writers);
            }
            woken
        };
        for waker in woken {
            waker.wake();
        }
    }

    fn ready_event(&self, direction: Direction) -> Option<io::Result<ReadyEvent>> {
        let current = self.readiness.load(Ordering::Acquire);
        if current & SHUTDOWN != 0 {
            return Some(Err(shutdown_error()));
        }
        let ready = current & direction.mask();
        (ready != 0).then_some(Ok(ReadyEvent {
            ready,
            tick: current >> TICK_SHIFT,
        }))
    }

    /// Rule 2.
    pub(crate) fn poll_ready(
        &self,
        cx: &mut Context<'_>,
        direction: Direction,
    ) -> Poll<io::Result<ReadyEvent>> {
        if let Some(event) = self.ready_event(direction) {
            return Poll::Ready(event);
        }
        {
            let mut waiters = self.waiters();
            let list = match direction {
                Direction::Read => &mut waiters.readers,
                Direction::Write => &mut waiters.writers,
            };
            if !list.iter().any(|waker| waker.will_wake(cx.waker())) {
                list.push(cx.waker().clone());
            }
        }
        match self.ready_event(direction) {
            Some(event) => Poll::Ready(event),
            None => Poll::Pending,
        }
    }

    /// Rule 3.
    pub(crate) fn clear_readiness(&self, event: ReadyEvent) {
        // Closed sides stay "ready": every later operation must see the end or the error.
        let clear = event.ready & (READABLE | WRITABLE);
        let _ = self
            .readiness
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                (current >> TICK_SHIFT == event.tick).then_some(current & !clear)
            });
    }
}

pub(crate) fn shutdown_error() -> io::Error {
    io::Error::other("maniac: the runtime that drove this I/O resource has shut down")
}
