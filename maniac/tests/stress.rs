#![cfg(not(loom))]
//! Stress: many threads, many iterations, random delays. Every test checks an exact count or
//! checksum, so a lost task or a lost wake-up fails it (within a bound) instead of passing.
//!
//! Sized for about half a minute in a debug build on 2 cores. `MANIAC_STRESS_SCALE=N` multiplies the
//! iterations (and the time bounds) for longer soak runs; `MANIAC_STRESS_SEED` fixes the seed
//! that the random structure (not the timing) is drawn from. Every failure message carries the
//! seed.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::Duration;

use common::{Counter, DropGuard, spin, with_timeout};
use maniac::runtime::{Builder, Runtime};
use maniac::task::{JoinHandle, JoinSet};

fn scale() -> usize {
    std::env::var("MANIAC_STRESS_SCALE")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1)
}

fn seed() -> u64 {
    std::env::var("MANIAC_STRESS_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

/// The bound of one stress test: generous, and it grows with the scale.
fn limit(base_secs: u64) -> Duration {
    Duration::from_secs(base_secs * scale() as u64)
}

/// A random short pause that never yields to the runtime: mostly nothing, sometimes a busy
/// spin, sometimes the OS thread gives up its slice.
fn jitter(rng: &mut fastrand::Rng) {
    match rng.u8(0..16) {
        0..=9 => {}
        10..=12 => spin(rng.u32(0..500)),
        13 => spin(rng.u32(0..5_000)),
        14 => thread::yield_now(),
        _ => spin(rng.u32(0..50)),
    }
}

/// [`jitter`], and sometimes a yield to the runtime too.
async fn async_jitter(rng: &mut fastrand::Rng) {
    jitter(rng);
    if rng.u8(0..4) == 0 {
        maniac::task::yield_now().await;
    }
}

fn runtime(kind: usize) -> Runtime {
    match kind % 4 {
        0 => Builder::new_current_thread().build().unwrap(),
        1 => Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap(),
        2 => Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap(),
        _ => Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .unwrap(),
    }
}

#[test]
fn spawn_trees_with_random_shapes_and_delays() {
    /// Number of leaves of the tree grown from `seed` (computed without a runtime).
    fn expected_leaves(seed: u64, depth: u32) -> u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let fanout = fanout(&mut rng);
        if depth == 0 || fanout == 0 {
            return 1;
        }
        (0..fanout)
            .map(|_| expected_leaves(rng.u64(..), depth - 1))
            .sum()
    }
    fn fanout(rng: &mut fastrand::Rng) -> u64 {
        if rng.u8(0..6) == 0 { 0 } else { rng.u64(2..4) }
    }
    fn grow(seed: u64, depth: u32) -> Pin<Box<dyn Future<Output = u64> + Send>> {
        Box::pin(async move {
            let mut rng = fastrand::Rng::with_seed(seed);
            let fanout = fanout(&mut rng);
            if depth == 0 || fanout == 0 {
                async_jitter(&mut fastrand::Rng::new()).await;
                return 1;
            }
            let children: Vec<JoinHandle<u64>> = (0..fanout)
                .map(|_| maniac::spawn(grow(rng.u64(..), depth - 1)))
                .collect();
            async_jitter(&mut fastrand::Rng::new()).await;
            let mut leaves = 0;
            for child in children {
                leaves += child.await.unwrap();
            }
            leaves
        })
    }
    let base = seed();
    with_timeout(limit(60), move || {
        let mut rng = fastrand::Rng::with_seed(base);
        for round in 0..150 * scale() {
            let rt = runtime(round);
            let (seed, depth) = (rng.u64(..), 10);
            let expected = expected_leaves(seed, depth);
            let leaves = rt.block_on(grow(seed, depth));
            assert_eq!(leaves, expected, "seed {base}, round {round}: leaves lost");
            assert_eq!(
                rt.metrics().num_alive_tasks(),
                0,
                "seed {base}, round {round}"
            );
        }
    });
}

#[test]
fn cross_worker_channel_storm() {
    // A ring of tasks joined by small bounded channels; tokens travel a fixed number of hops
    // each, so the total number of hops is exact.
    const NODES: usize = 16;
    const TOKENS: u64 = 24;
    const HOPS: u64 = 300;
    let base = seed();
    with_timeout(limit(60), move || {
        for round in 0..80 * scale() {
            let rt = runtime(2 + round % 2); // 2 and 4 workers
            let hops = Arc::new(AtomicU64::new(0));
            let finished = rt.block_on({
                let hops = hops.clone();
                async move {
                    let (txs, rxs): (Vec<_>, Vec<_>) = (0..NODES)
                        .map(|_| tokio::sync::mpsc::channel::<(u64, u64)>(2))
                        .unzip();
                    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
                    for (i, mut rx) in rxs.into_iter().enumerate() {
                        let next = txs[(i + 1) % NODES].clone();
                        let (hops, done_tx) = (hops.clone(), done_tx.clone());
                        let mut rng = fastrand::Rng::with_seed(base ^ i as u64);
                        maniac::spawn(async move {
                            while let Some((token, travelled)) = rx.recv().await {
                                hops.fetch_add(1, SeqCst);
                                async_jitter(&mut rng).await;
                                if travelled + 1 == HOPS {
                                    done_tx.send(token).unwrap();
                                } else if next.send((token, travelled + 1)).await.is_err() {
                                    panic!("ring broken");
                                }
                            }
                        });
                    }
                    // Inject from outside the ring, and from a plain thread.
                    let injector_txs = txs.clone();
                    let foreign = thread::spawn(move || {
                        for token in TOKENS / 2..TOKENS {
                            injector_txs[token as usize % NODES]
                                .blocking_send((token, 0))
                                .unwrap();
                        }
                    });
                    for token in 0..TOKENS / 2 {
                        txs[token as usize % NODES].send((token, 0)).await.unwrap();
                    }
                    drop(txs);
                    let mut finished = Vec::new();
                    while finished.len() < TOKENS as usize {
                        finished.push(done_rx.recv().await.unwrap());
                    }
                    foreign.join().unwrap();
                    finished.sort_unstable();
                    finished
                }
            });
            assert_eq!(
                finished,
                (0..TOKENS).collect::<Vec<_>>(),
                "seed {base}, round {round}: tokens lost or duplicated"
            );
            assert_eq!(
                hops.load(SeqCst),
                TOKENS * HOPS,
                "seed {base}, round {round}"
            );
        }
    });
}

#[test]
fn foreign_thread_wakers_racing_with_shutdown() {
    // Runtimes are dropped while plain threads are waking their tasks. Every future must be
    // dropped exactly once and every join handle must resolve: with the value if the task got
    // to finish, cancelled otherwise.
    const TASKS: usize = 64;
    let base = seed();
    with_timeout(limit(60), move || {
        let mut rng = fastrand::Rng::with_seed(base);
        for round in 0..6_000 * scale() {
            let kind = rng.usize(..);
            let rt = runtime(kind);
            let drops = Counter::new();
            let completed = Arc::new(AtomicUsize::new(0));
            let mut senders = Vec::new();
            let mut handles = Vec::new();
            let notify = Arc::new(tokio::sync::Notify::new());
            for i in 0..TASKS {
                let guard = DropGuard(drops.clone());
                let completed = completed.clone();
                let (tx, rx) = tokio::sync::oneshot::channel::<usize>();
                senders.push(tx);
                let notify = notify.clone();
                handles.push(rt.spawn(async move {
                    let _guard = guard;
                    let value = rx.await.unwrap_or(usize::MAX);
                    if i % 4 == 0 {
                        notify.notified().await;
                    }
                    completed.fetch_add(1, SeqCst);
                    value
                }));
            }
            // Two foreign threads wake the tasks while the runtime goes away.
            let half = senders.split_off(TASKS / 2);
            let wakers: Vec<_> = [senders, half]
                .into_iter()
                .enumerate()
                .map(|(t, senders)| {
                    let notify = notify.clone();
                    let mut rng = fastrand::Rng::with_seed(base ^ (round * 2 + t) as u64);
                    thread::spawn(move || {
                        for (i, tx) in senders.into_iter().enumerate() {
                            jitter(&mut rng);
                            let _ = tx.send(i);
                            if i % 8 == 0 {
                                notify.notify_waiters();
                            }
                        }
                        notify.notify_waiters();
                    })
                })
                .collect();
            // Current-thread runtimes only run tasks inside block_on: drive one for a moment on
            // this thread, or keep driving it from another thread while it is dropped.
            let mut driver = None;
            if kind % 4 == 0 {
                if rng.bool() {
                    let steps = rng.u32(0..64);
                    rt.block_on(async move {
                        for _ in 0..steps {
                            maniac::spawn(async {}).await.unwrap();
                        }
                    });
                } else {
                    let handle = rt.handle().clone();
                    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                    let (driving_tx, driving_rx) = std::sync::mpsc::channel();
                    driver = Some((
                        stop_tx,
                        thread::spawn(move || {
                            handle.block_on(async move {
                                driving_tx.send(()).unwrap();
                                let _ = stop_rx.await;
                            })
                        }),
                    ));
                    driving_rx.recv().unwrap();
                }
            }
            spin(rng.u32(0..20_000));
            drop(rt);
            if let Some((stop, driver)) = driver {
                // The driver holds the core: the futures go when it hands the core back.
                let _ = stop.send(());
                driver.join().unwrap();
            }
            assert_eq!(
                drops.get(),
                TASKS,
                "seed {base}, round {round}: futures alive after the runtime was dropped"
            );
            for waker in wakers {
                waker.join().unwrap();
            }
            let (mut ok, mut cancelled) = (0, 0);
            for handle in handles {
                match futures::executor::block_on(handle) {
                    Ok(_) => ok += 1,
                    Err(e) if e.is_cancelled() => cancelled += 1,
                    Err(e) => panic!("seed {base}, round {round}: {e:?}"),
                }
            }
            assert_eq!(ok + cancelled, TASKS, "seed {base}, round {round}");
            assert_eq!(
                ok,
                completed.load(SeqCst),
                "seed {base}, round {round}: a finished task's value was lost"
            );
            assert_eq!(
                drops.get(),
                TASKS,
                "seed {base}, round {round}: dropped twice"
            );
        }
    });
}

#[test]
fn aborts_racing_with_completion_from_other_threads() {
    const TASKS: usize = 400;
    let base = seed();
    with_timeout(limit(60), move || {
        let mut rng = fastrand::Rng::with_seed(base);
        for round in 0..800 * scale() {
            let rt = runtime(1 + round % 3); // multi-thread with 1, 2, 4 workers
            let drops = Counter::new();
            let completed = Arc::new(AtomicUsize::new(0));
            let mut handles = Vec::new();
            let mut aborts = Vec::new();
            for i in 0..TASKS {
                let guard = DropGuard(drops.clone());
                let completed = completed.clone();
                let mut task_rng = fastrand::Rng::with_seed(rng.u64(..));
                let handle = rt.spawn(async move {
                    let _guard = guard;
                    for _ in 0..task_rng.usize(0..4) {
                        async_jitter(&mut task_rng).await;
                    }
                    completed.fetch_add(1, SeqCst);
                    i
                });
                aborts.push(handle.abort_handle());
                handles.push(handle);
            }
            // Plain threads abort every other task at random moments; a task aborts some more.
            let mut odd = Vec::new();
            let mut even = Vec::new();
            for (i, abort) in aborts.into_iter().enumerate() {
                match i % 4 {
                    0 => even.push(abort),
                    1 => odd.push(abort),
                    _ => {}
                }
            }
            let from_task = handles
                .iter()
                .skip(2)
                .step_by(8)
                .map(|h| h.abort_handle())
                .collect::<Vec<_>>();
            let threads: Vec<_> = [even, odd]
                .into_iter()
                .enumerate()
                .map(|(t, aborts)| {
                    let mut rng = fastrand::Rng::with_seed(base ^ (round * 2 + t) as u64);
                    thread::spawn(move || {
                        for abort in aborts {
                            jitter(&mut rng);
                            abort.abort();
                        }
                    })
                })
                .collect();
            let aborter = rt.spawn(async move {
                for abort in from_task {
                    abort.abort();
                    maniac::task::yield_now().await;
                }
            });
            let (ok, cancelled) = rt.block_on(async move {
                aborter.await.unwrap();
                let (mut ok, mut cancelled) = (0, 0);
                for (i, handle) in handles.into_iter().enumerate() {
                    match handle.await {
                        Ok(value) => {
                            assert_eq!(value, i, "seed {base}: wrong value");
                            ok += 1;
                        }
                        Err(e) if e.is_cancelled() => cancelled += 1,
                        Err(e) => panic!("seed {base}: {e:?}"),
                    }
                }
                (ok, cancelled)
            });
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(ok + cancelled, TASKS, "seed {base}, round {round}");
            assert_eq!(
                ok,
                completed.load(SeqCst),
                "seed {base}, round {round}: a task finished but its handle says cancelled, \
                 or the other way round"
            );
            assert_eq!(drops.get(), TASKS, "seed {base}, round {round}");
        }
    });
}

#[test]
fn join_set_churn() {
    // Sets are filled, partly aborted, partly joined, then dropped, shut down or drained. Every
    // future is dropped exactly once; a drained set accounts for every member; on current_thread
    // (where nothing runs until the block_on future waits) every aborted member is cancelled.
    let base = seed();
    with_timeout(limit(60), move || {
        let mut rng = fastrand::Rng::with_seed(base);
        for round in 0..1_200 * scale() {
            let current_thread = round % 4 == 0;
            let rt = runtime(round);
            let drops = Counter::new();
            let spawned = Arc::new(AtomicUsize::new(0));
            let round_seed = rng.u64(..);
            rt.block_on({
                let (drops, spawned) = (drops.clone(), spawned.clone());
                async move {
                    let mut rng = fastrand::Rng::with_seed(round_seed);
                    for cycle in 0..20 {
                        let mut set = JoinSet::new();
                        let mut aborts = Vec::new();
                        let members = rng.usize(1..40);
                        for i in 0..members {
                            let guard = DropGuard(drops.clone());
                            let mut task_rng = fastrand::Rng::with_seed(rng.u64(..));
                            spawned.fetch_add(1, SeqCst);
                            aborts.push(set.spawn(async move {
                                let _guard = guard;
                                for _ in 0..task_rng.usize(0..3) {
                                    async_jitter(&mut task_rng).await;
                                }
                                i
                            }));
                        }
                        let mut aborted = 0;
                        for abort in &aborts {
                            if rng.u8(0..4) == 0 {
                                abort.abort();
                                aborted += 1;
                            }
                        }
                        let context = format!("seed {base}, round {round}, cycle {cycle}");
                        let mut values = std::collections::HashSet::new();
                        let mut cancelled = 0;
                        let mut record =
                            |result: Result<usize, maniac::task::JoinError>| match result {
                                Ok(i) => {
                                    assert!(values.insert(i) && i < members, "{context}: value {i}")
                                }
                                Err(e) if e.is_cancelled() => cancelled += 1,
                                Err(e) => panic!("{context}: {e:?}"),
                            };
                        for _ in 0..rng.usize(0..members + 1) {
                            record(set.join_next().await.unwrap());
                        }
                        match rng.u8(0..3) {
                            0 => drop(set),
                            1 => set.shutdown().await,
                            _ => {
                                while let Some(result) = set.join_next().await {
                                    record(result);
                                }
                                assert_eq!(
                                    values.len() + cancelled,
                                    members,
                                    "{context}: a drained set lost members"
                                );
                                if current_thread {
                                    assert_eq!(cancelled, aborted, "{context}");
                                }
                            }
                        }
                    }
                }
            });
            let spawned = spawned.load(SeqCst);
            // Dropped sets abort their tasks; those finish on the runtime, or go with it.
            drop(rt);
            assert_eq!(
                drops.get(),
                spawned,
                "seed {base}, round {round}: a JoinSet task's future was not dropped exactly once"
            );
        }
    });
}

#[test]
fn many_threads_spawning_at_once() {
    // Plain threads and tasks all spawn onto one runtime at the same time.
    const THREADS: usize = 4;
    const PER_THREAD: usize = 3_000;
    let base = seed();
    with_timeout(limit(60), move || {
        for round in 0..30 * scale() {
            let rt = runtime(1 + round % 3);
            let sum = Arc::new(AtomicU64::new(0));
            let count = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..THREADS)
                .map(|t| {
                    let handle = rt.handle().clone();
                    let (sum, count) = (sum.clone(), count.clone());
                    let mut rng = fastrand::Rng::with_seed(base ^ (round * THREADS + t) as u64);
                    thread::spawn(move || {
                        let mut handles = Vec::with_capacity(PER_THREAD);
                        for i in 0..PER_THREAD {
                            let (sum, count) = (sum.clone(), count.clone());
                            let value = (t * PER_THREAD + i) as u64;
                            let mut task_rng = fastrand::Rng::with_seed(rng.u64(..));
                            handles.push(handle.spawn(async move {
                                async_jitter(&mut task_rng).await;
                                // Each task also spawns a child from its worker.
                                let child = maniac::spawn(async move { value });
                                sum.fetch_add(child.await.unwrap(), SeqCst);
                                count.fetch_add(1, SeqCst);
                            }));
                            jitter(&mut rng);
                        }
                        handles
                    })
                })
                .collect();
            let handles: Vec<_> = threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect();
            rt.block_on(async {
                for handle in handles {
                    handle.await.unwrap();
                }
            });
            let n = (THREADS * PER_THREAD) as u64;
            assert_eq!(
                count.load(SeqCst),
                THREADS * PER_THREAD,
                "seed {base}, round {round}"
            );
            assert_eq!(
                sum.load(SeqCst),
                n * (n - 1) / 2,
                "seed {base}, round {round}"
            );
        }
    });
}

