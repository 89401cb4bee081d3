//! Preemption figures: what maniac's preemption buys and what it costs.
//!
//! ## `preempt_latency`: wake latency beside CPU hogs
//! On W workers, 2W hog tasks compute job after job of about [`JOB`] (200 ms) of pure arithmetic
//! (no `.await` inside a job, `yield_now` between jobs), while a ticker task sleeps [`TICK`]
//! (1 ms) in a loop and records its wake latency: the moment it runs again minus the deadline it
//! asked for (and, first, how long after its spawn its first poll came). The main thread keeps
//! the time (a starved ticker could not) and, after the measuring time, stops the hogs and the
//! ticker; a tick still waiting then counts with the lateness it had, so no figure exceeds the
//! measuring time. Contenders: maniac preempting at 1 ms and at
//! 100 µs, maniac with preemption off, and tokio (`maniac-bench/preempt_bench.sh` adds Go, with
//! the same workload in `maniac-bench/go`, `-mode latency`). Per repetition every contender runs once,
//! in an order that rotates; the report gives each figure's median over the repetitions.
//! With `--clock-hogs` each job is [`read_the_clock`] instead: the same arithmetic with a clock
//! read at every step, most of its time inside std's `Instant`, libc and the vDSO, where maniac
//! preempts only by walking up to the task's code (`maniac::preempt`, "What is and is not
//! enforced").
//!
//! ## `preempt_cost`: cost per preemption and throughput loss
//! On W workers, 2W tasks each compute a fixed amount of work (about [`COST_TASK`] each) in one
//! poll, so with preemption on every poll is preempted about once a quantum, and there is always
//! another task to switch to. The process's CPU time for the whole batch is measured with
//! preemption off and on (quanta of 10 ms, Go's `forcePreemptNS`, 1 ms and 100 µs), back to
//! back in each repetition; then
//! - throughput loss = (CPU on − CPU off) / CPU off;
//! - cost per preemption = (CPU on − CPU off) / preemptions: the whole path (the monitor's looks
//!   and signal, the kernel's delivery, the handler, the trampoline's saves and restores, the
//!   switch, the worker loop picking the next task, and the cache misses after the switch);
//! - the monitor's own CPU time (from `/proc/self/task/*/schedstat`), as a share of a core,
//!   and its wake-ups per second (its voluntary context switches, `/proc/self/task/*/status`).
//!
//! CPU time rather than wall time: it does not depend on how the tasks were spread over the
//! workers, nor on other processes taking turns on the cores.
//!
//! ## `signal_roundtrip`: a bare signal, for comparison
//! `tgkill` to the calling thread in a loop, with a handler that increments a counter (the
//! system call, the kernel's signal frame, the handler and `rt_sigreturn`); the same to another
//! thread that spins, waiting each time until its handler has run (what the monitor's request
//! costs when the worker is on another core); and a bare system call (`getppid`). The monitor
//! sends its requests with `rt_tgsigqueueinfo` (so that the handler knows them by their
//! siginfo), which costs what `tgkill` does: one system call that also copies a 128-byte
//! siginfo (2.50–2.93 µs against 2.53–3.28 µs a round trip to self, five alternated rounds
//! of 200,000 each in C, 2026-12-03).
//!
//! ## `interrupt_floor`: what interrupting a computing thread costs here, with no runtime
//! W threads compute the work of `preempt_cost`'s batch (two of its tasks each), once without
//! interruption and once interrupted every quantum (1 ms and 100 µs), back to back, in an order
//! that rotates; the cost per interrupt is (CPU interrupted − CPU not) / interrupts, with the
//! process's CPU time, as in `preempt_cost`. Two sources of the interrupt:
//! - *own timer*: each thread's own `CLOCK_MONOTONIC` POSIX timer, signalling that thread
//!   (`SIGEV_THREAD_ID`), re-armed by its handler for a quantum later: no other thread wakes,
//!   no inter-processor interrupt, the cheapest way to interrupt a thread once a quantum;
//! - *sleeper*: one more thread that sleeps to the end of each quantum and sends `tgkill` to
//!   every computing thread: maniac's monitor with all its workers in phase (one wake-up for W
//!   requests), its best case.
//!
//! Either is a floor under `preempt_cost`'s cost per preemption: a preemption is such an
//! interrupt plus the trampoline, the switch and the worker loop.
//!
//! ## `cpu_gaps`: what the machine itself takes
//! W threads (one per worker) spin reading the clock for a second and note every gap: a time
//! when the thread was not running (the OS or, in a virtual machine, the host gave its core to
//! something else). No runtime can wake a task sooner than its worker thread runs, so gaps of a
//! few milliseconds a few times a second set the floor of every tail latency above.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::rt::{Maniac, Rt, Tokio};
use crate::stats::Summary;

/// One hog job (`preempt_latency`).
pub const JOB: Duration = Duration::from_millis(200);
/// What the ticker sleeps (`preempt_latency`).
pub const TICK: Duration = Duration::from_millis(1);
/// Default measuring time of one contender in one repetition (`preempt_latency`).
pub const LATENCY_MEASURE: Duration = Duration::from_secs(2);
/// The same under `--quick`.
pub const LATENCY_MEASURE_QUICK: Duration = Duration::from_millis(400);
/// Default repetitions of `preempt_latency` (each runs every contender for its measuring time).
pub const LATENCY_REPS: usize = 3;
/// Work of one task of `preempt_cost` (2W tasks, so W × 2 × this of CPU per run).
pub const COST_TASK: Duration = Duration::from_millis(500);
/// The same under `--quick`.
pub const COST_TASK_QUICK: Duration = Duration::from_millis(60);
/// Default repetitions of `preempt_cost` and `signal_roundtrip`.
pub const COST_REPS: usize = 5;

