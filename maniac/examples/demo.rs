//! The main demonstration: CPU hogs beside a latency-sensitive task, on tokio and on maniac.
//!
//! `cargo run --release -p maniac --example demo` (`-- --quick` for a shorter run,
//! `-- --workers N` to choose the worker count; the default is the machine's cores).
//!
//! On W worker threads, 2W "hog" tasks compute for the whole run: job after job of about 200 ms
//! of pure arithmetic each, with no `.await` inside a job (one `yield_now` between jobs, which is
//! all a cooperative scheduler can hope for). Beside them, a ticker task sleeps 1 ms in a loop and
//! records how late it wakes (actual wake-up minus the deadline it asked for).
//!
//! The same program runs on:
//! - tokio's multi-thread runtime: a ticker that wakes up behind a hog waits for the hog's job to
//!   end (and for the other hogs queued before it), so it is one job late or more;
//! - maniac with preemption off: cooperative too, so no better; here worse, since a busy worker
//!   looks at the timers only every 61 polls, and a poll here lasts a whole job;
//! - maniac with preemption at its default quantum (1 ms), and at the shortest one (100 µs): a
//!   poll that runs past the quantum is interrupted and parked, the worker looks at the timers
//!   and runs the ticker.
//!
//! The main thread keeps the time and stops everything at the end; a tick still waiting then
//! counts with the lateness it had, so no figure exceeds the run's length. The ticker's first
//! figure is how long after its spawn its first poll came.
//!
//! It prints one line per runtime (ticks, percentiles of the wake latency, the hogs' finished
//! jobs, preemptions) and writes the latency distributions as an SVG plot to
//! `target/demo-latency.svg`.

use std::future::Future;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use plotters::prelude::*;

/// Length of one hog job (computation without an `.await`).
const JOB: Duration = Duration::from_millis(200);
/// What the ticker sleeps each time.
const TICK: Duration = Duration::from_millis(1);
/// How long the ticker measures, per runtime (`--quick`: the second figure).
const MEASURE: Duration = Duration::from_millis(2500);
const MEASURE_QUICK: Duration = Duration::from_millis(800);

/// One of the runtimes the demo compares.
#[derive(Clone, Copy, Debug)]
enum Setup {
    Tokio,
    /// maniac, with preemption at this quantum (`None`: preemption off).
    Maniac(Option<Duration>),
}

impl Setup {
    fn label(self) -> String {
        match self {
            Setup::Tokio => "tokio".to_owned(),
            Setup::Maniac(None) => "maniac, preemption off".to_owned(),
            Setup::Maniac(Some(quantum)) => format!("maniac, quantum {}", format_duration(quantum)),
        }
    }
}

/// What one run measured.
#[derive(Debug)]
struct Outcome {
    setup: Setup,
    /// Every tick's wake latency, sorted.
    latencies: Vec<Duration>,
    /// Jobs the hogs finished.
    jobs: u64,
    /// Preemptions (maniac with preemption on), else `None`.
    preemptions: Option<u64>,
}

/// `iterations` steps of a 64-bit LCG with an xor-shift: pure arithmetic, each step depending on
/// the previous one, so the compiler can neither vectorise nor shortcut it. Looks at `stop`
/// every 2^20 steps (a plain load: no `.await`, no system call).
/// Out of line, so that the loop is a function of this program's own: inlined into the task's
/// poll, it would be part of the runtime's poll function, whose code is never preempted
/// (`maniac::preempt`, async-safe point rule 3).
#[inline(never)]
fn compute(iterations: u64, stop: &AtomicBool) -> u64 {
    let mut x = 0x9E37_79B9_7F4A_7C15_u64;
    for i in 0..iterations {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x ^= x >> 29;
        x = black_box(x);
        if i & 0xF_FFFF == 0 && stop.load(Ordering::Relaxed) {
            break;
        }
    }
    x
}

/// How many `compute` steps take one `JOB` on this machine (best of three, on an idle core).
fn calibrate() -> u64 {
    let never = AtomicBool::new(false);
    let steps = 20_000_000;
    let best = (0..3)
        .map(|_| {
            let started = Instant::now();
            black_box(compute(steps, &never));
            started.elapsed()
        })
        .min()
        .expect("three samples");
    (steps as f64 * JOB.as_secs_f64() / best.as_secs_f64()) as u64
}

/// A hog: job after job of `job_steps` steps, yielding (`yield_now`) between jobs, until `stop`.
/// Returns the number of jobs it finished.
async fn hog<Y, F>(job_steps: u64, stop: Arc<AtomicBool>, yield_now: Y) -> u64
where
    Y: Fn() -> F,
    F: Future<Output = ()>,
{
    let mut jobs = 0;
    while !stop.load(Ordering::Relaxed) {
        black_box(compute(job_steps, &stop));
        jobs += 1;
        yield_now().await;
    }
    jobs
}

