//! `maniac-bench`: maniac and tokio side by side, in the same process run.
//!
//! The workloads are those of tokio's `benches/rt_multi_threaded.rs` (module [`workloads`]),
//! written once over the [`rt::Rt`] trait. For each workload, each of `--reps` repetitions builds
//! a fresh runtime of each kind in turn (maniac first on even repetitions, tokio first on odd
//! ones), runs the workload's setup, warms up, times up to K iterations (K per workload, within a
//! time budget) and drops the runtime before the other one starts. The report gives each runtime's median over the
//! repetitions, the ratio maniac/tokio of the medians, and the spread. A last figure, memory per
//! idle task, is measured in child processes (module [`memory`]). Last, the costs of maniac's
//! coroutine machinery, which tokio has no counterpart of (module [`coroutine`]).
//!
//! ```text
//! maniac-bench [--quick] [--json] [--workers N] [--only NAME[,NAME]] [--reps N] [--verbose]
//! ```

mod coroutine;
mod memory;
mod rt;
mod stats;
mod sysinfo;
mod workloads;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rt::Rt;
use stats::Summary;
use workloads::{BenchFn, Bencher, WORKLOADS, Workload};

/// Name of the memory figure for `--only` and the report.
const MEMORY_BENCH: &str = "memory_per_idle_task";
/// Repetitions per workload by default.
const DEFAULT_REPS: usize = 15;
/// Repetitions per workload under `--quick`.
const QUICK_REPS: usize = 5;
/// Time budget of one repetition's timed iterations (the warm-up gets a quarter of it).
const BUDGET: Duration = Duration::from_millis(250);
/// The same under `--quick`.
const QUICK_BUDGET: Duration = Duration::from_millis(120);
/// A single repetition (one runtime) that takes longer than this is taken for a hang.
const HANG_TIMEOUT: Duration = Duration::from_secs(60);

/// Usage text.
const USAGE: &str = "\
usage: maniac-bench [--quick] [--json] [--workers N] [--only NAME[,NAME]] [--reps N] [--verbose]

  --quick        5 repetitions and fewer iterations per repetition (suite under a minute)
  --json         one JSON object per line on stdout (header goes to stderr)
  --workers N    worker threads of both runtimes (default: available cores; tokio's own
                 benches use 4)
  --only NAMES   comma-separated workloads to run (see below)
  --reps N       repetitions per workload (default 15, 5 with --quick)
  --verbose      every repetition's figure on stderr

workloads: spawn_many_local spawn_many_remote_idle spawn_many_remote_busy1
           spawn_many_remote_busy2 ping_pong yield_many chained_spawn memory_per_idle_task
coroutines (maniac only): poll_none poll_pinned switch_none switch_pinned generator_pooled
           generator_fresh_mmap";

/// The command line.
#[derive(Debug)]
struct Options {
    quick: bool,
    json: bool,
    verbose: bool,
    workers: usize,
    reps: usize,
    only: Option<Vec<String>>,
    memory_child: Option<String>,
}

impl Options {
    /// Parses the arguments after the program name.
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut quick = false;
        let mut json = false;
        let mut verbose = false;
        let mut workers = None;
        let mut reps = None;
        let mut only = None;
        let mut memory_child = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => {
                    (flag.to_owned(), Some(value.to_owned()))
                }
                _ => (arg.clone(), None),
            };
            let mut value = |name: &str| {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            let positive = |name: &str, text: String| match text.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{name} needs a positive number, not {text:?}")),
            };
            match flag.as_str() {
                "--quick" => quick = true,
                "--json" => json = true,
                "--verbose" | "-v" => verbose = true,
                "--workers" => workers = Some(positive("--workers", value("--workers")?)?),
                "--reps" => reps = Some(positive("--reps", value("--reps")?)?),
                "--only" => {
                    let names: Vec<String> = value("--only")?
                        .split(',')
                        .map(str::trim)
                        .filter(|name| !name.is_empty())
                        .map(str::to_owned)
                        .collect();
                    for name in &names {
                        let known = name == MEMORY_BENCH
                            || WORKLOADS.iter().any(|workload| workload.name == name)
                            || coroutine::MEASUREMENTS.iter().any(|m| m.name == name);
                        if !known {
                            return Err(format!("--only: unknown workload {name:?}"));
                        }
                    }
                    only = Some(names);
                }
                memory::CHILD_ARG => memory_child = Some(value(memory::CHILD_ARG)?),
                "--help" | "-h" => return Err(String::new()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(Options {
            quick,
            json,
            verbose,
            workers: workers.unwrap_or_else(sysinfo::cores),
            reps: reps.unwrap_or(if quick { QUICK_REPS } else { DEFAULT_REPS }),
            only,
            memory_child,
        })
    }

    /// Whether the benchmark `name` is selected.
    fn selected(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|names| names.iter().any(|selected| selected == name))
    }
}

