//! A tour of what maniac does today, readable as a tutorial:
//! `cargo run --release -p maniac --example tour`.
//!
//! 1. A tree of 1,000,000 tasks spawned from inside tasks, spread over every worker by work
//!    stealing (the table shows how many tasks each worker thread ran).
//! 2. A task that panics fails its own `JoinHandle`; the runtime carries on.
//! 3. `abort()` cancels a task that waits forever, and its future is dropped.
//! 4. A `JoinSet` hands results back in the order the tasks finish.
//! 5. `spawn_blocking` runs blocking code off the workers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use maniac::task::JoinSet;

/// Tasks run per worker thread name, filled in by the tasks themselves.
static RUNS_PER_THREAD: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

fn count_this_thread(tasks: u64) {
    let name = std::thread::current().name().unwrap_or("?").to_owned();
    *RUNS_PER_THREAD.lock().unwrap().entry(name).or_default() += tasks;
}

/// Spawns a binary tree of tasks `depth` levels deep; returns how many tasks ran.
fn tree(depth: u32) -> maniac::task::JoinHandle<u64> {
    maniac::spawn(async move {
        if depth == 0 {
            return 1;
        }
        let (left, right) = (tree(depth - 1), tree(depth - 1));
        1 + left.await.unwrap() + right.await.unwrap()
    })
}

/// A leaf-heavy fan-out whose tasks record where they ran (kept apart from `tree` so that the
/// counting does not distort the timing above).
async fn fan_out_recording_threads(tasks: u64) {
    let mut set = JoinSet::new();
    for _ in 0..tasks {
        set.spawn(async {
            maniac::task::yield_now().await;
            count_this_thread(1);
        });
    }
    while set.join_next().await.is_some() {}
}

/// Sets its flag when dropped: shows that an aborted task's future is dropped.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

fn main() {
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let runtime = maniac::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name_fn(|| {
            use std::sync::atomic::AtomicUsize;
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            format!("worker-{}", NEXT.fetch_add(1, Ordering::Relaxed))
        })
        .enable_all()
        .build()
        .expect("building the runtime");

    runtime.block_on(async {
        println!("maniac tour on {workers} worker threads\n");

        // 1. A task tree.
        let started = Instant::now();
        let ran = tree(19).await.unwrap();
        println!(
            "1. spawned and joined a tree of {ran} tasks in {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        fan_out_recording_threads(100_000).await;
        println!("   100,000 more tasks, by the worker that ran them:");
        for (thread, count) in RUNS_PER_THREAD.lock().unwrap().iter() {
            println!("     {thread:<10} {count:>7}");
        }

        // 2. Panics stay inside their task.
        let previous_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {})); // keep the expected panic quiet
        let failed = maniac::spawn(async { panic!("this task fails on purpose") }).await;
        std::panic::set_hook(previous_hook);
        let error = failed.unwrap_err();
        println!(
            "\n2. a panicking task: is_panic() = {}, \"{error}\"",
            error.is_panic()
        );
        let still_fine = maniac::spawn(async { 40 + 2 }).await.unwrap();
        println!("   and the runtime still runs tasks: {still_fine}");

        // 3. Abort a task that would wait forever.
        let dropped = Arc::new(AtomicBool::new(false));
        let guard = SetOnDrop(dropped.clone());
        let waiting = maniac::spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await
        });
        maniac::task::yield_now().await;
        waiting.abort();
        let aborted = waiting.await.unwrap_err();
        println!(
            "\n3. an aborted task: is_cancelled() = {}, its future dropped = {}",
            aborted.is_cancelled(),
            dropped.load(Ordering::Acquire)
        );

        // 4. JoinSet: results in the order tasks finish (the blocking sleeps stand in for work
        // of different lengths).
        let mut set = JoinSet::new();
        for millis in [30u64, 10, 20] {
            set.spawn_blocking(move || {
                std::thread::sleep(Duration::from_millis(millis));
                millis
            });
        }
        let mut order = Vec::new();
        while let Some(result) = set.join_next().await {
            order.push(result.unwrap());
        }
        println!("\n4. a JoinSet of 30/10/20 ms jobs finished in the order {order:?} (ms)");

        // 5. spawn_blocking.
        let thread =
            maniac::task::spawn_blocking(|| std::thread::current().name().map(str::to_owned))
                .await
                .unwrap();
        println!(
            "\n5. spawn_blocking ran on a pool thread ({})",
            thread.unwrap_or_default()
        );
    });
}
