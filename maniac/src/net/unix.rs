//! Unix domain sockets: `UnixListener`, `UnixStream` and its halves, `UnixDatagram`, with
//! tokio's names (the types are re-exported from `net`; this module holds the halves and
//! [`SocketAddr`]).
//!
//! They run on the same readiness protocol as TCP and UDP. `UnixStream` gets everything that
//! does not depend on the address family from `net::tcp`'s `byte_stream!` (readiness, `try_*`,
//! the I/O traits, the halves), `UnixDatagram` from `net::udp`'s `datagram_socket!`; what is
//! written here is what names a path.
//!
//! A path whose first byte is NUL names a socket in Linux's abstract namespace, for
//! `UnixListener::bind` and `UnixStream::connect` (as tokio's); `UnixDatagram` takes paths as the
//! system does.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::os::unix::net::SocketAddr as StdSocketAddr;
use std::path::Path;
use std::task::{Context, Poll};

use crate::io::poll_evented::PollEvented;
use crate::io::scheduled_io::Direction;

/// The address of a Unix socket, as `tokio::net::unix::SocketAddr`: a path, an abstract name,
/// or unnamed (a socket that was never bound, like most clients). Converts to and from the
/// standard library's.
#[derive(Clone)]
pub struct SocketAddr(StdSocketAddr);

impl SocketAddr {
    /// Whether the socket has no name.
    pub fn is_unnamed(&self) -> bool {
        self.0.is_unnamed()
    }

    /// The path, for a socket bound to one.
    pub fn as_pathname(&self) -> Option<&Path> {
        self.0.as_pathname()
    }

    /// The name, for a socket bound in the abstract namespace.
    #[cfg(target_os = "linux")]
    pub fn as_abstract_name(&self) -> Option<&[u8]> {
        use std::os::linux::net::SocketAddrExt;
        self.0.as_abstract_name()
    }
}

impl fmt::Debug for SocketAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<StdSocketAddr> for SocketAddr {
    fn from(addr: StdSocketAddr) -> SocketAddr {
        SocketAddr(addr)
    }
}

impl From<SocketAddr> for StdSocketAddr {
    fn from(addr: SocketAddr) -> StdSocketAddr {
        addr.0
    }
}

/// The address `path` names: in the abstract namespace if it starts with a NUL byte (Linux),
/// else a path in the file system.
fn stream_addr(path: &Path) -> io::Result<StdSocketAddr> {
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::ffi::OsStrExt;
        if let Some(name) = path.as_os_str().as_bytes().strip_prefix(b"\0") {
            return StdSocketAddr::from_abstract_name(name);
        }
    }
    StdSocketAddr::from_pathname(path)
}

/// A Unix stream listener, as `tokio::net::UnixListener`.
pub struct UnixListener {
    io: PollEvented<mio::net::UnixListener>,
}

impl UnixListener {
    /// Binds to `path`, which must not exist yet (`AddrInUse` if it does: remove a stale socket
    /// file first).
    ///
    /// # Panics
    /// Outside a runtime context.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let listener = mio::net::UnixListener::bind_addr(&stream_addr(path.as_ref())?)?;
        UnixListener::from_mio(listener)
    }

    fn from_mio(listener: mio::net::UnixListener) -> io::Result<UnixListener> {
        Ok(UnixListener {
            io: PollEvented::new(listener)?,
        })
    }

    /// Takes over a standard listener (made non-blocking here).
    ///
    /// # Panics
    /// Outside a runtime context.
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        listener.set_nonblocking(true)?;
        UnixListener::from_mio(mio::net::UnixListener::from_std(listener))
    }

    /// The standard listener, left in non-blocking mode.
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixListener> {
        Ok(self.io.into_inner().into())
    }

    /// Waits for a connection; the stream and the peer's address (usually unnamed).
    pub async fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for a connection.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(UnixStream, SocketAddr)>> {
        match self
            .io
            .poll_io(cx, Direction::Read, |listener| listener.accept())
        {
            Poll::Ready(Ok((stream, addr))) => {
                Poll::Ready(UnixStream::from_mio(stream).map(|s| (s, SocketAddr(addr))))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr().map(SocketAddr)
    }

    /// The pending socket error (`SO_ERROR`), clearing it.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.get_ref().take_error()
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.io.get_ref().fmt(f)
    }
}

/// A Unix stream connection, as `tokio::net::UnixStream`. Implements `futures-io`'s `AsyncRead`
/// and `AsyncWrite` (and tokio's, with the `tokio-io` feature).
pub struct UnixStream {
    io: PollEvented<mio::net::UnixStream>,
}

