//! The workloads of tokio's `benches/rt_multi_threaded.rs`, with the same parameters and the same
//! shape, written once over [`Rt`] so that maniac and tokio run exactly the same code. Both sides
//! use the same channels: `std::sync::mpsc` and `tokio::sync::oneshot` (which needs no tokio
//! runtime).
//!
//! Each workload gets a freshly built runtime, does its setup (the busy tasks), then hands its
//! per-iteration body to [`Bencher::iter`], as tokio's does to criterion's `b.iter`, and finally
//! tears its setup down (`flag.store(false)`). The caller drops the runtime afterwards.
//!
//! The only change from tokio's file: `NUM_WORKERS` (4 there) is the benchmark's worker count
//! (`--workers`, default: the number of cores), used both to build the runtime and to size the
//! busy workloads.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::rt::{Maniac, Rt, Tokio};

/// Tasks spawned per iteration by the `spawn_many_*` workloads (but `busy2`).
const NUM_SPAWN: usize = 10_000;
/// How long `stall` keeps a worker busy.
const STALL_DUR: Duration = Duration::from_micros(10);

/// Runs a workload's iteration body: a few warm-up iterations, then up to `iters` timed ones.
///
/// Both phases also stop at a time budget (the warm-up at a quarter of it), after at least one
/// iteration each: a workload that is pathologically slow on one runtime then costs that
/// runtime about two iterations per repetition instead of minutes. The figure is the mean time
/// per timed iteration either way, and the rule is the same for both runtimes.
#[derive(Debug)]
pub struct Bencher {
    warmup: usize,
    iters: usize,
    budget: Duration,
    timed: usize,
    elapsed: Option<Duration>,
}

impl Bencher {
    /// A bencher that warms up for `warmup` iterations, then times `iters`, within `budget`.
    pub fn new(warmup: usize, iters: usize, budget: Duration) -> Bencher {
        Bencher {
            warmup,
            iters: iters.max(1),
            budget,
            timed: 0,
            elapsed: None,
        }
    }

    /// Runs `body` for the warm-up, then under the clock.
    pub fn iter(&mut self, mut body: impl FnMut()) {
        let warmup_start = Instant::now();
        for _ in 0..self.warmup {
            body();
            if warmup_start.elapsed() >= self.budget / 4 {
                break;
            }
        }
        let start = Instant::now();
        let mut timed = 0;
        while timed < self.iters {
            body();
            timed += 1;
            if start.elapsed() >= self.budget {
                break;
            }
        }
        self.elapsed = Some(start.elapsed());
        self.timed = timed;
    }

    /// How many iterations were timed.
    pub fn timed_iters(&self) -> usize {
        self.timed
    }

    /// Mean time of one timed iteration, in nanoseconds.
    ///
    /// # Panics
    /// If the workload never called [`Bencher::iter`].
    pub fn mean_ns(&self) -> f64 {
        let elapsed = self
            .elapsed
            .expect("the workload did not call Bencher::iter");
        elapsed.as_nanos() as f64 / self.timed as f64
    }
}

/// A workload instantiated for one runtime: `(runtime, num_workers, bencher)`.
pub type BenchFn<R> = fn(&R, usize, &mut Bencher);

/// One workload, instantiated for both runtimes from the same generic function.
#[derive(Debug)]
pub struct Workload {
    /// The name tokio's benches give it.
    pub name: &'static str,
    /// Timed iterations per repetition (about 100–200 ms of tokio's time on 2 cores).
    pub iters: usize,
    /// Timed iterations per repetition under `--quick`.
    pub quick_iters: usize,
    /// The workload on maniac.
    pub maniac: BenchFn<Maniac>,
    /// The workload on tokio.
    pub tokio: BenchFn<Tokio>,
}

/// Instantiates a generic workload function for both runtimes.
macro_rules! workload {
    ($name:ident, $iters:expr, $quick_iters:expr) => {
        Workload {
            name: stringify!($name),
            iters: $iters,
            quick_iters: $quick_iters,
            maniac: $name::<Maniac>,
            tokio: $name::<Tokio>,
        }
    };
}

