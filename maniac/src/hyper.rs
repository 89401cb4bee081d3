//! hyper 1.x on maniac (the `hyper` feature): the executor, timer and I/O that hyper asks of a
//! runtime, through the traits of `hyper::rt`.
//!
//! ## Protocol
//! - **I/O.** [`ManiacIo`] makes any `futures-io` stream (a [`TcpStream`](crate::net::TcpStream),
//!   a Unix stream, their halves, a TLS stream over one) hyper's `Read` and `Write`. A read zeroes
//!   at most 1–64 KiB (adapting to the traffic) of the unfilled, possibly uninitialised part of hyper's buffer,
//!   lets the stream read into that initialised part, and advances hyper's cursor by the count
//!   read (no more than it zeroed), so the stream never sees an uninitialised byte. A read of
//!   nothing into a non-empty buffer is the end of the stream, as in both traits. Writes, vectored
//!   writes and flushes pass through; hyper's `poll_shutdown` is futures-io's `poll_close`, which
//!   for maniac's sockets shuts the write direction down.
//! - **Executor.** HTTP/2 runs each stream (and, on the client, the connection's background work)
//!   as a task of its own: [`ManiacExecutor`] spawns them, detached, on the runtime whose
//!   [`Handle`] it holds.
//! - **Timer.** HTTP/1's `header_read_timeout` and HTTP/2's keep-alive pings wait on
//!   [`ManiacTimer`], whose sleeps are [`maniac::time::Sleep`](crate::time::Sleep)s of the
//!   runtime whose handle it holds; resetting one moves its deadline in place.
//!
//! Executor and timer take the current runtime's handle when made with `new()` (which must run
//! in a runtime context: inside `block_on`, a task, or under `Runtime::enter`) or are given one
//! (`with_handle`), and work from any thread after that. No tokio runtime is involved: what hyper
//! and h2 use of tokio (its sync primitives and I/O traits) needs none.
//!
//! ## Serving HTTP/1.1 and HTTP/2
//! Accept connections with maniac's listener and serve each one in a task of its own; HTTP/1.1
//! needs the timer for `header_read_timeout`, HTTP/2 needs the executor (and the timer for
//! keep-alive). Clients are the same with `hyper::client::conn`: hand the `ManiacIo` to
//! `http1::handshake` (or `http2::Builder::new(ManiacExecutor::new()).handshake`) and spawn the
//! returned connection.
//!
//! ```no_run
//! use std::convert::Infallible;
//! use std::time::Duration;
//!
//! use hyper::body::Incoming;
//! use hyper::server::conn::{http1, http2};
//! use hyper::service::service_fn;
//! use hyper::{Request, Response};
//! use maniac::hyper::{ManiacExecutor, ManiacIo, ManiacTimer};
//!
//! async fn hello(_: Request<Incoming>) -> Result<Response<String>, Infallible> {
//!     Ok(Response::new("Hello, World!".to_owned()))
//! }
//!
//! async fn serve() -> std::io::Result<()> {
//!     let h1 = maniac::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     let h2 = maniac::net::TcpListener::bind("127.0.0.1:3001").await?;
//!     maniac::spawn(async move {
//!         while let Ok((stream, _)) = h2.accept().await {
//!             let served = http2::Builder::new(ManiacExecutor::new())
//!                 .timer(ManiacTimer::new())
//!                 .serve_connection(ManiacIo::new(stream), service_fn(hello));
//!             maniac::spawn(served);
//!         }
//!     });
//!     loop {
//!         let (stream, _) = h1.accept().await?;
//!         let served = http1::Builder::new()
//!             .timer(ManiacTimer::new())
//!             .header_read_timeout(Duration::from_secs(10))
//!             .serve_connection(ManiacIo::new(stream), service_fn(hello));
//!         maniac::spawn(served);
//!     }
//! }
//!
//! #[maniac::main]
//! async fn main() -> std::io::Result<()> {
//!     serve().await
//! }
//! ```

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant as StdInstant};

use ::hyper::rt::{self, ReadBufCursor};

use crate::io::{AsyncRead, AsyncWrite};
use crate::runtime::Handle;
use crate::time::{self, Instant};

/// How much of hyper's buffer one read initialises and fills, at least and at most. hyper offers
/// its whole spare capacity (8 KiB for a fresh HTTP/1 connection, hundreds of KiB once a large
/// body has grown it), and HTTP/1 wraps it in a fresh cursor, which knows nothing initialised, for
/// every read; so each read zeroes what it lends the stream. The amount adapts between these
/// bounds (doubling after a read that filled it, halving after one that used less than a quarter):
/// small requests then cost a small zeroing, and bulk transfers still read in large pieces.
const MIN_READ_CHUNK: usize = 1024;
const MAX_READ_CHUNK: usize = 64 * 1024;

/// A `futures-io` stream as hyper's `Read` and `Write` (module doc, "Protocol").
#[derive(Debug)]
pub struct ManiacIo<T> {
    inner: T,
    vectored: bool,
    /// What the next read lends the stream ([`MIN_READ_CHUNK`]).
    read_chunk: usize,
}

