#![cfg(not(loom))]
//! `maniac::net::{UnixListener, UnixStream, UnixDatagram}`: echo over many concurrent
//! connections, half-close, back-pressure on a large write, the halves, `pair`, datagrams, and
//! errors. Socket files live under `std::env::temp_dir()`, named by pid and a counter, and are
//! removed when the test is done.

mod common;

use std::future::poll_fn;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::task::Poll;

use common::on_two_workers;
use futures::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use maniac::net::unix::ReuniteError;
use maniac::net::{UnixDatagram, UnixListener, UnixStream};

/// A socket path of this test process, removed (if it exists) when dropped.
struct SocketPath(PathBuf);

impl SocketPath {
    fn new(what: &str) -> SocketPath {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "maniac-{what}-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_file(&path); // left over from a crashed run with the same pid
        SocketPath(path)
    }
}

impl AsRef<Path> for SocketPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Byte `index` of a test stream: position-dependent, so that a lost, repeated or reordered
/// chunk shows.
fn pattern(index: usize) -> u8 {
    (index.wrapping_mul(7) ^ (index >> 12)) as u8
}

/// FNV-1a, to compare what was sent with what arrived.
fn checksum(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
const CHECKSUM_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Accepts connections for ever, echoing each on a task of its own until the client shuts its
/// write side down, then shutting down in turn.
async fn echo_server(listener: UnixListener) {
    loop {
        let (stream, _) = listener.accept().await.expect("accept failed");
        maniac::spawn(async move {
            let (mut reader, mut writer) = stream.split();
            futures::io::copy(&mut reader, &mut writer)
                .await
                .expect("echo failed");
            writer.close().await.expect("shutdown failed");
        });
    }
}

/// Sends `data` on `stream` while reading the echo back, then shuts the write side down; what
/// came back, to the end.
async fn round_trip(stream: &mut UnixStream, data: &[u8]) -> Vec<u8> {
    let (mut reader, mut writer) = stream.split();
    let mut echoed = Vec::with_capacity(data.len());
    let (written, read) = futures::join!(
        async {
            writer.write_all(data).await?;
            writer.close().await
        },
        reader.read_to_end(&mut echoed),
    );
    written.expect("writing failed");
    assert_eq!(read.expect("reading failed"), data.len());
    echoed
}

#[test]
fn echo_over_many_concurrent_connections() {
    on_two_workers(|| async {
        const CLIENTS: usize = 64;
        const BYTES: usize = 64 * 1024;
        let path = SocketPath::new("echo");
        let server = maniac::spawn(echo_server(UnixListener::bind(&path).unwrap()));

        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let path = path.0.clone();
                maniac::spawn(async move {
                    let data: Vec<u8> = (0..BYTES).map(|i| pattern(i + client)).collect();
                    let mut stream = UnixStream::connect(&path).await.expect("connect failed");
                    assert_eq!(
                        stream.peer_addr().unwrap().as_pathname(),
                        Some(path.as_path())
                    );
                    let echoed = round_trip(&mut stream, &data).await;
                    assert!(echoed == data, "client {client}: the echo differs");
                })
            })
            .collect();
        for client in clients {
            client.await.expect("a client failed");
        }
        server.abort();
    });
}

#[test]
fn half_close_lets_the_peer_read_to_the_end_and_answer() {
    on_two_workers(|| async {
        let path = SocketPath::new("half-close");
        let listener = UnixListener::bind(&path).unwrap();
        let server = maniac::spawn(async move {
            let (mut stream, peer) = listener.accept().await.unwrap();
            assert!(peer.is_unnamed(), "the client never bound: {peer:?}");
            let mut request = Vec::new();
            stream.read_to_end(&mut request).await.unwrap();
            let answer = format!("got {} bytes", request.len());
            stream.write_all(answer.as_bytes()).await.unwrap();
            stream.close().await.unwrap();
            request
        });

        let mut client = UnixStream::connect(&path).await.unwrap();
        client.write_all(b"the whole request").await.unwrap();
        client.close().await.unwrap();
        let error = client.write(b"more").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert_eq!(answer, "got 17 bytes");
        assert_eq!(server.await.unwrap(), b"the whole request");
        // Reading at the end goes on returning the end.
        assert_eq!(client.read(&mut [0u8; 8]).await.unwrap(), 0);
    });
}

