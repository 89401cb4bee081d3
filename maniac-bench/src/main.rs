//! `maniac-bench`: maniac and tokio side by side, in the same process run.
//!
//! The workloads are those of tokio's `benches/rt_multi_threaded.rs` (module [`workloads`]),
//! written once over the [`rt::Rt`] trait. For each workload, each of `--reps` repetitions builds
//! a fresh runtime of each kind in turn (maniac first on even repetitions, tokio first on odd
//! ones), runs the workload's setup, warms up, times up to K iterations (K per workload, within a
//! time budget) and drops the runtime before the other one starts. The report gives each runtime's median over the
//! repetitions, the ratio maniac/tokio of the medians, and the spread. A last figure, memory per
//! idle task, is measured in child processes (module [`memory`]). Then the costs of maniac's
//! coroutine machinery, which tokio has no counterpart of (module [`coroutine`]). Last,
//! preemption: how often the machine takes a busy thread's core away, wake latency beside CPU
//! hogs against tokio, the cost of a preemption and a bare signal's (module [`preempt`]).
//!
//! `--preemption off|on|both` chooses maniac's preemption in the suite (default on, the
//! runtime's default); with `both` each repetition runs maniac both ways and tokio, and a second
//! table gives the ratio on/off per workload.
//!
//! ```text
//! maniac-bench [--quick] [--json] [--workers N] [--only NAME[,NAME]] [--reps N] [--verbose]
//!              [--preemption off|on|both] [--seconds S]
//! ```

mod coroutine;
mod memory;
mod preempt;
mod rt;
mod startup;
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
/// Name of the start-up figure for `--only` and the report.
const START_UP_BENCH: &str = "start_up";
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
                    [--preemption off|on|both] [--seconds S] [--clock-hogs]

  --quick        5 repetitions and fewer iterations per repetition (suite under a minute)
  --json         one JSON object per line on stdout (header goes to stderr)
  --workers N    worker threads of both runtimes (default: available cores; tokio's own
                 benches use 4)
  --only NAMES   comma-separated workloads to run (see below)
  --reps N       repetitions per workload (default 15, 5 with --quick; preemption
                 measurements: 3 for preempt_latency, 5 for the others, 1 with --quick)
  --verbose      every repetition's figure on stderr
  --preemption M maniac's preemption in the suite, memory and start-up: on (default, 1 ms
                 quantum), off, or both (each repetition runs both; ratio on/off per workload)
  --seconds S    measuring time of each preempt_latency contender (default 2, 0.4 with --quick)
  --clock-hogs   preempt_latency's hogs read the clock at every step (`Instant::elapsed`: most
                 of their time inside std, libc and the vDSO) instead of pure arithmetic
  --monitor P    priority of maniac's preemption monitor in the suite: realtime (default, as
                 the runtime's) or normal (Builder::preemption_realtime_monitor)

workloads: spawn_many_local spawn_many_remote_idle spawn_many_remote_busy1
           spawn_many_remote_busy2 ping_pong yield_many chained_spawn memory_per_idle_task
           start_up (a first runtime built, one task run, dropped; a fresh process each run)
coroutines (maniac only): poll_none poll_pinned switch_none switch_pinned generator_pooled
           generator_fresh_mmap
preemption: cpu_gaps preempt_latency (maniac at 1 ms and 100 µs, maniac off, tokio)
           preempt_cost interrupt_floor signal_roundtrip";

/// maniac's preemption in the suite (`--preemption`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PreemptionMode {
    On,
    Off,
    Both,
}