/// Names of the measurements, for `--only`.
pub const NAMES: [&str; 5] = [
    "cpu_gaps",
    "preempt_latency",
    "preempt_cost",
    "interrupt_floor",
    "signal_roundtrip",
];
/// How long each `cpu_gaps` thread spins (`--quick`: the second figure).
pub const GAPS_LENGTH: Duration = Duration::from_secs(1);
pub const GAPS_LENGTH_QUICK: Duration = Duration::from_millis(200);

/// The quanta the measurements compare: the default, and the shortest the runtime accepts.
pub const QUANTA: [Duration; 2] = [Duration::from_millis(1), Duration::from_micros(100)];
/// The quanta of `preempt_cost`: [`QUANTA`], and Go's 10 ms (sysmon's `forcePreemptNS`; its
/// slices run about 20 ms, as sysmon first notes a goroutine at one 10 ms look and preempts it
/// at the next), to set beside Go's own cost (`maniac-bench/preempt_bench.sh`).
pub const COST_QUANTA: [Duration; 3] = [Duration::from_millis(10), QUANTA[0], QUANTA[1]];

/// Where the hogs' LCG starts.
const LCG_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// One step of the hogs' 64-bit LCG.
#[inline(always)]
fn lcg(x: u64) -> u64 {
    x.wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407)
}

/// `steps` steps of a 64-bit LCG with an xor-shift: pure arithmetic, each step depending on the
/// previous one (no vectorising, no closed form). Looks at `stop` every 2^20 steps, a plain load.
/// Out of line, so that the loop is a function of this program's own: inlined into the task's
/// poll, it would be part of the runtime's poll function, whose code is never preempted
/// (`maniac::preempt`, async-safe point rule 3).
#[inline(never)]
pub fn compute(steps: u64, stop: &AtomicBool) -> u64 {
    let mut x = LCG_SEED;
    for i in 0..steps {
        x = lcg(x);
        x ^= x >> 29;
        x = black_box(x);
        if i & 0xF_FFFF == 0 && stop.load(Ordering::Relaxed) {
            break;
        }
    }
    x
}

/// What the hogs of `preempt_latency` compute in each job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HogWork {
    /// [`compute`]: arithmetic in the program's own code.
    Arithmetic,
    /// [`read_the_clock`]: arithmetic with a clock read at every step, most of the time inside
    /// std's `Instant`, libc's `clock_gettime` and the vDSO (`--clock-hogs`).
    ClockReading,
}

impl HogWork {
    /// Its name in the JSON lines (`hogs`).
    pub fn name(self) -> &'static str {
        match self {
            HogWork::Arithmetic => "arithmetic",
            HogWork::ClockReading => "clock_reading",
        }
    }

    /// What the report's header adds about it.
    pub fn described(self) -> &'static str {
        match self {
            HogWork::Arithmetic => "",
            HogWork::ClockReading => ", reading the clock at every step",
        }
    }
}

/// Arithmetic steps for `length`, reading the clock at every step to know when to end (as
/// `while start.elapsed() < length` does), or until `stop`, looked at every 2^16 steps.
#[inline(never)]
pub fn read_the_clock(length: Duration, stop: &AtomicBool) -> u64 {
    let start = Instant::now();
    let mut x = LCG_SEED;
    let mut steps = 0u64;
    while start.elapsed() < length {
        x = lcg(x);
        steps += 1;
        if steps & 0xFFFF == 0 && stop.load(Ordering::Relaxed) {
            break;
        }
    }
    x
}

/// How many [`compute`] steps take `length` on this thread (best of three).
pub fn calibrate(length: Duration) -> u64 {
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
    (steps as f64 * length.as_secs_f64() / best.as_secs_f64()) as u64
}

/// How busy the rest of the machine was while a measurement ran: the time the cores were busy
/// (`/proc/stat`) minus this process's CPU time, per second of wall time, in cores. The figures
/// here come from a shared machine; this says how shared it was.
#[derive(Debug)]
pub struct NoiseMeter {
    busy: u64,
    ours: u64,
    started: Instant,
}

impl NoiseMeter {
    /// Runs `measurement`; returns its result and how busy other processes kept the machine
    /// meanwhile ([`NoiseMeter::others_cores`]).
    pub fn around<T>(measurement: impl FnOnce() -> T) -> (T, f64) {
        let noise = NoiseMeter::start();
        let result = measurement();
        (result, noise.others_cores())
    }

    /// Starts measuring.
    pub fn start() -> NoiseMeter {
        NoiseMeter {
            busy: machine_busy_ns(),
            ours: process_cpu_ns(),
            started: Instant::now(),
        }
    }

    /// Cores' worth of CPU time other processes used since [`NoiseMeter::start`], on average
    /// (at the kernel tick's resolution, 10 ms or so).
    pub fn others_cores(&self) -> f64 {
        let busy = machine_busy_ns().saturating_sub(self.busy);
        let ours = process_cpu_ns().saturating_sub(self.ours);
        busy.saturating_sub(ours) as f64 / self.started.elapsed().as_nanos().max(1) as f64
    }
}

/// The time every core has been busy since boot, ns (`/proc/stat`'s first line: user, nice,
/// system, irq, softirq and steal ticks).
fn machine_busy_ns() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&index| ticks.get(index))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    busy * (1_000_000_000 / hz)
}

