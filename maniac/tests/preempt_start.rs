#![cfg(all(not(loom), target_os = "linux", target_arch = "x86_64"))]
//! The code map (`maniac::preempt::prepare`, `monitor` rule 8) is read on demand: a runtime
//! whose polls stay short never reads it, and the first poll to run its quantum has it read on
//! a thread of its own and is preempted once it is read, no request coming before. In a child
//! process, so that no other test has read the map before.

mod common;
mod coroutine_common;
mod preempt_common;

use std::time::{Duration, Instant};

use coroutine_common::in_child;
use maniac::preempt::DeferReason;
use maniac::runtime::{Builder, Handle};
use preempt_common::{bounded_test, deferred, hog_for, preemptions, supported};

/// Longer than any short poll here, however long the machine holds one up.
const QUANTUM: Duration = Duration::from_millis(50);

#[test]
fn the_code_map_is_read_for_the_first_long_poll_which_is_then_preempted() {
    const NAME: &str = "the_code_map_is_read_for_the_first_long_poll_which_is_then_preempted";
    if !supported(NAME) {
        return;
    }
    let child = in_child(NAME, || {
        bounded_test(|| {
            let rt = Builder::new_multi_thread()
                .worker_threads(1)
                .preemption_quantum(QUANTUM)
                .build()
                .unwrap();
            // A second of short polls: nothing to read the map for (a read begun with the
            // runtime would have ended by then, even in a debug build).
            rt.block_on(async {
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(1) {
                    let tasks: Vec<_> = (0..8)
                        .map(|_| maniac::spawn(maniac::time::sleep(Duration::from_micros(300))))
                        .collect();
                    for task in tasks {
                        task.await.unwrap();
                    }
                }
            });
            println!(
                "prepared after short polls={}",
                maniac::preempt::is_prepared()
            );
            let preempted = rt.block_on(rt.spawn(async {
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(60) {
                    hog_for(1, Duration::from_millis(10));
                    if Handle::current().metrics().preemptions() > 0 {
                        return true;
                    }
                }
                false
            }));
            println!("preempted={}", preempted.unwrap());
            // No request came before the map was read (the handler would have refused it).
            println!(
                "refused as unread={}",
                deferred(&rt, DeferReason::CodeMapUnread)
            );
            println!("prepared after the hog={}", maniac::preempt::is_prepared());
            println!("preemptions={}", preemptions(&rt));
        });
    });
    if let Some(child) = child {
        assert!(
            child.status.success()
                && child.stdout.contains("prepared after short polls=false")
                && child.stdout.contains("preempted=true")
                && child.stdout.contains("refused as unread=0")
                && child.stdout.contains("prepared after the hog=true"),
            "the code map was read without a long poll, a request came before it was read, or \
             the hog was not preempted once it was ({}):\n{}\n{}",
            child.status,
            child.stdout,
            child.stderr
        );
    }
}