#[test]
fn current_thread_with_many_foreign_wakers() {
    const THREADS: u64 = 4;
    const MESSAGES: u64 = 2_000;
    let base = seed();
    with_timeout(limit(60), move || {
        for round in 0..40 * scale() {
            let rt = Builder::new_current_thread().build().unwrap();
            let total = rt.block_on(async move {
                let mut receivers = Vec::new();
                let mut threads = Vec::new();
                for t in 0..THREADS {
                    let (tx, rx) = async_channel::bounded::<u64>(1 + t as usize);
                    receivers.push(maniac::spawn(async move {
                        let mut sum = 0;
                        while let Ok(v) = rx.recv().await {
                            sum += v;
                        }
                        sum
                    }));
                    let mut rng = fastrand::Rng::with_seed(base ^ (round as u64 * THREADS + t));
                    threads.push(thread::spawn(move || {
                        for i in 0..MESSAGES {
                            jitter(&mut rng);
                            tx.send_blocking(t * MESSAGES + i).unwrap();
                        }
                    }));
                }
                let mut total = 0;
                for receiver in receivers {
                    total += receiver.await.unwrap();
                }
                for thread in threads {
                    thread.join().unwrap();
                }
                total
            });
            let n = THREADS * MESSAGES;
            assert_eq!(
                total,
                n * (n - 1) / 2,
                "seed {base}, round {round}: messages lost"
            );
        }
    });
}

