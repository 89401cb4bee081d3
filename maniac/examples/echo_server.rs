//! A TCP echo server: every byte a client sends comes back to it.
//!
//! `cargo run --release -p maniac --example echo_server -- [ADDRESS]` listens on `ADDRESS`
//! (default `127.0.0.1:3000`) and serves until killed; try it with `nc 127.0.0.1 3000`.
//!
//! Each connection is a task of its own, which reads what has arrived into a buffer and writes it
//! back (maniac's `TcpStream` implements futures-io's traits, and `maniac::io` has the extension
//! traits with `read` and `write_all`), until the client closes its side.

use std::time::Duration;

use maniac::io::{AsyncReadExt, AsyncWriteExt};
use maniac::net::{TcpListener, TcpStream};

/// Reads until end of stream, writing back each read.
async fn echo(mut stream: TcpStream) -> std::io::Result<u64> {
    let mut buf = vec![0; 64 * 1024];
    let mut total = 0;
    loop {
        let read = stream.read(&mut buf).await?;
        if read == 0 {
            return Ok(total);
        }
        stream.write_all(&buf[..read]).await?;
        total += read as u64;
    }
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
    println!("echoing on {}", listener.local_addr()?);
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
        maniac::spawn(async move {
            match echo(stream).await {
                Ok(bytes) => println!("{peer}: echoed {bytes} bytes"),
                Err(error) => eprintln!("{peer}: {error}"),
            }
        });
    }
}