#[test]
fn a_large_write_waits_for_a_slow_reader_and_every_byte_arrives_in_order() {
    on_two_workers(|| async {
        const TOTAL: usize = 16 * 1024 * 1024;
        const WRITE_CHUNK: usize = 256 * 1024;
        const READ_CHUNK: usize = 4 * 1024;
        let (reader, writer) = UnixStream::pair().unwrap();
        let (blocked_tx, blocked_rx) = futures::channel::oneshot::channel();

        // The writer tells when a write first has to wait: the reader has not read anything
        // yet, so the socket's buffers are full then.
        let writing = maniac::spawn(async move {
            let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
            let mut writer = writer;
            let mut blocked_tx = Some(blocked_tx);
            let mut waits = 0usize;
            let mut offset = 0;
            while offset < TOTAL {
                let chunk = &data[offset..TOTAL.min(offset + WRITE_CHUNK)];
                offset += poll_fn(|cx| match Pin::new(&mut writer).poll_write(cx, chunk) {
                    Poll::Pending => {
                        waits += 1;
                        if let Some(blocked) = blocked_tx.take() {
                            blocked.send(()).unwrap();
                        }
                        Poll::Pending
                    }
                    ready => ready,
                })
                .await
                .expect("write failed");
            }
            writer.close().await.unwrap();
            (waits, checksum(CHECKSUM_START, &data))
        });

        blocked_rx.await.expect("the writer never had to wait");
        let mut reader = reader;
        let mut buf = vec![0u8; READ_CHUNK];
        let mut received = 0;
        let mut hash = CHECKSUM_START;
        loop {
            let len = reader.read(&mut buf).await.unwrap();
            if len == 0 {
                break;
            }
            if let Some(wrong) = (0..len).find(|&i| buf[i] != pattern(received + i)) {
                panic!("byte {} differs", received + wrong);
            }
            hash = checksum(hash, &buf[..len]);
            received += len;
            // Slow: let everything else run between reads.
            maniac::task::yield_now().await;
        }
        let (waits, sent_hash) = writing.await.unwrap();
        assert_eq!(received, TOTAL);
        assert_eq!(hash, sent_hash);
        assert!(waits >= 1);
    });
}

#[test]
fn owned_halves_work_on_two_tasks_and_reunite() {
    on_two_workers(|| async {
        const BYTES: usize = 1024 * 1024;
        let path = SocketPath::new("halves");
        let server = maniac::spawn(echo_server(UnixListener::bind(&path).unwrap()));
        let stream = UnixStream::connect(&path).await.unwrap();
        let (mut read_half, mut write_half) = stream.into_split();
        assert_eq!(
            write_half.peer_addr().unwrap().as_pathname(),
            Some(path.as_ref())
        );
        assert!(read_half.local_addr().unwrap().is_unnamed());

        let writing = maniac::spawn(async move {
            let data: Vec<u8> = (0..BYTES).map(pattern).collect();
            write_half.write_all(&data).await.unwrap();
            write_half
        });
        let reading = maniac::spawn(async move {
            let mut echoed = vec![0u8; BYTES];
            read_half.read_exact(&mut echoed).await.unwrap();
            assert!(
                (0..BYTES).all(|i| echoed[i] == pattern(i)),
                "the echo differs"
            );
            read_half
        });
        let write_half = writing.await.unwrap();
        let read_half = reading.await.unwrap();

        // Halves of two different streams do not make a stream, and are given back.
        let (other_a, _other_b) = UnixStream::pair().unwrap();
        let (other_read, other_write) = other_a.into_split();
        let ReuniteError(read_half, other_write) = read_half.reunite(other_write).unwrap_err();
        assert!(other_read.reunite(other_write).is_ok());

        let mut stream = read_half.reunite(write_half).expect("halves of one stream");
        // Reuniting did not shut the write side down: the stream still works both ways.
        assert_eq!(
            round_trip(&mut stream, b"after reunite").await,
            b"after reunite"
        );
        server.abort();
    });
}

