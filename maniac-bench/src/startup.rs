//! Start-up: how long a process's first runtime takes from `build()` until it has run one task
//! and been dropped, what a short-lived program (a CLI tool, a test) pays once per run.
//!
//! Each run is a fresh child process (this binary re-executed with the hidden
//! `--start-up-child maniac|tokio` argument), since what a first runtime pays (maniac's code
//! map: `maniac::preempt::prepare`) is paid once per process. The child times, with nothing
//! before it:
//! 1. building the runtime (the suite's settings: `--workers`, `--preemption`);
//! 2. spawning one task that yields once, and awaiting it from `block_on`;
//! 3. dropping the runtime;
//!
//! and then, for maniac, times `maniac::preempt::prepare`: reading the code map, which a
//! runtime does not do at its start but when a poll first runs its quantum or 100 ms later
//! (`monitor` rule 8), and which a hog's preemption waits for before then. It prints both, in
//! nanoseconds. (Should step 2's poll be held past the quantum, as a debug build's first page
//! faults might, the read begins during the start, and the second figure is what remained of
//! it.)

use std::time::Instant;

use crate::memory;
use crate::rt::{Maniac, Rt, Tokio};

/// Child runs per runtime; the report gives their median.
pub const RUNS: usize = 11;
/// The hidden argument that makes this binary a start-up child.
pub const CHILD_ARG: &str = "--start-up-child";

/// Body of a start-up child for `runtime` (`"maniac"` or `"tokio"`): prints the time steps 1–3
/// took and the time the code map took to read (0 for tokio), in nanoseconds.
pub fn child_main(runtime: &str, workers: usize) -> Result<(), String> {
    let start = Instant::now();
    match runtime {
        "maniac" => first_runtime::<Maniac>(workers),
        "tokio" => first_runtime::<Tokio>(workers),
        other => return Err(format!("{CHILD_ARG}: unknown runtime {other:?}")),
    }
    let took = start.elapsed();
    let code_map = if runtime == Maniac::NAME {
        let start = Instant::now();
        maniac::preempt::prepare();
        start.elapsed().as_nanos()
    } else {
        0
    };
    println!("{} {code_map}", took.as_nanos());
    Ok(())
}

/// Steps 1–3 of the module doc on runtime `R`.
fn first_runtime<R: Rt>(workers: usize) {
    let rt = R::build(workers);
    rt.block_on(async {
        R::handle_spawn(rt.handle(), R::yield_now())
            .await
            .expect("the task failed");
    });
    drop(rt);
}

/// Each runtime's start-up times (ns), one per child run, in run order, and maniac's times to
/// read the code map.
#[derive(Debug, Default)]
pub struct StartUpRuns {
    pub maniac: Vec<f64>,
    pub tokio: Vec<f64>,
    pub maniac_code_map: Vec<f64>,
}

/// Runs [`RUNS`] children per runtime, alternated. `preemption` is the children's
/// `--preemption` (maniac's setting).
pub fn run(workers: usize, preemption: &str, verbose: bool) -> Result<StartUpRuns, String> {
    let mut runs = StartUpRuns::default();
    memory::for_each_child(
        CHILD_ARG,
        RUNS,
        workers,
        preemption,
        |run, runtime, stdout| {
            let figures: Vec<f64> = stdout
                .split_whitespace()
                .filter_map(|figure| figure.parse().ok())
                .collect();
            let [took, code_map] = figures[..] else {
                return Err(format!(
                    "the {runtime} start-up child printed {stdout:?}, not two times"
                ));
            };
            if verbose {
                eprintln!(
                    "  start-up run {run} {runtime}: {:.3} ms (code map {:.3} ms)",
                    took / 1e6,
                    code_map / 1e6
                );
            }
            if runtime == Maniac::NAME {
                runs.maniac.push(took);
                runs.maniac_code_map.push(code_map);
            } else {
                runs.tokio.push(took);
            }
            Ok(())
        },
    )?;
    Ok(runs)
}