impl<T> ManiacIo<T> {
    /// Wraps `inner`, reporting vectored writes as efficient (they are for maniac's sockets, which
    /// write all the slices in one system call), so that hyper queues its buffers instead of
    /// copying them into one.
    pub fn new(inner: T) -> ManiacIo<T> {
        ManiacIo {
            inner,
            vectored: true,
            read_chunk: 4 * 1024,
        }
    }

    /// Sets what hyper is told of vectored writes: pass `false` for a stream whose
    /// `poll_write_vectored` is futures-io's default (one slice per call), so that hyper flattens
    /// its buffers into one instead.
    pub fn with_vectored_writes(mut self, vectored: bool) -> ManiacIo<T> {
        self.vectored = vectored;
        self
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The wrapped stream, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// The wrapped stream, unwrapped.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsyncRead + Unpin> rt::Read for ManiacIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let len = buf.remaining().min(this.read_chunk);
        let unfilled = buf.initialize_unfilled_to(len);
        match Pin::new(&mut this.inner).poll_read(cx, unfilled) {
            Poll::Ready(Ok(read)) => {
                // A count past the slice comes from a broken (safe) stream; advancing by it would
                // move hyper's cursor past its buffer, so this check is what keeps it sound.
                assert!(
                    read <= len,
                    "AsyncRead::poll_read returned more than the buffer's length"
                );
                if read == len && len == this.read_chunk {
                    this.read_chunk = (this.read_chunk * 2).min(MAX_READ_CHUNK);
                } else if read < this.read_chunk / 4 {
                    this.read_chunk = (this.read_chunk / 2).max(MIN_READ_CHUNK);
                }
                // SAFETY: the first `len` bytes of the unfilled part were initialised by
                // `initialize_unfilled_to`, and `read <= len`.
                unsafe { buf.advance(read) };
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> rt::Write for ManiacIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
}

/// hyper's executor: spawns each future as a detached task of a maniac runtime.
#[derive(Clone, Debug)]
pub struct ManiacExecutor {
    handle: Handle,
}

impl ManiacExecutor {
    /// An executor for the current runtime.
    ///
    /// # Panics
    /// Outside a runtime context; use [`ManiacExecutor::with_handle`] there.
    #[track_caller]
    pub fn new() -> ManiacExecutor {
        ManiacExecutor::with_handle(Handle::current())
    }

    /// An executor for the runtime of `handle`, usable from any thread.
    pub fn with_handle(handle: Handle) -> ManiacExecutor {
        ManiacExecutor { handle }
    }
}

impl Default for ManiacExecutor {
    /// [`ManiacExecutor::new`] (and so panics outside a runtime context).
    #[track_caller]
    fn default() -> ManiacExecutor {
        ManiacExecutor::new()
    }
}

impl<F> rt::Executor<F> for ManiacExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        drop(self.handle.spawn(future));
    }
}

/// hyper's timer: sleeps on the timers of a maniac runtime.
#[derive(Clone, Debug)]
pub struct ManiacTimer {
    handle: Handle,
}

impl ManiacTimer {
    /// A timer on the current runtime.
    ///
    /// # Panics
    /// Outside a runtime context; use [`ManiacTimer::with_handle`] there.
    #[track_caller]
    pub fn new() -> ManiacTimer {
        ManiacTimer::with_handle(Handle::current())
    }

    /// A timer on the runtime of `handle`, usable from any thread.
    pub fn with_handle(handle: Handle) -> ManiacTimer {
        ManiacTimer { handle }
    }
}

impl Default for ManiacTimer {
    /// [`ManiacTimer::new`] (and so panics outside a runtime context).
    #[track_caller]
    fn default() -> ManiacTimer {
        ManiacTimer::new()
    }
}

impl rt::Timer for ManiacTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn rt::Sleep>> {
        let _runtime = self.handle.enter();
        Box::pin(ManiacSleep(time::sleep(duration)))
    }

    fn sleep_until(&self, deadline: StdInstant) -> Pin<Box<dyn rt::Sleep>> {
        let _runtime = self.handle.enter();
        Box::pin(ManiacSleep(time::sleep_until(Instant::from_std(deadline))))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn rt::Sleep>>, new_deadline: StdInstant) {
        match sleep.as_mut().downcast_mut_pin::<ManiacSleep>() {
            Some(ours) => Pin::new(&mut ours.get_mut().0).reset(Instant::from_std(new_deadline)),
            // Not one of ours (hyper only resets the sleeps of the timer it was given).
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// A maniac [`Sleep`](time::Sleep) as hyper's `Sleep` (which must be `Send + Sync`; maniac's is,
/// and `Unpin` too, so no pinning is projected).
struct ManiacSleep(time::Sleep);

impl Future for ManiacSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.get_mut().0).poll(cx)
    }
}

impl rt::Sleep for ManiacSleep {}