#[test]
fn dropping_the_owned_write_half_shuts_the_write_side_down() {
    on_two_workers(|| async {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let (_read_half, mut write_half) = ours.into_split();
        write_half.write_all(b"last words").await.unwrap();
        drop(write_half);
        let mut received = Vec::new();
        theirs.read_to_end(&mut received).await.unwrap();
        assert_eq!(received, b"last words");

        // `forget` drops it without the shutdown. Asked directly (a non-blocking read of the
        // standard stream), the peer sees neither data nor the end.
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (_read_half, write_half) = ours.into_split();
        write_half.forget();
        let mut theirs = theirs.into_std().unwrap();
        let error = io::Read::read(&mut theirs, &mut [0u8; 1]).unwrap_err();
        assert_eq!(
            error.kind(),
            io::ErrorKind::WouldBlock,
            "no end of stream: the write side is still open"
        );
    });
}

#[test]
fn a_pair_talks_both_ways_and_try_calls_would_block_when_not_ready() {
    on_two_workers(|| async {
        let (a, b) = UnixStream::pair().unwrap();
        assert!(a.local_addr().unwrap().is_unnamed());
        assert!(a.peer_addr().unwrap().is_unnamed());
        let mut buf = [0u8; 16];
        assert_eq!(
            b.try_read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );

        for (from, to, message) in [(&a, &b, &b"a to b"[..]), (&b, &a, b"b to a")] {
            from.writable().await.unwrap();
            assert_eq!(from.try_write(message).unwrap(), message.len());
            let len = loop {
                to.readable().await.unwrap();
                match to.try_read(&mut buf) {
                    Ok(len) => break len,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(error) => panic!("try_read failed: {error}"),
                }
            };
            assert_eq!(&buf[..len], message);
        }
        assert_eq!(
            a.try_read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert!(a.take_error().unwrap().is_none());
    });
}

#[test]
fn a_reset_peer_is_an_error_or_the_end_never_a_panic() {
    on_two_workers(|| async {
        let (mut a, b) = UnixStream::pair().unwrap();
        drop(b);
        let mut buf = [0u8; 8];
        assert_eq!(
            a.read(&mut buf).await.unwrap(),
            0,
            "a closed peer is the end"
        );
        let error = a.write_all(b"to nobody").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    });
}

#[test]
fn listener_addresses_conversions_and_errors() {
    on_two_workers(|| async {
        let path = SocketPath::new("listener");
        let listener = UnixListener::bind(&path).unwrap();
        assert_eq!(
            listener.local_addr().unwrap().as_pathname(),
            Some(path.as_ref())
        );
        let error = UnixListener::bind(&path).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);

        // Through the standard types and back: the same listener, still accepting.
        let listener = UnixListener::from_std(listener.into_std().unwrap()).unwrap();
        let client = maniac::spawn({
            let path = path.0.clone();
            async move {
                let stream = UnixStream::connect(&path).await.unwrap();
                UnixStream::from_std(stream.into_std().unwrap()).unwrap()
            }
        });
        let (mut accepted, _) = listener.accept().await.unwrap();
        let mut client = client.await.unwrap();
        client.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        accepted.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");

        // Nobody listens on the file any more.
        drop(listener);
        let error = UnixStream::connect(&path).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
        // No file at all.
        let missing = SocketPath::new("missing");
        let error = UnixStream::connect(&missing).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    });
}

