#![cfg(all(not(loom), feature = "hyper"))]
//! hyper 1.x on maniac (`maniac::hyper`): HTTP/1.1 and HTTP/2 clients and servers over maniac's
//! TCP, with no tokio runtime in the process (every handler checks that there is none).
//!
//! Each HTTP test runs on a 2-worker runtime and on a current-thread one, within a bound
//! (`common::bounded`); nothing waits by sleeping.

mod common;

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures::SinkExt;
use futures::channel::mpsc;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Body, Frame, Incoming};
use hyper::rt::{Executor, Read, ReadBuf, Timer, Write};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Version};
use maniac::hyper::{ManiacExecutor, ManiacIo, ManiacTimer};
use maniac::io::AsyncReadExt;
use maniac::net::{TcpListener, TcpStream};
use maniac::task::JoinHandle;
use maniac::time::Instant;

use common::{bounded, current, multi, panic_text};

/// Runs `test` as a task on a 2-worker runtime, then on a current-thread one.
fn on_both_flavours<F, Fut>(test: F)
where
    F: Fn() -> Fut + Send + Clone + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    for (name, make) in [
        (
            "multi_thread(2)",
            (|| multi(2)) as fn() -> maniac::runtime::Runtime,
        ),
        ("current_thread", current),
    ] {
        let test = test.clone();
        bounded(move || {
            make()
                .block_on(async move { maniac::spawn(test()).await })
                .unwrap_or_else(|error| panic!("{name}: {error}"));
        });
    }
}

/// Which HTTP version a test server speaks.
#[derive(Clone, Copy, Debug)]
enum Protocol {
    Http1 { vectored: bool },
    Http2,
}

/// A server on an ephemeral loopback port that serves every connection it accepts with
/// `service` (each in a task of its own), counting the connections.
struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Server {
    /// Starts the server; `service` makes the handler of each connection.
    async fn start<S, Fut, B>(protocol: Protocol, service: S) -> Server
    where
        S: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
        B: Body<Data = Bytes, Error = Infallible> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        maniac::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, SeqCst);
                let service = service_fn(service.clone());
                maniac::spawn(async move {
                    let served = match protocol {
                        Protocol::Http1 { vectored } => {
                            let io = ManiacIo::new(stream).with_vectored_writes(vectored);
                            hyper::server::conn::http1::Builder::new()
                                .timer(ManiacTimer::new())
                                .serve_connection(io, service)
                                .await
                        }
                        Protocol::Http2 => {
                            hyper::server::conn::http2::Builder::new(ManiacExecutor::new())
                                .timer(ManiacTimer::new())
                                .serve_connection(ManiacIo::new(stream), service)
                                .await
                        }
                    };
                    served.expect("the server's connection failed");
                });
            }
        });
        Server { addr, connections }
    }
}

/// Connects an HTTP/1.1 client to `addr`; its connection runs in a task, whose handle is
/// returned.
async fn http1_client<B>(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http1::SendRequest<B>,
    JoinHandle<hyper::Result<()>>,
)
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(ManiacIo::new(stream))
        .await
        .unwrap();
    (sender, maniac::spawn(connection))
}

/// Connects an HTTP/2 client to `addr` (its connection task spawned through the executor).
async fn http2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::Builder::new(ManiacExecutor::new())
        .timer(ManiacTimer::new())
        .handshake(ManiacIo::new(stream))
        .await
        .unwrap();
    ManiacExecutor::new().execute(async move {
        connection.await.expect("the client's connection failed");
    });
    sender
}

/// The response of every handler here: `body`, with a header that says whether the handler found
/// a tokio runtime (it must not).
fn respond(body: String) -> Result<Response<Full<Bytes>>, Infallible> {
    let tokio_runtime = tokio::runtime::Handle::try_current().is_ok();
    Ok(Response::builder()
        .header("x-tokio-runtime", tokio_runtime.to_string())
        .body(Full::new(Bytes::from(body)))
        .unwrap())
}