/// The `q` quantile (nearest rank) of sorted `values`; 0 for none.
fn quantile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64
}

// ---------------------------------------------------------------------------------------------
// preempt_latency

/// One contender of `preempt_latency`.
#[derive(Clone, Copy, Debug)]
pub struct Contender {
    /// Name in the report (and in `preempt_bench.sh`'s table).
    pub name: &'static str,
    /// `None`: tokio; `Some(None)`: maniac, preemption off; `Some(Some(q))`: maniac at `q`.
    maniac: Option<Option<Duration>>,
    /// maniac's `Builder::preemption_realtime_monitor`.
    realtime_monitor: bool,
}

impl Contender {
    /// The quantum, for maniac with preemption on.
    pub fn quantum(&self) -> Option<Duration> {
        self.maniac.flatten()
    }
}

/// Every contender, in report order.
pub const CONTENDERS: [Contender; 6] = [
    Contender {
        name: "maniac_1ms",
        maniac: Some(Some(QUANTA[0])),
        realtime_monitor: true,
    },
    Contender {
        name: "maniac_100us",
        maniac: Some(Some(QUANTA[1])),
        realtime_monitor: true,
    },
    Contender {
        name: "maniac_1ms_normal",
        maniac: Some(Some(QUANTA[0])),
        realtime_monitor: false,
    },
    Contender {
        name: "maniac_100us_normal",
        maniac: Some(Some(QUANTA[1])),
        realtime_monitor: false,
    },
    Contender {
        name: "maniac_off",
        maniac: Some(None),
        realtime_monitor: true,
    },
    Contender {
        name: "tokio",
        maniac: None,
        realtime_monitor: true,
    },
];

/// What one contender measured in one repetition (latencies in ns).
#[derive(Clone, Debug, Default)]
pub struct LatencyRun {
    /// Ticks recorded.
    pub ticks: f64,
    /// Wake latency percentiles and maximum, ns.
    pub p50: f64,
    /// 99th percentile, ns.
    pub p99: f64,
    /// 99.9th percentile, ns.
    pub p999: f64,
    /// Largest, ns.
    pub max: f64,
    /// Hog jobs finished (the hogs' throughput).
    pub jobs: f64,
    /// Preemptions (maniac with preemption on).
    pub preemptions: f64,
    /// Preemption requests deferred (maniac with preemption on).
    pub deferred: f64,
    /// The longest poll the monitor saw, over the workers, ns (maniac with preemption on): how
    /// late a preemption came at worst.
    pub longest_poll: f64,
    /// The monitor thread's mean wait for a CPU each time it woke, ns (the OS's share of the
    /// lateness of preemptions).
    pub monitor_wait: f64,
}

/// A hog: job after job of `work` ([`JOB`] long: `job_steps` steps of arithmetic), `yield_now`
/// between jobs, until `stop`. Returns the jobs it finished.
async fn hog<R: Rt>(work: HogWork, job_steps: u64, stop: Arc<AtomicBool>) -> u64 {
    let mut jobs = 0;
    while !stop.load(Ordering::Relaxed) {
        black_box(match work {
            HogWork::Arithmetic => compute(job_steps, &stop),
            HogWork::ClockReading => read_the_clock(JOB, &stop),
        });
        jobs += 1;
        R::yield_now().await;
    }
    jobs
}

/// The ticker: sleeps [`TICK`] in a loop until `stop`, recording each wake latency in ns. Its
/// first figure is how long after `spawned` its first poll came (a ticker starved from the start
/// still has one figure).
async fn ticker<R: Rt>(spawned: Instant, stop: Arc<AtomicBool>) -> Vec<u64> {
    let nanos = |late: Duration| u64::try_from(late.as_nanos()).unwrap_or(u64::MAX);
    let mut latencies = Vec::with_capacity(4096);
    latencies.push(nanos(spawned.elapsed()));
    while !stop.load(Ordering::Relaxed) {
        let deadline = Instant::now() + TICK;
        R::sleep(TICK).await;
        latencies.push(nanos(Instant::now().saturating_duration_since(deadline)));
    }
    latencies
}

/// The workload on `rt`: returns the sorted latencies and the jobs the hogs finished.
fn latency_workload<R: Rt>(
    rt: &R,
    workers: usize,
    work: HogWork,
    job_steps: u64,
    measure: Duration,
) -> (Vec<u64>, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = (0..2 * workers)
        .map(|_| rt.rt_spawn(hog::<R>(work, job_steps, stop.clone())))
        .collect();
    let ticker = rt.rt_spawn(ticker::<R>(Instant::now(), stop.clone()));
    std::thread::sleep(measure);
    stop.store(true, Ordering::Relaxed);
    let (mut latencies, jobs) = rt.block_on(async {
        let latencies = ticker.await.expect("the ticker");
        let mut jobs = 0;
        for hog in hogs {
            jobs += hog.await.expect("a hog");
        }
        (latencies, jobs)
    });
    latencies.sort_unstable();
    (latencies, jobs)
}

