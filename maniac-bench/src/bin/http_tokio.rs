//! The HTTP benchmark server on tokio, through hyper-util's adapters (module `http` has the
//! rest).

#[path = "../http.rs"]
mod http;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

fn main() -> std::io::Result<()> {
    let options = http::Options::from_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.workers)
        .enable_all()
        .build()?;
    for _ in 0..options.hogs {
        drop(runtime.spawn(http::hog()));
    }
    runtime.block_on(async {
        let listener = TcpListener::bind(&options.addr).await?;
        http::announce("tokio", listener.local_addr()?, &options);
        let builder = http::http1_builder(TokioTimer::new());
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let connection =
                builder.serve_connection(TokioIo::new(stream), service_fn(http::hello));
            drop(tokio::spawn(connection));
        }
    })
}