/// Every workload, in the order of tokio's file.
pub const WORKLOADS: &[Workload] = &[
    workload!(spawn_many_local, 30, 15),
    workload!(spawn_many_remote_idle, 30, 15),
    workload!(spawn_many_remote_busy1, 20, 10),
    workload!(spawn_many_remote_busy2, 3, 2),
    workload!(ping_pong, 100, 50),
    workload!(yield_many, 20, 10),
    workload!(chained_spawn, 500, 250),
];

/// 10 000 tasks spawned from inside `block_on` with the free `spawn`; the last one to run
/// signals the end over a `std::sync::mpsc` channel.
fn spawn_many_local<R: Rt>(rt: &R, _num_workers: usize, b: &mut Bencher) {
    let (tx, rx) = mpsc::sync_channel(1000);
    let rem = Arc::new(AtomicUsize::new(0));

    b.iter(|| {
        rem.store(NUM_SPAWN, Relaxed);

        rt.block_on(async {
            for _ in 0..NUM_SPAWN {
                let tx = tx.clone();
                let rem = rem.clone();

                R::spawn(async move {
                    if 1 == rem.fetch_sub(1, Relaxed) {
                        tx.send(()).unwrap();
                    }
                });
            }

            rx.recv().unwrap();
        });
    });
}

/// 10 000 empty tasks spawned from outside the runtime onto idle workers, then joined.
fn spawn_many_remote_idle<R: Rt>(rt: &R, _num_workers: usize, b: &mut Bencher) {
    let mut handles = Vec::with_capacity(NUM_SPAWN);

    b.iter(|| spawn_remote_then_join(rt, NUM_SPAWN, &mut handles, || rt.rt_spawn(async {})));
}

/// As `spawn_many_remote_idle`, through the handle, while `2 * num_workers` tasks keep the
/// workers busy with CPU work and `yield_now` (a yield is a lower-priority notification than a
/// spawn).
fn spawn_many_remote_busy1<R: Rt>(rt: &R, num_workers: usize, b: &mut Bencher) {
    let rt_handle = rt.handle();
    let mut handles = Vec::with_capacity(NUM_SPAWN);
    let flag = Arc::new(AtomicBool::new(true));

    // Spawn some tasks to keep the runtimes busy.
    for _ in 0..(2 * num_workers) {
        let flag = flag.clone();
        drop(rt.rt_spawn(async move {
            while flag.load(Relaxed) {
                R::yield_now().await;
                stall();
            }
        }));
    }

    b.iter(|| {
        spawn_remote_then_join(rt, NUM_SPAWN, &mut handles, || {
            R::handle_spawn(rt_handle, async {})
        })
    });

    flag.store(false, Relaxed);
}

/// As `spawn_many_remote_idle` with 1 000 tasks, through the handle, while `num_workers` chains
/// of tasks keep the workers busy: each stalls, then spawns its successor (a spawn is a
/// higher-priority notification than a yield).
fn spawn_many_remote_busy2<R: Rt>(rt: &R, num_workers: usize, b: &mut Bencher) {
    const NUM_SPAWN: usize = 1_000;

    /// Spawns the next link of a busy chain, which stalls and spawns the next one, until `flag`
    /// drops.
    fn iter<R: Rt>(flag: Arc<AtomicBool>) {
        R::spawn(async {
            if flag.load(Relaxed) {
                stall();
                iter::<R>(flag);
            }
        });
    }

    let rt_handle = rt.handle();
    let mut handles = Vec::with_capacity(NUM_SPAWN);
    let flag = Arc::new(AtomicBool::new(true));

    // Spawn some tasks to keep the runtimes busy.
    for _ in 0..num_workers {
        let flag = flag.clone();
        drop(rt.rt_spawn(async {
            iter::<R>(flag);
        }));
    }

    b.iter(|| {
        spawn_remote_then_join(rt, NUM_SPAWN, &mut handles, || {
            R::handle_spawn(rt_handle, async {})
        })
    });

    flag.store(false, Relaxed);
}

