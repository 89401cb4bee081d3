#![cfg(not(loom))]
//! Stack overflow in a coroutine (`maniac::coroutine` module doc, "Stacks"; `overflow` module): a
//! poll that runs off its stack hits the guard page, and the process aborts with a message that
//! names the stack size and the setting to raise. Any other fault is left alone. The faults happen
//! in child processes (`coroutine_common::in_child`).

mod common;
mod coroutine_common;

use std::hint::black_box;
use std::io;

use common::bounded;
use coroutine_common::{ChildOutput, disable_core_dumps, in_child, multi_with_stack};
use maniac::coroutine::{RunMode, run_mode, spawn_pinned, switch_now};
use maniac::runtime::Builder;

const STACK: usize = 64 * 1024;
const OVERFLOW_MESSAGE: &str = "maniac: task stack overflow";

/// Recursion without end (the branch is opaque to the optimiser, and each frame keeps a buffer).
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let buffer = black_box([depth as u8; 512]);
    if black_box(true) {
        recurse(depth + 1).wrapping_add(u64::from(buffer[17]))
    } else {
        u64::from(buffer[0])
    }
}

/// Recursion at least `frames` KiB deep (a few times that in a debug build), that ends.
#[inline(never)]
fn recurse_to(frames: u32) -> u64 {
    let buffer = black_box([frames as u8; 1024]);
    if frames == 0 {
        return u64::from(buffer[0]);
    }
    recurse_to(frames - 1).wrapping_add(u64::from(buffer[1000]))
}

/// Fails the test unless the child died by SIGABRT after printing the overflow message for a
/// 64 KiB stack.
#[track_caller]
fn assert_overflow_reported(child: &ChildOutput) {
    assert_eq!(
        child.signal(),
        Some(libc::SIGABRT),
        "the child did not abort ({}):\n--- stdout\n{}\n--- stderr\n{}",
        child.status,
        child.stdout,
        child.stderr
    );
    let line = child
        .stderr
        .lines()
        .find(|line| line.contains(OVERFLOW_MESSAGE))
        .unwrap_or_else(|| panic!("no overflow message on stderr:\n{}", child.stderr));
    assert!(
        line.contains("64 KiB"),
        "the message does not say 64 KiB: {line}"
    );
    assert!(
        line.contains("coroutine_stack_size"),
        "the message does not name the setting: {line}"
    );
    assert!(
        !child.stdout.contains("1 passed"),
        "the child's test passed, so the recursion ended"
    );
}

/// The child's part: overflow in `mode`, on a runtime with 64 KiB coroutine stacks.
fn overflow_child(mode: RunMode) {
    disable_core_dumps();
    bounded(move || {
        let rt = multi_with_stack(1, STACK);
        let depth = rt.block_on(async move {
            let task = async move {
                if mode == RunMode::Switch {
                    switch_now().expect("switch");
                }
                assert_eq!(run_mode(), Some(mode));
                recurse(0)
            };
            match mode {
                RunMode::Poll => spawn_pinned(task).await,
                _ => maniac::spawn(task).await,
            }
        });
        panic!("the recursion ended: {depth:?}");
    });
}

#[test]
fn overflow_in_a_none_mode_poll_aborts_with_the_stack_size() {
    let child = in_child(
        "overflow_in_a_none_mode_poll_aborts_with_the_stack_size",
        || overflow_child(RunMode::None),
    );
    if let Some(child) = child {
        assert_overflow_reported(&child);
    }
}

#[test]
fn overflow_in_a_pinned_task_aborts_with_the_stack_size() {
    let child = in_child(
        "overflow_in_a_pinned_task_aborts_with_the_stack_size",
        || overflow_child(RunMode::Poll),
    );
    if let Some(child) = child {
        assert_overflow_reported(&child);
    }
}

#[test]
fn overflow_in_a_switched_poll_aborts_with_the_stack_size() {
    let child = in_child(
        "overflow_in_a_switched_poll_aborts_with_the_stack_size",
        || overflow_child(RunMode::Switch),
    );
    if let Some(child) = child {
        assert_overflow_reported(&child);
    }
}

#[test]
fn overflow_in_a_pinned_task_on_a_current_thread_runtime_aborts_with_the_stack_size() {
    let child = in_child(
        "overflow_in_a_pinned_task_on_a_current_thread_runtime_aborts_with_the_stack_size",
        || {
            disable_core_dumps();
            bounded(|| {
                // No multi-thread runtime in this process.
                let rt = Builder::new_current_thread()
                    .coroutine_stack_size(STACK)
                    .build()
                    .unwrap();
                let depth = rt.block_on(async {
                    spawn_pinned(async {
                        assert_eq!(run_mode(), Some(RunMode::Poll));
                        recurse(0)
                    })
                    .await
                });
                panic!("the recursion ended: {depth:?}");
            });
        },
    );
    if let Some(child) = child {
        assert_overflow_reported(&child);
    }
}

