//! Networking on the runtime's reactor (`mio`), with tokio's names: TCP, UDP, Unix sockets and
//! name resolution.
//!
//! Every socket is registered with the reactor of the runtime it was created in, and must be
//! created inside that runtime's context (else the constructor panics, saying so). Its operations
//! wait for readiness (`io::scheduled_io` module doc), so a wake-up is never lost or spurious
//! forever, whichever worker the task runs on; they also count against the task's cooperative
//! budget (`task::coop`). Errors (refused connections, addresses in use, bad addresses, reset
//! peers) are `io::Error`s, never panics; after the runtime has shut down every operation fails
//! with an error saying so.
//!
//! Streams share their address-family-independent code through `tcp::byte_stream!`, datagram
//! sockets through `udp::datagram_socket!` (see those modules).

mod addr;
mod socket;
pub mod tcp;
mod udp;
pub mod unix;

pub use addr::{ToSocketAddrs, lookup_host};
pub use socket::TcpSocket;
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixListener, UnixStream};
