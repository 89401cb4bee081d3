#![cfg(all(not(loom), target_os = "linux", target_arch = "x86_64"))]
//! Preemption inside pure library functions (`maniac::preempt` module doc, "What is and is not
//! enforced"): a poll that spends its time in `core`, `alloc` or std's collections, called from
//! the task's own code, is preempted there, and the same code called by a std function that
//! may hold something for it (`std::io`'s formatting adapter) is not.

mod common;
mod preempt_common;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use common::TIMEOUT;
use maniac::runtime::Handle;
use preempt_common::{figures, join_within, library_calls_preempted, runtime, supported};

/// `n` pseudo-random words.
fn shuffled(n: usize) -> Vec<u64> {
    let mut x = 0x5eed_u64;
    (0..n)
        .map(|_| {
            x = preempt_common::mix(x);
            x
        })
        .collect()
}

/// A sort of millions of words is one call into `core` that takes far longer than a quantum:
/// it is preempted inside it, a task spawned meanwhile runs before it ends, and the result is
/// the same as an unpreempted sort's.
#[test]
fn a_task_inside_a_long_sort_is_preempted() {
    preempt_common::bounded_test(|| {
        if !supported("a_task_inside_a_long_sort_is_preempted") {
            return;
        }
        let n = if cfg!(debug_assertions) {
            1 << 20
        } else {
            1 << 23
        };
        let mut reference = shuffled(n);
        reference.sort_unstable();
        let rt = runtime(1, maniac::preempt::DEFAULT_QUANTUM);
        let other_ran = Arc::new(AtomicBool::new(false));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let sorter = rt.spawn({
            let other_ran = other_ran.clone();
            async move {
                let mut words = shuffled(n);
                let library_calls = || library_calls_preempted(&Handle::current().metrics());
                let before = library_calls();
                started_tx.send(()).unwrap();
                let began = Instant::now();
                words.sort_unstable();
                let during = library_calls() - before;
                (
                    words,
                    began.elapsed(),
                    during,
                    other_ran.load(Ordering::SeqCst),
                )
            }
        });
        started_rx
            .recv_timeout(TIMEOUT)
            .expect("the sort did not start");
        // The sorter holds the only worker: this task runs only if the sort is preempted.
        rt.spawn(async move { other_ran.store(true, Ordering::SeqCst) });
        let (words, took, during, other_ran_first) = join_within(sorter, TIMEOUT)
            .expect("the sort did not finish")
            .expect("the sort failed");
        println!(
            "sort of {n} words took {took:?}, {during} preemptions inside it; {}",
            figures(&rt)
        );
        assert!(words == reference, "the preempted sort's result differs");
        assert!(
            during > 0,
            "the sort was never preempted inside core ({})",
            figures(&rt)
        );
        assert!(
            other_ran_first,
            "a task spawned during a {took:?} sort ran only after it ({})",
            figures(&rt)
        );
    });
}

/// Points this process's stderr at `/dev/null` until dropped (the harness captures panics'
/// messages on its own, not through the file descriptor; what the runtime itself would write
/// to stderr meanwhile, for this file's other tests too, is lost).
struct StderrToNull {
    saved: libc::c_int,
}

impl StderrToNull {
    fn new() -> StderrToNull {
        let null = std::fs::File::create("/dev/null").expect("cannot open /dev/null");
        // SAFETY: dup and dup2 only duplicate descriptors: 2 is kept in `saved` and restored
        // on drop, `null` stays open until dup2 has made 2 a copy of it.
        unsafe {
            let saved = libc::dup(2);
            assert!(saved >= 0, "dup: {}", std::io::Error::last_os_error());
            assert!(libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 2) == 2);
            StderrToNull { saved }
        }
    }
}

impl Drop for StderrToNull {
    fn drop(&mut self) {
        // SAFETY: puts back the descriptor `new` saved, and closes the copy.
        unsafe {
            libc::dup2(self.saved, 2);
            libc::close(self.saved);
        }
    }
}

/// Formats a long list `rounds` times into `out`, from the task's own code.
#[inline(never)]
fn format_into<W: FnMut(&[u64])>(words: &[u64], rounds: usize, mut out: W) {
    let mut round = 0;
    while round < rounds {
        out(words);
        round += 1;
    }
}

