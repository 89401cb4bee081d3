#![cfg(not(loom))]
//! The cooperative budget of resources (`task::coop`, tokio's coop): a task that keeps finding its
//! socket ready yields after 128 completed operations, so the other tasks on its worker run even
//! with preemption off (on a current-thread runtime, and on a one-worker runtime without it).

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use common::bounded;
use maniac::io::AsyncReadExt;
use maniac::net::UnixStream;

/// tokio's budget, which maniac keeps.
const BUDGET: u64 = 128;
const READS: u64 = 20_000;

fn runtimes() -> [(&'static str, maniac::runtime::Runtime); 2] {
    [
        ("current_thread", common::current()),
        (
            "multi_thread(1), preemption off",
            maniac::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .preemption(false)
                .build()
                .unwrap(),
        ),
    ]
}

/// A reader that never awaits anything but its always-ready socket (a thread keeps it full),
/// reading one byte at a time, and a bystander that only counts how many reads had happened when
/// it got to run: it runs every time the reader has spent its budget, never later.
#[test]
fn a_task_reading_an_always_ready_socket_yields_after_its_budget() {
    for (name, rt) in runtimes() {
        bounded(move || {
            let (theirs, ours) = std::os::unix::net::UnixStream::pair().unwrap();
            let feeder = std::thread::spawn(move || {
                let mut theirs = theirs;
                let chunk = [7u8; 4096];
                // Until the reader has gone and the socket is closed.
                while theirs.write_all(&chunk).is_ok() {}
            });
            let gaps = rt.block_on(async move {
                let reads = Arc::new(AtomicU64::new(0));
                // Fill the socket before the race starts.
                std::thread::sleep(std::time::Duration::from_millis(20));
                let mut stream = UnixStream::from_std(ours).unwrap();
                let reader = {
                    let reads = reads.clone();
                    maniac::spawn(async move {
                        let mut byte = [0u8; 1];
                        for _ in 0..READS {
                            stream.read_exact(&mut byte).await.unwrap();
                            reads.fetch_add(1, SeqCst);
                        }
                    })
                };
                let bystander = maniac::spawn(async move {
                    let mut seen = Vec::new();
                    while reads.load(SeqCst) < READS {
                        seen.push(reads.load(SeqCst));
                        maniac::task::yield_now().await;
                    }
                    seen
                });
                reader.await.unwrap();
                bystander.await.unwrap()
            });
            feeder.join().unwrap();
            // The bystander ran between the reader's polls; no poll did more than a budget.
            assert!(
                gaps.len() as u64 >= READS / BUDGET / 2,
                "{name}: the bystander ran only {} times during {READS} reads",
                gaps.len()
            );
            let longest = gaps.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
            assert!(
                longest <= BUDGET,
                "{name}: {longest} reads in one poll of the reader (budget {BUDGET})"
            );
        });
    }
}
