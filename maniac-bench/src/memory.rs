//! Memory per idle task: 100 000 tasks, each parked on a `tokio::sync::oneshot::Receiver`.
//!
//! Each runtime is measured in a fresh child process (this binary re-executed with the hidden
//! `--memory-child maniac|tokio` argument), so that memory one runtime freed cannot be reused by
//! the other and distort its figure. The child:
//! 1. builds the runtime and runs a few tasks on it, so that its workers are up and warm;
//! 2. creates all the oneshot channels (their allocation is not the runtime's, so it happens
//!    before the first reading);
//! 3. reads its RSS (`/proc/self/statm`: resident pages × page size);
//! 4. spawns the tasks from the main thread; each increments a counter, then awaits its receiver;
//! 5. waits until the counter reaches 100 000 (every task has been polled once and is parked),
//!    reads its RSS again and prints the difference in bytes;
//! 6. wakes every task and shuts the runtime down.

use std::io;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::rt::{Maniac, Rt, Tokio};

/// Tasks parked per measurement.
pub const TASKS: usize = 100_000;
/// Child runs per runtime; the report gives their median.
pub const RUNS: usize = 3;
/// The hidden argument that makes this binary a measuring child.
pub const CHILD_ARG: &str = "--memory-child";

/// Body of a measuring child: measures `runtime` (`"maniac"` or `"tokio"`) and prints the RSS
/// growth in bytes on stdout.
pub fn child_main(runtime: &str, workers: usize) -> Result<(), String> {
    let delta = match runtime {
        "maniac" => measure::<Maniac>(workers),
        "tokio" => measure::<Tokio>(workers),
        other => return Err(format!("{CHILD_ARG}: unknown runtime {other:?}")),
    }
    .map_err(|error| format!("reading /proc/self/statm: {error}"))?;
    println!("{delta}");
    Ok(())
}

/// Steps 1–6 of the module doc on runtime `R`; returns the RSS growth in bytes.
fn measure<R: Rt>(workers: usize) -> io::Result<i64> {
    let rt = R::build(workers);
    // Warm up: let every worker start and run tasks.
    rt.block_on(async {
        let handles: Vec<_> = (0..workers * 16)
            .map(|_| R::handle_spawn(rt.handle(), R::yield_now()))
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
    });

    let polled = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::with_capacity(TASKS);
    // Options, so that the vector's buffer stays allocated until after the second reading.
    let mut receivers = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        let (tx, rx) = oneshot::channel::<()>();
        senders.push(tx);
        receivers.push(Some(rx));
    }

    let before = rss_bytes()?;
    for slot in &mut receivers {
        let rx = slot.take().expect("each receiver is taken once");
        let polled = polled.clone();
        drop(rt.rt_spawn(async move {
            polled.fetch_add(1, Ordering::Relaxed);
            let _ = rx.await;
        }));
    }
    while polled.load(Ordering::Relaxed) < TASKS {
        thread::sleep(Duration::from_millis(1));
    }
    // Let the workers settle back into their idle state.
    thread::sleep(Duration::from_millis(20));
    let after = rss_bytes()?;

    for tx in senders {
        let _ = tx.send(());
    }
    drop(receivers);
    drop(rt);
    Ok(after as i64 - before as i64)
}

/// This process's resident set size: the second field of `/proc/self/statm` (resident pages)
/// times the page size.
fn rss_bytes() -> io::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad /proc/self/statm"))?;
    Ok(pages * page_size())
}

/// The page size, from the `AT_PAGESZ` entry of `/proc/self/auxv` (4096 if unreadable).
fn page_size() -> u64 {
    const AT_PAGESZ: u64 = 6;
    let Ok(auxv) = std::fs::read("/proc/self/auxv") else {
        return 4096;
    };
    let word = |bytes: &[u8]| u64::from_ne_bytes(bytes.try_into().expect("8-byte chunk"));
    auxv.chunks_exact(16)
        .map(|entry| (word(&entry[..8]), word(&entry[8..])))
        .find(|&(key, _)| key == AT_PAGESZ)
        .map_or(4096, |(_, value)| value)
}

/// How long a measuring child may run before it is taken for hung and killed.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `runs` measuring children per runtime (this binary with the hidden `child_arg`, and
/// `--workers`, `--preemption`), alternating which runtime goes first, and gives `each` the run,
/// the runtime's name and what a child that succeeded printed. The start-up measurement's
/// children too (`startup`).
pub fn for_each_child(
    child_arg: &str,
    runs: usize,
    workers: usize,
    preemption: &str,
    mut each: impl FnMut(usize, &str, &str) -> Result<(), String>,
) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|error| format!("current_exe: {error}"))?;
    for run in 0..runs {
        let order = if run % 2 == 0 {
            [Maniac::NAME, Tokio::NAME]
        } else {
            [Tokio::NAME, Maniac::NAME]
        };
        for runtime in order {
            let output = run_child(&exe, child_arg, runtime, workers, preemption)?;
            if !output.status.success() {
                return Err(format!(
                    "the {runtime} child {child_arg} failed ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
            each(run, runtime, &String::from_utf8_lossy(&output.stdout))?;
        }
    }
    Ok(())
}

/// Runs one measuring child (this binary, `exe`, with the hidden `child_arg`) for `runtime`
/// and collects its output, killing it (by its own handle) if it outlives [`CHILD_TIMEOUT`].
fn run_child(
    exe: &Path,
    child_arg: &str,
    runtime: &str,
    workers: usize,
    preemption: &str,
) -> Result<Output, String> {
    let mut child = Command::new(exe)
        .args([child_arg, runtime, "--workers", &workers.to_string()])
        .args(["--preemption", preemption])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("starting the {runtime} child {child_arg}: {error}"))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > CHILD_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the {runtime} child {child_arg} did not finish within {} s (hung?)",
                    CHILD_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(error) => {
                return Err(format!(
                    "waiting for the {runtime} child {child_arg}: {error}"
                ));
            }
        }
    }
    child
        .wait_with_output()
        .map_err(|error| format!("reading the {runtime} child {child_arg}'s output: {error}"))
}

/// Bytes per idle task of each runtime, one value per child run, in run order.
#[derive(Debug, Default)]
pub struct MemoryRuns {
    /// maniac's runs.
    pub maniac: Vec<f64>,
    /// tokio's runs.
    pub tokio: Vec<f64>,
}

/// Runs [`RUNS`] children per runtime, alternating which runtime goes first, and collects each
/// child's bytes per task. `preemption` is the children's `--preemption` (maniac's setting).
pub fn run(workers: usize, preemption: &str, verbose: bool) -> Result<MemoryRuns, String> {
    let mut runs = MemoryRuns::default();
    for_each_child(
        CHILD_ARG,
        RUNS,
        workers,
        preemption,
        |run, runtime, stdout| {
            let delta: i64 = stdout.trim().parse().map_err(|_| {
                format!("the {runtime} memory child printed {stdout:?}, not a number of bytes")
            })?;
            let per_task = delta as f64 / TASKS as f64;
            if verbose {
                eprintln!("  memory run {run} {runtime}: {delta} bytes, {per_task:.1} B/task");
            }
            if runtime == Maniac::NAME {
                runs.maniac.push(per_task);
            } else {
                runs.tokio.push(per_task);
            }
            Ok(())
        },
    )?;
    Ok(runs)
}
