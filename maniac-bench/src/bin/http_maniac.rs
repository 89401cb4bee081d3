//! The HTTP benchmark server on maniac, through `maniac::hyper` (module `http` has the rest).

#[path = "../http.rs"]
mod http;

use hyper::service::service_fn;
use maniac::hyper::{ManiacIo, ManiacTimer};
use maniac::net::TcpListener;

fn main() -> std::io::Result<()> {
    let options = http::Options::from_args();
    let runtime = maniac::runtime::Builder::new_multi_thread()
        .worker_threads(options.workers)
        .preemption(options.preemption)
        .preemption_realtime_monitor(options.realtime_monitor)
        .enable_all()
        .build()?;
    for _ in 0..options.hogs {
        drop(runtime.spawn(http::hog()));
    }
    runtime.block_on(async {
        let listener = TcpListener::bind(&options.addr).await?;
        http::announce("maniac", listener.local_addr()?, &options);
        let builder = http::http1_builder(ManiacTimer::new());
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let connection =
                builder.serve_connection(ManiacIo::new(stream), service_fn(http::hello));
            drop(maniac::spawn(connection));
        }
    })
}
