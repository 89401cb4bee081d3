//! TCP echo on loopback, maniac against tokio in the same run.
//!
//! ```text
//! cargo run --release -p maniac-bench --bin tcp_echo -- [--workers W] [--connections C]
//!     [--round-trips N] [--reps R] [--sizes 1024,100] [--quick]
//! ```
//!
//! Each run builds a runtime with W workers (default: the machine's cores) and, on it, an echo
//! server (one task per accepted connection, reading into a buffer and writing back what it
//! read) and C client tasks (default 100), each of which connects and then sends a message of
//! the given size N times, waiting for the whole echo each time. Clients and server share the
//! runtime, as they would in a proxy: the figures are the runtime's, sockets and all.
//!
//! Reported per runtime and message size: messages per second over the whole run (C × N round
//! trips over the time from the first connect to the last echo), and the round trip's p50 and
//! p99 over every message. Runtimes alternate within each repetition (which goes first swaps),
//! and the table shows medians over the repetitions and the ratio maniac/tokio.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What one run measured.
struct Run {
    messages_per_second: f64,
    p50: Duration,
    p99: Duration,
}

struct Options {
    workers: usize,
    connections: usize,
    round_trips: usize,
    reps: usize,
    sizes: Vec<usize>,
}

fn parse_options() -> Options {
    let mut options = Options {
        workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        connections: 100,
        round_trips: 2_000,
        reps: 5,
        sizes: vec![1024, 100],
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match arg.as_str() {
            "--workers" => options.workers = value("--workers").parse().expect("--workers N"),
            "--connections" => {
                options.connections = value("--connections").parse().expect("--connections N")
            }
            "--round-trips" => {
                options.round_trips = value("--round-trips").parse().expect("--round-trips N")
            }
            "--reps" => options.reps = value("--reps").parse().expect("--reps N"),
            "--sizes" => {
                options.sizes = value("--sizes")
                    .split(',')
                    .map(|size| size.parse().expect("--sizes A,B,..."))
                    .collect()
            }
            "--quick" => {
                options.round_trips = 200;
                options.reps = 1;
            }
            other => panic!(
                "unknown argument {other:?}; usage: tcp_echo [--workers W] [--connections C] \
                 [--round-trips N] [--reps R] [--sizes 1024,100] [--quick]"
            ),
        }
    }
    options
}

/// Turns every client's round-trip times into one run's figures.
fn summarise(elapsed: Duration, mut round_trips: Vec<Duration>) -> Run {
    round_trips.sort_unstable();
    let at = |q: f64| round_trips[((round_trips.len() - 1) as f64 * q) as usize];
    Run {
        messages_per_second: round_trips.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// The echo workload written once over a runtime's own socket types (a macro: maniac's and
/// tokio's sockets share method names but not traits).
macro_rules! echo_workload {
    ($listener:ty, $stream:ty, $spawn:path) => {
        pub async fn echo(connections: usize, round_trips: usize, size: usize) -> Run {
            let listener = <$listener>::bind("127.0.0.1:0").await.expect("bind");
            let addr: SocketAddr = listener.local_addr().unwrap();
            $spawn(async move {
                loop {
                    let (mut stream, _) = listener.accept().await.expect("accept");
                    $spawn(async move {
                        let mut buffer = vec![0u8; 64 * 1024];
                        loop {
                            let read = match stream.read(&mut buffer).await {
                                Ok(0) | Err(_) => return,
                                Ok(read) => read,
                            };
                            if stream.write_all(&buffer[..read]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            });
            let start = Instant::now();
            let clients: Vec<_> = (0..connections)
                .map(|_| {
                    $spawn(async move {
                        let mut stream = <$stream>::connect(addr).await.expect("connect");
                        stream.set_nodelay(true).unwrap();
                        let message = vec![7u8; size];
                        let mut echo = vec![0u8; size];
                        let mut times = Vec::with_capacity(round_trips);
                        for _ in 0..round_trips {
                            let sent = Instant::now();
                            stream.write_all(&message).await.expect("write");
                            stream.read_exact(&mut echo).await.expect("read");
                            times.push(sent.elapsed());
                        }
                        assert_eq!(echo, message, "the echo differs from the message");
                        times
                    })
                })
                .collect();
            let mut times = Vec::with_capacity(connections * round_trips);
            for client in clients {
                times.extend(client.await.expect("a client failed"));
            }
            summarise(start.elapsed(), times)
        }
    };
}

mod on_maniac {
    use super::*;
    use maniac::io::{AsyncReadExt, AsyncWriteExt};
    echo_workload!(
        maniac::net::TcpListener,
        maniac::net::TcpStream,
        maniac::spawn
    );
}

mod on_tokio {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    echo_workload!(tokio::net::TcpListener, tokio::net::TcpStream, tokio::spawn);
}

fn run_maniac<F: Future<Output = Run>>(workers: usize, workload: F) -> Run {
    maniac::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .build()
        .expect("maniac runtime")
        .block_on(workload)
}

fn run_tokio<F: Future<Output = Run>>(workers: usize, workload: F) -> Run {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(workload)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

fn main() {
    let options = parse_options();
    println!(
        "tcp_echo: {} workers, {} connections, {} round trips each, {} repetitions",
        options.workers, options.connections, options.round_trips, options.reps
    );
    println!(
        "{:>6}  {:>7}  {:>12}  {:>9}  {:>9}",
        "size", "runtime", "messages/s", "p50 µs", "p99 µs"
    );
    for &size in &options.sizes {
        let (mut maniac_runs, mut tokio_runs) = (Vec::new(), Vec::new());
        for rep in 0..options.reps {
            let (c, n, w) = (options.connections, options.round_trips, options.workers);
            if rep % 2 == 0 {
                maniac_runs.push(run_maniac(w, on_maniac::echo(c, n, size)));
                tokio_runs.push(run_tokio(w, on_tokio::echo(c, n, size)));
            } else {
                tokio_runs.push(run_tokio(w, on_tokio::echo(c, n, size)));
                maniac_runs.push(run_maniac(w, on_maniac::echo(c, n, size)));
            }
        }
        let figures = |runs: &[Run]| {
            (
                median(runs.iter().map(|r| r.messages_per_second).collect()),
                median(runs.iter().map(|r| r.p50.as_secs_f64() * 1e6).collect()),
                median(runs.iter().map(|r| r.p99.as_secs_f64() * 1e6).collect()),
            )
        };
        let (maniac_rate, maniac_p50, maniac_p99) = figures(&maniac_runs);
        let (tokio_rate, tokio_p50, tokio_p99) = figures(&tokio_runs);
        for (name, rate, p50, p99) in [
            ("maniac", maniac_rate, maniac_p50, maniac_p99),
            ("tokio", tokio_rate, tokio_p50, tokio_p99),
        ] {
            println!("{size:>6}  {name:>7}  {rate:>12.0}  {p50:>9.1}  {p99:>9.1}");
        }
        println!(
            "{size:>6}  {:>7}  {:>12.3}  {:>9.3}  {:>9.3}",
            "ratio",
            maniac_rate / tokio_rate,
            maniac_p50 / tokio_p50,
            maniac_p99 / tokio_p99
        );
    }
}
