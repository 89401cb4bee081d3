#![cfg(not(loom))]
//! TCP on the reactor: echo over hundreds of concurrent connections, half-close, back-pressure,
//! split halves, accept storms, cancellation, errors (never panics), the runtime's shutdown,
//! the non-waiting calls, name resolution, conversions and socket options.
//!
//! Every wait is bounded (`bounded`, `with_timeout`, or `maniac::time::timeout` inside the
//! runtime), so a lost wake-up fails the test instead of hanging it.

mod common;

use std::collections::HashSet;
use std::future::{Future, poll_fn};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use common::{Counter, TIMEOUT, bounded, current, flavours, multi, with_timeout};
use maniac::io::{AsyncReadExt, AsyncWriteExt};
use maniac::net::{TcpListener, TcpStream, lookup_host};
use maniac::time::timeout;

/// The bound of one network step inside a test (a connect, a read that must complete).
const STEP: Duration = Duration::from_secs(10);

/// Runs `test` in `block_on` on every flavour (each on a bounded thread of its own).
fn each_flavour<F, Fut>(test: F)
where
    F: Fn(&'static str) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = ()>,
{
    for (name, make) in flavours() {
        let test = test.clone();
        bounded(move || make().block_on(test(name)));
    }
}

/// A listener on a fresh loopback port.
async fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A listener on a fresh loopback port with a listen backlog of 4096 (the system's maximum
/// here), for the tests that connect faster than they accept. `TcpListener::bind` takes mio's
/// backlog, 128 (tokio's `bind` uses 1024): with more completed connections than that waiting
/// for `accept`, the kernel drops SYNs, and those connects wait for a retransmission (1 s).
fn listen_with_large_backlog() -> (TcpListener, SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket
        .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .unwrap();
    socket.listen(4096).unwrap();
    let listener = TcpListener::from_std(socket.into()).unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A connected pair: (client, server side).
async fn pair() -> (TcpStream, TcpStream) {
    let (listener, addr) = listen().await;
    let (client, accepted) =
        futures::future::join(TcpStream::connect(addr), listener.accept()).await;
    let (server, peer) = accepted.unwrap();
    let client = client.unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    (client, server)
}

/// Copies what `stream` reads back to it until EOF.
async fn echo(mut stream: TcpStream) -> io::Result<u64> {
    let mut buf = vec![0; 16 * 1024];
    let mut total = 0;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        stream.write_all(&buf[..n]).await?;
        total += n as u64;
    }
}

/// The byte at `offset` of a test stream (a period that is not a power of two, so that a
/// reordered or duplicated block shows).
fn pattern(offset: u64) -> u8 {
    (offset % 251) as u8
}

/// FNV-1a over `bytes`, continuing from `hash`.
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(hash, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Makes the runtime a case runs on.
type MakeRuntime = fn() -> maniac::runtime::Runtime;

/// Hundreds of connections open at once, across the workers, each doing round trips of several
/// sizes with its own echo task. Connects are limited to 32 in flight (so that the listen
/// backlog never overflows), and a barrier makes sure every connection is open before any
/// round trip.
#[test]
fn echo_round_trips_over_hundreds_of_concurrent_connections() {
    let cases: [(&str, MakeRuntime, usize); 2] = [
        ("multi_thread(4)", || multi(4), 400),
        ("current_thread", current, 150),
    ];
    for (name, make, connections) in cases {
        let threads = bounded(move || {
            let rt = make();
            rt.block_on(async move {
                let (listener, addr) = listen_with_large_backlog();
                let threads = Arc::new(Mutex::new(HashSet::new()));
                let server = {
                    let threads = threads.clone();
                    maniac::spawn(async move {
                        let mut handlers = Vec::new();
                        for _ in 0..connections {
                            let (stream, _) = listener.accept().await.unwrap();
                            let threads = threads.clone();
                            handlers.push(maniac::spawn(async move {
                                threads.lock().unwrap().insert(thread::current().id());
                                echo(stream).await
                            }));
                        }
                        let mut total = 0;
                        for handler in handlers {
                            total += handler.await.unwrap().unwrap();
                        }
                        total
                    })
                };
                let connecting = Arc::new(tokio::sync::Semaphore::new(32));
                let all_open = Arc::new(tokio::sync::Barrier::new(connections));
                let clients: Vec<_> = (0..connections)
                    .map(|i| {
                        let (connecting, all_open) = (connecting.clone(), all_open.clone());
                        maniac::spawn(async move {
                            let permit = connecting.acquire().await.unwrap();
                            let mut stream = TcpStream::connect(addr).await.unwrap();
                            drop(permit);
                            all_open.wait().await;
                            let mut sent = 0;
                            for size in [1usize, 13, 512, 4096, 20_000] {
                                let message: Vec<u8> = (0..size).map(|j| (i + j) as u8).collect();
                                stream.write_all(&message).await.unwrap();
                                let mut back = vec![0; size];
                                stream.read_exact(&mut back).await.unwrap();
                                assert_eq!(back, message, "connection {i}, size {size}");
                                sent += size as u64;
                            }
                            stream.close().await.unwrap();
                            let mut rest = Vec::new();
                            stream.read_to_end(&mut rest).await.unwrap();
                            assert!(rest.is_empty());
                            sent
                        })
                    })
                    .collect();
                let mut sent = 0;
                for client in clients {
                    sent += timeout(TIMEOUT, client)
                        .await
                        .expect("a client hung")
                        .unwrap();
                }
                let echoed = timeout(STEP, server)
                    .await
                    .expect("the server hung")
                    .unwrap();
                assert_eq!(echoed, sent, "{name}");
                threads.lock().unwrap().len()
            })
        });
        if name.starts_with("multi") {
            assert!(
                threads > 1,
                "{name}: every connection was served by one worker"
            );
        }
    }
}

/// The client shuts its write side down; the server reads to EOF, then replies on the still
/// open other direction, and the client reads the reply, then EOF.
#[test]
fn half_close_lets_the_server_reply_after_reading_to_eof() {
    each_flavour(|name| async move {
        let (listener, addr) = listen().await;
        let server = maniac::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            stream.read_to_end(&mut request).await.unwrap();
            let reply = format!("got {} bytes", request.len());
            stream.write_all(reply.as_bytes()).await.unwrap();
            request
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"hello, half-closed world").await.unwrap();
        client.close().await.unwrap();
        // Writing after the close fails (the write side is shut down).
        assert!(client.write_all(b"more").await.is_err(), "{name}");
        let mut reply = String::new();
        timeout(STEP, client.read_to_string(&mut reply))
            .await
            .expect("the reply never came")
            .unwrap();
        assert_eq!(reply, "got 24 bytes", "{name}");
        assert_eq!(server.await.unwrap(), b"hello, half-closed world");
        // Closing twice is fine.
        client.close().await.unwrap();
    });
}

/// 16 MiB through a reader that takes its time: the writer is held back by the socket buffers
/// (back-pressure: it cannot get everything into the kernel at once), and the bytes arrive
/// complete and in order.
#[test]
fn sixteen_mib_through_a_slow_reader_arrive_complete_and_in_order() {
    const TOTAL: u64 = 16 << 20;
    let cases: [(&str, MakeRuntime); 2] = [
        ("multi_thread(2)", || multi(2)),
        ("current_thread", current),
    ];
    for (name, make) in cases {
        bounded(move || {
            make().block_on(async move {
                let (mut client, mut server) = pair().await;
                let (start_tx, start_rx) = tokio::sync::oneshot::channel::<()>();
                let writer = maniac::spawn(async move {
                    let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
                    let hash = fnv1a(FNV_START, &data);
                    // Fill the socket buffers without waiting, until the kernel refuses more.
                    let mut accepted = 0;
                    loop {
                        match client.try_write(&data[accepted..]) {
                            Ok(n) => accepted += n,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(e) => panic!("try_write: {e}"),
                        }
                        assert!(accepted < data.len(), "16 MiB fitted in the socket buffers");
                    }
                    start_tx.send(()).unwrap();
                    client.write_all(&data[accepted..]).await.unwrap();
                    client.close().await.unwrap();
                    (accepted, hash)
                });
                start_rx.await.unwrap();
                let mut buf = vec![0; 16 * 1024];
                let (mut received, mut hash) = (0u64, FNV_START);
                let mut next_pause = 0;
                loop {
                    let n = timeout(STEP, server.read(&mut buf))
                        .await
                        .expect("a read hung")
                        .unwrap();
                    if n == 0 {
                        break;
                    }
                    for (i, &byte) in buf[..n].iter().enumerate() {
                        let offset = received + i as u64;
                        if byte != pattern(offset) {
                            panic!("{name}: byte {offset} is {byte}, not {}", pattern(offset));
                        }
                    }
                    hash = fnv1a(hash, &buf[..n]);
                    received += n as u64;
                    if received >= next_pause {
                        // The slow part.
                        maniac::time::sleep(Duration::from_millis(1)).await;
                        next_pause += 256 * 1024;
                    }
                }
                let (accepted, sent_hash) = writer.await.unwrap();
                eprintln!("{name}: the kernel took {accepted} bytes before the reader read");
                assert_eq!(received, TOTAL, "{name}");
                assert_eq!(hash, sent_hash, "{name}");
                assert!((accepted as u64) < TOTAL);
            });
        });
    }
}

/// `into_split`: the halves work in two tasks at once and reunite into a working stream; the
/// halves of two different streams do not reunite, and give themselves back.
#[test]
fn into_split_halves_work_in_separate_tasks_and_reunite() {
    each_flavour(|name| async move {
        let (listener, addr) = listen().await;
        let server = maniac::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            echo(stream).await.unwrap()
        });
        let client = TcpStream::connect(addr).await.unwrap();
        let local = client.local_addr().unwrap();
        let (mut read_half, mut write_half) = client.into_split();
        assert_eq!(read_half.local_addr().unwrap(), local);
        assert_eq!(write_half.peer_addr().unwrap(), addr);
        const LINES: usize = 500;
        let writer = maniac::spawn(async move {
            for i in 0..LINES {
                write_half
                    .write_all(format!("line {i:05}\n").as_bytes())
                    .await
                    .unwrap();
            }
            write_half
        });
        let reader = maniac::spawn(async move {
            let mut buf = vec![0; LINES * 11];
            read_half.read_exact(&mut buf).await.unwrap();
            (read_half, buf)
        });
        let write_half = timeout(STEP, writer).await.unwrap().unwrap();
        let (read_half, buf) = timeout(STEP, reader).await.unwrap().unwrap();
        let expected: String = (0..LINES).map(|i| format!("line {i:05}\n")).collect();
        assert_eq!(String::from_utf8(buf).unwrap(), expected, "{name}");
        // Reunited: the same stream, still open in both directions.
        let mut stream = read_half.reunite(write_half).expect("halves of one stream");
        assert_eq!(stream.local_addr().unwrap(), local);
        stream.write_all(b"after").await.unwrap();
        let mut back = [0; 5];
        timeout(STEP, stream.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&back, b"after");
        drop(stream);
        assert_eq!(
            timeout(STEP, server).await.unwrap().unwrap(),
            (LINES * 11 + 5) as u64
        );

        // Halves of two different streams.
        let (a, _a_peer) = pair().await;
        let (b, _b_peer) = pair().await;
        let (a_read, a_write) = a.into_split();
        let (b_read, b_write) = b.into_split();
        let error = a_read.reunite(b_write).unwrap_err();
        assert_eq!(
            error.to_string(),
            "tried to reunite halves that are not from the same socket"
        );
        let maniac::net::tcp::ReuniteError(a_read, b_write) = error;
        assert!(a_read.reunite(a_write).is_ok(), "{name}");
        assert!(b_write.reunite(b_read).is_ok(), "{name}");
    });
}

