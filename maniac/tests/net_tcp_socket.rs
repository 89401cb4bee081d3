#![cfg(not(loom))]
//! `maniac::net::TcpSocket`: options set before `bind`, `listen` and `connect`, and the errors
//! of binding a taken address and connecting to a port nobody listens on.

mod common;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use common::on_two_workers;
use futures::{AsyncReadExt, AsyncWriteExt};
use maniac::net::{TcpListener, TcpSocket, TcpStream};

fn any_loopback_port() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, 0).into()
}

/// Writes `message` on `stream`, shuts its write side down and reads the peer's answer to the
/// end.
async fn say(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    stream.write_all(message).await.unwrap();
    stream.close().await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    answer
}

/// Accepts one connection and answers what it reads (to the end) reversed.
async fn answer_one_reversed(listener: TcpListener) -> SocketAddr {
    let (mut stream, peer) = listener.accept().await.unwrap();
    let mut request = Vec::new();
    stream.read_to_end(&mut request).await.unwrap();
    request.reverse();
    stream.write_all(&request).await.unwrap();
    stream.close().await.unwrap();
    peer
}

#[test]
fn reuseaddr_bind_and_listen_make_a_listener_that_accepts() {
    on_two_workers(|| async {
        let socket = TcpSocket::new_v4().unwrap();
        assert_eq!(socket.local_addr().unwrap().port(), 0, "not bound yet");
        socket.set_reuseaddr(true).unwrap();
        assert!(socket.reuseaddr().unwrap());
        socket.bind(any_loopback_port()).unwrap();
        let addr = socket.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let listener = socket.listen(128).unwrap();
        assert_eq!(listener.local_addr().unwrap(), addr);

        let server = maniac::spawn(answer_one_reversed(listener));
        let mut client = TcpStream::connect(addr).await.unwrap();
        assert_eq!(say(&mut client, b"stressed").await, b"desserts");
        assert_eq!(server.await.unwrap(), client.local_addr().unwrap());
    });
}

#[test]
fn connect_through_a_socket_with_options_set_first() {
    on_two_workers(|| async {
        let listener = TcpListener::bind(any_loopback_port()).await.unwrap();
        let server_addr = listener.local_addr().unwrap();
        let server = maniac::spawn(answer_one_reversed(listener));

        let socket = TcpSocket::new_v4().unwrap();
        socket.set_nodelay(true).unwrap();
        socket.set_keepalive(true).unwrap();
        assert!(socket.keepalive().unwrap());
        socket.bind(any_loopback_port()).unwrap();
        let local = socket.local_addr().unwrap();
        let mut stream = socket.connect(server_addr).await.unwrap();
        assert_eq!(
            stream.local_addr().unwrap(),
            local,
            "connected from the bound address"
        );
        assert_eq!(stream.peer_addr().unwrap(), server_addr);
        assert!(
            stream.nodelay().unwrap(),
            "options carry over to the stream"
        );
        assert_eq!(say(&mut stream, b"drawer").await, b"reward");
        assert_eq!(server.await.unwrap(), local);
    });
}

#[test]
fn buffer_sizes_linger_and_nodelay_are_settable() {
    on_two_workers(|| async {
        let socket = TcpSocket::new_v4().unwrap();
        // Linux doubles what is asked for (and has minimums): at least the size asked.
        socket.set_send_buffer_size(64 * 1024).unwrap();
        assert!(socket.send_buffer_size().unwrap() >= 64 * 1024);
        socket.set_recv_buffer_size(32 * 1024).unwrap();
        let recv = socket.recv_buffer_size().unwrap();
        assert!(recv >= 32 * 1024, "{recv}");
        socket.set_recv_buffer_size(128 * 1024).unwrap();
        assert!(
            socket.recv_buffer_size().unwrap() > recv,
            "the second size took effect"
        );

        socket
            .set_linger(Some(std::time::Duration::from_secs(3)))
            .unwrap();
        assert_eq!(
            socket.linger().unwrap(),
            Some(std::time::Duration::from_secs(3))
        );
        socket.set_nodelay(true).unwrap();
        assert!(socket.nodelay().unwrap());
        socket.set_nodelay(false).unwrap();
        assert!(!socket.nodelay().unwrap());
        assert!(socket.take_error().unwrap().is_none());
    });
}