/// One run of `contender`.
pub fn latency_once(
    contender: &Contender,
    workers: usize,
    work: HogWork,
    job_steps: u64,
    measure: Duration,
) -> LatencyRun {
    let mut monitor_wait = 0.0;
    let (latencies, jobs, preemptions, deferred, longest_poll) = match contender.maniac {
        None => {
            let rt = Tokio::build(workers);
            let (latencies, jobs) = latency_workload(&rt, workers, work, job_steps, measure);
            (latencies, jobs, 0, 0, Duration::ZERO)
        }
        Some(quantum) => {
            let rt = Maniac::with_preemption(workers, quantum, contender.realtime_monitor);
            let before = threads_schedstat(MONITOR_THREAD);
            let (latencies, jobs) = latency_workload(&rt, workers, work, job_steps, measure);
            let after = threads_schedstat(MONITOR_THREAD);
            // Saturating: another runtime's monitor may have gone meanwhile (only in tests).
            let waited = after[1].saturating_sub(before[1]);
            let wakeups = after[2].saturating_sub(before[2]).max(1);
            monitor_wait = waited as f64 / wakeups as f64;
            let metrics = rt.metrics();
            let longest_poll = (0..workers)
                .filter_map(|worker| metrics.worker_preemption(worker))
                .map(|stats| stats.longest_poll())
                .max()
                .unwrap_or_default();
            (
                latencies,
                jobs,
                metrics.preemptions(),
                metrics.preemptions_deferred(),
                longest_poll,
            )
        }
    };
    LatencyRun {
        ticks: latencies.len() as f64,
        p50: quantile(&latencies, 0.5),
        p99: quantile(&latencies, 0.99),
        p999: quantile(&latencies, 0.999),
        max: latencies.last().copied().unwrap_or(0) as f64,
        jobs: jobs as f64,
        preemptions: preemptions as f64,
        deferred: deferred as f64,
        longest_poll: longest_poll.as_nanos() as f64,
        monitor_wait,
    }
}

/// Every contender's median figures over `reps` repetitions, in [`CONTENDERS`] order.
pub fn run_latency(
    workers: usize,
    work: HogWork,
    reps: usize,
    measure: Duration,
    verbose: bool,
) -> Vec<(Contender, LatencyRun)> {
    let job_steps = calibrate(JOB);
    let mut runs: Vec<Vec<LatencyRun>> = vec![Vec::new(); CONTENDERS.len()];
    for rep in 0..reps {
        for k in 0..CONTENDERS.len() {
            let index = (k + rep) % CONTENDERS.len();
            let contender = &CONTENDERS[index];
            let run = latency_once(contender, workers, work, job_steps, measure);
            if verbose {
                eprintln!(
                    "  preempt_latency rep {rep} {}: {} ticks, p50 {:.0} µs, p99 {:.0} µs, \
                     p99.9 {:.0} µs, max {:.0} µs, {} jobs, {} preemptions, {} deferred, \
                     longest poll {:.0} µs, monitor's mean wait for a CPU {:.1} µs",
                    contender.name,
                    run.ticks,
                    run.p50 / 1e3,
                    run.p99 / 1e3,
                    run.p999 / 1e3,
                    run.max / 1e3,
                    run.jobs,
                    run.preemptions,
                    run.deferred,
                    run.longest_poll / 1e3,
                    run.monitor_wait / 1e3
                );
            }
            runs[index].push(run);
        }
    }
    CONTENDERS
        .iter()
        .zip(runs)
        .map(|(contender, runs)| {
            let median = |f: fn(&LatencyRun) -> f64| {
                Summary::of(&runs.iter().map(f).collect::<Vec<_>>()).median
            };
            let run = LatencyRun {
                ticks: median(|r| r.ticks),
                p50: median(|r| r.p50),
                p99: median(|r| r.p99),
                p999: median(|r| r.p999),
                max: median(|r| r.max),
                jobs: median(|r| r.jobs),
                preemptions: median(|r| r.preemptions),
                deferred: median(|r| r.deferred),
                longest_poll: median(|r| r.longest_poll),
                monitor_wait: median(|r| r.monitor_wait),
            };
            (*contender, run)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// preempt_cost

/// This process's CPU time (every thread, alive or gone), ns.
fn process_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write to; the clock id is a constant the kernel knows.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// The scheduler's figures of this process's threads named `name`, summed
/// (`/proc/self/task/*/schedstat`): time on a CPU (ns), time runnable but waiting for one (ns),
/// and the number of times it got one.
fn threads_schedstat(name: &str) -> [u64; 3] {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return [0; 3];
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .map(|stat| {
            let mut fields = stat
                .split_whitespace()
                .map(|field| field.parse::<u64>().unwrap_or(0));
            [(); 3].map(|()| fields.next().unwrap_or(0))
        })
        .fold([0; 3], |sum, one| {
            [sum[0] + one[0], sum[1] + one[1], sum[2] + one[2]]
        })
}

/// The voluntary context switches so far of this process's threads named `name`
/// (`/proc/self/task/*/status`): how often they went to sleep, so how often they woke.
fn threads_voluntary_switches(name: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|count| count.trim().parse::<u64>().ok())
        })
        .sum()
}

/// Name of maniac's monitor thread. The benchmarks run one runtime at a time, so the threads of
/// that name are that runtime's monitor.
const MONITOR_THREAD: &str = "maniac-monitor";

/// One batch of `preempt_cost`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CostRun {
    /// Process CPU time of the batch, ns.
    pub cpu: f64,
    /// Wall time of the batch, ns.
    pub wall: f64,
    /// Preemptions taken.
    pub preemptions: f64,
    /// Requests deferred.
    pub deferred: f64,
    /// The monitor thread's CPU time, ns.
    pub monitor: f64,
    /// The monitor thread's wake-ups (its voluntary context switches).
    pub monitor_wakeups: f64,
}

