#![cfg(all(not(loom), target_os = "linux"))]
//! What a preempted task may do, and where preemption must hold off.
//!
//! - A recursion thousands of frames deep is preempted in the middle (a task on the same worker
//!   sees it deep down) and still computes the right answer, its locals intact on every frame.
//! - A task that panics after it was preempted reports the panic through its `JoinHandle`, in
//!   None and Poll mode, and its worker goes on running other tasks.
//! - A hog that spends most of its time in libc (`memcpy` of 64 MiB) is never interrupted there
//!   (deferred as `OutsideExecutable`, counted), is preempted in its own code between copies, and
//!   a ticker on its worker keeps ticking.
//! - Inside `no_preempt`, a hog is not preempted at all (deferred as `NoPreempt`, counted; no
//!   other task runs on its worker meanwhile), and it is preempted again as soon as it leaves.
//! - A `thread_local!` `RefCell` borrowed across a long computation inside `no_preempt` is never
//!   seen borrowed by the other tasks of the worker; without `no_preempt` it is (the documented
//!   hazard, which shows that the guarded run is not passing by luck).
//!
//! Each test runs on one worker, so "another task ran" means "this poll was preempted".

mod common;
mod preempt_common;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{EXPECTED, TIMEOUT, panic_message, quiet_panics};
use maniac::preempt::{DEFAULT_QUANTUM, DeferReason, MIN_QUANTUM, no_preempt};
use preempt_common::{
    StopOnDrop, deferred, figures, gettid, hog_for, join_within, mix, preemptions, runtime,
    supported, ticker, work,
};

