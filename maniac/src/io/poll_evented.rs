//! `PollEvented`: a mio source registered with the current runtime's reactor, and the
//! readiness loop every socket operation runs.
//!
//! An operation ([`PollEvented::poll_io`]) waits until its direction is ready, tries the
//! non-blocking system call, and on `WouldBlock` clears the readiness it saw
//! (`scheduled_io` rule 3) and waits again. Before it waits it asks the task's cooperative
//! budget (`task::coop`): a task that only ever finds its socket ready still yields after a
//! while, so I/O-bound tasks stay fair to the others even without preemption.

use std::future::poll_fn;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use mio::Interest;
use mio::event::Source;

use super::reactor::Reactor;
use super::scheduled_io::{Direction, ReadyEvent, ScheduledIo};
use crate::runtime::context;
use crate::task::coop;

/// A registered I/O source.
pub(crate) struct PollEvented<E: Source> {
    /// `None` only after `into_inner`.
    io: Option<E>,
    reactor: Arc<Reactor>,
    key: usize,
    readiness: Arc<ScheduledIo>,
}

impl<E: Source + std::fmt::Debug> std::fmt::Debug for PollEvented<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollEvented").field("io", &self.io).finish()
    }
}

impl<E: Source> PollEvented<E> {
    /// Registers `io` for reading and writing with the current runtime's reactor.
    ///
    /// # Panics
    /// Outside a runtime context.
    #[track_caller]
    pub(crate) fn new(io: E) -> io::Result<PollEvented<E>> {
        PollEvented::new_with_interest(io, Interest::READABLE | Interest::WRITABLE)
    }

    /// Registers `io` for `interest` with the current runtime's reactor.
    ///
    /// # Panics
    /// Outside a runtime context.
    #[track_caller]
    pub(crate) fn new_with_interest(mut io: E, interest: Interest) -> io::Result<PollEvented<E>> {
        let reactor = match context::with_current(|handle| handle.shared.io.clone()) {
            Ok(reactor) => reactor,
            Err(error) => panic!("maniac::net: {error}"),
        };
        let (key, readiness) = reactor.register(&mut io, interest)?;
        Ok(PollEvented {
            io: Some(io),
            reactor,
            key,
            readiness,
        })
    }

    pub(crate) fn get_ref(&self) -> &E {
        self.io
            .as_ref()
            .expect("maniac: I/O source used after into_inner")
    }

    /// Waits until `direction` is ready (or the budget says to yield first).
    pub(crate) fn poll_ready(
        &self,
        cx: &mut Context<'_>,
        direction: Direction,
    ) -> Poll<io::Result<ReadyEvent>> {
        ready!(coop::poll_proceed(cx));
        self.readiness.poll_ready(cx, direction)
    }

    /// Clears readiness seen in `event` after an operation would have blocked.
    pub(crate) fn clear_readiness(&self, event: ReadyEvent) {
        self.readiness.clear_readiness(event);
    }

    /// The readiness loop of the module doc.
    pub(crate) fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        direction: Direction,
        mut operation: impl FnMut(&E) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            let event = ready!(self.poll_ready(cx, direction))?;
            match operation(self.get_ref()) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.clear_readiness(event);
                }
                result => {
                    coop::made_progress();
                    return Poll::Ready(result);
                }
            }
        }
    }

    /// Waits until `direction` is ready.
    pub(crate) async fn ready(&self, direction: Direction) -> io::Result<ReadyEvent> {
        poll_fn(|cx| self.poll_ready(cx, direction)).await
    }

    /// Runs `operation` once if `direction` looks ready; `WouldBlock` otherwise (and when the
    /// operation would block, which clears the readiness).
    pub(crate) fn try_io<R>(
        &self,
        direction: Direction,
        operation: impl FnOnce(&E) -> io::Result<R>,
    ) -> io::Result<R> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let event = match self.readiness.poll_ready(&mut cx, direction) {
            Poll::Ready(event) => event?,
            Poll::Pending => return Err(io::ErrorKind::WouldBlock.into()),
        };
        let result = operation(self.get_ref());
        if matches!(&result, Err(error) if error.kind() == io::ErrorKind::WouldBlock) {
            self.clear_readiness(event);
        }
        result
    }

    /// Deregisters and gives back the source.
    pub(crate) fn into_inner(mut self) -> E {
        let mut io = self.io.take().expect("maniac: I/O source taken twice");
        self.reactor.deregister(&mut io, self.key);
        io
    }
}

impl<E: Source> Drop for PollEvented<E> {
    fn drop(&mut self) {
        if let Some(mut io) = self.io.take() {
            self.reactor.deregister(&mut io, self.key);
        }
    }
}
