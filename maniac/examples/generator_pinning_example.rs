//! Pinning a task to a stack of its own, and waiting for futures from synchronous code.
//!
//! `cargo run --release -p maniac --example generator_pinning_example`
//!
//! Most tasks run in **None** mode: they are polled on the worker's own stack, and a poll must
//! return before the worker can do anything else. A task can instead own a stack (a generator):
//! it is then in **Poll** mode, each poll runs on that stack, and synchronous code called from the
//! task may wait for a future with `maniac::coroutine::sync_await`: the task's stack is
//! suspended, and the worker runs other tasks meanwhile.
//!
//! The story: `checksum_with_callback` is a synchronous function (think of a C library, or an
//! old crate) that pulls its input through a callback. The input arrives asynchronously, from
//! another task. Without a stack of its own, the callback could only block the worker thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use maniac::coroutine::{self, RunMode};

/// A synchronous API: asks `next_chunk` for chunks until it returns `None`, and sums them up.
fn checksum_with_callback(mut next_chunk: impl FnMut() -> Option<Vec<u8>>) -> u64 {
    let mut sum = 0u64;
    while let Some(chunk) = next_chunk() {
        sum = chunk.iter().fold(sum, |sum, &byte| {
            sum.wrapping_mul(31).wrapping_add(u64::from(byte))
        });
    }
    sum
}

fn main() {
    let runtime = maniac::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("building the runtime");

    runtime.block_on(async {
        // 1. A task spawned with `spawn_pinned` runs in Poll mode from its first poll.
        // A channel of tokio's: `tokio::sync` works on any runtime.
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
        let consumer = coroutine::spawn_pinned(async move {
            assert_eq!(coroutine::run_mode(), Some(RunMode::Poll));
            let thread_before = std::thread::current().id();
            // The callback is synchronous code; `sync_await` suspends this task's own stack
            // until the next chunk has arrived.
            let sum = checksum_with_callback(|| coroutine::sync_await(receiver.recv()));
            // A poll suspended half-way always resumes on the thread that suspended it (the
            // compiled code may hold addresses of that thread's thread-locals).
            assert_eq!(std::thread::current().id(), thread_before);
            sum
        });

        // 2. Meanwhile the workers are free: this task produces the chunks, one at a time, and
        //    another counts how often it got to run while the consumer was waiting.
        let ticks = Arc::new(AtomicUsize::new(0));
        let ticker = {
            let ticks = ticks.clone();
            maniac::spawn(async move {
                for _ in 0..100 {
                    ticks.fetch_add(1, Ordering::Relaxed);
                    maniac::task::yield_now().await;
                }
            })
        };
        let producer = maniac::spawn(async move {
            for round in 0..10u8 {
                sender.send(vec![round; 1024]).await.unwrap();
                maniac::task::yield_now().await;
            }
            // Dropping the sender ends the stream: the callback's last `recv` gives `None`.
        });

        producer.await.unwrap();
        ticker.await.unwrap();
        let sum = consumer.await.unwrap();
        println!("1. spawn_pinned + sync_await: checksum of 10 chunks = {sum:#018x}");
        println!(
            "   meanwhile another task ran {} times on the same workers",
            ticks.load(Ordering::Relaxed)
        );
        let expected = checksum_with_callback({
            let mut rounds = 0..10u8;
            move || rounds.next().map(|round| vec![round; 1024])
        });
        assert_eq!(sum, expected, "the pinned task computed the wrong checksum");

        // 3. An ordinary task can ask for its own stack with `pin_stack`; it takes effect at its
        //    next poll boundary (the next `.await` that returns Pending).
        let modes = maniac::spawn(async {
            let before = coroutine::run_mode();
            coroutine::pin_stack();
            maniac::task::yield_now().await;
            let after = coroutine::run_mode();
            let answer = coroutine::sync_await(async { 6 * 7 });
            (before, after, answer)
        })
        .await
        .unwrap();
        println!(
            "2. pin_stack: run mode {:?} before, {:?} after the next poll boundary; sync_await \
             gave {}",
            modes.0.unwrap(),
            modes.1.unwrap(),
            modes.2
        );

        // 4. Outside a task with a stack of its own, `sync_await` refuses, with a message that
        //    says where it may be called.
        let refused = maniac::spawn(async {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(|_| {}));
            let result = std::panic::catch_unwind(|| coroutine::sync_await(async { 1 }));
            std::panic::set_hook(previous);
            result.map_err(|payload| {
                let text = payload.downcast_ref::<&str>().copied();
                text.map(str::to_owned)
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default()
            })
        })
        .await
        .unwrap();
        println!(
            "3. sync_await in a None-mode task panics: \"{}\"",
            refused.unwrap_err()
        );
    });
}