/// Runs `tasks` tasks of `task_steps` steps each, one poll each, on a fresh maniac runtime.
pub fn cost_once(
    workers: usize,
    quantum: Option<Duration>,
    tasks: usize,
    task_steps: u64,
) -> CostRun {
    let rt = Maniac::with_preemption(workers, quantum, true);
    // Every worker up and idle before the clock starts.
    rt.block_on(async {
        let handles: Vec<_> = (0..workers * 4)
            .map(|_| Maniac::handle_spawn(rt.handle(), Maniac::yield_now()))
            .collect();
        for handle in handles {
            handle.await.expect("a warm-up task");
        }
    });
    let monitor_before = threads_schedstat(MONITOR_THREAD)[0];
    let wakeups_before = threads_voluntary_switches(MONITOR_THREAD);
    let cpu_before = process_cpu_ns();
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            rt.rt_spawn(async move {
                let never = AtomicBool::new(false);
                black_box(compute(task_steps, &never))
            })
        })
        .collect();
    rt.block_on(async {
        for handle in handles {
            black_box(handle.await.expect("a computing task"));
        }
    });
    let wall = started.elapsed();
    let cpu = process_cpu_ns() - cpu_before;
    let monitor = threads_schedstat(MONITOR_THREAD)[0].saturating_sub(monitor_before);
    let wakeups = threads_voluntary_switches(MONITOR_THREAD).saturating_sub(wakeups_before);
    let metrics = rt.metrics();
    CostRun {
        cpu: cpu as f64,
        wall: wall.as_nanos() as f64,
        preemptions: metrics.preemptions() as f64,
        deferred: metrics.preemptions_deferred() as f64,
        monitor: monitor as f64,
        monitor_wakeups: wakeups as f64,
    }
}

/// The figures of one quantum against preemption off (medians over repetitions).
#[derive(Clone, Copy, Debug)]
pub struct CostFigures {
    /// The quantum.
    pub quantum: Duration,
    /// Median CPU time with preemption off, ns.
    pub cpu_off: f64,
    /// Median CPU time with preemption on, ns.
    pub cpu_on: f64,
    /// Median preemptions per batch.
    pub preemptions: f64,
    /// Median requests deferred per batch.
    pub deferred: f64,
    /// Median of the per-repetition (CPU on − CPU off) / CPU off.
    pub loss: f64,
    /// Median of the per-repetition (CPU on − CPU off) / preemptions, ns.
    pub per_preemption: f64,
    /// Median of the per-repetition monitor CPU / preemptions, ns (part of `per_preemption`).
    pub monitor_per_preemption: f64,
    /// Median of the monitor's CPU time / wall time (share of one core).
    pub monitor_share: f64,
    /// Median of the monitor's wake-ups per second: a count of its own sleeps, which the host's
    /// noise does not move as it moves CPU times (each wake-up costs the computing threads
    /// too: the floor rows).
    pub monitor_wakeups_per_s: f64,
    /// Median of the per-repetition (CPU on − CPU off − monitor CPU) / preemptions, ns: the
    /// workers' share of `per_preemption`.
    pub worker_per_preemption: f64,
}