#[test]
fn reuseport_lets_two_listeners_share_a_port() {
    on_two_workers(|| async {
        let first = TcpSocket::new_v4().unwrap();
        first.set_reuseport(true).unwrap();
        assert!(first.reuseport().unwrap());
        first.bind(any_loopback_port()).unwrap();
        let addr = first.local_addr().unwrap();
        let first = first.listen(16).unwrap();

        let second = TcpSocket::new_v4().unwrap();
        second.set_reuseport(true).unwrap();
        second.bind(addr).unwrap();
        let second = second.listen(16).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
        drop((first, second));
    });
}

#[test]
fn binding_an_address_in_use_is_addr_in_use() {
    on_two_workers(|| async {
        let listener = TcpListener::bind(any_loopback_port()).await.unwrap();
        let taken = listener.local_addr().unwrap();
        let socket = TcpSocket::new_v4().unwrap();
        let error = socket.bind(taken).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        // Not even with SO_REUSEADDR: that is for addresses left in TIME_WAIT, not listened on.
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        assert_eq!(
            socket.bind(taken).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
    });
}

#[test]
fn connecting_to_a_port_nobody_listens_on_is_connection_refused() {
    on_two_workers(|| async {
        // A bound socket that does not listen holds the port, so nobody else can take it
        // meanwhile, and refuses connections to it.
        let holder = TcpSocket::new_v4().unwrap();
        holder.bind(any_loopback_port()).unwrap();
        let closed = holder.local_addr().unwrap();

        let error = TcpSocket::new_v4()
            .unwrap()
            .connect(closed)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
        let error = TcpStream::connect(closed).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
    });
}

#[test]
fn mismatched_address_families_are_errors() {
    on_two_workers(|| async {
        let socket = TcpSocket::new_v4().unwrap();
        assert!(socket.bind((Ipv6Addr::LOCALHOST, 0).into()).is_err());
        let listener = TcpListener::bind(any_loopback_port()).await.unwrap();
        let v4 = listener.local_addr().unwrap();
        let mapped_elsewhere: SocketAddr = (Ipv6Addr::LOCALHOST, v4.port()).into();
        assert!(
            TcpSocket::new_v4()
                .unwrap()
                .connect(mapped_elsewhere)
                .await
                .is_err()
        );
    });
}

#[test]
fn ipv6_sockets_work_where_the_host_has_ipv6_loopback() {
    on_two_workers(|| async {
        let socket = TcpSocket::new_v6().unwrap();
        if let Err(error) = socket.bind((Ipv6Addr::LOCALHOST, 0).into()) {
            // No `::1` here (IPv6 disabled): nothing to check.
            assert_eq!(error.kind(), io::ErrorKind::AddrNotAvailable, "{error}");
            eprintln!("skipped: no IPv6 loopback ({error})");
            return;
        }
        let addr = socket.local_addr().unwrap();
        assert!(addr.is_ipv6());
        let server = maniac::spawn(answer_one_reversed(socket.listen(8).unwrap()));
        let mut client = TcpSocket::new_v6().unwrap().connect(addr).await.unwrap();
        assert_eq!(say(&mut client, b"live").await, b"evil");
        server.await.unwrap();
    });
}

#[test]
fn from_std_stream_reads_the_options_of_a_connected_stream() {
    on_two_workers(|| async {
        let listener = std::net::TcpListener::bind(any_loopback_port()).unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        stream.set_nodelay(true).unwrap();
        let local = stream.local_addr().unwrap();
        let socket = TcpSocket::from_std_stream(stream);
        assert_eq!(socket.local_addr().unwrap(), local);
        assert!(socket.nodelay().unwrap());
        // Already connected: listening is an error, not a panic.
        assert!(socket.listen(1).is_err());
    });
}