/// What the hang watchdog watches: the repetition in progress and when it began.
type Watch = Arc<Mutex<Option<(String, Instant)>>>;

/// Starts a thread that aborts the process, naming the culprit, if one repetition of one
/// runtime runs longer than [`HANG_TIMEOUT`] (a lost wake-up would otherwise hang the suite).
fn start_watchdog() -> Watch {
    let watch: Watch = Arc::new(Mutex::new(None));
    let watched = watch.clone();
    thread::Builder::new()
        .name("hang-watchdog".into())
        .spawn(move || {
            loop {
                thread::sleep(Duration::from_millis(500));
                let current = watched.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let hung = current.filter(|(_, started)| started.elapsed() > HANG_TIMEOUT);
                if let Some((label, _)) = hung {
                    eprintln!(
                        "maniac-bench: {label} has not finished after {} s; it looks hung, \
                         aborting",
                        HANG_TIMEOUT.as_secs()
                    );
                    std::process::exit(2);
                }
            }
        })
        .expect("starting the watchdog thread");
    watch
}

/// One repetition of `bench` on a fresh runtime `R`; returns the mean ns per timed iteration
/// and the number of timed iterations.
fn run_once<R: Rt>(
    bench: BenchFn<R>,
    workers: usize,
    warmup: usize,
    iters: usize,
    budget: Duration,
    watch: &Watch,
    label: &str,
) -> (f64, usize) {
    *watch.lock().unwrap_or_else(|e| e.into_inner()) =
        Some((format!("{label} on {}", R::NAME), Instant::now()));
    let runtime = R::build(workers);
    let mut bencher = Bencher::new(warmup, iters, budget);
    bench(&runtime, workers, &mut bencher);
    drop(runtime);
    *watch.lock().unwrap_or_else(|e| e.into_inner()) = None;
    (bencher.mean_ns(), bencher.timed_iters())
}

/// The figures of one workload: one mean per repetition and runtime.
#[derive(Debug)]
struct Figures {
    name: &'static str,
    maniac: Vec<f64>,
    tokio: Vec<f64>,
}

/// Runs every repetition of `workload`.
fn run_workload(workload: &Workload, options: &Options, watch: &Watch) -> Figures {
    let iters = if options.quick {
        workload.quick_iters
    } else {
        workload.iters
    };
    let warmup = (iters / 10).max(2);
    let budget = if options.quick { QUICK_BUDGET } else { BUDGET };
    let mut result = Figures {
        name: workload.name,
        maniac: Vec::with_capacity(options.reps),
        tokio: Vec::with_capacity(options.reps),
    };
    for rep in 0..options.reps {
        let started = Instant::now();
        let run_maniac = || {
            run_once(
                workload.maniac,
                options.workers,
                warmup,
                iters,
                budget,
                watch,
                workload.name,
            )
        };
        let run_tokio = || {
            run_once(
                workload.tokio,
                options.workers,
                warmup,
                iters,
                budget,
                watch,
                workload.name,
            )
        };
        let ((maniac, maniac_iters), (tokio, tokio_iters)) = if rep % 2 == 0 {
            let maniac = run_maniac();
            (maniac, run_tokio())
        } else {
            let tokio = run_tokio();
            (run_maniac(), tokio)
        };
        if options.verbose {
            eprintln!(
                "  {} rep {rep}: maniac {} ({maniac_iters} it) tokio {} ({tokio_iters} it) \
                 ratio {:.3} ({} ms for both)",
                workload.name,
                format_ns(maniac),
                format_ns(tokio),
                maniac / tokio,
                started.elapsed().as_millis()
            );
        }
        result.maniac.push(maniac);
        result.tokio.push(tokio);
    }
    result
}