/// `preempt_cost`: `reps` repetitions of a batch with preemption off and at each of
/// [`COST_QUANTA`].
pub fn run_cost(workers: usize, reps: usize, task: Duration, verbose: bool) -> Vec<CostFigures> {
    let task_steps = calibrate(task);
    let tasks = 2 * workers;
    let settings: Vec<Option<Duration>> = std::iter::once(None)
        .chain(COST_QUANTA.iter().copied().map(Some))
        .collect();
    let mut runs: Vec<Vec<CostRun>> = vec![Vec::new(); settings.len()];
    for rep in 0..reps {
        for k in 0..settings.len() {
            let index = (k + rep) % settings.len();
            let run = cost_once(workers, settings[index], tasks, task_steps);
            if verbose {
                eprintln!(
                    "  preempt_cost rep {rep} {}: cpu {:.1} ms, wall {:.1} ms, {} preemptions, \
                     {} deferred, monitor {:.2} ms in {} wake-ups",
                    settings[index].map_or_else(|| "off".to_owned(), |q| format!("{q:?}")),
                    run.cpu / 1e6,
                    run.wall / 1e6,
                    run.preemptions,
                    run.deferred,
                    run.monitor / 1e6,
                    run.monitor_wakeups
                );
            }
            runs[index].push(run);
        }
    }
    let off = &runs[0];
    COST_QUANTA
        .iter()
        .zip(&runs[1..])
        .map(|(&quantum, on)| {
            let paired = |f: &dyn Fn(&CostRun, &CostRun) -> f64| {
                let values: Vec<f64> = off.iter().zip(on).map(|(off, on)| f(off, on)).collect();
                Summary::of(&values).median
            };
            let median = |runs: &[CostRun], f: fn(&CostRun) -> f64| {
                Summary::of(&runs.iter().map(f).collect::<Vec<_>>()).median
            };
            CostFigures {
                quantum,
                cpu_off: median(off, |r| r.cpu),
                cpu_on: median(on, |r| r.cpu),
                preemptions: median(on, |r| r.preemptions),
                deferred: median(on, |r| r.deferred),
                loss: paired(&|off, on| (on.cpu - off.cpu) / off.cpu),
                per_preemption: paired(&|off, on| (on.cpu - off.cpu) / on.preemptions.max(1.0)),
                monitor_per_preemption: paired(&|_, on| on.monitor / on.preemptions.max(1.0)),
                monitor_share: median(on, |r| r.monitor / r.wall),
                monitor_wakeups_per_s: median(on, |r| r.monitor_wakeups / (r.wall / 1e9)),
                worker_per_preemption: paired(&|off, on| {
                    (on.cpu - off.cpu - on.monitor) / on.preemptions.max(1.0)
                }),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// signal_roundtrip

/// Handlers run so far (the handler's only effect).
static HANDLED: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_signal(
    _signal: libc::c_int,
    _info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    HANDLED.fetch_add(1, Ordering::Relaxed);
}

/// The signal the round trips use (not maniac's SIGURG).
const BENCH_SIGNAL: libc::c_int = libc::SIGUSR2;

/// A handler of [`BENCH_SIGNAL`].
type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Installs a handler for [`BENCH_SIGNAL`] while it lives; puts the old action back after.
struct Installed {
    previous: libc::sigaction,
}

impl Installed {
    /// Installs `handler`, which must be async-signal-safe.
    fn new(handler: Handler) -> Installed {
        // SAFETY: a zeroed sigaction is a valid value (empty mask, no flags, SIG_DFL).
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = handler as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // SAFETY: as above.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid sigactions; the handler is async-signal-safe (the
        // caller's promise) and, a function, lives for the whole program.
        let status = unsafe { libc::sigaction(BENCH_SIGNAL, &action, &mut previous) };
        assert_eq!(status, 0, "sigaction");
        Installed { previous }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        // SAFETY: puts back the action `sigaction` gave us.
        unsafe { libc::sigaction(BENCH_SIGNAL, &self.previous, std::ptr::null_mut()) };
    }
}

/// The three figures of `signal_roundtrip`, ns each.
#[derive(Clone, Copy, Debug)]
pub struct SignalFigures {
    /// `tgkill` to self → handler → return.
    pub to_self: f64,
    /// `tgkill` to a spinning thread (the monitor's `rt_tgsigqueueinfo` costs the same: module
    /// doc), until its handler has run.
    pub cross_thread: f64,
    /// A bare system call.
    pub syscall: f64,
}

fn signal_to_self(count: u64) -> f64 {
    let _installed = Installed::new(count_signal);
    // SAFETY: getpid and gettid have no preconditions.
    let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
    let before = HANDLED.load(Ordering::Relaxed);
    let started = Instant::now();
    for _ in 0..count {
        // SAFETY: sends our own handled signal to this thread; the handler runs before the call
        // returns to us.
        unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, BENCH_SIGNAL) };
    }
    let elapsed = started.elapsed();
    assert_eq!(
        HANDLED.load(Ordering::Relaxed) - before,
        count,
        "every signal handled"
    );
    elapsed.as_nanos() as f64 / count as f64
}

fn signal_cross_thread(count: u64) -> f64 {
    let _installed = Installed::new(count_signal);
    let stop = Arc::new(AtomicBool::new(false));
    let (sender, receiver) = std::sync::mpsc::channel();
    let spinner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            sender
                .send(unsafe { libc::gettid() })
                .expect("sending the thread id");
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
    };
    let target = receiver.recv().expect("the spinner's thread id");
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let started = Instant::now();
    for _ in 0..count {
        let before = HANDLED.load(Ordering::Acquire);
        // SAFETY: tgkill only sends a signal; the spinner runs until `stop`, which is set only
        // after this loop, so its id names it; the signal has our handler.
        unsafe { libc::syscall(libc::SYS_tgkill, pid, target, BENCH_SIGNAL) };
        while HANDLED.load(Ordering::Acquire) == before {
            std::hint::spin_loop();
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    spinner.join().expect("the spinner");
    elapsed.as_nanos() as f64 / count as f64
}

fn bare_syscall(count: u64) -> f64 {
    let started = Instant::now();
    for _ in 0..count {
        // SAFETY: getppid has no preconditions.
        black_box(unsafe { libc::syscall(libc::SYS_getppid) });
    }
    started.elapsed().as_nanos() as f64 / count as f64
}

/// `signal_roundtrip`: medians over `reps` repetitions.
pub fn run_signal(reps: usize, quick: bool) -> SignalFigures {
    let (count, cross) = if quick {
        (20_000, 5_000)
    } else {
        (200_000, 50_000)
    };
    let mut to_self = Vec::new();
    let mut cross_thread = Vec::new();
    let mut syscall = Vec::new();
    for _ in 0..reps {
        to_self.push(signal_to_self(count));
        cross_thread.push(signal_cross_thread(cross));
        syscall.push(bare_syscall(count));
    }
    SignalFigures {
        to_self: Summary::of(&to_self).median,
        cross_thread: Summary::of(&cross_thread).median,
        syscall: Summary::of(&syscall).median,
    }
}

// ---------------------------------------------------------------------------------------------
// interrupt_floor

/// Where `interrupt_floor`'s interrupts come from (module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptSource {
    OwnTimer,
    Sleeper,
}

impl InterruptSource {
    pub const ALL: [InterruptSource; 2] = [InterruptSource::OwnTimer, InterruptSource::Sleeper];

    pub fn name(self) -> &'static str {
        match self {
            InterruptSource::OwnTimer => "own_timer",
            InterruptSource::Sleeper => "sleeper",
        }
    }
}

thread_local! {
    /// This thread's own POSIX timer while it computes with [`InterruptSource::OwnTimer`], for
    /// the handler to re-arm (const-initialised, so the handler may read it).
    static OWN_TIMER: std::cell::Cell<Option<libc::timer_t>> = const { std::cell::Cell::new(None) };
}

/// The quantum [`count_and_rearm`] re-arms an own timer for, ns.
static OWN_TIMER_PERIOD: AtomicU64 = AtomicU64::new(0);

/// A quantum as a relative timer expiry.
fn timer_spec(period_ns: u64) -> libc::itimerspec {
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    libc::itimerspec {
        it_interval: zero,
        it_value: libc::timespec {
            tv_sec: (period_ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (period_ns % 1_000_000_000) as libc::c_long,
        },
    }
}

/// [`count_signal`], then re-arms this thread's own timer, if it has one, for a quantum later
/// (`timer_settime` is async-signal-safe; the thread-local is const-initialised).
extern "C" fn count_and_rearm(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    count_signal(signal, info, context);
    if let Some(timer) = OWN_TIMER.with(|timer| timer.get()) {
        let spec = timer_spec(OWN_TIMER_PERIOD.load(Ordering::Relaxed));
        // SAFETY: `timer` is this thread's live timer (it is deleted only after the thread
        // forgets it); `spec` is a valid itimerspec.
        unsafe { libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) };
    }
}

/// Computes `steps` on this thread, interrupted by its own timer every `period` if given.
fn compute_with_own_timer(steps: u64, period: Option<Duration>) {
    let Some(period) = period else {
        black_box(compute(steps, &AtomicBool::new(false)));
        return;
    };
    // SAFETY: a zeroed sigevent is a valid value; the fields the kernel reads are set below.
    let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
    event.sigev_notify = libc::SIGEV_THREAD_ID;
    event.sigev_signo = BENCH_SIGNAL;
    // SAFETY: gettid has no preconditions.
    event.sigev_notify_thread_id = unsafe { libc::gettid() };
    let mut timer: libc::timer_t = std::ptr::null_mut();
    // SAFETY: both pointers are valid; the timer signals this thread, which deletes it below.
    let status = unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer) };
    assert_eq!(status, 0, "timer_create");
    OWN_TIMER_PERIOD.store(period.as_nanos() as u64, Ordering::Relaxed);
    OWN_TIMER.with(|own| own.set(Some(timer)));
    let spec = timer_spec(period.as_nanos() as u64);
    // SAFETY: `timer` was just created; `spec` is a valid itimerspec.
    unsafe { libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) };
    black_box(compute(steps, &AtomicBool::new(false)));
    OWN_TIMER.with(|own| own.set(None));
    // SAFETY: `timer` is ours and no longer named by the thread-local the handler reads; a
    // signal already queued still finds the handler installed, and no timer to re-arm.
    unsafe { libc::timer_delete(timer) };
}

