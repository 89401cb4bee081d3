//! What the two HTTP benchmark servers (`http_maniac`, `http_tokio`) share, so that they differ
//! only in the runtime: the command line, the handler, hyper's settings and the CPU hogs.
//!
//! Each server answers every request with "Hello, World!" over HTTP/1.1 with keep-alive, one
//! task per connection, accepting in the runtime's `block_on` future. `http_bench.sh` loads them
//! with `wrk`.
//!
//! ```text
//! http_maniac|http_tokio [ADDRESS] [WORKERS] [--hogs N] [--no-preemption] [--normal-monitor]
//! ```
//!
//! `--hogs N` spawns N tasks that compute forever without an `.await`. On tokio a hog keeps its
//! worker for good: with N at least WORKERS no connection is ever served, with fewer the
//! remaining workers serve everything. maniac preempts the hogs every quantum (1 ms), so every
//! worker keeps serving, a quantum or so late at worst.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::rt::Timer;
use hyper::server::conn::http1;
use hyper::{Request, Response};

/// Usage text.
const USAGE: &str = "usage: http_maniac|http_tokio [ADDRESS] [WORKERS] [--hogs N] [--no-preemption]
                 [--normal-monitor]
  ADDRESS          where to listen (default 127.0.0.1:3000)
  WORKERS          worker threads of the runtime (default 2)
  --hogs N         spawn N tasks that compute forever without an .await (default 0)
  --no-preemption  maniac only: schedule cooperatively, as tokio does
  --normal-monitor maniac only: the preemption monitor never at real-time priority";

/// How long a connection may take to send a request's head (as in `hello_hyper`).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The command line.
#[derive(Debug)]
pub struct Options {
    /// Where to listen.
    pub addr: String,
    /// Worker threads of the runtime.
    pub workers: usize,
    /// CPU hogs to spawn at start.
    pub hogs: usize,
    /// Whether maniac preempts (tokio never does).
    pub preemption: bool,
    /// maniac's `Builder::preemption_realtime_monitor`.
    pub realtime_monitor: bool,
}

impl Options {
    /// Parses the process's arguments; prints the usage and exits on a bad one.
    pub fn from_args() -> Options {
        Options::parse(std::env::args().skip(1)).unwrap_or_else(|error| {
            eprintln!("{error}\n{USAGE}");
            std::process::exit(2)
        })
    }

    fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut positional = Vec::new();
        let mut hogs = 0;
        let mut preemption = true;
        let mut realtime_monitor = true;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--hogs" => hogs = number(args.next(), "--hogs")?,
                "--no-preemption" => preemption = false,
                "--normal-monitor" => realtime_monitor = false,
                "-h" | "--help" => return Err(String::new()),
                _ if arg.starts_with('-') => return Err(format!("unknown option {arg}")),
                _ => positional.push(arg),
            }
        }
        let mut positional = positional.into_iter();
        let addr = positional
            .next()
            .unwrap_or_else(|| "127.0.0.1:3000".to_owned());
        let workers = match positional.next() {
            Some(workers) => number(Some(workers), "WORKERS")?,
            None => 2,
        };
        if let Some(extra) = positional.next() {
            return Err(format!("unexpected argument {extra}"));
        }
        if workers == 0 {
            return Err("WORKERS must be at least 1".to_owned());
        }
        Ok(Options {
            addr,
            workers,
            hogs,
            preemption,
            realtime_monitor,
        })
    }
}

fn number(value: Option<String>, what: &str) -> Result<usize, String> {
    let value = value.ok_or_else(|| format!("{what} needs a number"))?;
    value
        .parse()
        .map_err(|_| format!("{what}: {value:?} is not a number"))
}

/// The handler: "Hello, World!" to every request.
pub async fn hello(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello, World!",
    ))))
}

/// hyper's HTTP/1.1 connection settings of both servers, with the runtime's `timer`.
pub fn http1_builder(timer: impl Timer + Send + Sync + 'static) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(timer)
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    builder
}

/// A task that computes forever and never yields.
pub async fn hog() {
    let mut state = 1u64;
    loop {
        state = black_box(
            state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407),
        );
    }
}

/// What a server says once it listens (`http_bench.sh` waits for it).
pub fn announce(runtime: &str, addr: std::net::SocketAddr, options: &Options) {
    let preemption = match (options.preemption, options.realtime_monitor) {
        (false, _) => ", preemption off",
        (true, false) => ", monitor at normal priority",
        (true, true) => "",
    };
    println!(
        "{runtime}: listening on http://{addr}/ with {} workers and {} hogs{preemption}",
        options.workers, options.hogs
    );
}
