//! The suite's `yield_many` (200 tasks spawned from the main thread, each yielding 1,000 times),
//! run a fixed number of times on one runtime, for counting instructions under callgrind:
//! `instructions.sh` runs it at two iteration counts and takes the difference, which cancels
//! start-up (the symbol table read for preemption, thread creation) and leaves the cost of the
//! polls alone.
//!
//!   yield_instructions <maniac_on|maniac_off|tokio> <iterations>
//!
//! The quantum is 100 ms, not the default 1 ms: under callgrind the code runs some 50 times
//! slower, and time-paced work (the workers' looks for a calm monitor, eight a quantum) would
//! otherwise come at nearly every maintenance instead of at one in about forty as at full speed.
//! What a poll pays for preemption does not depend on the quantum.

use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

const TASKS: usize = 200;
const YIELDS: usize = 1_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(contender), Some(Ok(iterations))) =
        (args.get(1), args.get(2).map(|n| n.parse::<usize>()))
    else {
        eprintln!("usage: yield_instructions <maniac_on|maniac_off|tokio> <iterations>");
        return ExitCode::from(2);
    };
    let (tx, rx) = mpsc::sync_channel(TASKS);
    // One iteration's spawns on `$runtime`, every task yielding with `$yield_now`: the same code
    // for both runtimes, as in the suite.
    macro_rules! spawner {
        ($runtime:expr, $yield_now:path) => {{
            let runtime = $runtime;
            let spawn_all: Box<dyn Fn()> = Box::new(move || {
                for _ in 0..TASKS {
                    let tx = tx.clone();
                    drop(runtime.spawn(async move {
                        for _ in 0..YIELDS {
                            $yield_now().await;
                        }
                        tx.send(()).unwrap();
                    }));
                }
            });
            spawn_all
        }};
    }
    if contender == "maniac_on" {
        // Read before the runtime starts, in both runs alike, not at a time the monitor picks
        // (100 ms after the start: callgrind's slowed runs pass it at different points).
        maniac::preempt::prepare();
    }
    let spawn_all = match contender.as_str() {
        "maniac_on" | "maniac_off" => spawner!(
            maniac::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .preemption(contender == "maniac_on")
                .preemption_quantum(Duration::from_millis(100))
                .build()
                .expect("cannot build the maniac runtime"),
            maniac::task::yield_now
        ),
        "tokio" => spawner!(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .expect("cannot build the tokio runtime"),
            tokio::task::yield_now
        ),
        other => {
            eprintln!("yield_instructions: unknown contender {other:?}");
            return ExitCode::from(2);
        }
    };
    for _ in 0..iterations {
        spawn_all();
        for _ in 0..TASKS {
            rx.recv().unwrap();
        }
    }
    println!("{contender}: {iterations} iterations of {TASKS} tasks x {YIELDS} yields");
    ExitCode::SUCCESS
}