#[test]
fn runtimes_created_and_dropped_in_a_loop_balance_their_threads() {
    let base = seed();
    with_timeout(limit(60), move || {
        let starts = Counter::new();
        let stops = Counter::new();
        let mut rng = fastrand::Rng::with_seed(base);
        for round in 0..5_000 * scale() {
            let mut builder = if rng.bool() {
                let mut b = Builder::new_multi_thread();
                b.worker_threads(rng.usize(1..4));
                b
            } else {
                Builder::new_current_thread()
            };
            let rt = {
                let (starts, stops) = (starts.clone(), stops.clone());
                builder
                    .max_blocking_threads(rng.usize(1..4))
                    .on_thread_start(move || starts.inc())
                    .on_thread_stop(move || stops.inc())
                    .build()
                    .unwrap()
            };
            let (closures, tasks) = (rng.u64(0..6), rng.u64(0..50));
            let sum = rt.block_on(async {
                let blocking: Vec<_> = (0..closures)
                    .map(|i| maniac::task::spawn_blocking(move || i))
                    .collect();
                let spawned: Vec<_> = (0..tasks)
                    .map(|i| maniac::spawn(async move { i }))
                    .collect();
                let mut sum = 0;
                for h in blocking {
                    sum += h.await.unwrap();
                }
                for h in spawned {
                    sum += h.await.unwrap();
                }
                sum
            });
            let triangle = |n: u64| n * n.saturating_sub(1) / 2;
            assert_eq!(
                sum,
                triangle(closures) + triangle(tasks),
                "seed {base}, round {round}"
            );
            // Tasks left running at drop (a few yielding ones).
            for _ in 0..rng.usize(0..5) {
                rt.spawn(async {
                    loop {
                        maniac::task::yield_now().await;
                    }
                });
            }
            drop(rt);
            assert_eq!(
                starts.get(),
                stops.get(),
                "seed {base}, round {round}: a runtime thread outlived its runtime's drop"
            );
        }
    });
}