/// Dropping the owned write half shuts the write direction down (the peer reads EOF), while the
/// read half still reads; `forget` drops it without shutting down.
#[test]
fn dropping_the_owned_write_half_shuts_the_write_side_down() {
    each_flavour(|name| async move {
        let (client, mut server) = pair().await;
        let (mut read_half, write_half) = client.into_split();
        drop(write_half);
        let mut rest = Vec::new();
        timeout(STEP, server.read_to_end(&mut rest))
            .await
            .expect("no EOF after the write half was dropped")
            .unwrap();
        assert!(rest.is_empty(), "{name}");
        server.write_all(b"still readable").await.unwrap();
        let mut buf = [0; 14];
        timeout(STEP, read_half.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"still readable");

        let (client, mut server) = pair().await;
        let (read_half, write_half) = client.into_split();
        write_half.forget();
        // Not shut down: the server's read waits (no EOF) until the read half (the last owner)
        // is dropped, which closes the socket.
        let mut buf = [0; 1];
        {
            let read = pin!(server.read(&mut buf));
            let later = pin!(maniac::time::sleep(Duration::from_millis(30)));
            let raced = futures::future::select(read, later).await;
            assert!(
                matches!(raced, futures::future::Either::Right(_)),
                "{name}: EOF after forget"
            );
        }
        drop(read_half);
        let n = timeout(STEP, server.read(&mut buf)).await.unwrap().unwrap();
        assert_eq!(n, 0, "{name}");
    });
}