/// The ticker: sleeps `TICK` in a loop until `stop`, recording how late each wake-up is. The
/// first figure is how long after `spawned` its first poll came (a ticker starved from the start
/// still has one).
async fn ticker<S, F>(spawned: Instant, stop: Arc<AtomicBool>, sleep: S) -> Vec<Duration>
where
    S: Fn(Duration) -> F,
    F: Future<Output = ()>,
{
    let mut latencies = Vec::with_capacity(4096);
    latencies.push(spawned.elapsed());
    while !stop.load(Ordering::Relaxed) {
        let deadline = Instant::now() + TICK;
        sleep(TICK).await;
        latencies.push(Instant::now().saturating_duration_since(deadline));
    }
    latencies
}

/// Runs the hogs and the ticker on `setup` for `measure`. The main thread keeps the time (a
/// ticker that nobody runs could not), then stops the hogs and the ticker: a tick that was
/// waiting then wakes with the lateness it had, so no latency exceeds the run's length.
fn run(setup: Setup, workers: usize, job_steps: u64, measure: Duration) -> Outcome {
    let hogs = 2 * workers;
    let stop = Arc::new(AtomicBool::new(false));
    let (mut latencies, jobs, preemptions) = match setup {
        Setup::Tokio => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_time()
                .build()
                .expect("building a tokio runtime");
            let hogs: Vec<_> = (0..hogs)
                .map(|_| runtime.spawn(hog(job_steps, stop.clone(), tokio::task::yield_now)))
                .collect();
            let ticker = runtime.spawn(ticker(Instant::now(), stop.clone(), tokio::time::sleep));
            std::thread::sleep(measure);
            stop.store(true, Ordering::Relaxed);
            runtime.block_on(async {
                let latencies = ticker.await.expect("the ticker");
                let mut jobs = 0;
                for hog in hogs {
                    jobs += hog.await.expect("a hog");
                }
                (latencies, jobs, None)
            })
        }
        Setup::Maniac(quantum) => {
            let mut builder = maniac::runtime::Builder::new_multi_thread();
            builder
                .worker_threads(workers)
                .enable_all()
                .preemption(quantum.is_some());
            if let Some(quantum) = quantum {
                builder.preemption_quantum(quantum);
            }
            let runtime = builder.build().expect("building a maniac runtime");
            let hogs: Vec<_> = (0..hogs)
                .map(|_| runtime.spawn(hog(job_steps, stop.clone(), maniac::task::yield_now)))
                .collect();
            let ticker = runtime.spawn(ticker(Instant::now(), stop.clone(), maniac::time::sleep));
            std::thread::sleep(measure);
            stop.store(true, Ordering::Relaxed);
            let (latencies, jobs) = runtime.block_on(async {
                let latencies = ticker.await.expect("the ticker");
                let mut jobs = 0;
                for hog in hogs {
                    jobs += hog.await.expect("a hog");
                }
                (latencies, jobs)
            });
            let metrics = runtime.metrics();
            let preemptions = metrics.preemption_enabled().then(|| metrics.preemptions());
            (latencies, jobs, preemptions)
        }
    };
    latencies.sort_unstable();
    Outcome {
        setup,
        latencies,
        jobs,
        preemptions,
    }
}

/// The `q` quantile (nearest rank) of sorted `values`.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `duration` with a unit that keeps about three significant digits.
fn format_duration(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros >= 1e5 {
        format!("{:.0} ms", micros / 1e3)
    } else if micros >= 1e3 {
        format!("{:.1} ms", micros / 1e3)
    } else {
        format!("{micros:.0} µs")
    }
}

/// Where the plot goes: `target/demo-latency.svg`, next to the build's `release` directory.
fn plot_path() -> PathBuf {
    let exe = std::env::current_exe().ok();
    // target/release/examples/demo -> target
    let target = exe
        .as_deref()
        .and_then(|exe| exe.ancestors().nth(3))
        .map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("demo-latency.svg")
}

/// Colours of the series, in `Setup` order.
const COLOURS: [RGBColor; 4] = [
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
];

