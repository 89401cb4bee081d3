//! UDP: `UdpSocket`, with tokio's names.
//!
//! Every datagram operation is one system call in `PollEvented`'s readiness loop: a `send*` sends
//! one whole datagram or fails, a `recv*` takes one whole datagram (what does not fit in the
//! buffer is discarded, as the system call does), a `peek*` looks at the next one and leaves it
//! queued. Like a datagram on the wire, a datagram sent may be dropped (when the receiver's
//! buffer is full, say); nothing here retries.
//!
//! What a datagram socket does regardless of its address family — readiness, `send`/`recv` on a
//! connected socket, `recv_from`, and the `poll_*` and `try_*` forms of these — is written once,
//! in `datagram_socket!`, and generated here for `UdpSocket` and in `net::unix` for
//! `UnixDatagram`.
//!
//! One difference from tokio: the `poll_recv*`/`poll_peek*` methods take a plain `&mut [u8]`
//! and return how many bytes they wrote into it, where tokio's take a `ReadBuf` and advance it.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::task::{Context, Poll};

use super::addr::{ToSocketAddrs, each_addr, lookup_host};
use crate::io::poll_evented::PollEvented;
use crate::io::scheduled_io::Direction;

/// A UDP socket, as `tokio::net::UdpSocket`.
///
/// It can send to and receive from any address (`send_to`, `recv_from`), or, once
/// [`connect`](UdpSocket::connect)ed, exchange datagrams with one peer only (`send`, `recv`).
pub struct UdpSocket {
    io: PollEvented<mio::net::UdpSocket>,
}

