//! tokio's `AsyncRead`/`AsyncWrite` for maniac's streams (the `tokio-io` feature), generated
//! for each stream type next to its futures-io impls (`net::tcp::stream_io_traits`).

/// Implements tokio's I/O traits for `$ty`, whose `$get` (with `$stream` bound to `&self`) is a
/// stream with the `*_shared` methods.
macro_rules! tokio_io_traits {
    ($ty:ty, $stream:ident => $get:expr) => {
        impl tokio::io::AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                let $stream = &*self;
                // Zeroes the unfilled part once; later reads into the same buffer reuse it.
                let unfilled = buf.initialize_unfilled();
                match $get.poll_read_shared(cx, unfilled) {
                    Poll::Ready(Ok(read)) => {
                        buf.advance(read);
                        Poll::Ready(Ok(()))
                    }
                    Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                    Poll::Pending => Poll::Pending,
                }
            }
        }

        impl tokio::io::AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                let $stream = &*self;
                $get.poll_write_shared(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                let $stream = &*self;
                $get.poll_write_vectored_shared(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                let $stream = &*self;
                $get.shutdown_write()
            }
        }
    };
}

pub(crate) use tokio_io_traits;