/// The body of `response` as text, after checking that no handler saw a tokio runtime.
async fn text(response: Response<Incoming>) -> String {
    assert_eq!(response.headers()["x-tokio-runtime"], "false");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// A handler that answers "METHOD PATH" and the value of the `x-test` header.
async fn describe(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = request
        .headers()
        .get("x-test")
        .map_or("-", |value| value.to_str().unwrap());
    respond(format!(
        "{} {} {}",
        request.method(),
        request.uri().path(),
        header
    ))
}

/// A GET request for `path` with an empty body.
fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).body(Full::default()).unwrap()
}

#[test]
fn http1_request_and_response() {
    on_both_flavours(|| async {
        let server = Server::start(Protocol::Http1 { vectored: true }, describe).await;
        let (mut sender, connection) = http1_client(server.addr).await;
        let request = Request::post("/hello")
            .header("x-test", "maniac")
            .body(Full::new(Bytes::from_static(b"ignored")))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.version(), Version::HTTP_11);
        assert_eq!(text(response).await, "POST /hello maniac");
        // Dropping the sender ends the client's connection cleanly.
        drop(sender);
        connection.await.unwrap().unwrap();
    });
}

#[test]
fn http1_keep_alive_serves_many_requests_on_one_connection() {
    for vectored in [true, false] {
        on_both_flavours(move || async move {
            let served = Arc::new(AtomicUsize::new(0));
            let counter = served.clone();
            let service = move |_request: Request<Incoming>| {
                let number = counter.fetch_add(1, SeqCst) + 1;
                async move { respond(format!("request {number}")) }
            };
            let server = Server::start(Protocol::Http1 { vectored }, service).await;
            let (mut sender, _connection) = http1_client(server.addr).await;
            for number in 1..=50 {
                sender.ready().await.unwrap();
                let response = sender.send_request(get("/")).await.unwrap();
                assert_eq!(text(response).await, format!("request {number}"));
            }
            assert_eq!(server.connections.load(SeqCst), 1);
            assert_eq!(served.load(SeqCst), 50);
        });
    }
}

/// FNV-1a: a checksum of a byte stream that does not depend on how it is cut into chunks.
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
    })
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// A handler that reads the request body frame by frame and answers with its length, checksum,
/// the number of frames it came in and its transfer encoding.
async fn digest(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let encoding = request.headers()["transfer-encoding"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut body = request.into_body();
    let (mut length, mut hash, mut frames) = (0, FNV_OFFSET, 0);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            length += data.len();
            hash = fnv1a(hash, &data);
            frames += 1;
        }
    }
    respond(format!("{length} {hash:x} {frames} {encoding}"))
}

#[test]
fn http1_request_body_streamed_in_chunks() {
    on_both_flavours(|| async {
        let server = Server::start(Protocol::Http1 { vectored: true }, digest).await;
        // The body comes from a channel that a producer task fills while the request is in
        // flight; a small channel makes it wait for the server to read.
        let (mut chunks, receiver) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        let (mut sender, _connection) = http1_client(server.addr).await;
        let request = Request::put("/upload")
            .body(StreamBody::new(receiver))
            .unwrap();
        let producer = maniac::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(7);
            let (mut length, mut hash) = (0, FNV_OFFSET);
            for _ in 0..300 {
                let chunk: Vec<u8> = (0..rng.usize(1..8192)).map(|_| rng.u8(..)).collect();
                length += chunk.len();
                hash = fnv1a(hash, &chunk);
                chunks
                    .send(Ok(Frame::data(Bytes::from(chunk))))
                    .await
                    .unwrap();
            }
            (length, hash)
        });
        let response = sender.send_request(request).await.unwrap();
        let (length, hash) = producer.await.unwrap();
        let answer = text(response).await;
        let fields: Vec<&str> = answer.split(' ').collect();
        assert_eq!(fields[0], length.to_string(), "length ({answer})");
        assert_eq!(fields[1], format!("{hash:x}"), "checksum ({answer})");
        assert!(
            fields[2].parse::<usize>().unwrap() > 1,
            "one frame ({answer})"
        );
        assert_eq!(fields[3], "chunked");
    });
}