/// Plots, for every run, the fraction of ticks that woke later than x (log-log), so that the
/// tails show: a line that drops early is a runtime whose ticker is rarely late.
fn plot(outcomes: &[Outcome], workers: usize, path: &PathBuf) -> Result<(), String> {
    let to_ms = |latency: Duration| (latency.as_secs_f64() * 1e3).max(0.01);
    let longest = outcomes
        .iter()
        .filter_map(|outcome| outcome.latencies.last().copied())
        .max()
        .unwrap_or(JOB);
    let x_max = 10f64.powf(to_ms(longest).log10().ceil().max(0.0));
    let most = outcomes
        .iter()
        .map(|outcome| outcome.latencies.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let y_min = 10f64.powf((1.0 / most as f64).log10().floor());

    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "1 ms ticker beside {} CPU hogs on {workers} workers: how late it wakes",
                2 * workers
            ),
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d((0.01f64..x_max).log_scale(), (y_min..1.0f64).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("wake latency (ms, log scale)")
        .y_desc("fraction of ticks later than that")
        .x_label_formatter(&|x| format!("{x}"))
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(|e| e.to_string())?;
    for (outcome, colour) in outcomes.iter().zip(COLOURS) {
        let sorted = &outcome.latencies;
        let n = sorted.len();
        if n == 0 {
            continue;
        }
        // The complementary CDF, sampled at log-spaced fractions from 1 down to 1/n.
        let steps = 300;
        let points: Vec<(f64, f64)> = (0..=steps)
            .map(|k| {
                let fraction = (1.0 / n as f64).powf(k as f64 / steps as f64);
                let index = n - ((fraction * n as f64).round() as usize).clamp(1, n);
                (to_ms(sorted[index]), fraction)
            })
            .collect();
        let worst = (to_ms(sorted[n - 1]), 1.0 / n as f64);
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(outcome.setup.label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        // The latest tick, marked: with few ticks (a starved ticker) it is most of the line.
        chart
            .draw_series(std::iter::once(Circle::new(worst, 4, colour.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

fn main() {
    // The first maniac runtime would otherwise preempt only once a thread of its own has read
    // which code it may interrupt (a few ms; more in a debug build): read it now.
    maniac::preempt::prepare();
    let mut quick = std::env::var_os("MANIAC_DEMO_QUICK").is_some();
    let mut workers = std::thread::available_parallelism().map_or(2, usize::from);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--workers" => {
                workers = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .expect("--workers needs a positive number");
            }
            _ => {
                eprintln!("usage: demo [--quick] [--workers N]");
                std::process::exit(2);
            }
        }
    }
    let measure = if quick { MEASURE_QUICK } else { MEASURE };

    let job_steps = calibrate();
    println!(
        "maniac demo: {workers} workers, {} CPU hogs (jobs of {} of arithmetic with no .await \
         inside, yield_now between jobs),\nand a ticker that sleeps {} in a loop and records how \
         late it wakes; {:.1} s per runtime.\n",
        2 * workers,
        format_duration(JOB),
        format_duration(TICK),
        measure.as_secs_f64()
    );
    println!(
        "{:<26} {:>6} {:>9} {:>9} {:>9} {:>9} {:>6} {:>12}",
        "runtime", "ticks", "p50", "p99", "p99.9", "max", "jobs", "preemptions"
    );
    let setups = [
        Setup::Tokio,
        Setup::Maniac(None),
        Setup::Maniac(Some(Duration::from_millis(1))),
        Setup::Maniac(Some(Duration::from_micros(100))),
    ];
    let mut outcomes = Vec::new();
    for setup in setups {
        let outcome = run(setup, workers, job_steps, measure);
        let latencies = &outcome.latencies;
        println!(
            "{:<26} {:>6} {:>9} {:>9} {:>9} {:>9} {:>6} {:>12}",
            setup.label(),
            latencies.len(),
            format_duration(quantile(latencies, 0.5)),
            format_duration(quantile(latencies, 0.99)),
            format_duration(quantile(latencies, 0.999)),
            format_duration(latencies.last().copied().unwrap_or_default()),
            outcome.jobs,
            outcome
                .preemptions
                .map_or_else(|| "-".to_owned(), |count| count.to_string())
        );
        outcomes.push(outcome);
    }
    let p999 = |outcome: &Outcome| quantile(&outcome.latencies, 0.999).as_secs_f64();
    if let [tokio, _, maniac, ..] = &outcomes[..] {
        println!(
            "\np99.9 wake latency: tokio {}, maniac preempting at 1 ms {} ({:.0} times less). \
             Without preemption a ticker that wakes\nbehind a hog waits for the hog's job to end; \
             with it, the hog's poll is parked after a quantum and the worker runs the ticker.",
            format_duration(quantile(&tokio.latencies, 0.999)),
            format_duration(quantile(&maniac.latencies, 0.999)),
            p999(tokio) / p999(maniac).max(1e-9)
        );
    }
    let path = plot_path();
    match plot(&outcomes, workers, &path) {
        Ok(()) => println!("latency distributions plotted to {}", path.display()),
        Err(error) => eprintln!("demo: could not write {}: {error}", path.display()),
    }
}