/// Sleeps to the end of each `period` and sends [`BENCH_SIGNAL`] to every thread of `targets`
/// whose `done` flag is not set, until all are.
fn signal_every_period(targets: &[libc::pid_t], done: &[AtomicBool], period: Duration) {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let period_ns = period.as_nanos() as libc::c_long;
    let mut deadline = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `deadline` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut deadline) };
    while done.iter().any(|done| !done.load(Ordering::Acquire)) {
        let nanos = deadline.tv_nsec + period_ns;
        deadline.tv_sec += nanos / 1_000_000_000;
        deadline.tv_nsec = nanos % 1_000_000_000;
        // SAFETY: an absolute sleep on a valid timespec; an interruption only shortens it.
        unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &deadline,
                std::ptr::null_mut(),
            )
        };
        for (&tid, done) in targets.iter().zip(done) {
            if !done.load(Ordering::Acquire) {
                // SAFETY: the thread `tid` names waits, after setting its flag, until this
                // function has returned, so it is alive; the signal has our handler.
                unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, BENCH_SIGNAL) };
            }
        }
    }
}

/// One batch of `interrupt_floor`: `threads` threads compute `steps` each, interrupted every
/// quantum by `interrupts` if given. Returns the process's CPU time (ns) and the interrupts.
pub fn floor_once(
    threads: usize,
    steps: u64,
    interrupts: Option<(InterruptSource, Duration)>,
) -> (f64, f64) {
    let _installed = Installed::new(count_and_rearm);
    let done: Arc<Vec<AtomicBool>> =
        Arc::new((0..threads).map(|_| AtomicBool::new(false)).collect());
    let release = Arc::new(std::sync::Barrier::new(threads + 1));
    let (tids, tid_receiver) = std::sync::mpsc::channel();
    let own_timer = match interrupts {
        Some((InterruptSource::OwnTimer, period)) => Some(period),
        _ => None,
    };
    let handled_before = HANDLED.load(Ordering::Relaxed);
    let cpu_before = process_cpu_ns();
    let computing: Vec<_> = (0..threads)
        .map(|index| {
            let (done, release, tids) = (done.clone(), release.clone(), tids.clone());
            std::thread::spawn(move || {
                // SAFETY: gettid has no preconditions.
                tids.send(unsafe { libc::gettid() })
                    .expect("sending a thread id");
                compute_with_own_timer(steps, own_timer);
                done[index].store(true, Ordering::Release);
                // Alive until the sleeper, which may still name this thread, has returned.
                release.wait();
            })
        })
        .collect();
    let targets: Vec<libc::pid_t> = (0..threads)
        .map(|_| tid_receiver.recv().expect("a thread id"))
        .collect();
    match interrupts {
        Some((InterruptSource::Sleeper, period)) => signal_every_period(&targets, &done, period),
        _ => {
            while done.iter().any(|done| !done.load(Ordering::Acquire)) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    release.wait();
    for thread in computing {
        thread.join().expect("a computing thread");
    }
    let cpu = process_cpu_ns() - cpu_before;
    let handled = HANDLED.load(Ordering::Relaxed) - handled_before;
    (cpu as f64, handled as f64)
}

/// The figures of one source at one quantum (medians over repetitions).
#[derive(Clone, Copy, Debug)]
pub struct FloorFigures {
    pub source: InterruptSource,
    pub quantum: Duration,
    /// Median interrupts per batch.
    pub interrupts: f64,
    /// Median of the per-repetition (CPU interrupted − CPU not) / CPU not.
    pub loss: f64,
    /// Median of the per-repetition (CPU interrupted − CPU not) / interrupts, ns.
    pub per_interrupt: f64,
}

/// `interrupt_floor`: `reps` repetitions of a batch of `workers` threads doing the CPU work of
/// `preempt_cost`'s batch (2 × `task` each), uninterrupted and with each source at each of
/// [`QUANTA`].
pub fn run_floor(workers: usize, reps: usize, task: Duration) -> Vec<FloorFigures> {
    let steps = 2 * calibrate(task);
    let settings: Vec<Option<(InterruptSource, Duration)>> = std::iter::once(None)
        .chain(
            QUANTA
                .iter()
                .flat_map(|&q| InterruptSource::ALL.map(|source| Some((source, q)))),
        )
        .collect();
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new(); settings.len()];
    for rep in 0..reps {
        for k in 0..settings.len() {
            let index = (k + rep) % settings.len();
            runs[index].push(floor_once(workers, steps, settings[index]));
        }
    }
    let plain = &runs[0];
    settings[1..]
        .iter()
        .zip(&runs[1..])
        .map(|(setting, interrupted)| {
            let (source, quantum) = setting.expect("an interrupted setting");
            let paired = |f: &dyn Fn(f64, (f64, f64)) -> f64| {
                let values: Vec<f64> = plain
                    .iter()
                    .zip(interrupted)
                    .map(|(&(cpu_plain, _), &run)| f(cpu_plain, run))
                    .collect();
                Summary::of(&values).median
            };
            FloorFigures {
                source,
                quantum,
                interrupts: paired(&|_, (_, n)| n),
                loss: paired(&|plain, (cpu, _)| (cpu - plain) / plain),
                per_interrupt: paired(&|plain, (cpu, n)| (cpu - plain) / n.max(1.0)),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// cpu_gaps

/// What `cpu_gaps` found.
#[derive(Clone, Copy, Debug)]
pub struct GapFigures {
    /// Gaps longer than 1 ms, per thread and second.
    pub over_1ms_per_second: f64,
    /// Gaps longer than 200 µs, per thread and second.
    pub over_200us_per_second: f64,
    /// The longest gap any thread saw, ns.
    pub longest: f64,
}

/// `cpu_gaps`: `threads` threads spin for `length`, each noting the gaps in its clock readings.
pub fn run_gaps(threads: usize, length: Duration) -> GapFigures {
    let spinners: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let started = Instant::now();
                let (mut over_1ms, mut over_200us, mut longest) = (0u64, 0u64, Duration::ZERO);
                let mut last = started;
                while last - started < length {
                    let now = Instant::now();
                    let gap = now - last;
                    if gap > Duration::from_micros(200) {
                        over_200us += 1;
                        over_1ms += u64::from(gap > Duration::from_millis(1));
                        longest = longest.max(gap);
                    }
                    last = now;
                }
                (over_1ms, over_200us, longest)
            })
        })
        .collect();
    let mut figures = GapFigures {
        over_1ms_per_second: 0.0,
        over_200us_per_second: 0.0,
        longest: 0.0,
    };
    let thread_seconds = threads as f64 * length.as_secs_f64();
    for spinner in spinners {
        let (over_1ms, over_200us, longest) = spinner.join().expect("a spinning thread");
        figures.over_1ms_per_second += over_1ms as f64 / thread_seconds;
        figures.over_200us_per_second += over_200us as f64 / thread_seconds;
        figures.longest = figures.longest.max(longest.as_nanos() as f64);
    }
    figures
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each contender runs the latency workload to the end (short jobs, a short run).
    #[test]
    fn every_contender_runs() {
        let job_steps = calibrate(Duration::from_millis(5));
        for contender in &CONTENDERS {
            let run = latency_once(
                contender,
                2,
                HogWork::Arithmetic,
                job_steps,
                Duration::from_millis(100),
            );
            assert!(run.jobs > 0.0, "{}: no hog job finished", contender.name);
            assert!(
                run.max >= run.p999 && run.p999 >= run.p50,
                "{}",
                contender.name
            );
        }
    }

    #[test]
    fn cost_batches_and_signals_run() {
        let steps = calibrate(Duration::from_millis(20));
        let off = cost_once(2, None, 4, steps);
        assert_eq!(off.preemptions, 0.0);
        assert!(off.cpu > 0.0 && off.wall > 0.0);
        let on = cost_once(2, Some(QUANTA[1]), 4, steps);
        assert!(on.cpu > 0.0);
        let signal = run_signal(1, true);
        for source in InterruptSource::ALL {
            let (cpu, interrupts) = floor_once(2, steps, Some((source, QUANTA[1])));
            assert!(cpu > 0.0);
            assert!(interrupts > 0.0, "{}: no interrupt in 40 ms", source.name());
        }
        let gaps = run_gaps(2, Duration::from_millis(20));
        assert!(gaps.longest >= 0.0 && gaps.over_200us_per_second >= gaps.over_1ms_per_second);
        assert!(signal.to_self > 0.0 && signal.cross_thread > 0.0 && signal.syscall > 0.0);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let sorted: Vec<u64> = (1..=1000).collect();
        assert_eq!(quantile(&sorted, 0.5), 500.0);
        assert_eq!(quantile(&sorted, 0.999), 999.0);
        assert_eq!(quantile(&sorted[..1], 0.999), 1.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
