#![cfg(all(not(loom), target_os = "linux", target_arch = "x86_64"))]
//! Each worker's own timer (`maniac::preempt` module doc, "The mechanism"): a worker
//! that runs hog after hog preempts itself, the monitor only starting each chain; when the
//! timer's preemption is deferred, the timer asks again until the hog is preempted.

mod common;
mod preempt_common;

use std::time::Duration;

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