#[test]
fn yield_storm_counts_every_yield() {
    // Every task yields many times, on every worker at once: a yield that loses the task (or
    // runs it twice) shows in the count.
    const TASKS: usize = 200;
    const YIELDS: usize = 200;
    let base = seed();
    with_timeout(limit(60), move || {
        for round in 0..16 * scale() {
            let rt = runtime(round + 2);
            let yields = Arc::new(AtomicUsize::new(0));
            let mut results = rt.block_on({
                let yields = yields.clone();
                async move {
                    let handles: Vec<_> = (0..TASKS)
                        .map(|t| {
                            let yields = yields.clone();
                            let mut rng = fastrand::Rng::with_seed(base ^ t as u64);
                            maniac::spawn(async move {
                                for _ in 0..YIELDS {
                                    jitter(&mut rng);
                                    maniac::task::yield_now().await;
                                    yields.fetch_add(1, SeqCst);
                                }
                                t
                            })
                        })
                        .collect();
                    let mut results = Vec::new();
                    for handle in handles {
                        results.push(handle.await.unwrap());
                    }
                    results
                }
            });
            assert_eq!(
                yields.load(SeqCst),
                TASKS * YIELDS,
                "seed {base}, round {round}"
            );
            results.sort_unstable();
            assert_eq!(results, (0..TASKS).collect::<Vec<_>>(), "seed {base}");
        }
    });
}
