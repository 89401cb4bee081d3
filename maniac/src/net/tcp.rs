//! TCP: `TcpListener`, `TcpStream` and its halves, with tokio's names (`TcpSocket`, for
//! configuring a socket before it connects or listens, is in `net::socket`).
//!
//! What a connected stream does regardless of its address family — readiness, the `try_*`
//! calls, the I/O traits, `split`/`into_split` and the halves — is written once, in
//! `byte_stream!`, and generated here for `TcpStream` and in `net::unix` for `UnixStream`.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::task::{Context, Poll};
use std::time::Duration;

use super::addr::{ToSocketAddrs, each_addr};
use crate::io::poll_evented::PollEvented;
use crate::io::scheduled_io::Direction;

/// A TCP listener, as `tokio::net::TcpListener`.
pub struct TcpListener {
    io: PollEvented<mio::net::TcpListener>,
}

impl TcpListener {
    /// Binds to `addr` (the first address that works, if it resolves to several).
    ///
    /// # Panics
    /// Outside a runtime context.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        each_addr(addr, |addr| async move {
            TcpListener::from_mio(mio::net::TcpListener::bind(addr)?)
        })
        .await
    }

    pub(crate) fn from_mio(listener: mio::net::TcpListener) -> io::Result<TcpListener> {
        Ok(TcpListener {
            io: PollEvented::new(listener)?,
        })
    }

    /// Takes over a standard listener (made non-blocking here).
    ///
    /// # Panics
    /// Outside a runtime context.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        TcpListener::from_mio(mio::net::TcpListener::from_std(listener))
    }

    /// The standard listener, left in non-blocking mode.
    pub fn into_std(self) -> io::Result<std::net::TcpListener> {
        use std::os::fd::{FromRawFd, IntoRawFd};
        let fd = self.io.into_inner().into_raw_fd();
        // SAFETY: the descriptor was just released by the mio listener, which owned it.
        Ok(unsafe { std::net::TcpListener::from_raw_fd(fd) })
    }

    /// Waits for a connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for a connection.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        match self
            .io
            .poll_io(cx, Direction::Read, |listener| listener.accept())
        {
            Poll::Ready(Ok((stream, addr))) => {
                Poll::Ready(TcpStream::from_mio(stream).map(|s| (s, addr)))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    /// The IP time-to-live of accepted connections.
    pub fn ttl(&self) -> io::Result<u32> {
        self.io.get_ref().ttl()
    }

    /// Sets the IP time-to-live of accepted connections.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.io.get_ref().set_ttl(ttl)
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.io.get_ref().fmt(f)
    }
}

/// A TCP connection, as `tokio::net::TcpStream`. Implements `futures-io`'s `AsyncRead` and
/// `AsyncWrite` (and tokio's, with the `tokio-io` feature).
pub struct TcpStream {
    io: PollEvented<mio::net::TcpStream>,
}

impl TcpStream {
    /// Connects to `addr` (each address it resolves to in turn, until one accepts).
    ///
    /// # Panics
    /// Outside a runtime context.
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        each_addr(addr, |addr| async move {
            TcpStream::connect_mio(mio::net::TcpStream::connect(addr)?).await
        })
        .await
    }

    /// Takes over a standard stream (made non-blocking here).
    ///
    /// # Panics
    /// Outside a runtime context.
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        TcpStream::from_mio(mio::net::TcpStream::from_std(stream))
    }

    /// The standard stream, left in non-blocking mode.
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        use std::os::fd::{FromRawFd, IntoRawFd};
        let fd = self.io.into_inner().into_raw_fd();
        // SAFETY: the descriptor was just released by the mio stream, which owned it.
        Ok(unsafe { std::net::TcpStream::from_raw_fd(fd) })
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().peer_addr()
    }

    /// Whether Nagle's algorithm is off.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.io.get_ref().nodelay()
    }

    /// Turns Nagle's algorithm off (`true`) or on.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.io.get_ref().set_nodelay(nodelay)
    }

    /// The IP time-to-live.
    pub fn ttl(&self) -> io::Result<u32> {
        self.io.get_ref().ttl()
    }

    /// Sets the IP time-to-live.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.io.get_ref().set_ttl(ttl)
    }

    /// `SO_LINGER`.
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        socket2::SockRef::from(self.io.get_ref()).linger()
    }

    /// Sets `SO_LINGER`.
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        socket2::SockRef::from(self.io.get_ref()).set_linger(linger)
    }

    /// Reads into `buf` without consuming it.
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| {
            self.io
                .poll_io(cx, Direction::Read, |stream| stream.peek(buf))
        })
        .await
    }

    /// Shuts one or both directions down.
    pub fn shutdown_std(&self, how: Shutdown) -> io::Result<()> {
        self.io.get_ref().shutdown(how)
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.io.get_ref().fmt(f)
    }
}