impl UnixStream {
    /// Connects to the socket at `path`. `WouldBlock` if the listener's backlog is full (the
    /// system does not queue the attempt), `NotFound` if nothing is there, `ConnectionRefused`
    /// if nobody listens there any more.
    ///
    /// # Panics
    /// Outside a runtime context.
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let stream = mio::net::UnixStream::connect_addr(&stream_addr(path.as_ref())?)?;
        UnixStream::connect_mio(stream).await
    }

    /// Two streams connected to each other (`socketpair`), both unnamed.
    ///
    /// # Panics
    /// Outside a runtime context.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = mio::net::UnixStream::pair()?;
        Ok((UnixStream::from_mio(a)?, UnixStream::from_mio(b)?))
    }

    /// Takes over a standard stream (made non-blocking here).
    ///
    /// # Panics
    /// Outside a runtime context.
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        stream.set_nonblocking(true)?;
        UnixStream::from_mio(mio::net::UnixStream::from_std(stream))
    }

    /// The standard stream, left in non-blocking mode.
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixStream> {
        Ok(self.io.into_inner().into())
    }

    /// The local address (usually unnamed, for a client).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr().map(SocketAddr)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().peer_addr().map(SocketAddr)
    }
}

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.io.get_ref().fmt(f)
    }
}

super::tcp::byte_stream!(
    UnixStream,
    mio::net::UnixStream,
    crate::net::unix::SocketAddr
);

/// A Unix datagram socket, as `tokio::net::UnixDatagram`.
pub struct UnixDatagram {
    io: PollEvented<mio::net::UnixDatagram>,
}

impl UnixDatagram {
    /// A socket bound to `path`, which must not exist yet (`AddrInUse` if it does).
    ///
    /// # Panics
    /// Outside a runtime context.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        UnixDatagram::from_mio(mio::net::UnixDatagram::bind(path)?)
    }

    /// A socket bound to no address (it can send, and receive once connected or as a reply).
    ///
    /// # Panics
    /// Outside a runtime context.
    pub fn unbound() -> io::Result<UnixDatagram> {
        UnixDatagram::from_mio(mio::net::UnixDatagram::unbound()?)
    }

    /// Two sockets connected to each other (`socketpair`), both unnamed.
    ///
    /// # Panics
    /// Outside a runtime context.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = mio::net::UnixDatagram::pair()?;
        Ok((UnixDatagram::from_mio(a)?, UnixDatagram::from_mio(b)?))
    }

    /// Takes over a standard socket (made non-blocking here).
    ///
    /// # Panics
    /// Outside a runtime context.
    pub fn from_std(socket: std::os::unix::net::UnixDatagram) -> io::Result<UnixDatagram> {
        socket.set_nonblocking(true)?;
        UnixDatagram::from_mio(mio::net::UnixDatagram::from_std(socket))
    }

    /// The standard socket, left in non-blocking mode.
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixDatagram> {
        Ok(self.io.into_inner().into())
    }

    /// Connects to the socket at `path`: from now on `send` goes there and only datagrams from
    /// there are received.
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.io.get_ref().connect(path)
    }

    /// Sends `buf` to the socket at `target`; the number of bytes sent.
    pub async fn send_to(&self, buf: &[u8], target: impl AsRef<Path>) -> io::Result<usize> {
        poll_fn(|cx| self.poll_send_to(cx, buf, target.as_ref())).await
    }

    /// Polls to send `buf` to the socket at `target`.
    pub fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: impl AsRef<Path>,
    ) -> Poll<io::Result<usize>> {
        self.io.poll_io(cx, Direction::Write, |socket| {
            socket.send_to(buf, target.as_ref())
        })
    }

    /// Sends `buf` to the socket at `target` without waiting; `WouldBlock` if it cannot be sent
    /// now.
    pub fn try_send_to(&self, buf: &[u8], target: impl AsRef<Path>) -> io::Result<usize> {
        self.io
            .try_io(Direction::Write, |socket| socket.send_to(buf, target))
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr().map(SocketAddr)
    }

    /// The address it is connected to (`NotConnected` if none).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().peer_addr().map(SocketAddr)
    }

    /// Shuts one or both directions down.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.get_ref().shutdown(how)
    }
}

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.io.get_ref().fmt(f)
    }
}

super::udp::datagram_socket!(
    UnixDatagram,
    mio::net::UnixDatagram,
    crate::net::unix::SocketAddr,
    crate::net::unix::SocketAddr::from
);