/// `ns` with a unit that keeps 3–4 significant digits.
fn format_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// A summary's spread: `min..max (IQR ±x%)`, the IQR relative to the median.
fn format_spread(summary: &Summary, format: fn(f64) -> String) -> String {
    format!(
        "{}..{} (IQR {:.1}%)",
        format(summary.min),
        format(summary.max),
        summary.iqr_percent()
    )
}

/// Bytes, with one decimal.
fn format_bytes(bytes: f64) -> String {
    format!("{bytes:.1} B")
}

/// Escapes `text` for a JSON string.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A finite number for JSON (`null` otherwise).
fn json_number(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "null".to_owned()
    }
}

/// Width of the workload column.
const NAME_WIDTH: usize = 24;

/// Prints the table's heading.
fn print_table_heading() {
    println!(
        "{:<NAME_WIDTH$} {:>11} {:>11} {:>7}  {:<36} {:<36} paired ratios",
        "workload", "maniac", "tokio", "ratio", "maniac spread", "tokio spread"
    );
}

/// Prints one row of the table or one JSON line.
fn print_row(
    options: &Options,
    name: &str,
    maniac: &[f64],
    tokio: &[f64],
    unit_json: &str,
    format: fn(f64) -> String,
) {
    let m = Summary::of(maniac);
    let t = Summary::of(tokio);
    let ratio = m.median / t.median;
    if options.json {
        println!(
            "{{\"bench\":{},\"maniac_{unit_json}\":{},\"tokio_{unit_json}\":{},\"ratio\":{}}}",
            json_string(name),
            json_number(m.median, 1),
            json_number(t.median, 1),
            json_number(ratio, 4)
        );
    } else {
        let paired: Vec<f64> = maniac.iter().zip(tokio).map(|(m, t)| m / t).collect();
        let p = Summary::of(&paired);
        println!(
            "{name:<NAME_WIDTH$} {:>11} {:>11} {ratio:>7.3}  {:<36} {:<36} {:.2}..{:.2}",
            format(m.median),
            format(t.median),
            format_spread(&m, format),
            format_spread(&t, format),
            p.min,
            p.max
        );
    }
}

/// Prints the header: date, CPU, cores, workers, tokio version and method.
fn print_header(options: &Options) {
    let lines = [
        format!(
            "maniac-bench: maniac {} vs tokio {}",
            env!("CARGO_PKG_VERSION"),
            sysinfo::TOKIO_VERSION
        ),
        format!("date:    {}", sysinfo::now_utc()),
        format!("cpu:     {}", sysinfo::cpu_model()),
        format!("cores:   {}", sysinfo::cores()),
        format!(
            "workers: {} (tokio's rt_multi_threaded benches use 4)",
            options.workers
        ),
        format!(
            "method:  {} repetitions{}; per repetition and runtime: fresh runtime, setup, warm-up, \
             timed iterations (up to K, within {} ms); medians over repetitions, ratio = maniac/tokio (< 1: maniac faster)",
            options.reps,
            if options.quick { " (--quick)" } else { "" },
            if options.quick { QUICK_BUDGET } else { BUDGET }.as_millis()
        ),
    ];
    for line in lines {
        if options.json {
            eprintln!("# {line}");
        } else {
            println!("# {line}");
        }
    }
    if !options.json {
        println!();
    }
}

