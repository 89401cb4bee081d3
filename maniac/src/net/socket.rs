//! `TcpSocket`: a TCP socket not yet connected or listening, to set options on first, with
//! tokio's names.
//!
//! The socket is created non-blocking (`socket2`) and is registered with no reactor until it
//! becomes a stream or a listener: [`TcpSocket::connect`] starts a non-blocking connect (which
//! "fails" with `EINPROGRESS` while it runs) and hands the socket to `TcpStream::connect_mio`,
//! which waits for it; [`TcpSocket::listen`] hands it to `TcpListener::from_mio`. Options and
//! `bind` are plain system calls and need no runtime.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::tcp::{TcpListener, TcpStream};

/// A TCP socket before it connects or listens, as `tokio::net::TcpSocket`.
pub struct TcpSocket {
    socket: Socket,
}

impl TcpSocket {
    /// A new IPv4 socket.
    pub fn new_v4() -> io::Result<TcpSocket> {
        TcpSocket::new(Domain::IPV4)
    }

    /// A new IPv6 socket.
    pub fn new_v6() -> io::Result<TcpSocket> {
        TcpSocket::new(Domain::IPV6)
    }

    fn new(domain: Domain) -> io::Result<TcpSocket> {
        let socket = Socket::new(domain, Type::STREAM.nonblocking(), Some(Protocol::TCP))?;
        Ok(TcpSocket { socket })
    }

    /// Takes over a standard stream, to read or change its options (it is already connected:
    /// `connect` and `listen` would fail).
    pub fn from_std_stream(stream: std::net::TcpStream) -> TcpSocket {
        TcpSocket {
            socket: Socket::from(stream),
        }
    }

    /// Sets `SO_KEEPALIVE`.
    pub fn set_keepalive(&self, keepalive: bool) -> io::Result<()> {
        self.socket.set_keepalive(keepalive)
    }

    /// Whether `SO_KEEPALIVE` is set.
    pub fn keepalive(&self) -> io::Result<bool> {
        self.socket.keepalive()
    }

    /// Sets `SO_REUSEADDR`: on Unix, whether `bind` may take an address that a closed
    /// connection still holds (in `TIME_WAIT`). Not an address another socket listens on.
    pub fn set_reuseaddr(&self, reuseaddr: bool) -> io::Result<()> {
        self.socket.set_reuse_address(reuseaddr)
    }

    /// Whether `SO_REUSEADDR` is set.
    pub fn reuseaddr(&self) -> io::Result<bool> {
        self.socket.reuse_address()
    }

    /// Sets `SO_REUSEPORT`: whether several sockets (each with it set) may bind the same
    /// address; on Linux the kernel spreads incoming connections over their listeners.
    pub fn set_reuseport(&self, reuseport: bool) -> io::Result<()> {
        self.socket.set_reuse_port(reuseport)
    }

    /// Whether `SO_REUSEPORT` is set.
    pub fn reuseport(&self) -> io::Result<bool> {
        self.socket.reuse_port()
    }

    /// Sets `SO_SNDBUF`, the size of the send buffer (Linux doubles the value asked for, to
    /// leave room for its bookkeeping, and reports the doubled value).
    pub fn set_send_buffer_size(&self, size: u32) -> io::Result<()> {
        self.socket.set_send_buffer_size(size as usize)
    }

    /// `SO_SNDBUF`.
    pub fn send_buffer_size(&self) -> io::Result<u32> {
        self.socket.send_buffer_size().map(saturate)
    }

    /// Sets `SO_RCVBUF`, the size of the receive buffer (doubled by Linux, as
    /// [`set_send_buffer_size`](TcpSocket::set_send_buffer_size)).
    pub fn set_recv_buffer_size(&self, size: u32) -> io::Result<()> {
        self.socket.set_recv_buffer_size(size as usize)
    }

    /// `SO_RCVBUF`.
    pub fn recv_buffer_size(&self) -> io::Result<u32> {
        self.socket.recv_buffer_size().map(saturate)
    }

    /// Sets `SO_LINGER`.
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        self.socket.set_linger(linger)
    }

    /// `SO_LINGER`.
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        self.socket.linger()
    }

    /// Turns Nagle's algorithm off (`true`) or on (`TCP_NODELAY`).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.socket.set_tcp_nodelay(nodelay)
    }

    /// Whether Nagle's algorithm is off.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.socket.tcp_nodelay()
    }

    /// The address it is bound to (unspecified, port 0, before `bind`).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()?.as_socket().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid address family (not IPv4 or IPv6)",
            )
        })
    }

    /// The pending socket error (`SO_ERROR`), clearing it.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.socket.take_error()
    }

    /// Binds to `addr` (`AddrInUse` if another socket holds it).
    pub fn bind(&self, addr: SocketAddr) -> io::Result<()> {
        self.socket.bind(&addr.into())
    }

    /// Connects to `addr` and waits until the connection is made or has failed
    /// (`ConnectionRefused`, say).
    ///
    /// # Panics
    /// Outside a runtime context.
    pub async fn connect(self, addr: SocketAddr) -> io::Result<TcpStream> {
        if let Err(error) = self.socket.connect(&addr.into()) {
            // The connect goes on in the background; `connect_mio` waits for its outcome.
            if error.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(error);
            }
        }
        let stream = std::net::TcpStream::from(self.socket);
        TcpStream::connect_mio(mio::net::TcpStream::from_std(stream)).await
    }

    /// Starts listening with a queue of up to `backlog` connections not yet accepted.
    ///
    /// # Panics
    /// Outside a runtime context.
    pub fn listen(self, backlog: u32) -> io::Result<TcpListener> {
        self.socket
            .listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
        let listener = std::net::TcpListener::from(self.socket);
        TcpListener::from_mio(mio::net::TcpListener::from_std(listener))
    }
}

/// A buffer size as tokio reports it (`u32`); sizes beyond are capped.
fn saturate(size: usize) -> u32 {
    u32::try_from(size).unwrap_or(u32::MAX)
}

impl AsFd for TcpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for TcpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl fmt::Debug for TcpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.socket.fmt(f)
    }
}