impl UdpSocket {
    /// Binds to `addr` (the first address that works, if it resolves to several).
    ///
    /// # Panics
    /// Outside a runtime context.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        each_addr(addr, |addr| async move {
            UdpSocket::from_mio(mio::net::UdpSocket::bind(addr)?)
        })
        .await
    }

    /// Takes over a standard socket (made non-blocking here).
    ///
    /// # Panics
    /// Outside a runtime context.
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        socket.set_nonblocking(true)?;
        UdpSocket::from_mio(mio::net::UdpSocket::from_std(socket))
    }

    /// The standard socket, left in non-blocking mode.
    pub fn into_std(self) -> io::Result<std::net::UdpSocket> {
        Ok(self.io.into_inner().into())
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    /// The address it is connected to (`NotConnected` if none).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().peer_addr()
    }

    /// Connects to `addr` (the first address that works, if it resolves to several): from now
    /// on `send` goes there and only datagrams from there are received.
    pub async fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        each_addr(addr, |addr| {
            std::future::ready(self.io.get_ref().connect(addr))
        })
        .await
    }

    /// Sends `buf` to `target` (its first address, if it resolves to several); the number of
    /// bytes sent.
    pub async fn send_to(&self, buf: &[u8], target: impl ToSocketAddrs) -> io::Result<usize> {
        let Some(target) = lookup_host(target).await?.next() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no addresses to send data to",
            ));
        };
        poll_fn(|cx| self.poll_send_to(cx, buf, target)).await
    }

    /// Polls to send `buf` to `target`.
    pub fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.io
            .poll_io(cx, Direction::Write, |socket| socket.send_to(buf, target))
    }

    /// Sends `buf` to `target` without waiting; `WouldBlock` if it cannot be sent now.
    pub fn try_send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        self.io
            .try_io(Direction::Write, |socket| socket.send_to(buf, target))
    }

    /// Waits for a datagram from the connected peer and copies it into `buf`, leaving it
    /// queued; its length (as much as fits).
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| {
            self.io
                .poll_io(cx, Direction::Read, |socket| socket.peek(buf))
        })
        .await
    }

    /// Waits for a datagram and copies it into `buf`, leaving it queued; its length (as much as
    /// fits) and sender.
    pub async fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        poll_fn(|cx| self.poll_peek_from(cx, buf)).await
    }

    /// Polls to peek at the next datagram (see the module doc for the buffer).
    pub fn poll_peek_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        self.io
            .poll_io(cx, Direction::Read, |socket| socket.peek_from(buf))
    }

    /// Peeks at the next datagram without waiting; `WouldBlock` if there is none.
    pub fn try_peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io
            .try_io(Direction::Read, |socket| socket.peek_from(buf))
    }

    /// Whether `SO_BROADCAST` is set.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.io.get_ref().broadcast()
    }

    /// Sets `SO_BROADCAST`: whether datagrams may go to a broadcast address.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.io.get_ref().set_broadcast(on)
    }

    /// The IP time-to-live of datagrams sent.
    pub fn ttl(&self) -> io::Result<u32> {
        self.io.get_ref().ttl()
    }

    /// Sets the IP time-to-live of datagrams sent.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.io.get_ref().set_ttl(ttl)
    }

    /// Whether IPv4 multicast datagrams sent come back to this host (`IP_MULTICAST_LOOP`).
    pub fn multicast_loop_v4(&self) -> io::Result<bool> {
        self.io.get_ref().multicast_loop_v4()
    }

    /// Sets `IP_MULTICAST_LOOP`.
    pub fn set_multicast_loop_v4(&self, on: bool) -> io::Result<()> {
        self.io.get_ref().set_multicast_loop_v4(on)
    }

    /// The time-to-live of IPv4 multicast datagrams sent (`IP_MULTICAST_TTL`).
    pub fn multicast_ttl_v4(&self) -> io::Result<u32> {
        self.io.get_ref().multicast_ttl_v4()
    }

    /// Sets `IP_MULTICAST_TTL`.
    pub fn set_multicast_ttl_v4(&self, ttl: u32) -> io::Result<()> {
        self.io.get_ref().set_multicast_ttl_v4(ttl)
    }

    /// Whether IPv6 multicast datagrams sent come back to this host (`IPV6_MULTICAST_LOOP`).
    pub fn multicast_loop_v6(&self) -> io::Result<bool> {
        self.io.get_ref().multicast_loop_v6()
    }

    /// Sets `IPV6_MULTICAST_LOOP`.
    pub fn set_multicast_loop_v6(&self, on: bool) -> io::Result<()> {
        self.io.get_ref().set_multicast_loop_v6(on)
    }

    /// Joins the IPv4 multicast group `multiaddr` on the interface with address `interface`
    /// (`Ipv4Addr::UNSPECIFIED`: the system chooses).
    pub fn join_multicast_v4(&self, multiaddr: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        self.io.get_ref().join_multicast_v4(&multiaddr, &interface)
    }

    /// Leaves a group joined with [`join_multicast_v4`](UdpSocket::join_multicast_v4).
    pub fn leave_multicast_v4(&self, multiaddr: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        self.io.get_ref().leave_multicast_v4(&multiaddr, &interface)
    }

    /// Joins the IPv6 multicast group `multiaddr` on the interface with index `interface`
    /// (0: the system chooses).
    pub fn join_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.io.get_ref().join_multicast_v6(multiaddr, interface)
    }

    /// Leaves a group joined with [`join_multicast_v6`](UdpSocket::join_multicast_v6).
    pub fn leave_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.io.get_ref().leave_multicast_v6(multiaddr, interface)
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.io.get_ref().fmt(f)
    }
}

