//! I/O: the reactor the runtime's sockets are registered with, and the I/O traits.
//!
//! maniac's streams implement `futures-io`'s `AsyncRead`/`AsyncWrite` (re-exported here with
//! the `*Ext` traits of `futures-util`, so `read_exact`, `write_all`, `copy` and friends work),
//! and, with the `tokio-io` feature, tokio's `AsyncRead`/`AsyncWrite`, so that `tokio-util`
//! codecs run on maniac sockets.

pub(crate) mod poll_evented;
pub(crate) mod reactor;
pub(crate) mod scheduled_io;
#[cfg(feature = "tokio-io")]
pub(crate) mod tokio_io;

pub use futures_util::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt, AsyncWrite,
    AsyncWriteExt, BufReader, BufWriter, copy, empty, repeat, sink,
};