/// One iteration of the `spawn_many_remote_*` workloads: `count` times `spawn` (an empty task,
/// from outside the runtime), then join them all from `block_on`.
fn spawn_remote_then_join<R: Rt>(
    rt: &R,
    count: usize,
    handles: &mut Vec<R::JoinHandle<()>>,
    spawn: impl Fn() -> R::JoinHandle<()>,
) {
    for _ in 0..count {
        handles.push(spawn());
    }
    rt.block_on(async {
        for handle in handles.drain(..) {
            handle.await.unwrap();
        }
    });
}

/// 200 tasks, spawned from the main thread, each yielding 1 000 times; the main thread waits for
/// all of them on a `std::sync::mpsc` channel (no `block_on`).
fn yield_many<R: Rt>(rt: &R, _num_workers: usize, b: &mut Bencher) {
    const NUM_YIELD: usize = 1_000;
    const TASKS: usize = 200;

    let (tx, rx) = mpsc::sync_channel(TASKS);

    b.iter(|| {
        for _ in 0..TASKS {
            let tx = tx.clone();

            drop(rt.rt_spawn(async move {
                for _ in 0..NUM_YIELD {
                    R::yield_now().await;
                }

                tx.send(()).unwrap();
            }));
        }

        for _ in 0..TASKS {
            rx.recv().unwrap();
        }
    });
}

/// 1 000 ping-pongs over pairs of `tokio::sync::oneshot` channels between freshly spawned tasks.
fn ping_pong<R: Rt>(rt: &R, _num_workers: usize, b: &mut Bencher) {
    const NUM_PINGS: usize = 1_000;

    let (done_tx, done_rx) = mpsc::sync_channel(1000);
    let rem = Arc::new(AtomicUsize::new(0));

    b.iter(|| {
        let done_tx = done_tx.clone();
        let rem = rem.clone();
        rem.store(NUM_PINGS, Relaxed);

        rt.block_on(async {
            R::spawn(async move {
                for _ in 0..NUM_PINGS {
                    let rem = rem.clone();
                    let done_tx = done_tx.clone();

                    R::spawn(async move {
                        let (tx1, rx1) = oneshot::channel();
                        let (tx2, rx2) = oneshot::channel();

                        R::spawn(async move {
                            rx1.await.unwrap();
                            tx2.send(()).unwrap();
                        });

                        tx1.send(()).unwrap();
                        rx2.await.unwrap();

                        if 1 == rem.fetch_sub(1, Relaxed) {
                            done_tx.send(()).unwrap();
                        }
                    });
                }
            });

            done_rx.recv().unwrap();
        });
    });
}

/// A chain of 1 000 tasks, each spawning the next one.
fn chained_spawn<R: Rt>(rt: &R, _num_workers: usize, b: &mut Bencher) {
    const ITER: usize = 1_000;

    /// Spawns the rest of a chain of `n` tasks; the last one signals `done_tx`.
    fn iter<R: Rt>(done_tx: mpsc::SyncSender<()>, n: usize) {
        if n == 0 {
            done_tx.send(()).unwrap();
        } else {
            R::spawn(async move {
                iter::<R>(done_tx, n - 1);
            });
        }
    }

    let (done_tx, done_rx) = mpsc::sync_channel(1000);

    b.iter(|| {
        let done_tx = done_tx.clone();

        rt.block_on(async {
            R::spawn(async move {
                iter::<R>(done_tx, ITER);
            });

            done_rx.recv().unwrap();
        });
    });
}

/// Keeps the calling worker busy for `STALL_DUR`, yielding its thread to the OS meanwhile.
fn stall() {
    let now = Instant::now();
    while now.elapsed() < STALL_DUR {
        std::thread::yield_now();
    }
}
