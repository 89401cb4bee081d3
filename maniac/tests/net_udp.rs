#![cfg(not(loom))]
//! `maniac::net::UdpSocket`: datagrams between sockets on a two-worker runtime, connected
//! sockets, a long run of datagrams that must all arrive, the `try_*` calls, readiness wake-ups,
//! errors, and what is left after the runtime shuts down.

mod common;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, multi, on_two_workers};
use maniac::net::UdpSocket;

/// A socket on a free loopback port.
async fn loopback() -> UdpSocket {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("cannot bind a UDP socket on loopback")
}

/// Waits with `readable` and receives with `try_recv_from`, waiting again when the readiness was
/// stale (as tokio documents the pair to be used).
async fn recv_when_readable(socket: &UdpSocket, buf: &mut [u8]) -> (usize, SocketAddr) {
    loop {
        socket.readable().await.expect("readable failed");
        match socket.try_recv_from(buf) {
            Ok(received) => return received,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => panic!("try_recv_from failed: {error}"),
        }
    }
}

#[test]
fn send_to_and_recv_from_between_two_sockets_on_two_workers() {
    on_two_workers(|| async {
        let client = loopback().await;
        let server = Arc::new(loopback().await);
        let client_addr = client.local_addr().unwrap();
        let server_addr = server.local_addr().unwrap();
        assert_eq!(server_addr.ip(), Ipv4Addr::LOCALHOST);
        assert_ne!(server_addr.port(), 0, "bound to port 0 must pick a port");

        const ROUNDS: u32 = 200;
        // The server answers each datagram with its bytes reversed, to whoever sent it.
        let echo = maniac::spawn({
            let server = server.clone();
            async move {
                let mut buf = [0u8; 64];
                for _ in 0..ROUNDS {
                    let (peeked, peeked_from) = server.peek_from(&mut buf).await.unwrap();
                    let (len, from) = server.recv_from(&mut buf).await.unwrap();
                    assert_eq!((peeked, peeked_from), (len, from), "peek left it queued");
                    assert_eq!(from, client_addr);
                    buf[..len].reverse();
                    assert_eq!(server.send_to(&buf[..len], from).await.unwrap(), len);
                }
            }
        });

        let mut buf = [0u8; 64];
        for round in 0..ROUNDS {
            let message = format!("ping {round}");
            let sent = client
                .send_to(message.as_bytes(), server_addr)
                .await
                .unwrap();
            assert_eq!(sent, message.len());
            let (len, from) = client.recv_from(&mut buf).await.unwrap();
            assert_eq!(from, server_addr);
            let expected: Vec<u8> = message.bytes().rev().collect();
            assert_eq!(&buf[..len], &expected[..], "round {round}");
        }
        echo.await.expect("the echo task failed");
    });
}

#[test]
fn send_to_accepts_anything_that_resolves() {
    on_two_workers(|| async {
        let client = loopback().await;
        let server = loopback().await;
        let port = server.local_addr().unwrap().port();
        let mut buf = [0u8; 8];

        client
            .send_to(b"str", format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        client.send_to(b"tuple", ("127.0.0.1", port)).await.unwrap();
        for expected in [&b"str"[..], b"tuple"] {
            let (len, _) = server.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..len], expected);
        }

        let empty: &[SocketAddr] = &[];
        let error = client.send_to(b"nowhere", empty).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    });
}

#[test]
fn connected_sockets_talk_only_to_their_peer() {
    on_two_workers(|| async {
        let a = loopback().await;
        let b = loopback().await;
        let stranger = loopback().await;
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());

        let error = a.send(b"unconnected").await.unwrap_err();
        assert_ne!(error.kind(), io::ErrorKind::WouldBlock, "{error}");
        assert_eq!(
            a.peer_addr().unwrap_err().kind(),
            io::ErrorKind::NotConnected
        );

        a.connect(b_addr).await.unwrap();
        b.connect(a_addr).await.unwrap();
        assert_eq!(a.peer_addr().unwrap(), b_addr);
        assert_eq!(b.peer_addr().unwrap(), a_addr);

        // The stranger's datagram goes first, but a connected socket does not take it.
        stranger.send_to(b"stranger", b_addr).await.unwrap();
        assert_eq!(a.send(b"from a").await.unwrap(), 6);
        let mut buf = [0u8; 16];
        let len = b.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"from a");

        b.send(b"from b").await.unwrap();
        let len = a.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"from b");
        assert_eq!(
            b.try_recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "the stranger's datagram must not have been queued"
        );
    });
}