/// `split`: borrowed halves reading and writing at the same time in one task.
#[test]
fn split_halves_read_and_write_concurrently_in_one_task() {
    each_flavour(|name| async move {
        let (mut client, server) = pair().await;
        let echoing = maniac::spawn(echo(server));
        const SIZE: usize = 1 << 20;
        {
            // `client.split()` would be `AsyncReadExt::split` (by value, found first).
            let (mut reader, mut writer) = TcpStream::split(&mut client);
            let data: Vec<u8> = (0..SIZE as u64).map(pattern).collect();
            let write = async {
                writer.write_all(&data).await.unwrap();
            };
            let read = async {
                let mut back = vec![0; SIZE];
                reader.read_exact(&mut back).await.unwrap();
                back
            };
            let ((), back) = timeout(STEP, futures::future::join(write, read))
                .await
                .expect("split halves deadlocked");
            assert!(back == data, "{name}: echoed data differs");
        }
        client.close().await.unwrap();
        assert_eq!(
            timeout(STEP, echoing).await.unwrap().unwrap().unwrap(),
            SIZE as u64
        );
    });
}

/// Many connects from plain threads (blocking `connect`) while the server accepts: every one is
/// accepted, with the peer address the client sees as its own.
#[test]
fn an_accept_storm_is_fully_accepted() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 250;
    bounded(|| {
        let rt = multi(2);
        let (listener, addr) = rt.block_on(async { listen_with_large_backlog() });
        let accepted = rt.spawn(async move {
            let mut peers = HashSet::new();
            let mut streams = Vec::new();
            while peers.len() < THREADS * PER_THREAD {
                let (stream, peer) = listener.accept().await.unwrap();
                assert_eq!(stream.peer_addr().unwrap(), peer);
                peers.insert(peer);
                streams.push(stream);
            }
            peers
        });
        let clients: Vec<_> = (0..THREADS)
            .map(|_| {
                thread::spawn(move || {
                    let streams: Vec<std::net::TcpStream> = (0..PER_THREAD)
                        .map(|_| std::net::TcpStream::connect(addr).unwrap())
                        .collect();
                    streams
                        .iter()
                        .map(|s| s.local_addr().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut expected = HashSet::new();
        for client in clients {
            expected.extend(client.join().unwrap());
        }
        let peers = rt
            .block_on(async { timeout(STEP, accepted).await })
            .expect("not every connection was accepted")
            .unwrap();
        assert_eq!(peers.len(), THREADS * PER_THREAD);
        assert_eq!(peers, expected);
    });
}

/// Connects that find the accept queue full (backlog 1) have their SYN dropped by the kernel
/// and wait for its retransmission (1 s later): they still complete once the server accepts,
/// i.e. a connect's wake-up may come long after it started waiting. One connect more than the
/// queue holds: with more, some wait for the kernel's second and third retransmissions (3 s,
/// 7 s, ... with backoff), and the test would measure the kernel's backoff, not the runtime.
#[test]
fn connects_held_back_by_a_full_accept_queue_complete_once_accepted() {
    const CONNECTS: usize = 3;
    for (name, make) in flavours() {
        bounded(move || {
            make().block_on(async move {
                use socket2::{Domain, Socket, Type};
                let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                socket
                    .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
                    .unwrap();
                socket.listen(1).unwrap();
                let listener = TcpListener::from_std(socket.into()).unwrap();
                let addr = listener.local_addr().unwrap();
                let connected = Counter::new();
                let clients: Vec<_> = (0..CONNECTS)
                    .map(|_| {
                        let connected = connected.clone();
                        maniac::spawn(async move {
                            let start = std::time::Instant::now();
                            let stream = TcpStream::connect(addr).await.unwrap();
                            connected.inc();
                            (stream, start.elapsed())
                        })
                    })
                    .collect();
                // The queue holds two: wait until it is full before accepting anything.
                while connected.get() < 2 {
                    maniac::task::yield_now().await;
                }
                let mut accepted = Vec::new();
                for _ in 0..CONNECTS {
                    let (stream, _) = timeout(STEP, listener.accept())
                        .await
                        .expect("an accept hung")
                        .unwrap();
                    accepted.push(stream);
                }
                let mut slowest = Duration::ZERO;
                for client in clients {
                    let (_stream, took) = timeout(STEP, client)
                        .await
                        .expect("a connect never completed")
                        .unwrap();
                    slowest = slowest.max(took);
                }
                eprintln!("{name}: the slowest of {CONNECTS} connects took {slowest:?}");
                assert_eq!(accepted.len(), CONNECTS);
            });
        });
    }
}

/// Wraps a future and records whether it has returned `Pending` (it is then waiting).
struct SeenPending<F> {
    seen: Arc<AtomicBool>,
    future: std::pin::Pin<Box<F>>,
}

impl<F: Future> Future for SeenPending<F> {
    type Output = F::Output;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let poll = self.future.as_mut().poll(cx);
        if poll.is_pending() {
            self.seen.store(true, SeqCst);
        }
        poll
    }
}

/// A server task aborted while its read is pending drops its stream: the client sees the
/// connection end (EOF or reset), nothing hangs, and the runtime goes on serving.
#[test]
fn aborting_a_server_task_with_a_pending_read_closes_its_connection() {
    each_flavour(|name| async move {
        let (listener, addr) = listen().await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let waiting = Arc::new(AtomicBool::new(false));
        let handler = maniac::spawn(SeenPending {
            seen: waiting.clone(),
            future: Box::pin(async move {
                let mut stream = stream;
                let mut buf = [0; 64];
                stream.read(&mut buf).await
            }),
        });
        while !waiting.load(SeqCst) {
            maniac::task::yield_now().await;
        }
        handler.abort();
        let error = timeout(STEP, handler).await.unwrap().unwrap_err();
        assert!(error.is_cancelled(), "{name}");
        let mut buf = [0; 8];
        match timeout(STEP, client.read(&mut buf))
            .await
            .expect("the client hung")
        {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("{name}: the client read {other:?} from an aborted server"),
        }
        // The runtime still serves new connections.
        let server = maniac::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            echo(stream).await.unwrap()
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut back = [0; 4];
        timeout(STEP, client.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&back, b"ping", "{name}");
        client.close().await.unwrap();
        assert_eq!(timeout(STEP, server).await.unwrap().unwrap(), 4);
    });
}

#[test]
fn connecting_to_a_closed_port_is_connection_refused() {
    each_flavour(|name| async move {
        // A port that was just free: bound, then released.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let error = timeout(STEP, TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(
            error.kind(),
            ErrorKind::ConnectionRefused,
            "{name}: {error}"
        );
    });
}

#[test]
fn binding_an_address_in_use_is_addr_in_use() {
    each_flavour(|name| async move {
        let (_listener, addr) = listen().await;
        let error = TcpListener::bind(addr).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::AddrInUse, "{name}: {error}");
        // A std listener's port as well.
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let error = TcpListener::bind(std_listener.local_addr().unwrap())
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::AddrInUse, "{name}: {error}");
    });
}