/// The coroutine measurements (maniac only), as a table of their own or JSON lines.
fn run_coroutine_measurements(options: &Options) {
    let selected: Vec<_> = coroutine::MEASUREMENTS
        .iter()
        .filter(|measurement| options.selected(measurement.name))
        .collect();
    if selected.is_empty() {
        return;
    }
    if !options.json {
        println!("\ncoroutines (maniac only)      median   spread");
    }
    for measurement in selected {
        let summary = coroutine::run(measurement, options.reps, options.quick);
        if options.json {
            println!(
                "{{\"bench\":{},\"maniac_ns\":{}}}",
                json_string(measurement.name),
                json_number(summary.median, 1)
            );
        } else {
            println!(
                "{:<NAME_WIDTH$} {:>12}   {}",
                measurement.name,
                format_ns(summary.median),
                format_spread(&summary, format_ns)
            );
        }
    }
}

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            if message.is_empty() {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            eprintln!("maniac-bench: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(runtime) = &options.memory_child {
        return match memory::child_main(runtime, options.workers) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("maniac-bench: {message}");
                ExitCode::FAILURE
            }
        };
    }

    let started = Instant::now();
    print_header(&options);
    let watch = start_watchdog();
    if !options.json {
        print_table_heading();
    }
    for workload in WORKLOADS {
        if !options.selected(workload.name) {
            continue;
        }
        let result = run_workload(workload, &options, &watch);
        print_row(
            &options,
            result.name,
            &result.maniac,
            &result.tokio,
            "ns",
            format_ns,
        );
    }
    let mut status = ExitCode::SUCCESS;
    if options.selected(MEMORY_BENCH) {
        match memory::run(options.workers, options.verbose) {
            Ok(runs) => print_row(
                &options,
                MEMORY_BENCH,
                &runs.maniac,
                &runs.tokio,
                "bytes",
                format_bytes,
            ),
            Err(message) => {
                eprintln!("maniac-bench: {MEMORY_BENCH}: {message}");
                status = ExitCode::FAILURE;
            }
        }
    }
    run_coroutine_measurements(&options);
    let summary = format!(
        "# total wall time {:.1} s; memory: median of {} child processes per runtime, {} idle \
         tasks each",
        started.elapsed().as_secs_f64(),
        memory::RUNS,
        memory::TASKS
    );
    if options.json {
        eprintln!("{summary}");
    } else {
        println!("\n{summary}");
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::{Maniac, Tokio};

    fn parse(args: &[&str]) -> Result<Options, String> {
        Options::parse(args.iter().map(|arg| arg.to_string()))
    }

    #[test]
    fn parses_every_option() {
        let options = parse(&["--quick", "--json", "--workers", "3", "--only=ping_pong"]).unwrap();
        assert!(options.quick && options.json);
        assert_eq!((options.workers, options.reps), (3, QUICK_REPS));
        assert!(options.selected("ping_pong") && !options.selected("yield_many"));
        assert_eq!(parse(&["--reps", "7"]).unwrap().reps, 7);
        assert!(parse(&["--only", "nope"]).is_err());
        assert!(parse(&["--workers", "0"]).is_err());
        assert!(parse(&["--frobnicate"]).is_err());
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        assert_eq!(json_number(f64::NAN, 1), "null");
    }

    /// Every workload runs to completion on both runtimes (one iteration, no warm-up).
    #[test]
    fn every_workload_runs_on_both_runtimes() {
        for workload in WORKLOADS {
            let budget = Duration::from_secs(10);
            let mut bencher = Bencher::new(0, 1, budget);
            (workload.maniac)(&Maniac::build(2), 2, &mut bencher);
            assert!(bencher.mean_ns() > 0.0, "{} on maniac", workload.name);
            let mut bencher = Bencher::new(0, 1, budget);
            (workload.tokio)(&Tokio::build(2), 2, &mut bencher);
            assert!(bencher.mean_ns() > 0.0, "{} on tokio", workload.name);
        }
    }
}