impl PreemptionMode {
    fn parse(text: &str) -> Result<PreemptionMode, String> {
        match text {
            "on" => Ok(PreemptionMode::On),
            "off" => Ok(PreemptionMode::Off),
            "both" => Ok(PreemptionMode::Both),
            other => Err(format!("--preemption takes off, on or both, not {other:?}")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            PreemptionMode::On => "on",
            PreemptionMode::Off => "off",
            PreemptionMode::Both => "both",
        }
    }

    /// The setting of the suite's main maniac column (on for `both`).
    fn primary(self) -> Option<Duration> {
        match self {
            PreemptionMode::On | PreemptionMode::Both => Some(maniac::preempt::DEFAULT_QUANTUM),
            PreemptionMode::Off => None,
        }
    }
}

/// The command line.
#[derive(Debug)]
struct Options {
    quick: bool,
    json: bool,
    verbose: bool,
    workers: usize,
    reps: usize,
    /// Whether `--reps` was given (the preemption measurements have their own defaults).
    reps_given: bool,
    only: Option<Vec<String>>,
    memory_child: Option<String>,
    start_up_child: Option<String>,
    preemption: PreemptionMode,
    /// `--seconds`, for `preempt_latency`.
    seconds: Option<Duration>,
    /// `--clock-hogs`: what `preempt_latency`'s hogs compute.
    hog_work: preempt::HogWork,
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
        let mut start_up_child = None;
        let mut preemption = PreemptionMode::On;
        let mut seconds = None;
        let mut hog_work = preempt::HogWork::Arithmetic;
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
                "--clock-hogs" => hog_work = preempt::HogWork::ClockReading,
                "--workers" => workers = Some(positive("--workers", value("--workers")?)?),
                "--reps" => reps = Some(positive("--reps", value("--reps")?)?),
                "--preemption" => preemption = PreemptionMode::parse(&value("--preemption")?)?,
                "--monitor" => match value("--monitor")?.as_str() {
                    "realtime" => rt::set_maniac_realtime_monitor(true),
                    "normal" => rt::set_maniac_realtime_monitor(false),
                    other => {
                        return Err(format!("--monitor takes realtime or normal, not {other:?}"));
                    }
                },
                "--seconds" => {
                    let text = value("--seconds")?;
                    match text.parse::<f64>() {
                        Ok(secs) if secs > 0.0 && secs <= 600.0 => {
                            seconds = Some(Duration::from_secs_f64(secs));
                        }
                        _ => return Err(format!("--seconds needs 0 < S <= 600, not {text:?}")),
                    }
                }
                "--only" => {
                    let names: Vec<String> = value("--only")?
                        .split(',')
                        .map(str::trim)
                        .filter(|name| !name.is_empty())
                        .map(str::to_owned)
                        .collect();
                    for name in &names {
                        let known = name == MEMORY_BENCH
                            || name == START_UP_BENCH
                            || WORKLOADS.iter().any(|workload| workload.name == name)
                            || coroutine::MEASUREMENTS.iter().any(|m| m.name == name)
                            || preempt::NAMES.contains(&name.as_str());
                        if !known {
                            return Err(format!("--only: unknown workload {name:?}"));
                        }
                    }
                    only = Some(names);
                }
                memory::CHILD_ARG => memory_child = Some(value(memory::CHILD_ARG)?),
                startup::CHILD_ARG => start_up_child = Some(value(startup::CHILD_ARG)?),
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
            reps_given: reps.is_some(),
            only,
            memory_child,
            start_up_child,
            preemption,
            seconds,
            hog_work,
        })
    }

    /// Whether the benchmark `name` is selected.
    fn selected(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|names| names.iter().any(|selected| selected == name))
    }

    /// After a preemption measurement's table: how busy other processes kept the machine.
    fn report_others(&self, others: f64) {
        if !self.json {
            println!("other processes meanwhile: {others:.2} cores on average");
        }
    }

    /// The work of one `preempt_cost` task (and of half an `interrupt_floor` thread).
    fn cost_task(&self) -> Duration {
        if self.quick {
            preempt::COST_TASK_QUICK
        } else {
            preempt::COST_TASK
        }
    }

    /// Repetitions of a preemption measurement whose default is `default` (1 with `--quick`).
    fn preempt_reps(&self, default: usize) -> usize {
        if self.reps_given {
            self.reps
        } else if self.quick {
            1
        } else {
            default
        }
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

/// How one workload's repetitions run: workers, warm-up and timed iterations, time budget.
#[derive(Debug)]
struct Plan<'a> {
    workers: usize,
    warmup: usize,
    iters: usize,
    budget: Duration,
    watch: &'a Watch,
}

/// One repetition of `bench` on a fresh runtime `R` (maniac preempting at `preemption`, or not
/// at all); returns the mean ns per timed iteration and the number of timed iterations.
fn run_once<R: Rt>(
    bench: BenchFn<R>,
    preemption: Option<Duration>,
    plan: &Plan<'_>,
    label: &str,
) -> (f64, usize) {
    let watch = plan.watch;
    *watch.lock().unwrap_or_else(|e| e.into_inner()) =
        Some((format!("{label} on {}", R::NAME), Instant::now()));
    rt::set_maniac_preemption(preemption);
    let runtime = R::build(plan.workers);
    let mut bencher = Bencher::new(plan.warmup, plan.iters, plan.budget);
    bench(&runtime, plan.workers, &mut bencher);
    drop(runtime);
    *watch.lock().unwrap_or_else(|e| e.into_inner()) = None;
    (bencher.mean_ns(), bencher.timed_iters())
}