#[test]
fn bad_addresses_are_errors_not_panics() {
    each_flavour(|name| async move {
        for bad in [
            "not an address",
            "127.0.0.1",
            "127.0.0.1:99999",
            "127.0.0.1:port",
            "",
        ] {
            let error = TcpStream::connect(bad).await.unwrap_err();
            assert_eq!(
                error.kind(),
                ErrorKind::InvalidInput,
                "{name}: {bad:?}: {error}"
            );
            let error = TcpListener::bind(bad).await.unwrap_err();
            assert_eq!(
                error.kind(),
                ErrorKind::InvalidInput,
                "{name}: {bad:?}: {error}"
            );
            assert!(lookup_host(bad).await.is_err(), "{name}: {bad:?}");
        }
        // An empty slice of addresses resolves to nothing to try.
        let none: &[SocketAddr] = &[];
        let error = TcpStream::connect(none).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{name}: {error}");
        // Binding an address this machine does not have.
        let error = TcpListener::bind("192.0.2.1:0").await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::AddrNotAvailable, "{name}: {error}");
    });
}

/// A peer that closes with `SO_LINGER` 0 resets the connection: the other side's read reports
/// `ConnectionReset` (or EOF), and a write after that fails; never a panic or a hang.
#[test]
fn a_reset_peer_gives_connection_reset_or_eof() {
    each_flavour(|name| async move {
        let (client, mut server) = pair().await;
        client.set_linger(Some(Duration::ZERO)).unwrap();
        assert_eq!(client.linger().unwrap(), Some(Duration::ZERO));
        drop(client);
        let mut buf = [0; 16];
        match timeout(STEP, server.read(&mut buf))
            .await
            .expect("the read hung")
        {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("{name}: read {other:?} from a reset connection"),
        }
        // After the reset, the connection is gone for writing too.
        let mut failed = false;
        for _ in 0..10 {
            if timeout(STEP, server.write_all(b"anyone there?"))
                .await
                .expect("the write hung")
                .is_err()
            {
                failed = true;
                break;
            }
        }
        assert!(
            failed,
            "{name}: writes to a reset connection kept succeeding"
        );
        // And reading again does not panic either.
        let again = timeout(STEP, server.read(&mut buf))
            .await
            .expect("the read hung");
        assert!(
            matches!(&again, Ok(0)) || again.is_err(),
            "{name}: {again:?}"
        );
    });
}