/// The part of a datagram socket that does not depend on its address family, for `UdpSocket`
/// here and `UnixDatagram` in `net::unix`: registration (`from_mio`), readiness, `send`/`recv`,
/// `recv_from`, their `poll_*` and `try_*` forms, and `take_error`.
///
/// `$socket` is a struct of the invoking module with a field `io: PollEvented<$mio>`; `$mio` is
/// a mio datagram socket (`send`, `recv`, `recv_from`, `take_error`); `$addr` is the sender
/// address `recv_from` returns, made by `$to_addr` from mio's. Paths are absolute: the items
/// live in a module of their own, `datagram_parts`, inside the invoking one.
macro_rules! datagram_socket {
    ($socket:ident, $mio:ty, $addr:ty, $to_addr:expr) => {
        /// What `net::udp::datagram_socket!` generates for the socket of this module.
        mod datagram_parts {
            use std::future::poll_fn;
            use std::io;
            use std::task::{Context, Poll};

            use super::$socket;
            use $crate::io::poll_evented::PollEvented;
            use $crate::io::scheduled_io::Direction;

            impl $socket {
                /// Registers a mio socket.
                pub(crate) fn from_mio(socket: $mio) -> io::Result<$socket> {
                    Ok($socket {
                        io: PollEvented::new(socket)?,
                    })
                }

                /// Waits until a datagram can be received (or an error is pending).
                pub async fn readable(&self) -> io::Result<()> {
                    self.io.ready(Direction::Read).await.map(drop)
                }

                /// Waits until a datagram can be sent (or an error is pending).
                pub async fn writable(&self) -> io::Result<()> {
                    self.io.ready(Direction::Write).await.map(drop)
                }

                /// Polls until a datagram can be received.
                pub fn poll_recv_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                    self.io.poll_ready(cx, Direction::Read).map_ok(drop)
                }

                /// Polls until a datagram can be sent.
                pub fn poll_send_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                    self.io.poll_ready(cx, Direction::Write).map_ok(drop)
                }

                /// Sends `buf` to the connected peer; the number of bytes sent.
                pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
                    poll_fn(|cx| self.poll_send(cx, buf)).await
                }

                /// Polls to send `buf` to the connected peer.
                pub fn poll_send(
                    &self,
                    cx: &mut Context<'_>,
                    buf: &[u8],
                ) -> Poll<io::Result<usize>> {
                    self.io
                        .poll_io(cx, Direction::Write, |socket| socket.send(buf))
                }

                /// Sends `buf` to the connected peer without waiting; `WouldBlock` if it cannot
                /// be sent now (or the socket has not been seen writable yet: wait with
                /// `writable` first).
                pub fn try_send(&self, buf: &[u8]) -> io::Result<usize> {
                    self.io.try_io(Direction::Write, |socket| socket.send(buf))
                }

                /// Waits for a datagram from the connected peer and moves it into `buf`; its
                /// length (as much as fits: the rest is discarded).
                pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
                    poll_fn(|cx| self.poll_recv(cx, buf)).await
                }

                /// Polls to receive a datagram from the connected peer into `buf` (a plain
                /// slice, where tokio's takes a `ReadBuf`); the number of bytes written into it.
                pub fn poll_recv(
                    &self,
                    cx: &mut Context<'_>,
                    buf: &mut [u8],
                ) -> Poll<io::Result<usize>> {
                    self.io
                        .poll_io(cx, Direction::Read, |socket| socket.recv(buf))
                }

                /// Receives a datagram from the connected peer without waiting; `WouldBlock` if
                /// there is none.
                pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
                    self.io.try_io(Direction::Read, |socket| socket.recv(buf))
                }

                /// Waits for a datagram and moves it into `buf`; its length (as much as fits:
                /// the rest is discarded) and sender.
                pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, $addr)> {
                    poll_fn(|cx| self.poll_recv_from(cx, buf)).await
                }

                /// Polls to receive a datagram into `buf` (a plain slice, where tokio's takes a
                /// `ReadBuf`); the number of bytes written into it and the sender.
                pub fn poll_recv_from(
                    &self,
                    cx: &mut Context<'_>,
                    buf: &mut [u8],
                ) -> Poll<io::Result<(usize, $addr)>> {
                    self.io
                        .poll_io(cx, Direction::Read, |socket| socket.recv_from(buf))
                        .map_ok(|(len, sender)| (len, $to_addr(sender)))
                }

                /// Receives a datagram without waiting; `WouldBlock` if there is none.
                pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, $addr)> {
                    self.io
                        .try_io(Direction::Read, |socket| socket.recv_from(buf))
                        .map(|(len, sender)| (len, $to_addr(sender)))
                }

                /// The pending socket error (`SO_ERROR`), clearing it.
                pub fn take_error(&self) -> io::Result<Option<io::Error>> {
                    self.io.get_ref().take_error()
                }
            }
        }
    };
}

pub(crate) use datagram_socket;

datagram_socket!(
    UdpSocket,
    mio::net::UdpSocket,
    std::net::SocketAddr,
    std::convert::identity
);