#[cfg(target_os = "linux")]
#[test]
fn abstract_names_bind_and_connect() {
    on_two_workers(|| async {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "maniac-abstract-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Relaxed)
        );
        let path = format!("\0{name}");
        let listener = UnixListener::bind(&path).unwrap();
        let local = listener.local_addr().unwrap();
        assert_eq!(local.as_abstract_name(), Some(name.as_bytes()));
        assert_eq!(local.as_pathname(), None);
        let (client, accepted) = futures::join!(UnixStream::connect(&path), listener.accept());
        let (mut client, mut accepted) = (client.unwrap(), accepted.unwrap().0);
        client.write_all(b"abstract").await.unwrap();
        let mut buf = [0u8; 8];
        accepted.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"abstract");
    });
}

#[test]
fn datagram_pairs_keep_message_boundaries() {
    on_two_workers(|| async {
        let (a, b) = UnixDatagram::pair().unwrap();
        let mut buf = [0u8; 32];
        assert_eq!(
            b.try_recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert!(a.peer_addr().unwrap().is_unnamed());

        a.send(b"first").await.unwrap();
        a.send(b"second").await.unwrap();
        assert_eq!(b.recv(&mut buf).await.unwrap(), 5);
        assert_eq!(&buf[..5], b"first");
        assert_eq!(b.recv(&mut buf).await.unwrap(), 6);
        assert_eq!(&buf[..6], b"second");

        // The other way, from a task on either worker to this one.
        let b = std::sync::Arc::new(b);
        let sender = maniac::spawn({
            let b = b.clone();
            async move {
                for i in 0..100u32 {
                    b.send(&i.to_le_bytes()).await.unwrap();
                }
            }
        });
        for i in 0..100u32 {
            let len = a.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..len], &i.to_le_bytes());
        }
        sender.await.unwrap();
        assert_eq!(
            a.try_recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    });
}

#[test]
fn bound_datagram_sockets_send_to_and_recv_from_paths() {
    on_two_workers(|| async {
        let (a_path, b_path) = (SocketPath::new("dgram-a"), SocketPath::new("dgram-b"));
        let a = UnixDatagram::bind(&a_path).unwrap();
        let b = UnixDatagram::bind(&b_path).unwrap();
        assert_eq!(a.local_addr().unwrap().as_pathname(), Some(a_path.as_ref()));
        assert_eq!(
            UnixDatagram::bind(&a_path).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );

        assert_eq!(a.send_to(b"to b", &b_path).await.unwrap(), 4);
        let mut buf = [0u8; 16];
        let (len, from) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"to b");
        assert_eq!(from.as_pathname(), Some(a_path.as_ref()));
        b.send_to(b"reply", from.as_pathname().unwrap())
            .await
            .unwrap();
        let (len, from) = a.recv_from(&mut buf).await.unwrap();
        assert_eq!(
            (&buf[..len], from.as_pathname()),
            (&b"reply"[..], Some(b_path.as_ref()))
        );

        // An unbound socket can send; its datagrams come from nobody.
        let unbound = UnixDatagram::unbound().unwrap();
        unbound.writable().await.unwrap();
        unbound.try_send_to(b"anonymous", &b_path).unwrap();
        let (len, from) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"anonymous");
        assert!(from.is_unnamed());

        // Connected: `send` goes to the peer.
        unbound.connect(&a_path).unwrap();
        assert_eq!(
            unbound.peer_addr().unwrap().as_pathname(),
            Some(a_path.as_ref())
        );
        unbound.send(b"connected").await.unwrap();
        let (len, _) = a.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"connected");

        // Errors: no socket there.
        let missing = SocketPath::new("dgram-missing");
        let error = a.send_to(b"lost", &missing).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(UnixDatagram::from_std(a.into_std().unwrap()).is_ok());
    });
}