/// Sockets kept past their runtime: every operation fails with an error, at once (polled by
/// another executor), instead of waiting forever for a reactor that is gone.
#[test]
fn operations_after_the_runtime_is_dropped_fail_without_hanging() {
    for (name, make) in flavours() {
        let (mut client, mut server, listener) = bounded(move || {
            let rt = make();
            let kept = rt.block_on(async {
                let (listener, addr) = listen().await;
                let (client, accepted) =
                    futures::future::join(TcpStream::connect(addr), listener.accept()).await;
                (client.unwrap(), accepted.unwrap().0, listener)
            });
            drop(rt);
            kept
        });
        let results = with_timeout(STEP, move || {
            futures::executor::block_on(async move {
                let mut buf = [0; 8];
                let read = client.read(&mut buf).await.map(drop);
                let write = server.write_all(b"late").await;
                let readable = client.readable().await;
                let writable = server.writable().await;
                let accept = listener.accept().await.map(drop);
                [read, write, readable, writable, accept]
            })
        });
        for (op, result) in ["read", "write", "readable", "writable", "accept"]
            .iter()
            .zip(results)
        {
            let error = result.expect_err(&format!("{name}: {op} succeeded after shutdown"));
            assert!(
                error.to_string().contains("shut down"),
                "{name}: {op}: {error}"
            );
        }
    }
}