#[test]
fn http2_request_and_response() {
    on_both_flavours(|| async {
        let server = Server::start(Protocol::Http2, describe).await;
        let mut sender = http2_client(server.addr).await;
        let request = Request::get("http://maniac.test/h2")
            .header("x-test", "two")
            .body(Full::default())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.version(), Version::HTTP_2);
        assert_eq!(text(response).await, "GET /h2 two");
    });
}

#[test]
fn http2_concurrent_streams_on_one_connection() {
    const STREAMS: usize = 16;
    on_both_flavours(|| async {
        // Every handler waits until all the streams are in: only streams served concurrently
        // (each in a task the executor spawned) get past the barrier.
        let barrier = Arc::new(tokio::sync::Barrier::new(STREAMS));
        let service = move |request: Request<Incoming>| {
            let barrier = barrier.clone();
            async move {
                barrier.wait().await;
                respond(request.uri().path().to_owned())
            }
        };
        let server = Server::start(Protocol::Http2, service).await;
        let sender = http2_client(server.addr).await;
        let requests: Vec<_> = (0..STREAMS)
            .map(|stream| {
                let mut sender = sender.clone();
                maniac::spawn(async move {
                    let request = Request::get(format!("http://maniac.test/{stream}"))
                        .body(Full::default())
                        .unwrap();
                    text(sender.send_request(request).await.unwrap()).await
                })
            })
            .collect();
        for (stream, request) in requests.into_iter().enumerate() {
            assert_eq!(request.await.unwrap(), format!("/{stream}"));
        }
        assert_eq!(server.connections.load(SeqCst), 1);
    });
}

#[test]
fn header_read_timeout_closes_a_connection_that_sends_no_headers() {
    const HEADER_READ_TIMEOUT: Duration = Duration::from_millis(200);
    on_both_flavours(|| async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let start = Instant::now();
        let server = maniac::spawn(
            hyper::server::conn::http1::Builder::new()
                .timer(ManiacTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(ManiacIo::new(stream), service_fn(describe)),
        );
        // The client sends nothing and waits for the server to hang up.
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        let waited = start.elapsed();
        assert!(received.is_empty(), "the server sent {received:?}");
        assert!(waited >= HEADER_READ_TIMEOUT, "closed after {waited:?}");
        let error = server.await.unwrap().unwrap_err();
        assert!(
            error.is_timeout(),
            "the server's connection ended with {error}"
        );
    });
}

#[test]
fn timer_sleeps_and_resets_in_place() {
    bounded(|| {
        multi(2).block_on(async {
            let timer = ManiacTimer::new();
            let start = Instant::now();
            timer.sleep(Duration::from_millis(30)).await;
            assert!(start.elapsed() >= Duration::from_millis(30));

            let deadline = std::time::Instant::now() + Duration::from_millis(20);
            timer.sleep_until(deadline).await;
            assert!(std::time::Instant::now() >= deadline);

            // A sleep of an hour, reset to 20 ms from now, completes then; the reset moved the
            // deadline of the same sleep (the box is the same).
            let mut sleep = timer.sleep(Duration::from_secs(3600));
            let boxed = std::ptr::from_ref(&*sleep).cast::<()>();
            let deadline = std::time::Instant::now() + Duration::from_millis(20);
            timer.reset(&mut sleep, deadline);
            assert_eq!(std::ptr::from_ref(&*sleep).cast::<()>(), boxed);
            sleep.await;
            assert!(std::time::Instant::now() >= deadline);
        });
    });
}

