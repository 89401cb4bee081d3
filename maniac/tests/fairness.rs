#![cfg(not(loom))]
//! Fairness of the scheduler: no queue starves another.
//!
//! Each test floods a worker with one kind of work that never runs out (spawn chains in the LIFO
//! slot, yielding tasks) and checks that another kind still gets through within a bounded time.
//! A bug here is a starvation, so every wait is bounded and fails instead of hanging.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use maniac::runtime::Builder;

const BOUND: Duration = Duration::from_secs(20);

/// Keeps one chain of spawns going until `stop`: every task spawns its successor, which lands in
/// the LIFO slot of the worker it runs on. `links` counts the tasks of the chain that ran.
fn spawn_chain(stop: Arc<AtomicBool>, links: Arc<AtomicUsize>) {
    maniac::spawn(async move {
        links.fetch_add(1, Ordering::Relaxed);
        if !stop.load(Ordering::Relaxed) {
            spawn_chain(stop, links);
        }
    });
}

/// Waits (bounded) until `counter` reaches `target`.
fn wait_for(counter: &AtomicUsize, target: usize, what: &str) {
    let deadline = std::time::Instant::now() + BOUND;
    while counter.load(Ordering::Relaxed) < target {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::yield_now();
    }
}

/// Injected tasks get through while every worker runs LIFO spawn chains, whatever the global
/// queue interval; an interval that is a multiple of the LIFO burst length (4 polls) used to step
/// over the due check forever.
#[test]
fn injected_tasks_run_while_workers_run_spawn_chains() {
    for interval in [31, 32, 4, 1] {
        let runtime = Builder::new_multi_thread()
            .worker_threads(2)
            .global_queue_interval(interval)
            .build()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let links = Arc::new(AtomicUsize::new(0));
        for _ in 0..2 {
            let (stop, links) = (stop.clone(), links.clone());
            runtime.spawn(async move { spawn_chain(stop, links) });
        }
        // Inject only once the chains have the workers to themselves.
        wait_for(&links, 100_000, "the spawn chains to start");
        let (done_tx, done_rx) = mpsc::channel();
        let handles: Vec<_> = (0..1_000)
            .map(|i| {
                let done_tx = done_tx.clone();
                runtime
                    .handle()
                    .spawn(async move { done_tx.send(i).unwrap() })
            })
            .collect();
        for _ in 0..1_000 {
            done_rx.recv_timeout(BOUND).unwrap_or_else(|_| {
                panic!("injected tasks starved by spawn chains (interval {interval})")
            });
        }
        stop.store(true, Ordering::Relaxed);
        drop(handles);
    }
}

/// Injected tasks get through while every worker is busy with tasks that compute and yield.
#[test]
fn injected_tasks_run_while_workers_run_yield_loops() {
    let runtime = Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    for _ in 0..4 {
        let (stop, rounds) = (stop.clone(), rounds.clone());
        runtime.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                maniac::task::yield_now().await;
                std::hint::black_box((0..2_000u64).sum::<u64>());
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    wait_for(&rounds, 10_000, "the yield loops to start");
    let (done_tx, done_rx) = mpsc::channel();
    for i in 0..10_000 {
        let done_tx = done_tx.clone();
        runtime
            .handle()
            .spawn(async move { done_tx.send(i).unwrap() });
    }
    for _ in 0..10_000 {
        done_rx
            .recv_timeout(BOUND)
            .expect("injected tasks starved by yielding tasks");
    }
    stop.store(true, Ordering::Relaxed);
}

/// A yielding task keeps making progress while its worker is never out of other work (a spawn
/// chain on a current-thread runtime): yielded tasks are deferred, not starved.
#[test]
fn yielding_task_progresses_under_a_spawn_flood() {
    let runtime = Builder::new_current_thread().build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let yields = Arc::new(AtomicUsize::new(0));
    let finished = runtime.block_on({
        let (stop, yields) = (stop.clone(), yields.clone());
        async move {
            spawn_chain(stop.clone(), Arc::new(AtomicUsize::new(0)));
            let yielder = maniac::spawn(async move {
                for _ in 0..1_000 {
                    maniac::task::yield_now().await;
                    yields.fetch_add(1, Ordering::Relaxed);
                }
            });
            yielder.await.is_ok()
        }
    });
    stop.store(true, Ordering::Relaxed);
    assert!(finished);
    assert_eq!(yields.load(Ordering::Relaxed), 1_000);
}

/// Two tasks passing a message back and forth through the LIFO slot do not starve a third task
/// queued on the same worker (the LIFO cap).
#[test]
fn ping_pong_pair_does_not_starve_the_local_queue() {
    let runtime = Builder::new_current_thread().build().unwrap();
    let ran = runtime.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let (to_b, mut b_inbox) = tokio::sync::mpsc::unbounded_channel::<()>();
        let (to_a, mut a_inbox) = tokio::sync::mpsc::unbounded_channel::<()>();
        let a = {
            let stop = stop.clone();
            maniac::spawn(async move {
                to_b.send(()).unwrap();
                while a_inbox.recv().await.is_some() && !stop.load(Ordering::Relaxed) {
                    to_b.send(()).unwrap();
                }
            })
        };
        let b = maniac::spawn(async move {
            while b_inbox.recv().await.is_some() {
                if to_a.send(()).is_err() {
                    break;
                }
            }
        });
        let third = maniac::spawn(async { 7 });
        let ran = third.await.unwrap();
        stop.store(true, Ordering::Relaxed);
        a.await.unwrap();
        b.await.unwrap();
        ran
    });
    assert_eq!(ran, 7);
}