/// A task that bumps `ticks` every `period` until `stop`: on a one-worker runtime it runs only
/// when the worker is free, so a change of `ticks` during a poll proves that poll was preempted.
fn spawn_witness(
    rt: &maniac::runtime::Runtime,
    period: Duration,
    ticks: &Arc<AtomicU64>,
    stop: &Arc<AtomicBool>,
) -> maniac::task::JoinHandle<()> {
    let (ticks, stop) = (ticks.clone(), stop.clone());
    rt.spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            maniac::time::sleep(period).await;
            ticks.fetch_add(1, Ordering::Relaxed);
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Deep recursion.

/// Frames between the top of the recursion and its bottom.
const DEPTH: u32 = 3_000;
/// How far down the recursion runs now (`DEPTH` minus the frame's depth argument).
static FRAMES_DEEP: AtomicU32 = AtomicU32::new(0);

/// One frame: eight locals derived from `x`, work before and after the recursive call, and the
/// locals folded into the result at the end (a frame whose stack was disturbed gives another
/// result).
#[inline(never)]
fn recurse(depth: u32, x: u64, per_frame: u64, track: bool) -> u64 {
    let mut locals = [0u64; 8];
    for (i, slot) in locals.iter_mut().enumerate() {
        *slot = mix(x ^ ((i as u64) << 32) ^ u64::from(depth));
    }
    if track {
        FRAMES_DEEP.store(DEPTH - depth, Ordering::Relaxed);
    }
    let mut y = work(locals[0], per_frame);
    if depth > 0 {
        y ^= recurse(depth - 1, y, per_frame, track);
        if track {
            FRAMES_DEEP.store(DEPTH - depth, Ordering::Relaxed);
        }
        y = work(y, per_frame);
    }
    for slot in &locals {
        y = mix(y ^ slot);
    }
    std::hint::black_box(y)
}

#[test]
fn a_recursion_thousands_of_frames_deep_is_preempted_in_the_middle() {
    preempt_common::bounded_test(|| {
        if !supported("a_recursion_thousands_of_frames_deep_is_preempted_in_the_middle") {
            return;
        }
        let per_frame = if cfg!(debug_assertions) {
            3_000
        } else {
            60_000
        };
        let reference = std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || recurse(DEPTH, 7, per_frame, false))
            .unwrap()
            .join()
            .unwrap();
        let rt = runtime(1, MIN_QUANTUM);
        let stop = Arc::new(AtomicBool::new(false));
        let _stop = StopOnDrop(stop.clone());
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let deep = rt.spawn(async move {
            started_tx.send(()).unwrap();
            let tid = gettid();
            let result = recurse(DEPTH, 7, per_frame, true);
            (result, tid == gettid())
        });
        started_rx.recv_timeout(TIMEOUT).unwrap();
        // Samples how deep the recursion is whenever it lets the worker go (only then can it run).
        let sampler = rt.spawn({
            let (samples, stop) = (samples.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    samples
                        .lock()
                        .unwrap()
                        .push(FRAMES_DEEP.load(Ordering::Relaxed));
                    maniac::time::sleep(Duration::from_micros(300)).await;
                }
            }
        });
        let (result, same_thread) = join_within(deep, TIMEOUT)
            .expect("the recursion did not finish")
            .expect("the recursion failed");
        stop.store(true, Ordering::Relaxed);
        join_within(sampler, TIMEOUT).unwrap().unwrap();
        let samples = samples.lock().unwrap().clone();
        let deepest = samples.iter().copied().max().unwrap_or(0);
        let deep_samples = samples.iter().filter(|&&d| d >= 1_000).count();
        println!(
            "recursion: {} samples, deepest {deepest} frames, {deep_samples} at >= 1000 frames; {}",
            samples.len(),
            figures(&rt)
        );
        assert_eq!(result, reference, "the recursion computed a wrong result");
        assert!(same_thread, "the recursion's poll changed threads");
        assert!(
            preemptions(&rt) >= 50,
            "too few preemptions: {}",
            figures(&rt)
        );
        assert!(
            deep_samples > 0 && deepest >= DEPTH / 2,
            "the recursion was never seen preempted deep down (deepest {deepest} of {DEPTH} frames, \
             {} samples)",
            samples.len()
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Panics after resumption.

#[test]
fn a_task_that_panics_after_being_preempted_reports_it_and_the_worker_lives_on() {
    preempt_common::bounded_test(|| {
        if !supported("a_task_that_panics_after_being_preempted_reports_it_and_the_worker_lives_on")
        {
            return;
        }
        quiet_panics();
        let rt = runtime(1, MIN_QUANTUM);
        let stop = Arc::new(AtomicBool::new(false));
        let _stop = StopOnDrop(stop.clone());
        let ticks = Arc::new(AtomicU64::new(0));
        let witness = spawn_witness(&rt, Duration::from_micros(200), &ticks, &stop);
        for round in 0..6u64 {
            let pinned = round % 2 == 1;
            let task = {
                let ticks = ticks.clone();
                async move {
                    let tid = gettid();
                    let before = ticks.load(Ordering::Relaxed);
                    // Computes until the witness ran three times during this very poll.
                    let mut x = round;
                    while ticks.load(Ordering::Relaxed) < before + 3 {
                        x = work(x, 1_000);
                    }
                    assert_eq!(tid, gettid(), "the poll changed threads");
                    panic!("{EXPECTED} round {round} after preemption ({x})");
                }
            };
            let handle = if pinned {
                let _enter = rt.enter();
                maniac::coroutine::spawn_pinned(task)
            } else {
                rt.spawn(task)
            };
            let error = join_within(handle, TIMEOUT)
                .unwrap_or_else(|| {
                    panic!("round {round}: the panicking task hangs ({})", figures(&rt))
                })
                .expect_err("the task completed instead of panicking");
            assert!(error.is_panic(), "round {round}: {error:?}");
            let payload = error.into_panic();
            let message = panic_message(&*payload).unwrap_or_default().to_owned();
            assert!(
                message.contains(&format!("round {round} after preemption")),
                "round {round}: wrong panic: {message:?}"
            );
            // The worker is alive and runs the next task at once.
            let value = join_within(rt.spawn(async move { work(round, 1_000) }), TIMEOUT)
                .expect("the worker died with the panicking task")
                .unwrap();
            assert_eq!(value, work(round, 1_000));
        }
        let before = ticks.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            ticks.load(Ordering::Relaxed) > before,
            "the witness stopped ticking"
        );
        stop.store(true, Ordering::Relaxed);
        join_within(witness, TIMEOUT).unwrap().unwrap();
        assert!(preemptions(&rt) >= 18, "{}", figures(&rt));
    });
}

// ---------------------------------------------------------------------------------------------
// A hog inside libc.

#[test]
fn a_hog_inside_memcpy_is_deferred_there_and_preempted_between_copies() {
    preempt_common::bounded_test(|| {
        if !supported("a_hog_inside_memcpy_is_deferred_there_and_preempted_between_copies") {
            return;
        }
        const LEN: usize = 64 << 20;
        let rt = runtime(1, DEFAULT_QUANTUM);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let hog = rt.spawn(async move {
            let mut src = vec![0xA5u8; LEN];
            let mut dst = vec![0u8; LEN];
            started_tx.send(()).unwrap();
            let start = Instant::now();
            let mut longest_copy = Duration::ZERO;
            let mut rounds = 0u64;
            let mut x = 1;
            while start.elapsed() < Duration::from_millis(1_000) {
                // A different pattern each round, so that a copy that went wrong would show.
                for page in (0..LEN).step_by(4096) {
                    src[page] = (rounds as u8) ^ (page >> 12) as u8;
                }
                let copy = Instant::now();
                dst.copy_from_slice(&src);
                longest_copy = longest_copy.max(copy.elapsed());
                // A stretch of our own code (about a millisecond): the only place to preempt.
                x = work(
                    x,
                    if cfg!(debug_assertions) {
                        80_000
                    } else {
                        2_000_000
                    },
                );
                rounds += 1;
            }
            (rounds, longest_copy, dst == src, x)
        });
        started_rx.recv_timeout(TIMEOUT).unwrap();
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = rt.spawn(ticker(
            Duration::from_millis(1),
            Duration::from_millis(900),
            ticks.clone(),
        ));
        let (rounds, longest_copy, copied, _) = join_within(hog, TIMEOUT)
            .expect("the memcpy hog did not finish")
            .expect("the memcpy hog failed");
        let lateness = join_within(ticker, TIMEOUT)
            .expect("the ticker did not finish")
            .unwrap();
        println!(
            "memcpy hog: {rounds} rounds, longest copy {longest_copy:?}; ticker {}; {}",
            lateness.summary(),
            figures(&rt)
        );
        assert!(copied, "the last copy is wrong");
        assert!(
            deferred(&rt, DeferReason::OutsideExecutable) > 0,
            "no request was deferred inside memcpy: {}",
            figures(&rt)
        );
        assert!(preemptions(&rt) > 0, "never preempted: {}", figures(&rt));
        assert!(lateness.ticks() >= 10, "{}", lateness.summary());
        // A sleep that ends during a copy waits for the rest of it and for the next preemption in
        // the stretch of Rust code after it; not counting the time the OS kept the worker off the
        // CPU (see `preempt_latency` for the slack), and with it (no starvation).
        let bound = longest_copy * 2 + DEFAULT_QUANTUM * 4 + Duration::from_millis(20);
        assert!(
            lateness.own_percentile(99) <= bound,
            "the 99th percentile of the ticks came {:?} late (not counting the time off the CPU), \
             over {bound:?} ({})",
            lateness.own_percentile(99),
            lateness.summary()
        );
        let max_bound = bound + Duration::from_millis(250);
        assert!(
            lateness.own_max() <= max_bound,
            "a tick came {:?} late (not counting the time off the CPU), over {max_bound:?} ({})",
            lateness.own_max(),
            lateness.summary()
        );
        let raw_bound = max_bound + Duration::from_millis(600);
        assert!(
            lateness.max() <= raw_bound,
            "a tick came {:?} late, over {raw_bound:?} ({})",
            lateness.max(),
            lateness.summary()
        );
    });
}

// ---------------------------------------------------------------------------------------------
// no_preempt.

/// Ticks and preemptions seen during one stretch of a hog.
#[derive(Debug, Clone, Copy)]
struct Stretch {
    ticks: u64,
    preemptions: u64,
}

#[test]
fn a_hog_inside_no_preempt_is_not_preempted_until_it_leaves() {
    preempt_common::bounded_test(|| {
        if !supported("a_hog_inside_no_preempt_is_not_preempted_until_it_leaves") {
            return;
        }
        let rt = runtime(1, MIN_QUANTUM);
        let stop = Arc::new(AtomicBool::new(false));
        let _stop = StopOnDrop(stop.clone());
        let ticks = Arc::new(AtomicU64::new(0));
        let witness = spawn_witness(&rt, Duration::from_micros(200), &ticks, &stop);
        let hog = rt.spawn({
            let ticks = ticks.clone();
            async move {
                let handle = maniac::runtime::Handle::current();
                let preempted = || handle.metrics().preemptions();
                let stretch = |guarded: bool| {
                    let measure = || {
                        let (t0, p0) = (ticks.load(Ordering::Relaxed), preempted());
                        hog_for(1, Duration::from_millis(30));
                        Stretch {
                            ticks: ticks.load(Ordering::Relaxed) - t0,
                            preemptions: preempted() - p0,
                        }
                    };
                    if guarded {
                        no_preempt(measure)
                    } else {
                        measure()
                    }
                };
                let mut inside = Vec::new();
                let mut outside = Vec::new();
                for _ in 0..4 {
                    inside.push(stretch(true));
                    outside.push(stretch(false));
                }
                (inside, outside)
            }
        });
        let (inside, outside) = join_within(hog, TIMEOUT)
            .expect("the hog did not finish")
            .unwrap();
        stop.store(true, Ordering::Relaxed);
        join_within(witness, TIMEOUT).unwrap().unwrap();
        println!(
            "no_preempt: inside {inside:?}, outside {outside:?}; {}",
            figures(&rt)
        );
        for stretch in &inside {
            assert_eq!(
                stretch.preemptions, 0,
                "preempted inside no_preempt: {inside:?}"
            );
            assert_eq!(
                stretch.ticks, 0,
                "another task ran on the worker inside no_preempt: {inside:?}"
            );
        }
        assert!(
            deferred(&rt, DeferReason::NoPreempt) > 0,
            "no request was deferred for no_preempt: {}",
            figures(&rt)
        );
        // The same hog outside the guard is preempted and lets the witness run.
        for stretch in &outside {
            assert!(
                stretch.preemptions > 0 && stretch.ticks > 0,
                "not preempted outside no_preempt: {outside:?}"
            );
        }
    });
}

// ---------------------------------------------------------------------------------------------
// A thread-local RefCell borrowed across a long computation.

thread_local! {
    static SHARED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Runs a holder that borrows `SHARED` mutably across 30 ms of computation (inside `no_preempt`
/// if `guarded`), five times with unguarded computation in between, next to three tasks that
/// borrow it every 200 µs (with `borrow_mut` if `guarded`: a conflict panics them; with
/// `try_borrow_mut` otherwise, counting conflicts). Returns the conflicts, the other tasks'
/// borrows while the holder ran, and the runtime's figures.
fn borrow_across_computation(guarded: bool) -> (u64, u64, maniac::runtime::Runtime) {
    let rt = runtime(1, MIN_QUANTUM);
    let stop = Arc::new(AtomicBool::new(false));
    let _stop = StopOnDrop(stop.clone());
    let conflicts = Arc::new(AtomicU64::new(0));
    let borrows = Arc::new(AtomicU64::new(0));
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let holder = rt.spawn(async move {
        started_tx.send(()).unwrap();
        for round in 0..5u64 {
            let hold = || {
                SHARED.with(|shared| {
                    let mut shared = shared.borrow_mut();
                    shared.push(round);
                    hog_for(round, Duration::from_millis(30));
                    shared.pop()
                })
            };
            let popped = if guarded { no_preempt(hold) } else { hold() };
            assert_eq!(
                popped,
                Some(round),
                "another task changed the borrowed vector"
            );
            hog_for(round, Duration::from_millis(10));
        }
    });
    started_rx.recv_timeout(TIMEOUT).unwrap();
    let users: Vec<_> = (0..3)
        .map(|_| {
            let (stop, conflicts, borrows) = (stop.clone(), conflicts.clone(), borrows.clone());
            rt.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    SHARED.with(|shared| {
                        if guarded {
                            shared.borrow_mut().push(0);
                            shared.borrow_mut().pop();
                        } else {
                            match shared.try_borrow_mut() {
                                Ok(mut shared) => {
                                    shared.push(0);
                                    shared.pop();
                                }
                                Err(_) => {
                                    conflicts.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    });
                    borrows.fetch_add(1, Ordering::Relaxed);
                    maniac::time::sleep(Duration::from_micros(200)).await;
                }
            })
        })
        .collect();
    join_within(holder, TIMEOUT)
        .expect("the holder did not finish")
        .expect("the holder failed");
    let borrowed = borrows.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for user in users {
        join_within(user, TIMEOUT)
            .expect("a user did not finish")
            .expect("a user of the RefCell failed (saw it borrowed?)");
    }
    (conflicts.load(Ordering::Relaxed), borrowed, rt)
}

#[test]
fn a_refcell_borrowed_inside_no_preempt_is_never_seen_borrowed() {
    preempt_common::bounded_test(|| {
        if !supported("a_refcell_borrowed_inside_no_preempt_is_never_seen_borrowed") {
            return;
        }
        let (conflicts, borrows, rt) = borrow_across_computation(true);
        println!(
            "guarded: {conflicts} conflicts, {borrows} borrows; {}",
            figures(&rt)
        );
        assert_eq!(conflicts, 0);
        // The users really ran while the holder was alive (in its unguarded stretches).
        assert!(borrows > 0, "the other tasks never ran");
        assert!(preemptions(&rt) > 0, "{}", figures(&rt));
        assert!(
            deferred(&rt, DeferReason::NoPreempt) > 0,
            "{}",
            figures(&rt)
        );
    });
}

#[test]
fn without_no_preempt_a_refcell_borrowed_across_a_preemption_is_seen_borrowed() {
    preempt_common::bounded_test(|| {
        if !supported("without_no_preempt_a_refcell_borrowed_across_a_preemption_is_seen_borrowed")
        {
            return;
        }
        let (conflicts, borrows, rt) = borrow_across_computation(false);
        println!(
            "unguarded: {conflicts} conflicts, {borrows} borrows; {}",
            figures(&rt)
        );
        assert!(
            conflicts > 0,
            "the documented hazard did not show: no task saw the RefCell borrowed ({borrows} \
             borrows; {})",
            figures(&rt)
        );
    });
}