#[test]
fn a_long_run_of_datagrams_all_arrive_in_order_when_the_window_fits_the_receive_buffer() {
    // UDP may drop a datagram when the receiver's buffer is full, so the sender never has more
    // in flight than fits in it: it sends a window of datagrams, then waits for the receiver to
    // acknowledge them all. On loopback nothing else drops or reorders datagrams, so every one
    // must then arrive, in order; a lost one stalls the window and fails the test.
    on_two_workers(|| async {
        const TOTAL: u32 = 20_000;
        const PAYLOAD: usize = 512;
        // Generous per-datagram cost (payload, headers and the kernel's bookkeeping).
        const COST: usize = 4096;

        let receiver_std = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let receive_buffer = socket2::SockRef::from(&receiver_std)
            .recv_buffer_size()
            .unwrap();
        let window = (receive_buffer / COST).clamp(1, 256) as u32;
        let receiver = UdpSocket::from_std(receiver_std).unwrap();
        let sender = loopback().await;
        sender
            .connect(receiver.local_addr().unwrap())
            .await
            .unwrap();
        receiver
            .connect(sender.local_addr().unwrap())
            .await
            .unwrap();

        fn payload(seq: u32) -> Vec<u8> {
            let mut data = seq.to_le_bytes().to_vec();
            data.extend((0..PAYLOAD - 4).map(|i| (seq as usize * 31 + i) as u8));
            data
        }

        let receiving = maniac::spawn(async move {
            let mut buf = vec![0u8; PAYLOAD * 2];
            for seq in 0..TOTAL {
                let len = receiver.recv(&mut buf).await.unwrap();
                assert_eq!(&buf[..len], &payload(seq)[..], "datagram {seq}");
                if (seq + 1) % window == 0 || seq + 1 == TOTAL {
                    receiver.send(&(seq + 1).to_le_bytes()).await.unwrap();
                }
            }
        });

        let mut ack = [0u8; 4];
        let mut seq = 0;
        while seq < TOTAL {
            let end = (seq + window).min(TOTAL);
            for s in seq..end {
                assert_eq!(sender.send(&payload(s)).await.unwrap(), PAYLOAD);
            }
            let len = maniac::time::timeout(Duration::from_secs(10), sender.recv(&mut ack))
                .await
                .unwrap_or_else(|_| panic!("no ack for datagrams {seq}..{end}: one was lost"))
                .unwrap();
            assert_eq!(u32::from_le_bytes(ack[..len].try_into().unwrap()), end);
            seq = end;
        }
        receiving.await.expect("the receiving task failed");
    });
}