/// Runs `format` (which formats the list `rounds` times) as the only task of a one-worker
/// runtime, beside nothing; returns the library calls preempted, the requests deferred, and
/// the runtime's figures.
fn preemptions_while_formatting(format: impl FnOnce() + Send + 'static) -> (u64, u64, String) {
    let rt = runtime(1, maniac::preempt::MIN_QUANTUM);
    let task = rt.spawn(async move { format() });
    join_within(task, TIMEOUT)
        .expect("the formatting did not finish")
        .expect("the formatting failed");
    (
        library_calls_preempted(&rt.metrics()),
        rt.metrics().preemptions_deferred(),
        figures(&rt),
    )
}

/// The same pure code (`core::fmt` formatting a `Vec<u64>`), called two ways: into a `String`
/// (`core::fmt::Write`, pure all the way up to the task) it is preempted inside `core`; into
/// `std::io::stderr()`, whose `write_fmt` takes stderr's lock in std's own code and formats
/// under it (as `println!` does with stdout's), it is not: the walk stops at that frame, and
/// the requests are deferred (but for the few that land in the task's own calls into `core`
/// around it). (A generic writer's `write_fmt` adapter, which holds nothing, is inlined into
/// the task's code in an optimised build, and formatting through it is preempted.)
#[test]
fn pure_code_is_preempted_when_the_task_called_it_not_when_std_io_did() {
    preempt_common::bounded_test(|| {
        if !supported("pure_code_is_preempted_when_the_task_called_it_not_when_std_io_did") {
            return;
        }
        let words = shuffled(1 << 14);
        let rounds = if cfg!(debug_assertions) { 40 } else { 200 };
        let (into_string, _, string_figures) = {
            let words = words.clone();
            preemptions_while_formatting(move || {
                let mut out = String::new();
                format_into(&words, rounds, |words| {
                    out.clear();
                    write!(out, "{words:?}").unwrap();
                });
                assert!(out.len() > words.len());
            })
        };
        let (into_io, io_deferred, io_figures) = preemptions_while_formatting(move || {
            let _quiet = StderrToNull::new();
            let mut stderr = std::io::stderr();
            format_into(&words, rounds, |words| {
                std::io::Write::write_fmt(&mut stderr, format_args!("{words:?}")).unwrap();
            });
        });
        println!("into a String: {string_figures}\ninto stderr: {io_figures}");
        assert!(
            into_string > 0,
            "formatting into a String was never preempted inside core ({string_figures})"
        );
        assert!(
            io_deferred > 100,
            "few requests while formatting into stderr: the test measured nothing \
             ({io_figures})"
        );
        // The few it honours are in the task's own calls into core around the formatting
        // (`format_args!`'s constructors, `unwrap`): not one request in a hundred.
        assert!(
            into_io * 100 < io_deferred,
            "formatting into stderr was preempted inside core, under stderr's lock \
             ({io_figures})"
        );
    });
}

/// A `HashMap` filled from the task's own loop, long enough to be preempted many times, in
/// std's collections (hashbrown, std's hasher) and in the task's code, gives the same map as
/// an unpreempted fill.
#[test]
fn a_task_filling_a_hash_map_is_preempted_and_its_map_is_right() {
    preempt_common::bounded_test(|| {
        if !supported("a_task_filling_a_hash_map_is_preempted_and_its_map_is_right") {
            return;
        }
        let n = if cfg!(debug_assertions) {
            1 << 19
        } else {
            1 << 22
        };
        let fill = move || {
            let mut map = std::collections::HashMap::new();
            for (index, word) in shuffled(n).into_iter().enumerate() {
                *map.entry(word % (n as u64 / 2)).or_insert(0u64) += index as u64;
            }
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_unstable();
            entries
        };
        let reference = std::thread::spawn(fill).join().unwrap();
        let rt = runtime(1, maniac::preempt::MIN_QUANTUM);
        let began = Instant::now();
        let entries = join_within(rt.spawn(async move { fill() }), TIMEOUT)
            .expect("the fill did not finish")
            .expect("the fill failed");
        println!(
            "fill of {n} entries took {:?}; {}",
            began.elapsed(),
            figures(&rt)
        );
        assert!(entries == reference, "the preempted fill's map differs");
        assert!(
            rt.metrics().preemptions() > 10 && library_calls_preempted(&rt.metrics()) > 0,
            "a {:?} fill was hardly preempted, or never inside the map's code ({})",
            began.elapsed(),
            figures(&rt)
        );
    });
}