/// Implements futures-io's traits (and, with `tokio-io`, tokio's) for `$ty`, whose `$get` (with
/// `$stream` bound to `&self`) is a stream with the `*_shared` methods of `byte_stream!`. Expands
/// in `byte_stream!`'s module, whose imports it uses.
macro_rules! stream_io_traits {
    ($ty:ty, $stream:ident => $get:expr) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                let $stream = &*self;
                $get.poll_read_shared(cx, buf)
            }

            fn poll_read_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &mut [IoSliceMut<'_>],
            ) -> Poll<io::Result<usize>> {
                let $stream = &*self;
                $get.poll_read_vectored_shared(cx, bufs)
            }
        }

        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                let $stream = &*self;
                $get.poll_write_shared(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                let $stream = &*self;
                $get.poll_write_vectored_shared(cx, bufs)
            }

            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                // Nothing is buffered: writes go straight to the kernel.
                Poll::Ready(Ok(()))
            }

            fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                let $stream = &*self;
                $get.shutdown_write()
            }
        }

        #[cfg(feature = "tokio-io")]
        $crate::io::tokio_io::tokio_io_traits!($ty, $stream => $get);
    };
}

/// The part of a connected byte stream that does not depend on its address family, for
/// `TcpStream` here and `UnixStream` in `net::unix`: registration (`from_mio`, `connect_mio`),
/// readiness and the `try_*` calls, `split`/`into_split` with the halves (`ReadHalf`,
/// `WriteHalf`, `OwnedReadHalf`, `OwnedWriteHalf` and `ReuniteError`, re-exported by the
/// invoking module), and the I/O traits of the stream and its halves (`stream_io_traits!`).
///
/// `$stream` is a struct of the invoking module with a field `io: PollEvented<$mio>` and methods
/// `local_addr`/`peer_addr` that return `io::Result<$addr>`; `$mio` is a mio stream (`&$mio` reads
/// and writes; it has `take_error` and `shutdown`). Paths are absolute: the items live in a
/// module of their own, `stream_parts`, inside the invoking one.
macro_rules! byte_stream {
    ($stream:ident, $mio:ty, $addr:ty) => {
        pub use self::stream_parts::{
            OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, WriteHalf,
        };

        /// What `net::tcp::byte_stream!` generates for the stream of this module.
        mod stream_parts {
            use std::fmt;
            use std::future::poll_fn;
            use std::io::{self, IoSlice, IoSliceMut, Read, Write};
            use std::net::Shutdown;
            use std::pin::Pin;
            use std::sync::Arc;
            use std::task::{Context, Poll};

            use super::$stream;
            use $crate::io::poll_evented::PollEvented;
            use $crate::io::scheduled_io::Direction;
            use $crate::io::{AsyncRead, AsyncWrite};

            impl $stream {
                /// Registers a connected (or connecting) mio stream.
                pub(crate) fn from_mio(stream: $mio) -> io::Result<$stream> {
                    Ok($stream {
                        io: PollEvented::new(stream)?,
                    })
                }

                /// Waits for a non-blocking connect to finish.
                pub(crate) async fn connect_mio(stream: $mio) -> io::Result<$stream> {
                    let stream = $stream::from_mio(stream)?;
                    // Writable once the connection is made or has failed; `take_error` tells
                    // which.
                    poll_fn(|cx| stream.io.poll_ready(cx, Direction::Write)).await?;
                    if let Some(error) = stream.io.get_ref().take_error()? {
                        return Err(error);
                    }
                    Ok(stream)
                }

                /// Waits until the stream is readable (or its read side is closed).
                pub async fn readable(&self) -> io::Result<()> {
                    self.io.ready(Direction::Read).await.map(drop)
                }

                /// Waits until the stream is writable (or its write side is closed).
                pub async fn writable(&self) -> io::Result<()> {
                    self.io.ready(Direction::Write).await.map(drop)
                }

                /// Reads without waiting; `WouldBlock` if nothing is there (or the stream has
                /// not been seen readable yet: wait with `readable` first).
                pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
                    self.io
                        .try_io(Direction::Read, |stream| (&*stream).read(buf))
                }

                /// [`try_read`](Self::try_read) into several buffers.
                pub fn try_read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
                    self.io
                        .try_io(Direction::Read, |stream| (&*stream).read_vectored(bufs))
                }

                /// Writes without waiting; `WouldBlock` if the send buffer is full (or the
                /// stream has not been seen writable yet: wait with `writable` first).
                pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
                    self.io
                        .try_io(Direction::Write, |stream| (&*stream).write(buf))
                }

                /// [`try_write`](Self::try_write) from several buffers.
                pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                    self.io
                        .try_io(Direction::Write, |stream| (&*stream).write_vectored(bufs))
                }

                /// The pending socket error (`SO_ERROR`), clearing it.
                pub fn take_error(&self) -> io::Result<Option<io::Error>> {
                    self.io.get_ref().take_error()
                }

                /// Borrowed read and write halves, for use in one task.
                pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
                    (ReadHalf(self), WriteHalf(self))
                }

                /// Owned read and write halves, for use in two tasks. Dropping the write half
                /// shuts the write direction down.
                pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
                    let stream = Arc::new(self);
                    (
                        OwnedReadHalf(stream.clone()),
                        OwnedWriteHalf {
                            stream,
                            shutdown_on_drop: true,
                        },
                    )
                }

                pub(crate) fn poll_read_shared(
                    &self,
                    cx: &mut Context<'_>,
                    buf: &mut [u8],
                ) -> Poll<io::Result<usize>> {
                    self.io
                        .poll_io(cx, Direction::Read, |stream| (&*stream).read(buf))
                }

                pub(crate) fn poll_read_vectored_shared(
                    &self,
                    cx: &mut Context<'_>,
                    bufs: &mut [IoSliceMut<'_>],
                ) -> Poll<io::Result<usize>> {
                    self.io.poll_io(cx, Direction::Read, |stream| {
                        (&*stream).read_vectored(bufs)
                    })
                }

                pub(crate) fn poll_write_shared(
                    &self,
                    cx: &mut Context<'_>,
                    buf: &[u8],
                ) -> Poll<io::Result<usize>> {
                    self.io
                        .poll_io(cx, Direction::Write, |stream| (&*stream).write(buf))
                }

                pub(crate) fn poll_write_vectored_shared(
                    &self,
                    cx: &mut Context<'_>,
                    bufs: &[IoSlice<'_>],
                ) -> Poll<io::Result<usize>> {
                    self.io.poll_io(cx, Direction::Write, |stream| {
                        (&*stream).write_vectored(bufs)
                    })
                }

                pub(crate) fn shutdown_write(&self) -> Poll<io::Result<()>> {
                    match self.io.get_ref().shutdown(Shutdown::Write) {
                        // Already shut down, or the peer is gone: the write side is closed
                        // either way.
                        Err(error) if error.kind() == io::ErrorKind::NotConnected => {
                            Poll::Ready(Ok(()))
                        }
                        result => Poll::Ready(result),
                    }
                }
            }

            $crate::net::tcp::stream_io_traits!($stream, stream => stream);
            $crate::net::tcp::stream_io_traits!(ReadHalf<'_>, half => half.0);
            $crate::net::tcp::stream_io_traits!(WriteHalf<'_>, half => half.0);
            $crate::net::tcp::stream_io_traits!(OwnedReadHalf, half => half.0);
            $crate::net::tcp::stream_io_traits!(OwnedWriteHalf, half => half.stream);

            #[doc = concat!(
                "The read half of [`", stringify!($stream), "::split`] (it can also write: ",
                "halves are views of one stream)."
            )]
            #[derive(Debug)]
            pub struct ReadHalf<'a>(&'a $stream);

            #[doc = concat!("The write half of [`", stringify!($stream), "::split`].")]
            #[derive(Debug)]
            pub struct WriteHalf<'a>(&'a $stream);

            #[doc = concat!("The read half of [`", stringify!($stream), "::into_split`].")]
            #[derive(Debug)]
            pub struct OwnedReadHalf(Arc<$stream>);

            #[doc = concat!(
                "The write half of [`", stringify!($stream), "::into_split`]; dropping it ",
                "shuts the write direction down."
            )]
            #[derive(Debug)]
            pub struct OwnedWriteHalf {
                stream: Arc<$stream>,
                shutdown_on_drop: bool,
            }

            impl AsRef<$stream> for ReadHalf<'_> {
                fn as_ref(&self) -> &$stream {
                    self.0
                }
            }

            impl AsRef<$stream> for WriteHalf<'_> {
                fn as_ref(&self) -> &$stream {
                    self.0
                }
            }

            impl AsRef<$stream> for OwnedReadHalf {
                fn as_ref(&self) -> &$stream {
                    &self.0
                }
            }

            impl AsRef<$stream> for OwnedWriteHalf {
                fn as_ref(&self) -> &$stream {
                    &self.stream
                }
            }

            /// The halves given to [`OwnedReadHalf::reunite`] came from two different streams.
            #[derive(Debug)]
            pub struct ReuniteError(pub OwnedReadHalf, pub OwnedWriteHalf);

            impl fmt::Display for ReuniteError {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("tried to reunite halves that are not from the same socket")
                }
            }

            impl std::error::Error for ReuniteError {}

            impl OwnedReadHalf {
                /// The stream again, from its two halves.
                pub fn reunite(self, other: OwnedWriteHalf) -> Result<$stream, ReuniteError> {
                    if !Arc::ptr_eq(&self.0, &other.stream) {
                        return Err(ReuniteError(self, other));
                    }
                    let mut other = other;
                    other.shutdown_on_drop = false;
                    let stream = other.stream.clone();
                    drop(other);
                    drop(self);
                    Ok(Arc::try_unwrap(stream).expect("both halves were given back"))
                }

                /// The peer's address.
                pub fn peer_addr(&self) -> io::Result<$addr> {
                    self.0.peer_addr()
                }

                /// The local address.
                pub fn local_addr(&self) -> io::Result<$addr> {
                    self.0.local_addr()
                }

                /// Waits until readable.
                pub async fn readable(&self) -> io::Result<()> {
                    self.0.readable().await
                }

                /// Reads without waiting.
                pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
                    self.0.try_read(buf)
                }
            }

            impl OwnedWriteHalf {
                /// The stream again, from its two halves.
                pub fn reunite(self, other: OwnedReadHalf) -> Result<$stream, ReuniteError> {
                    other.reunite(self)
                }

                /// Drops the half without shutting the write direction down.
                pub fn forget(mut self) {
                    self.shutdown_on_drop = false;
                }

                /// The peer's address.
                pub fn peer_addr(&self) -> io::Result<$addr> {
                    self.stream.peer_addr()
                }

                /// The local address.
                pub fn local_addr(&self) -> io::Result<$addr> {
                    self.stream.local_addr()
                }

                /// Waits until writable.
                pub async fn writable(&self) -> io::Result<()> {
                    self.stream.writable().await
                }

                /// Writes without waiting.
                pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
                    self.stream.try_write(buf)
                }
            }

            impl Drop for OwnedWriteHalf {
                fn drop(&mut self) {
                    if self.shutdown_on_drop {
                        let _ = self.stream.shutdown_write();
                    }
                }
            }
        }
    };
}

pub(crate) use {byte_stream, stream_io_traits};

byte_stream!(TcpStream, mio::net::TcpStream, std::net::SocketAddr);
