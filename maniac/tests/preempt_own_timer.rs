#![cfg(all(not(loom), target_os = "linux", target_arch = "x86_64"))]
//! Each worker's own timer (`maniac::preempt` module doc, "The mechanism"): a worker
//! that runs hog after hog preempts itself, the monitor only starting each chain; when the
//! timer's preemption is deferred, the timer asks again until the hog is preempted; when the
//! kernel has no room for the timers, the monitor preempts alone.

mod common;
mod coroutine_common;
mod preempt_common;

use std::time::Duration;

use coroutine_common::in_child;
use maniac::preempt::{DeferReason, no_preempt};
use preempt_common::{
    bounded_test, deferred, figures, hog_for, preemptions, runtime, supported, work,
};

/// Preemptions on every worker of `rt` that its own timer asked for.
fn by_own_timer(rt: &maniac::runtime::Runtime) -> u64 {
    let metrics = rt.metrics();
    (0..metrics.num_workers())
        .filter_map(|worker| metrics.worker_preemption(worker))
        .map(|stats| stats.preempted_by_own_timer())
        .sum()
}

#[test]
fn hog_after_hog_preempts_itself_and_the_monitor_starts_each_chain() {
    bounded_test(|| {
        if !supported("hog_after_hog_preempts_itself_and_the_monitor_starts_each_chain") {
            return;
        }
        let rt = runtime(2, Duration::from_millis(1));
        // Four hogs of one poll each on two workers: after the first preemption on a worker,
        // every poll there directly follows one.
        let hogs: Vec<_> = (0..4)
            .map(|seed| rt.spawn(async move { hog_for(seed, Duration::from_millis(150)) }))
            .collect();
        for hog in hogs {
            rt.block_on(hog).expect("a hog failed");
        }
        let (all, own) = (preemptions(&rt), by_own_timer(&rt));
        // Hogs of 150 ms of wall time, two to a worker, at 1 ms: about 300 preemptions when
        // the machine is idle, a third of that with the cores shared with two other busy
        // processes; fewer only if the hogs hardly ran.
        assert!(all >= 40, "too few preemptions: {}", figures(&rt));
        assert!(
            own * 4 >= all * 3,
            "the own timers asked for {own} of {all} preemptions; {}",
            figures(&rt)
        );
        // The first poll of each worker followed no preemption: the monitor's.
        assert!(own < all, "the monitor preempted nothing: {}", figures(&rt));
    });
}

#[test]
fn a_deferred_own_timer_asks_again_until_the_hog_leaves_no_preempt() {
    bounded_test(|| {
        if !supported("a_deferred_own_timer_asks_again_until_the_hog_leaves_no_preempt") {
            return;
        }
        let rt = runtime(1, Duration::from_millis(1));
        // Two hogs on one worker, so that each poll follows a preemption of the other; each
        // spends most of its time in `no_preempt` sections of a few quanta.
        let hogs: Vec<_> = (0..2u64)
            .map(|seed| {
                rt.spawn(async move {
                    let mut x = seed;
                    for _ in 0..20 {
                        x = no_preempt(|| hog_for(x, Duration::from_millis(4)).1);
                        x = work(x, 200_000);
                    }
                    x
                })
            })
            .collect();
        for hog in hogs {
            rt.block_on(hog).expect("a hog failed");
        }
        let deferred_inside = deferred(&rt, DeferReason::NoPreempt);
        assert!(
            deferred_inside > 0,
            "no request met a no_preempt section: {}",
            figures(&rt)
        );
        // Each hog leaves its section 20 times; the timer's retries preempt it between them.
        assert!(
            by_own_timer(&rt) >= 10,
            "the own timer preempted {} polls; {}",
            by_own_timer(&rt),
            figures(&rt)
        );
    });
}

/// In a child process: lowers this process's `RLIMIT_SIGPENDING` to 0, so that no siginfo may
/// be queued for it.
fn leave_no_room_for_queued_signals() {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit for the call, which only lowers this process's limit.
    let lowered = unsafe { libc::setrlimit(libc::RLIMIT_SIGPENDING, &none) };
    assert_eq!(lowered, 0, "setrlimit failed");
}

/// With `RLIMIT_SIGPENDING` at 0 (no siginfo may be queued for this process: the count is the
/// user's, checked against the receiver's limit), the kernel can neither create a worker's timer
/// (its signal is queued in advance) nor keep the sender of a signal in its siginfo: the
/// workers fall back to the monitor, whose requests arrive with their origin lost and must
/// still be taken as ours.
#[test]
fn with_no_room_for_queued_signals_the_monitor_still_preempts() {
    const NAME: &str = "with_no_room_for_queued_signals_the_monitor_still_preempts";
    if !supported(NAME) {
        return;
    }
    let child = in_child(NAME, || {
        leave_no_room_for_queued_signals();
        let rt = runtime(2, Duration::from_millis(1));
        let hogs: Vec<_> = (0..4)
            .map(|seed| rt.spawn(async move { hog_for(seed, Duration::from_millis(100)) }))
            .collect();
        for hog in hogs {
            rt.block_on(hog).expect("a hog failed");
        }
        println!(
            "preemptions={} own={} {}",
            preemptions(&rt),
            by_own_timer(&rt),
            figures(&rt)
        );
    });
    if let Some(child) = child {
        let field = |name: &str| -> u64 {
            child
                .stdout
                .split_whitespace()
                .find_map(|word| word.strip_prefix(name)?.parse().ok())
                .unwrap_or_else(|| {
                    panic!(
                        "no {name} in the child's output ({})\n{}\n{}",
                        child.status, child.stdout, child.stderr
                    )
                })
        };
        assert!(
            child.status.success(),
            "the child failed ({}):\n{}\n{}",
            child.status,
            child.stdout,
            child.stderr
        );
        assert!(
            field("preemptions=") >= 20,
            "too few preemptions: {}",
            child.stdout
        );
        assert_eq!(
            field("own="),
            0,
            "a timer preempted without a timer: {}",
            child.stdout
        );
        assert!(
            child
                .stderr
                .contains("maniac: a worker could not create its preemption timer"),
            "no notice of the missing timers:\n{}",
            child.stderr
        );
    }
}

/// The same with a real-time preemption signal, which the kernel refuses to send at all (it must
/// queue a real-time signal's siginfo): nothing can be preempted, and the runtime says so.
#[test]
fn with_no_room_for_queued_signals_a_real_time_signal_is_reported() {
    const NAME: &str = "with_no_room_for_queued_signals_a_real_time_signal_is_reported";
    if !supported(NAME) {
        return;
    }
    let child = in_child(NAME, || {
        leave_no_room_for_queued_signals();
        maniac::preempt::prepare();
        let rt = maniac::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .preemption_signal(libc::SIGRTMIN() + 4)
            .build()
            .unwrap();
        rt.block_on(rt.spawn(async { hog_for(1, Duration::from_millis(30)) }))
            .expect("the hog failed");
        println!("preemptions={}", preemptions(&rt));
    });
    if let Some(child) = child {
        assert!(
            child.status.success()
                && child.stdout.contains("preemptions=0")
                && child.stderr.contains(&format!(
                    "maniac: the preemption signal {} could not be sent",
                    libc::SIGRTMIN() + 4
                )),
            "no report of the refused signal ({}):\n{}\n{}",
            child.status,
            child.stdout,
            child.stderr
        );
    }
}
