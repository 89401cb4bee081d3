//! HTTP/1.1 "Hello, World!" with hyper on maniac (the `hyper` feature).
//!
//! `cargo run --release -p maniac --features hyper --example hello_hyper -- [ADDRESS]` listens
//! on `ADDRESS` (default `127.0.0.1:3000`) and serves until killed; try it with
//! `curl http://127.0.0.1:3000/`.
//!
//! Each connection is a task of its own, served by hyper's `http1` connection over
//! `maniac::hyper::ManiacIo`, with keep-alive (hyper's default, set here to say so) and a
//! `header_read_timeout`, which waits on `maniac::hyper::ManiacTimer`: a client that opens a
//! connection and sends no complete request head within 10 seconds is disconnected.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use maniac::hyper::{ManiacIo, ManiacTimer};
use maniac::net::TcpListener;

/// How long a connection may take to send a request's head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

async fn hello(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello, World!",
    ))))
}

#[maniac::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    serve(&addr).await
}

/// Binds `addr` and serves each connection in a task of its own, forever.
async fn serve(addr: &str) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    println!("serving http://{}/", listener.local_addr()?);
    let timer = ManiacTimer::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, or a connection reset before it was accepted: the listener
                // is still good. Back off a little so that a lasting error does not spin.
                eprintln!("accept: {error}");
                maniac::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Responses are written whole; Nagle's algorithm would only delay them.
        if let Err(error) = stream.set_nodelay(true) {
            eprintln!("{peer}: set_nodelay: {error}");
        }
        let connection = http1::Builder::new()
            .timer(timer.clone())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(true)
            .serve_connection(ManiacIo::new(stream), service_fn(hello));
        maniac::spawn(async move {
            if let Err(error) = connection.await {
                eprintln!("{peer}: {error}");
            }
        });
    }
}