/// The figures of one workload: one mean per repetition and runtime.
#[derive(Debug)]
struct Figures {
    name: &'static str,
    /// maniac with the mode's primary setting (preemption on, but for `--preemption off`).
    maniac: Vec<f64>,
    /// maniac with preemption off, under `--preemption both`.
    maniac_off: Vec<f64>,
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
    let plan = Plan {
        workers: options.workers,
        warmup,
        iters,
        budget,
        watch,
    };
    let mut result = Figures {
        name: workload.name,
        maniac: Vec::with_capacity(options.reps),
        maniac_off: Vec::new(),
        tokio: Vec::with_capacity(options.reps),
    };
    let both = options.preemption == PreemptionMode::Both;
    // The runs of one repetition: 0 = maniac (primary setting), 1 = tokio, 2 = maniac with
    // preemption off (under `both`), in an order that rotates with the repetition.
    let runs = if both { 3 } else { 2 };
    for rep in 0..options.reps {
        let started = Instant::now();
        let mut figures = [(0.0, 0); 3];
        for k in 0..runs {
            let which = (k + rep) % runs;
            figures[which] = match which {
                0 => run_once(
                    workload.maniac,
                    options.preemption.primary(),
                    &plan,
                    workload.name,
                ),
                1 => run_once(workload.tokio, None, &plan, workload.name),
                _ => run_once(
                    workload.maniac,
                    None,
                    &plan,
                    &format!("{} (preemption off)", workload.name),
                ),
            };
        }
        let [
            (maniac, maniac_iters),
            (tokio, tokio_iters),
            (off, off_iters),
        ] = figures;
        if options.verbose {
            let off_text = if both {
                format!(" maniac off {} ({off_iters} it)", format_ns(off))
            } else {
                String::new()
            };
            eprintln!(
                "  {} rep {rep}: maniac {} ({maniac_iters} it) tokio {} ({tokio_iters} it){off_text} \
                 ratio {:.3} ({} ms for all)",
                workload.name,
                format_ns(maniac),
                format_ns(tokio),
                maniac / tokio,
                started.elapsed().as_millis()
            );
        }
        result.maniac.push(maniac);
        result.tokio.push(tokio);
        if both {
            result.maniac_off.push(off);
        }
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
        format!(
            "preemption: maniac's in the suite: {} (quantum {:?} when on)",
            options.preemption.name(),
            maniac::preempt::DEFAULT_QUANTUM
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

/// Under `--preemption both`: maniac with preemption on against off, per workload.
fn print_on_off(options: &Options, results: &[Figures]) {
    if results.is_empty() {
        return;
    }
    if !options.json {
        println!(
            "\nmaniac, preemption on ({:?} quantum) vs off, same run\n{:<NAME_WIDTH$} {:>11} {:>11} \
             {:>7}  {:<36} {:<36} paired ratios",
            maniac::preempt::DEFAULT_QUANTUM,
            "workload",
            "on",
            "off",
            "on/off",
            "on spread",
            "off spread"
        );
    }
    for result in results {
        let on = Summary::of(&result.maniac);
        let off = Summary::of(&result.maniac_off);
        let ratio = on.median / off.median;
        if options.json {
            println!(
                "{{\"bench\":{},\"maniac_on_ns\":{},\"maniac_off_ns\":{},\"ratio_on_off\":{}}}",
                json_string(result.name),
                json_number(on.median, 1),
                json_number(off.median, 1),
                json_number(ratio, 4)
            );
        } else {
            let paired: Vec<f64> = result
                .maniac
                .iter()
                .zip(&result.maniac_off)
                .map(|(on, off)| on / off)
                .collect();
            let p = Summary::of(&paired);
            println!(
                "{:<NAME_WIDTH$} {:>11} {:>11} {ratio:>7.3}  {:<36} {:<36} {:.2}..{:.2}",
                result.name,
                format_ns(on.median),
                format_ns(off.median),
                format_spread(&on, format_ns),
                format_spread(&off, format_ns),
                p.min,
                p.max
            );
        }
    }
}

/// A latency in µs for the preemption table.
fn format_us(ns: f64) -> String {
    if ns >= 1e7 {
        format!("{:.0} ms", ns / 1e6)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.0} µs", ns / 1e3)
    }
}

/// The preemption measurements (module [`preempt`]), as tables of their own or JSON lines.
fn run_preemption_measurements(options: &Options) {
    if options.selected("cpu_gaps") {
        let length = if options.quick {
            preempt::GAPS_LENGTH_QUICK
        } else {
            preempt::GAPS_LENGTH
        };
        let gaps = preempt::run_gaps(options.workers, length);
        if options.json {
            println!(
                "{{\"bench\":\"cpu_gaps\",\"threads\":{},\"over_1ms_per_s\":{},\
                 \"over_200us_per_s\":{},\"longest_us\":{}}}",
                options.workers,
                json_number(gaps.over_1ms_per_second, 2),
                json_number(gaps.over_200us_per_second, 2),
                json_number(gaps.longest / 1e3, 1)
            );
        } else {
            println!(
                "\nthe machine's own gaps: {} threads spinning for {:.1} s lost their core for more \
                 than 1 ms {:.1} times a second each (more than 200 µs: {:.1}); the longest gap was \
                 {}",
                options.workers,
                length.as_secs_f64(),
                gaps.over_1ms_per_second,
                gaps.over_200us_per_second,
                format_us(gaps.longest)
            );
        }
    }
    if options.selected("preempt_latency") {
        let reps = options.preempt_reps(preempt::LATENCY_REPS);
        let measure = options.seconds.unwrap_or(if options.quick {
            preempt::LATENCY_MEASURE_QUICK
        } else {
            preempt::LATENCY_MEASURE
        });
        if !options.json {
            let work = options.hog_work.described();
            println!(
                "\npreemption: wake latency of a ticker sleeping {:?} beside {} CPU hogs ({:?} jobs, \
                 no .await inside{work}) on {} workers;\n{:.1} s per contender, {reps} repetitions, \
                 medians; goal: p99.9 within one quantum + 200 µs",
                preempt::TICK,
                2 * options.workers,
                preempt::JOB,
                options.workers,
                measure.as_secs_f64()
            );
            println!(
                "{:<20} {:>7} {:>9} {:>9} {:>9} {:>9} {:>6} {:>12} {:>9} {:>11}  goal",
                "contender",
                "ticks",
                "p50",
                "p99",
                "p99.9",
                "max",
                "jobs",
                "preemptions",
                "deferred",
                "p99.9/tokio"
            );
        }
        let (results, others) = preempt::NoiseMeter::around(|| {
            preempt::run_latency(
                options.workers,
                options.hog_work,
                reps,
                measure,
                options.verbose,
            )
        });
        let tokio_p999 = results
            .iter()
            .find(|(contender, _)| contender.name == "tokio")
            .map_or(f64::NAN, |(_, run)| run.p999);
        for (contender, run) in &results {
            if options.json {
                println!(
                    "{{\"bench\":\"preempt_latency\",\"hogs\":{},\"runtime\":{},\"workers\":{},\"ticks\":{},\
                     \"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"jobs\":{},\
                     \"preemptions\":{},\"deferred\":{},\"others_cores\":{}}}",
                    json_string(options.hog_work.name()),
                    json_string(contender.name),
                    options.workers,
                    json_number(run.ticks, 0),
                    json_number(run.p50 / 1e3, 1),
                    json_number(run.p99 / 1e3, 1),
                    json_number(run.p999 / 1e3, 1),
                    json_number(run.max / 1e3, 1),
                    json_number(run.jobs, 0),
                    json_number(run.preemptions, 0),
                    json_number(run.deferred, 0),
                    json_number(others, 2)
                );
            } else {
                let goal = contender.quantum().map_or("", |quantum| {
                    let bound = (quantum + Duration::from_micros(200)).as_nanos() as f64;
                    if run.p999 <= bound { "met" } else { "missed" }
                });
                println!(
                    "{:<20} {:>7.0} {:>9} {:>9} {:>9} {:>9} {:>6.0} {:>12.0} {:>9.0} {:>11.3}  {goal}",
                    contender.name,
                    run.ticks,
                    format_us(run.p50),
                    format_us(run.p99),
                    format_us(run.p999),
                    format_us(run.max),
                    run.jobs,
                    run.preemptions,
                    run.deferred,
                    run.p999 / tokio_p999
                );
            }
        }
        options.report_others(others);
    }
    if options.selected("preempt_cost") {
        let reps = options.preempt_reps(preempt::COST_REPS);
        let task = options.cost_task();
        if !options.json {
            println!(
                "\npreemption: cost ({} tasks of {:?} of arithmetic, one poll each, on {} workers; \
                 process CPU time, off vs on back to back; {reps} repetitions, medians)",
                2 * options.workers,
                task,
                options.workers
            );
            println!(
                "{:<8} {:>11} {:>9} {:>11} {:>11} {:>9} {:>14} {:>12} {:>12} {:>15} {:>15}",
                "quantum",
                "preemptions",
                "deferred",
                "CPU off",
                "CPU on",
                "CPU loss",
                "per preemption",
                "monitor's",
                "workers'",
                "monitor (core)",
                "monitor wakes/s"
            );
        }
        let (results, others) = preempt::NoiseMeter::around(|| {
            preempt::run_cost(options.workers, reps, task, options.verbose)
        });
        for figures in results {
            let quantum = format!("{:?}", figures.quantum);
            if options.json {
                println!(
                    "{{\"bench\":\"preempt_cost\",\"quantum_us\":{},\"preemptions\":{},\
                     \"cpu_off_ns\":{},\"cpu_on_ns\":{},\"cpu_loss\":{},\
                     \"ns_per_preemption\":{},\"monitor_ns_per_preemption\":{},\
                     \"worker_ns_per_preemption\":{},\"monitor_core_share\":{},\
                     \"monitor_wakeups_per_s\":{},\"others_cores\":{}}}",
                    figures.quantum.as_micros(),
                    json_number(figures.preemptions, 0),
                    json_number(figures.cpu_off, 0),
                    json_number(figures.cpu_on, 0),
                    json_number(figures.loss, 5),
                    json_number(figures.per_preemption, 1),
                    json_number(figures.monitor_per_preemption, 1),
                    json_number(figures.worker_per_preemption, 1),
                    json_number(figures.monitor_share, 5),
                    json_number(figures.monitor_wakeups_per_s, 0),
                    json_number(others, 2)
                );
            } else {
                println!(
                    "{quantum:<8} {:>11.0} {:>9.0} {:>11} {:>11} {:>8.2}% {:>14} {:>12} {:>12} \
                     {:>14.2}% {:>15.0}",
                    figures.preemptions,
                    figures.deferred,
                    format_ns(figures.cpu_off),
                    format_ns(figures.cpu_on),
                    figures.loss * 100.0,
                    format_ns(figures.per_preemption),
                    format_ns(figures.monitor_per_preemption),
                    format_ns(figures.worker_per_preemption),
                    figures.monitor_share * 100.0,
                    figures.monitor_wakeups_per_s
                );
            }
        }
        options.report_others(others);
    }
    if options.selected("interrupt_floor") {
        let reps = options.preempt_reps(preempt::COST_REPS);
        let task = options.cost_task();
        if !options.json {
            println!(
                "\ninterrupt floor ({} threads, no runtime, each computing two of preempt_cost's \
                 tasks, interrupted once a quantum by its own timer or by a sleeping thread's \
                 tgkill; process CPU time, none vs interrupted back to back; {reps} repetitions, \
                 medians)",
                options.workers
            );
            println!(
                "{:<8} {:<10} {:>11} {:>9} {:>14}",
                "quantum", "source", "interrupts", "CPU loss", "per interrupt"
            );
        }
        let (results, others) =
            preempt::NoiseMeter::around(|| preempt::run_floor(options.workers, reps, task));
        for figures in results {
            if options.json {
                println!(
                    "{{\"bench\":\"interrupt_floor\",\"quantum_us\":{},\"source\":{},\
                     \"interrupts\":{},\"cpu_loss\":{},\"ns_per_interrupt\":{},\
                     \"others_cores\":{}}}",
                    figures.quantum.as_micros(),
                    json_string(figures.source.name()),
                    json_number(figures.interrupts, 0),
                    json_number(figures.loss, 5),
                    json_number(figures.per_interrupt, 1),
                    json_number(others, 2)
                );
            } else {
                println!(
                    "{:<8} {:<10} {:>11.0} {:>8.2}% {:>14}",
                    format!("{:?}", figures.quantum),
                    figures.source.name(),
                    figures.interrupts,
                    figures.loss * 100.0,
                    format_ns(figures.per_interrupt)
                );
            }
        }
        options.report_others(others);
    }
    if options.selected("signal_roundtrip") {
        let reps = options.preempt_reps(preempt::COST_REPS);
        let figures = preempt::run_signal(reps, options.quick);
        if options.json {
            println!(
                "{{\"bench\":\"signal_roundtrip\",\"self_ns\":{},\"cross_thread_ns\":{},\
                 \"syscall_ns\":{}}}",
                json_number(figures.to_self, 1),
                json_number(figures.cross_thread, 1),
                json_number(figures.syscall, 1)
            );
        } else {
            println!(
                "\nsignal round trip ({reps} repetitions, medians): tgkill to self -> handler -> \
                 return {}; to a spinning thread, until its handler has run {}; a bare system call \
                 {}",
                format_ns(figures.to_self),
                format_ns(figures.cross_thread),
                format_ns(figures.syscall)
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
    rt::set_maniac_preemption(options.preemption.primary());
    // First: what a first runtime pays is the measurement.
    if let Some(runtime) = &options.start_up_child {
        return match startup::child_main(runtime, options.workers) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("maniac-bench: {message}");
                ExitCode::FAILURE
            }
        };
    }
    // Read before any runtime starts (`maniac::preempt::prepare`): the first maniac runtime
    // preempts from its first poll, and no measurement shares the cores with that read.
    maniac::preempt::prepare();
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
    let noise = preempt::NoiseMeter::start();
    print_header(&options);
    let watch = start_watchdog();
    let suite = WORKLOADS
        .iter()
        .any(|workload| options.selected(workload.name))
        || options.selected(MEMORY_BENCH)
        || options.selected(START_UP_BENCH);
    if !options.json && suite {
        print_table_heading();
    }
    let mut on_off = Vec::new();
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
        if options.preemption == PreemptionMode::Both {
            on_off.push(result);
        }
    }
    let mut status = ExitCode::SUCCESS;
    if options.selected(MEMORY_BENCH) {
        match memory::run(options.workers, options.preemption.name(), options.verbose) {
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
    if options.selected(START_UP_BENCH) {
        match startup::run(options.workers, options.preemption.name(), options.verbose) {
            Ok(runs) => {
                print_row(
                    &options,
                    START_UP_BENCH,
                    &runs.maniac,
                    &runs.tokio,
                    "ns",
                    format_ns,
                );
                if !options.json && options.preemption != PreemptionMode::Off {
                    println!(
                        "  (maniac's code map, read when a poll first runs its quantum or 100 ms \
                         after the start, which an earlier hog's preemption waits for: {}, \
                         median of {} runs)",
                        format_ns(Summary::of(&runs.maniac_code_map).median),
                        startup::RUNS
                    );
                }
            }
            Err(message) => {
                eprintln!("maniac-bench: {START_UP_BENCH}: {message}");
                status = ExitCode::FAILURE;
            }
        }
    }
    print_on_off(&options, &on_off);
    run_coroutine_measurements(&options);
    run_preemption_measurements(&options);
    let summary = format!(
        "# total wall time {:.1} s; other processes meanwhile: {:.2} cores on average; memory: \
         median of {} child processes per runtime, {} idle tasks each",
        started.elapsed().as_secs_f64(),
        noise.others_cores(),
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
        let start_up = parse(&["--only", "start_up", "--start-up-child", "tokio"]).unwrap();
        assert!(start_up.selected(START_UP_BENCH) && !start_up.selected(MEMORY_BENCH));
        assert_eq!(start_up.start_up_child.as_deref(), Some("tokio"));
        assert!(parse(&["--workers", "0"]).is_err());
        assert!(parse(&["--frobnicate"]).is_err());
    }

    #[test]
    fn parses_the_preemption_options() {
        let options = parse(&["--preemption", "both", "--seconds=0.5", "--quick"]).unwrap();
        assert_eq!(options.preemption, PreemptionMode::Both);
        assert_eq!(options.seconds, Some(Duration::from_millis(500)));
        assert_eq!(options.preempt_reps(preempt::LATENCY_REPS), 1);
        assert_eq!(parse(&[]).unwrap().preemption, PreemptionMode::On);
        assert_eq!(parse(&[]).unwrap().preempt_reps(3), 3);
        assert_eq!(parse(&["--reps", "4"]).unwrap().preempt_reps(3), 4);
        assert!(parse(&["--only", "preempt_latency,signal_roundtrip"]).is_ok());
        assert!(parse(&["--preemption", "sometimes"]).is_err());
        assert!(parse(&["--seconds", "0"]).is_err());
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