#[test]
fn try_calls_would_block_until_the_socket_is_ready() {
    on_two_workers(|| async {
        let a = loopback().await;
        let b = loopback().await;
        let b_addr = b.local_addr().unwrap();
        let mut buf = [0u8; 16];

        assert_eq!(
            b.try_recv_from(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert_eq!(
            b.try_peek_from(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );

        a.writable().await.unwrap();
        assert_eq!(a.try_send_to(b"one", b_addr).unwrap(), 3);
        let (len, from) = recv_when_readable(&b, &mut buf).await;
        assert_eq!((&buf[..len], from), (&b"one"[..], a.local_addr().unwrap()));
        // The queue is empty again: the readiness seen is cleared by the failing call.
        assert_eq!(
            b.try_recv_from(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );

        a.connect(b_addr).await.unwrap();
        b.connect(a.local_addr().unwrap()).await.unwrap();
        assert_eq!(a.try_send(b"two").unwrap(), 3);
        let len = loop {
            b.readable().await.unwrap();
            match b.try_recv(&mut buf) {
                Ok(len) => break len,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => panic!("try_recv failed: {error}"),
            }
        };
        assert_eq!(&buf[..len], b"two");
        assert_eq!(
            b.try_recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    });
}

#[test]
fn readable_wakes_a_task_waiting_on_another_worker() {
    on_two_workers(|| async {
        let receiver = Arc::new(loopback().await);
        let sender = loopback().await;
        let (waiting_tx, waiting_rx) = futures::channel::oneshot::channel();
        let waiter = maniac::spawn({
            let receiver = receiver.clone();
            async move {
                let mut buf = [0u8; 16];
                waiting_tx.send(()).unwrap();
                let (len, _) = recv_when_readable(&receiver, &mut buf).await;
                buf[..len].to_vec()
            }
        });
        waiting_rx.await.unwrap();
        sender
            .send_to(b"wake up", receiver.local_addr().unwrap())
            .await
            .unwrap();
        assert_eq!(waiter.await.unwrap(), b"wake up");
    });
}

#[test]
fn poll_methods_send_and_receive() {
    on_two_workers(|| async {
        let a = loopback().await;
        let b = loopback().await;
        let b_addr = b.local_addr().unwrap();
        let sent = std::future::poll_fn(|cx| a.poll_send_to(cx, b"polled", b_addr))
            .await
            .unwrap();
        assert_eq!(sent, 6);
        let mut buf = [0u8; 16];
        let (len, from) = std::future::poll_fn(|cx| b.poll_recv_from(cx, &mut buf))
            .await
            .unwrap();
        assert_eq!(
            (&buf[..len], from),
            (&b"polled"[..], a.local_addr().unwrap())
        );

        a.connect(b_addr).await.unwrap();
        b.connect(a.local_addr().unwrap()).await.unwrap();
        std::future::poll_fn(|cx| a.poll_send_ready(cx))
            .await
            .unwrap();
        std::future::poll_fn(|cx| a.poll_send(cx, b"again"))
            .await
            .unwrap();
        std::future::poll_fn(|cx| b.poll_recv_ready(cx))
            .await
            .unwrap();
        let len = std::future::poll_fn(|cx| b.poll_recv(cx, &mut buf))
            .await
            .unwrap();
        assert_eq!(&buf[..len], b"again");
    });
}

#[test]
fn a_datagram_larger_than_the_buffer_is_truncated() {
    on_two_workers(|| async {
        let a = loopback().await;
        let b = loopback().await;
        a.send_to(&[7u8; 100], b.local_addr().unwrap())
            .await
            .unwrap();
        a.send_to(b"next", b.local_addr().unwrap()).await.unwrap();
        let mut small = [0u8; 10];
        let (len, _) = b.recv_from(&mut small).await.unwrap();
        assert_eq!((len, small), (10, [7u8; 10]));
        // The rest of the first datagram is gone, not left for the next receive.
        let (len, _) = b.recv_from(&mut small).await.unwrap();
        assert_eq!(&small[..len], b"next");
    });
}

#[test]
fn options_and_std_conversions() {
    on_two_workers(|| async {
        let socket = loopback().await;
        let addr = socket.local_addr().unwrap();
        socket.set_broadcast(true).unwrap();
        assert!(socket.broadcast().unwrap());
        socket.set_broadcast(false).unwrap();
        assert!(!socket.broadcast().unwrap());
        socket.set_ttl(42).unwrap();
        assert_eq!(socket.ttl().unwrap(), 42);
        socket.set_multicast_ttl_v4(3).unwrap();
        assert_eq!(socket.multicast_ttl_v4().unwrap(), 3);
        socket.set_multicast_loop_v4(false).unwrap();
        assert!(!socket.multicast_loop_v4().unwrap());
        assert!(socket.take_error().unwrap().is_none());

        let group = Ipv4Addr::new(239, 255, 0, 77);
        // Leaving a group never joined is an error, not a panic.
        assert!(
            socket
                .leave_multicast_v4(group, Ipv4Addr::LOCALHOST)
                .is_err()
        );

        let std_socket = socket.into_std().unwrap();
        assert_eq!(std_socket.local_addr().unwrap(), addr);
        let socket = UdpSocket::from_std(std_socket).unwrap();
        assert_eq!(socket.local_addr().unwrap(), addr);
        assert_eq!(socket.ttl().unwrap(), 42, "the same socket came back");
        let peer = loopback().await;
        peer.send_to(b"still works", addr).await.unwrap();
        let mut buf = [0u8; 16];
        let (len, _) = socket.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"still works");
    });
}

#[test]
fn bind_errors_are_io_errors() {
    on_two_workers(|| async {
        let taken = loopback().await.local_addr().unwrap();
        let first = UdpSocket::bind(taken).await.unwrap();
        let error = UdpSocket::bind(taken).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        drop(first);

        // An address of no local interface (TEST-NET-1).
        let error = UdpSocket::bind("192.0.2.1:0").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrNotAvailable);
        // Not an address at all (an invalid port: rejected before any lookup).
        assert!(UdpSocket::bind("127.0.0.1:99999").await.is_err());
    });
}

#[test]
fn operations_fail_after_the_runtime_shuts_down() {
    bounded(|| {
        let runtime = multi(2);
        let (socket, peer) = runtime.block_on(async {
            let socket = loopback().await;
            socket.writable().await.unwrap();
            (socket, loopback().await)
        });
        let peer_addr = peer.local_addr().unwrap();
        drop(runtime);

        let mut buf = [0u8; 8];
        let error = futures::executor::block_on(socket.recv_from(&mut buf)).unwrap_err();
        assert!(error.to_string().contains("shut down"), "{error}");
        let error = futures::executor::block_on(socket.send_to(b"late", peer_addr)).unwrap_err();
        assert!(error.to_string().contains("shut down"), "{error}");
        let error = socket.try_send_to(b"late", peer_addr).unwrap_err();
        assert!(error.to_string().contains("shut down"), "{error}");
    });
}