/// Dropping a runtime drops its tasks, and with them the sockets they held: their peers see
/// the connections close.
#[test]
fn dropping_the_runtime_closes_the_sockets_its_tasks_hold() {
    for (name, make) in flavours() {
        bounded(move || {
            let rt = make();
            let (listener, addr) = rt.block_on(listen());
            let held = Counter::new();
            let server = {
                let held = held.clone();
                rt.spawn(async move {
                    let mut streams = Vec::new();
                    loop {
                        let (stream, _) = listener.accept().await.unwrap();
                        streams.push(stream);
                        held.inc();
                    }
                })
            };
            let mut clients: Vec<std::net::TcpStream> = (0..5)
                .map(|_| std::net::TcpStream::connect(addr).unwrap())
                .collect();
            if name == "current_thread" {
                // The current-thread runtime runs its tasks only inside block_on.
                let held = held.clone();
                rt.block_on(async move {
                    while held.get() < 5 {
                        maniac::task::yield_now().await;
                    }
                });
            }
            held.expect(5, STEP, "the server to accept every connection");
            drop(server);
            drop(rt);
            for client in &mut clients {
                client.set_read_timeout(Some(STEP)).unwrap();
                let mut buf = [0; 8];
                match client.read(&mut buf) {
                    Ok(0) => {}
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
                    other => panic!("{name}: {other:?} from a socket of a dropped runtime"),
                }
            }
        });
    }
}