#[test]
fn executor_and_timer_with_a_handle_work_outside_the_runtime() {
    let runtime = multi(2);
    let executor = ManiacExecutor::with_handle(runtime.handle().clone());
    let timer = ManiacTimer::with_handle(runtime.handle().clone());
    let (done, finished) = std::sync::mpsc::channel();
    // Made on this thread, which is in no runtime; the task waits on it on a worker.
    let sleep = timer.sleep(Duration::from_millis(10));
    executor.execute(async move {
        sleep.await;
        done.send(maniac::task::try_id().is_some()).unwrap();
    });
    let in_a_task = finished.recv_timeout(common::TIMEOUT).unwrap();
    assert!(in_a_task, "the future did not run as a maniac task");
}

#[test]
fn executor_and_timer_new_outside_a_runtime_panic_saying_so() {
    for message in [
        panic_text(ManiacExecutor::new),
        panic_text(ManiacTimer::new),
    ] {
        assert!(message.contains("no maniac runtime"), "{message}");
    }
}

/// Polls `future` once, with a waker that does nothing; the adapter's tests use streams that
/// are always ready.
fn poll_once<T>(future: impl Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("an in-memory stream was not ready"),
    }
}

#[test]
fn io_reads_into_uninitialised_buffers_at_most_a_chunk_at_a_time() {
    let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let mut io = ManiacIo::new(futures::io::Cursor::new(data.clone()));
    let mut storage = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
    let mut buf = ReadBuf::uninit(&mut storage);
    let mut reads = Vec::new();
    loop {
        let before = buf.filled().len();
        poll_once(poll_fn(|cx| {
            Pin::new(&mut io).poll_read(cx, buf.unfilled())
        }))
        .unwrap();
        let read = buf.filled().len() - before;
        if read == 0 {
            break;
        }
        reads.push(read);
    }
    assert_eq!(buf.filled(), &data[..]);
    // The chunk starts at 4 KiB and doubles after each read that filled it.
    assert_eq!(reads, [4096, 8192, 16384, 40_000 - 28_672]);
}

#[test]
fn io_writes_flushes_and_shuts_down_through_the_stream() {
    let mut io = ManiacIo::new(futures::io::Cursor::new(Vec::new()));
    assert!(io.is_write_vectored());
    let flattened = ManiacIo::new(futures::io::Cursor::new(Vec::new())).with_vectored_writes(false);
    assert!(!flattened.is_write_vectored());
    let written = poll_once(poll_fn(|cx| Pin::new(&mut io).poll_write(cx, b"head ")));
    assert_eq!(written.unwrap(), 5);
    let slices = [
        std::io::IoSlice::new(b"and "),
        std::io::IoSlice::new(b"body"),
    ];
    let written = poll_once(poll_fn(|cx| {
        Pin::new(&mut io).poll_write_vectored(cx, &slices)
    }));
    assert_eq!(written.unwrap(), 8);
    poll_once(poll_fn(|cx| Pin::new(&mut io).poll_flush(cx))).unwrap();
    poll_once(poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx))).unwrap();
    assert_eq!(io.into_inner().into_inner(), b"head and body");
}

#[test]
fn io_wraps_any_futures_io_stream_halves_included() {
    fn read<T: Read>() {}
    fn write<T: Write>() {}
    read::<ManiacIo<maniac::net::tcp::OwnedReadHalf>>();
    write::<ManiacIo<maniac::net::tcp::OwnedWriteHalf>>();
    read::<ManiacIo<maniac::net::tcp::ReadHalf<'static>>>();
    write::<ManiacIo<maniac::net::tcp::WriteHalf<'static>>>();
}

/// A broken stream: claims to have read one byte more than it was given room for.
struct Overreader;

impl futures::io::AsyncRead for Overreader {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len() + 1))
    }
}

#[test]
fn io_refuses_a_stream_that_claims_more_than_the_buffer() {
    let message = panic_text(|| {
        let mut io = ManiacIo::new(Overreader);
        let mut storage = [0u8; 8];
        let mut buf = ReadBuf::new(&mut storage);
        poll_once(poll_fn(|cx| {
            Pin::new(&mut io).poll_read(cx, buf.unfilled())
        }))
    });
    assert!(
        message.contains("more than the buffer's length"),
        "{message}"
    );
}