/// The child's part: a fault at a small invalid address, in a task in `mode`.
fn segfault_child(mode: RunMode) {
    disable_core_dumps();
    bounded(move || {
        let rt = multi_with_stack(1, STACK);
        let value = rt.block_on(async move {
            let task = async move {
                assert_eq!(run_mode(), Some(mode));
                let address = black_box(0x10usize) as *const u8;
                // SAFETY: not safe at all, on purpose: the read faults (the page at address 0 is
                // never mapped), and the test checks how the process dies.
                unsafe { std::ptr::read_volatile(address) }
            };
            match mode {
                RunMode::Poll => spawn_pinned(task).await,
                _ => maniac::spawn(task).await,
            }
        });
        panic!("the invalid read returned: {value:?}");
    });
}

#[track_caller]
fn assert_plain_segfault(child: &ChildOutput) {
    assert_eq!(
        child.signal(),
        Some(libc::SIGSEGV),
        "the child did not die by SIGSEGV ({}):\n--- stdout\n{}\n--- stderr\n{}",
        child.status,
        child.stdout,
        child.stderr
    );
    assert!(
        !child.stderr.contains(OVERFLOW_MESSAGE),
        "a plain segfault was reported as an overflow:\n{}",
        child.stderr
    );
    assert!(
        !child.stderr.contains("overflowed its stack"),
        "a plain segfault was reported as a thread stack overflow:\n{}",
        child.stderr
    );
}

#[test]
fn a_segfault_in_a_none_mode_poll_is_not_reported_as_an_overflow() {
    let child = in_child(
        "a_segfault_in_a_none_mode_poll_is_not_reported_as_an_overflow",
        || segfault_child(RunMode::None),
    );
    if let Some(child) = child {
        assert_plain_segfault(&child);
    }
}

#[test]
fn a_segfault_in_a_pinned_task_is_not_reported_as_an_overflow() {
    let child = in_child(
        "a_segfault_in_a_pinned_task_is_not_reported_as_an_overflow",
        || segfault_child(RunMode::Poll),
    );
    if let Some(child) = child {
        assert_plain_segfault(&child);
    }
}

/// The child's part: unbounded recursion in a blocking closure, on a thread stack (no generator).
fn blocking_overflow_child() {
    disable_core_dumps();
    bounded(|| {
        let rt = Builder::new_multi_thread()
            .worker_threads(1)
            .coroutine_stack_size(STACK)
            .thread_stack_size(256 * 1024)
            .thread_name("overflowing-blocking-thread")
            .build()
            .unwrap();
        let depth = rt.block_on(async { maniac::task::spawn_blocking(|| recurse(0)).await });
        panic!("the recursion ended: {depth:?}");
    });
}

#[test]
fn overflow_of_a_thread_stack_is_left_to_std() {
    let child = in_child(
        "overflow_of_a_thread_stack_is_left_to_std",
        blocking_overflow_child,
    );
    if let Some(child) = child {
        assert_eq!(
            child.signal(),
            Some(libc::SIGABRT),
            "the child did not abort ({}):\n{}",
            child.status,
            child.stderr
        );
        assert!(
            child.stderr.contains("has overflowed its stack"),
            "std did not report the thread stack overflow:\n{}",
            child.stderr
        );
        assert!(
            !child.stderr.contains(OVERFLOW_MESSAGE),
            "a thread stack overflow was reported as a task stack overflow:\n{}",
            child.stderr
        );
    }
}

#[test]
fn deep_recursion_that_fits_runs_on_a_small_stack() {
    bounded(|| {
        // 8 KiB of buffers (some 24 KiB of frames in a debug build) on a 64 KiB stack.
        let rt = multi_with_stack(2, STACK);
        let expected = recurse_to(8);
        let (none, poll, switched) = rt.block_on(async {
            let none = maniac::spawn(async { recurse_to(8) });
            let poll = spawn_pinned(async { recurse_to(8) });
            let switched = maniac::spawn(async {
                switch_now().expect("switch");
                recurse_to(8)
            });
            (none.await, poll.await, switched.await)
        });
        assert_eq!(
            (none.unwrap(), poll.unwrap(), switched.unwrap()),
            (expected, expected, expected)
        );
    });
}

#[test]
fn a_coroutine_stack_below_16_kib_is_invalid_input() {
    for mut builder in [Builder::new_multi_thread(), Builder::new_current_thread()] {
        for size in [0, 1024, 16 * 1024 - 1] {
            let error = builder
                .coroutine_stack_size(size)
                .build()
                .expect_err("a tiny coroutine stack size was accepted");
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{size}: {error}");
            assert!(
                error.to_string().contains("coroutine_stack_size"),
                "{size}: the error does not name the setting: {error}"
            );
        }
        // The minimum itself is fine.
        let rt = builder.coroutine_stack_size(16 * 1024).build().unwrap();
        let value = rt.block_on(async { spawn_pinned(async { black_box(42) }).await.unwrap() });
        assert_eq!(value, 42);
    }
}

#[test]
fn a_small_thread_stack_size_alone_does_not_fail_the_build() {
    for mut builder in [Builder::new_multi_thread(), Builder::new_current_thread()] {
        let rt = builder
            .worker_threads(1)
            .thread_stack_size(8 * 1024)
            .build()
            .expect("thread_stack_size(8 KiB) without coroutine_stack_size");
        let value = rt.block_on(async { spawn_pinned(async { black_box(7) }).await.unwrap() });
        assert_eq!(value, 7);
    }
}