#[test]
fn peek_returns_data_without_consuming_it() {
    each_flavour(|name| async move {
        let (mut client, server) = pair().await;
        client.write_all(b"hello").await.unwrap();
        let mut buf = [0; 16];
        // A peek may see part of what was sent; wait for all of it.
        let mut n = 0;
        while n < 5 {
            n = timeout(STEP, server.peek(&mut buf)).await.unwrap().unwrap();
        }
        assert_eq!(&buf[..n], b"hello", "{name}");
        let n = server.peek(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello", "{name}: the first peek consumed data");
        let mut server = server;
        let mut read = [0; 5];
        server.read_exact(&mut read).await.unwrap();
        assert_eq!(&read, b"hello", "{name}");
    });
}

#[test]
fn try_read_and_try_write_report_would_block() {
    each_flavour(|name| async move {
        let (client, server) = pair().await;
        let mut buf = [0; 64];
        let error = server.try_read(&mut buf).unwrap_err();
        assert_eq!(
            error.kind(),
            ErrorKind::WouldBlock,
            "{name}: nothing sent yet"
        );
        // A fresh connection is writable.
        timeout(STEP, client.writable()).await.unwrap().unwrap();
        assert_eq!(client.try_write(b"abc").unwrap(), 3, "{name}");
        // readable, then try_read gets it (readiness may be stale: retry on WouldBlock).
        let n = timeout(STEP, async {
            loop {
                server.readable().await.unwrap();
                match server.try_read(&mut buf) {
                    Ok(n) => return n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                    Err(e) => panic!("try_read: {e}"),
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(&buf[..n], b"abc", "{name}");
        assert_eq!(
            server.try_read(&mut buf).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        // try_write until the buffers are full: WouldBlock, not an endless Ok.
        let chunk = vec![7u8; 256 * 1024];
        let mut written = 0usize;
        let full = loop {
            match client.try_write(&chunk) {
                Ok(n) => written += n,
                Err(e) => break e,
            }
            assert!(
                written < 512 << 20,
                "{name}: 512 MiB went in without blocking"
            );
        };
        assert_eq!(full.kind(), ErrorKind::WouldBlock, "{name}: {full}");
        assert!(written > 0);
    });
}

/// `readable` waits until data comes (not before), `writable` completes on a writable stream.
#[test]
fn readable_waits_for_data_and_writable_for_buffer_space() {
    each_flavour(|name| async move {
        let (mut client, server) = pair().await;
        {
            let mut readable = pin!(server.readable());
            let mut cx = Context::from_waker(Waker::noop());
            assert!(
                readable.as_mut().poll(&mut cx).is_pending(),
                "{name}: readable early"
            );
            client.write_all(b"x").await.unwrap();
            timeout(STEP, readable)
                .await
                .expect("readable never woke")
                .unwrap();
        }
        timeout(STEP, server.writable()).await.unwrap().unwrap();
        // Two waiters for the same direction are both woken.
        let (mut client2, server2) = pair().await;
        let both = futures::future::join(server2.readable(), server2.readable());
        let mut both = pin!(both);
        assert!(
            poll_fn(|cx| Poll::Ready(both.as_mut().poll(cx).is_pending())).await,
            "{name}"
        );
        client2.write_all(b"y").await.unwrap();
        let (a, b) = timeout(STEP, both).await.expect("a waiter was not woken");
        a.unwrap();
        b.unwrap();
        drop(client);
    });
}

#[test]
fn lookup_host_resolves_names_pairs_and_numeric_addresses() {
    each_flavour(|name| async move {
        let localhost: Vec<SocketAddr> = timeout(STEP, lookup_host("localhost:80"))
            .await
            .expect("resolving localhost hung")
            .unwrap()
            .collect();
        assert!(!localhost.is_empty(), "{name}");
        for addr in &localhost {
            assert!(
                addr.ip().is_loopback() && addr.port() == 80,
                "{name}: {addr}"
            );
        }
        let pair: Vec<SocketAddr> = lookup_host(("localhost", 80)).await.unwrap().collect();
        assert_eq!(
            pair.iter().collect::<HashSet<_>>(),
            localhost.iter().collect::<HashSet<_>>(),
            "{name}"
        );
        let numeric_pair: Vec<SocketAddr> = lookup_host(("127.0.0.1", 80)).await.unwrap().collect();
        assert_eq!(numeric_pair, vec![SocketAddr::from(([127, 0, 0, 1], 80))]);
        let numeric: Vec<SocketAddr> = lookup_host("10.1.2.3:443").await.unwrap().collect();
        assert_eq!(numeric, vec![SocketAddr::from(([10, 1, 2, 3], 443))]);
        let v6: Vec<SocketAddr> = lookup_host("[::1]:8080").await.unwrap().collect();
        assert_eq!(v6, vec!["[::1]:8080".parse().unwrap()]);
        let typed: Vec<SocketAddr> = lookup_host((Ipv4Addr::LOCALHOST, 9))
            .await
            .unwrap()
            .collect();
        assert_eq!(typed, vec![SocketAddr::from(([127, 0, 0, 1], 9))]);
        // And connecting by name works.
        let (listener, addr) = listen().await;
        let by_name = format!("localhost:{}", addr.port());
        let (client, accepted) =
            futures::future::join(TcpStream::connect(by_name.as_str()), listener.accept()).await;
        assert_eq!(client.unwrap().peer_addr().unwrap().port(), addr.port());
        accepted.unwrap();
    });
}

#[test]
fn listener_and_stream_convert_from_and_into_std() {
    each_flavour(|name| async move {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        let listener = TcpListener::from_std(std_listener).unwrap();
        assert_eq!(listener.local_addr().unwrap(), addr);
        let (client, accepted) =
            futures::future::join(TcpStream::connect(addr), listener.accept()).await;
        let (server, _) = accepted.unwrap();
        let client = client.unwrap();
        // Back to std: the same socket, non-blocking.
        let std_listener = listener.into_std().unwrap();
        assert_eq!(std_listener.local_addr().unwrap(), addr, "{name}");
        assert_eq!(
            std_listener.accept().unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        // And into maniac again.
        let listener = TcpListener::from_std(std_listener).unwrap();
        let (again, accepted) =
            futures::future::join(TcpStream::connect(addr), listener.accept()).await;
        again.unwrap();
        accepted.unwrap();

        // Streams: into std (non-blocking), data still flows; and back.
        let mut std_server = server.into_std().unwrap();
        let mut client = client;
        client.write_all(b"to std").await.unwrap();
        std_server.set_nonblocking(false).unwrap();
        std_server.set_read_timeout(Some(STEP)).unwrap();
        let mut buf = [0; 6];
        std_server.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"to std", "{name}");
        std_server.write_all(b"from std").unwrap();
        let mut server = TcpStream::from_std(std_server).unwrap();
        let mut buf = [0; 8];
        timeout(STEP, client.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"from std");
        server.write_all(b"!").await.unwrap();
        let mut bang = [0; 1];
        timeout(STEP, client.read_exact(&mut bang))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&bang, b"!");
    });
}

#[test]
fn addresses_and_socket_options() {
    each_flavour(|name| async move {
        let (client, server) = pair().await;
        assert_eq!(
            client.local_addr().unwrap(),
            server.peer_addr().unwrap(),
            "{name}"
        );
        assert_eq!(
            client.peer_addr().unwrap(),
            server.local_addr().unwrap(),
            "{name}"
        );
        for nodelay in [true, false, true] {
            client.set_nodelay(nodelay).unwrap();
            assert_eq!(client.nodelay().unwrap(), nodelay);
        }
        client.set_ttl(42).unwrap();
        assert_eq!(client.ttl().unwrap(), 42);
        client.set_linger(Some(Duration::from_secs(3))).unwrap();
        assert_eq!(client.linger().unwrap(), Some(Duration::from_secs(3)));
        client.set_linger(None).unwrap();
        assert_eq!(client.linger().unwrap(), None);
        let (listener, _) = listen().await;
        listener.set_ttl(17).unwrap();
        assert_eq!(listener.ttl().unwrap(), 17);
        assert!(
            format!("{listener:?}").contains("TcpListener"),
            "{listener:?}"
        );
        assert!(format!("{client:?}").contains("TcpStream"), "{client:?}");
        // shutdown_std(Read) is allowed and the write side still works.
        server.shutdown_std(Shutdown::Read).unwrap();
        let mut server = server;
        server.write_all(b"ok").await.unwrap();
        let mut client = client;
        let mut buf = [0; 2];
        timeout(STEP, client.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"ok");
    });
}

/// Sockets need a runtime: creating one outside any panics with a message naming maniac's.
#[test]
fn a_socket_made_outside_a_runtime_panics_naming_the_maniac_runtime() {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let message = common::panic_text(move || TcpListener::from_std(std_listener));
    assert!(message.contains("maniac runtime"), "{message}");
    // A `connect` future outside a runtime, polled by another executor: panics, does not hang.
    let message =
        common::panic_text(|| futures::executor::block_on(TcpStream::connect("127.0.0.1:9")));
    assert!(message.contains("maniac runtime"), "{message}");
}

/// A stream's readiness is shared by the tasks of any worker: a reader moved between tasks
/// (and so, on a multi-thread runtime, between workers) keeps working.
#[test]
fn a_stream_moved_between_tasks_keeps_its_readiness() {
    bounded(|| {
        let rt = multi(4);
        rt.block_on(async {
            let (mut client, mut server) = pair().await;
            for round in 0..50u32 {
                let task = maniac::spawn(async move {
                    let mut buf = [0; 4];
                    server.read_exact(&mut buf).await.unwrap();
                    assert_eq!(u32::from_le_bytes(buf), round);
                    server
                });
                // Let the task get to its wait before the data comes (sometimes).
                if round % 2 == 0 {
                    maniac::task::yield_now().await;
                }
                client.write_all(&round.to_le_bytes()).await.unwrap();
                server = timeout(STEP, task)
                    .await
                    .expect("a moved reader hung")
                    .unwrap();
            }
        });
    });
}

/// A thousand connections open at once (connected in batches of 50 from one task).
#[test]
fn many_connections_can_be_open_at_once() {
    const CONNECTIONS: usize = 1000;
    bounded(|| {
        let rt = multi(2);
        let opened = rt.block_on(async {
            let (listener, addr) = listen_with_large_backlog();
            let accepting = maniac::spawn(async move {
                let mut streams = Vec::new();
                for _ in 0..CONNECTIONS {
                    streams.push(listener.accept().await.unwrap().0);
                }
                streams
            });
            let mut clients = Vec::new();
            for chunk in 0..CONNECTIONS / 50 {
                let batch = (0..50).map(|_| TcpStream::connect(addr));
                for client in futures::future::join_all(batch).await {
                    clients.push(client.unwrap_or_else(|e| panic!("batch {chunk}: {e}")));
                }
            }
            let servers = timeout(STEP, accepting).await.unwrap().unwrap();
            (clients, servers)
        });
        assert_eq!(opened.0.len(), CONNECTIONS);
        assert_eq!(opened.1.len(), CONNECTIONS);
        drop(opened);
    });
}
