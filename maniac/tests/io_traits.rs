#![cfg(all(not(loom), feature = "tokio-io"))]
//! The ecosystem's I/O traits on maniac's streams: tokio-util's codecs over tokio's
//! `AsyncRead`/`AsyncWrite` (the `tokio-io` feature), and `futures` combinators over futures-io's
//! traits, on TCP and Unix streams and their halves, with no tokio runtime in the process.

mod common;

use common::bounded;
use futures::{SinkExt, StreamExt};
use maniac::net::{TcpListener, TcpStream, UnixStream};
use tokio_util::codec::{Framed, FramedRead, FramedWrite, LinesCodec};

fn each_flavour(test: impl Fn(maniac::runtime::Runtime) + Send + Sync + Copy + 'static) {
    bounded(move || test(common::multi(2)));
    bounded(move || test(common::current()));
}

/// A line-echo server with `Framed<TcpStream, LinesCodec>` and a client on split halves with
/// `FramedRead`/`FramedWrite`: every line comes back, in order, and the stream ends cleanly.
#[test]
fn tokio_util_lines_codec_over_tcp() {
    each_flavour(|rt| {
        rt.block_on(async {
            assert!(
                tokio::runtime::Handle::try_current().is_err(),
                "a tokio runtime"
            );
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = maniac::spawn(async move {
                let (stream, _) = listener.accept().await.unwrap();
                let mut framed = Framed::new(stream, LinesCodec::new());
                let mut echoed = 0;
                while let Some(line) = framed.next().await {
                    framed.send(line.unwrap().to_uppercase()).await.unwrap();
                    echoed += 1;
                }
                echoed
            });
            let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
            let mut lines_in = FramedRead::new(read, LinesCodec::new());
            let mut lines_out = FramedWrite::new(write, LinesCodec::new());
            for i in 0..200 {
                lines_out.send(format!("line {i}")).await.unwrap();
            }
            for i in 0..200 {
                let line = lines_in.next().await.expect("stream ended early").unwrap();
                assert_eq!(line, format!("LINE {i}"));
            }
            // Shutting the write half down ends the server's stream, and then ours.
            SinkExt::<String>::close(&mut lines_out).await.unwrap();
            assert!(lines_in.next().await.is_none(), "more lines than were sent");
            assert_eq!(server.await.unwrap(), 200);
        });
    });
}

/// tokio's `AsyncReadExt`/`AsyncWriteExt` and `tokio::io::copy` over a Unix stream pair.
#[test]
fn tokio_io_ext_and_copy_over_unix_streams() {
    each_flavour(|rt| {
        rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut a, b) = UnixStream::pair().unwrap();
            let (mut c, mut d) = UnixStream::pair().unwrap();
            // b → (copy) → c: whatever is written on `a` comes out of `d`.
            let relay = maniac::spawn(async move {
                let (mut b_read, _b_write) = tokio::io::split(b);
                let copied = tokio::io::copy(&mut b_read, &mut c).await.unwrap();
                c.shutdown().await.unwrap();
                copied
            });
            let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
            let writer = {
                let payload = payload.clone();
                maniac::spawn(async move {
                    a.write_all(&payload).await.unwrap();
                    a.shutdown().await.unwrap();
                })
            };
            let mut received = Vec::new();
            d.read_to_end(&mut received).await.unwrap();
            writer.await.unwrap();
            assert_eq!(relay.await.unwrap(), payload.len() as u64);
            assert_eq!(received, payload);
        });
    });
}

/// futures-io's side: `futures::io::copy` between streams and `AsyncBufReadExt::lines`.
#[test]
fn futures_io_combinators_over_tcp() {
    each_flavour(|rt| {
        rt.block_on(async {
            use futures::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = maniac::spawn(async move {
                let (stream, _) = listener.accept().await.unwrap();
                let (read, mut write) = stream.into_split();
                // Echo everything back with the futures combinator.
                futures::io::copy(read, &mut write).await.unwrap()
            });
            let stream = TcpStream::connect(addr).await.unwrap();
            let (read, mut write) = stream.into_split();
            let text: String = (0..500).map(|i| format!("{i}\n")).collect();
            write.write_all(text.as_bytes()).await.unwrap();
            write.close().await.unwrap();
            let lines: Vec<String> = BufReader::new(read)
                .lines()
                .map(|line| line.unwrap())
                .collect()
                .await;
            assert_eq!(lines.len(), 500);
            assert!(lines.iter().enumerate().all(|(i, l)| *l == i.to_string()));
            assert_eq!(server.await.unwrap(), text.len() as u64);
        });
    });
}
