#![cfg(all(not(loom), target_os = "linux", target_arch = "x86_64"))]
//! When the code map is read (`maniac::preempt::prepare`, `monitor` rule 8): not at a runtime's
//! start; as soon as a poll runs its quantum, that poll being preempted once it is read, no
//! request coming before; and, without such a poll, a while after the start. Each test in a
//! child process, so that nothing else has read the map before.

mod common;
mod coroutine_common;
mod preempt_common;

use std::time::{Duration, Instant};

use coroutine_common::in_child;
use maniac::preempt::{DeferReason, is_prepared};
use maniac::runtime::{Builder, Handle};
use preempt_common::{bounded_test, deferred, hog_for, preemptions, supported};

/// Whether a thread of this process is reading the code map.
fn code_map_being_read() -> bool {
    std::fs::read_dir("/proc/self/task")
        .expect("no /proc/self/task")
        .filter_map(Result::ok)
        .any(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim() == "maniac-code-map")
        })
}

/// Whether the code map is read or being read.
fn code_map_begun() -> bool {
    is_prepared() || code_map_being_read()
}

#[track_caller]
fn assert_child_printed(child: Option<coroutine_common::ChildOutput>, lines: &[&str]) {
    if let Some(child) = child {
        assert!(
            child.status.success() && lines.iter().all(|line| child.stdout.contains(line)),
            "the child did not print {lines:?} ({}):\n{}\n{}",
            child.status,
            child.stdout,
            child.stderr
        );
    }
}

#[test]
fn a_long_poll_has_the_code_map_read_then_is_preempted() {
    const NAME: &str = "a_long_poll_has_the_code_map_read_then_is_preempted";
    if !supported(NAME) {
        return;
    }
    let child = in_child(NAME, || {
        bounded_test(|| {
            let started = Instant::now();
            let rt = Builder::new_multi_thread()
                .worker_threads(1)
                .build()
                .unwrap();
            println!("begun at the start={}", code_map_begun());
            let hog = rt.spawn(async {
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(60) {
                    hog_for(1, Duration::from_millis(10));
                    if Handle::current().metrics().preemptions() > 0 {
                        return true;
                    }
                }
                false
            });
            // Before rule 8's time (100 ms after the start) would have the map read: begun for
            // the hog, a quantum after it began (with room for the machine's stalls).
            while !code_map_begun() && started.elapsed() < Duration::from_millis(90) {
                std::thread::sleep(Duration::from_millis(1));
            }
            println!("begun beside the hog={}", code_map_begun());
            println!("preempted={}", rt.block_on(hog).unwrap());
            // No request came before the map was read (the handler would have refused it).
            println!(
                "refused as unread={}",
                deferred(&rt, DeferReason::CodeMapUnread)
            );
            println!("preemptions={}", preemptions(&rt));
        });
    });
    assert_child_printed(
        child,
        &[
            "begun at the start=false",
            "begun beside the hog=true",
            "preempted=true",
            "refused as unread=0",
        ],
    );
}

#[test]
fn without_long_polls_the_code_map_is_read_a_while_after_the_start() {
    const NAME: &str = "without_long_polls_the_code_map_is_read_a_while_after_the_start";
    if !supported(NAME) {
        return;
    }
    let child = in_child(NAME, || {
        bounded_test(|| {
            // A quantum no short poll here reaches, however long the machine holds one up.
            let rt = Builder::new_multi_thread()
                .worker_threads(1)
                .preemption_quantum(Duration::from_millis(50))
                .build()
                .unwrap();
            let read = rt.block_on(async {
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(30) {
                    if is_prepared() {
                        return true;
                    }
                    let tasks: Vec<_> = (0..8)
                        .map(|_| maniac::spawn(maniac::time::sleep(Duration::from_micros(300))))
                        .collect();
                    for task in tasks {
                        task.await.unwrap();
                    }
                }
                false
            });
            println!("read={read}");
            println!("preemptions={}", preemptions(&rt));
        });
    });
    assert_child_printed(child, &["read=true", "preemptions=0"]);
}
