#![cfg(not(loom))]
//! Abort and shutdown of tasks suspended mid-poll (`maniac::coroutine` module doc, "Abort and
//! shutdown of a task suspended mid-poll"): an abort never interrupts a poll and takes effect at
//! the next poll boundary; dropping the runtime finishes switched polls first; `shutdown_timeout`
//! abandons what is still suspended at its deadline, says so on stderr, and cancels the join
//! handles; idle pinned tasks give their stacks back at the drop. Tests that read stderr or the
//! process-global stack counters run in a child process.

mod common;
mod coroutine_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Counter, DropGuard, TIMEOUT, bounded, with_timeout};
use coroutine_common::{checksum, hold_worker, in_child, live_stacks, make_data};
use maniac::coroutine::{RunMode, run_mode, spawn_pinned, stack_stats, switch_now, sync_await};
use maniac::runtime::{Builder, Runtime};
use maniac::task::{JoinHandle, yield_now};

/// One worker that, after its first look, never puts the injector or the pinned queue before
/// its LIFO slot: a task spawned by a task that is then switched runs before the switched poll
/// is resumed.
fn one_worker_lifo_first() -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(1)
        .global_queue_interval(u32::MAX)
        .build()
        .unwrap()
}

/// Returns once every task queued on `rt`'s single worker before now has had its poll run or
/// suspended: a task spawned now can run only when the worker is free.
fn worker_is_free(rt: &Runtime) {
    rt.block_on(rt.spawn(async {})).unwrap();
}

/// Spins until the runtime of the calling task has begun to shut down (a task spawned then is
/// cancelled at once), looking only once `dropping` is set; false after `TIMEOUT`.
fn hold_worker_until_shutdown(dropping: &AtomicBool) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if Instant::now() > deadline {
            return false;
        }
        if dropping.load(SeqCst) && maniac::spawn(async {}).is_finished() {
            return true;
        }
        std::hint::spin_loop();
    }
}

#[test]
fn abort_during_sync_await_takes_effect_at_the_next_poll_boundary() {
    bounded(|| {
        let rt = common::multi(1);
        let drops = Counter::new();
        let observed = Arc::new(AtomicU64::new(0));
        let after_boundary = Arc::new(AtomicBool::new(false));
        let (tx, rx) = tokio::sync::oneshot::channel::<u64>();
        let (waiting_tx, waiting_rx) = mpsc::channel();
        let handle = {
            let _enter = rt.enter();
            let guard = DropGuard(drops.clone());
            let observed = observed.clone();
            let after_boundary = after_boundary.clone();
            spawn_pinned(async move {
                let _guard = guard;
                waiting_tx.send(()).unwrap();
                let value = sync_await(rx).expect("sender dropped");
                // The abort did not interrupt the wait: the poll goes on to its end.
                observed.store(value, SeqCst);
                yield_now().await;
                after_boundary.store(true, SeqCst);
                value
            })
        };
        waiting_rx.recv_timeout(TIMEOUT).unwrap();
        worker_is_free(&rt); // so the task is suspended in sync_await
        handle.abort();
        // The abort's wake-up resumes the waiting poll, which just waits again.
        worker_is_free(&rt);
        assert!(!handle.is_finished(), "aborted in the middle of a poll");
        assert_eq!(
            drops.get(),
            0,
            "the future was dropped in the middle of a poll"
        );
        tx.send(17).unwrap();
        let error = rt.block_on(handle).expect_err("the aborted task completed");
        assert!(error.is_cancelled(), "{error:?}");
        assert_eq!(observed.load(SeqCst), 17, "the poll did not finish");
        assert!(!after_boundary.load(SeqCst), "a poll ran after the abort");
        assert_eq!(drops.get(), 1);
    });
}

#[test]
fn abort_during_sync_await_keeps_the_value_when_that_poll_completes() {
    bounded(|| {
        let rt = common::multi(1);
        let (tx, rx) = tokio::sync::oneshot::channel::<u64>();
        let handle = {
            let _enter = rt.enter();
            spawn_pinned(async move { sync_await(rx).expect("sender dropped") * 2 })
        };
        worker_is_free(&rt);
        handle.abort();
        worker_is_free(&rt);
        assert!(!handle.is_finished());
        tx.send(21).unwrap();
        // The task completed in the poll that was in progress: as for any abort that comes
        // too late, the value is kept.
        assert_eq!(rt.block_on(handle).unwrap(), 42);
    });
}

/// What a switched task records.
#[derive(Default)]
struct SwitchedTask {
    resumed: AtomicBool,
    poll_sum: AtomicU64,
    after_boundary: AtomicBool,
}

/// Spawns (on `rt`) a task, in `mode`, that spawns `holder` and then switches: on a runtime from
/// [`one_worker_lifo_first`] the holder runs while the switched poll waits. The rest of that poll
/// records into `state`, and the task then ends its poll at a `yield_now` unless `complete`.
fn spawn_switched<H>(
    rt: &Runtime,
    mode: RunMode,
    state: Arc<SwitchedTask>,
    drops: Arc<Counter>,
    complete: bool,
    holder: H,
) -> JoinHandle<u64>
where
    H: FnOnce(bool) + Send + 'static,
{
    let _enter = rt.enter();
    let guard = DropGuard(drops);
    let task = async move {
        let _guard = guard;
        let data = make_data(3, 1000);
        let resumed = state.clone();
        maniac::spawn(async move { holder(resumed.resumed.load(SeqCst)) });
        switch_now().expect("switch");
        state.resumed.store(true, SeqCst);
        let sum = checksum(&data);
        state.poll_sum.store(sum, SeqCst);
        if !complete {
            yield_now().await;
            state.after_boundary.store(true, SeqCst);
        }
        sum
    };
    match mode {
        RunMode::Poll => spawn_pinned(task),
        _ => maniac::spawn(task),
    }
}

#[test]
fn abort_of_a_switched_task_takes_effect_at_its_next_poll_boundary() {
    bounded(|| {
        for mode in [RunMode::None, RunMode::Poll] {
            let rt = one_worker_lifo_first();
            let drops = Counter::new();
            let state = Arc::new(SwitchedTask::default());
            let go = Arc::new(AtomicBool::new(false));
            let (held_tx, held_rx) = mpsc::channel();
            let handle = {
                let go = go.clone();
                spawn_switched(
                    &rt,
                    mode,
                    state.clone(),
                    drops.clone(),
                    false,
                    move |resumed| {
                        held_tx.send(resumed).unwrap();
                        hold_worker(&go);
                    },
                )
            };
            let resumed = held_rx.recv_timeout(TIMEOUT).unwrap();
            assert!(
                !resumed,
                "{mode:?}: the switched poll was resumed before the holder ran"
            );
            // The task is suspended in the middle of its poll now.
            handle.abort();
            assert!(!handle.is_finished(), "{mode:?}");
            assert_eq!(drops.get(), 0, "{mode:?}: dropped in the middle of a poll");
            go.store(true, SeqCst);
            let error = rt.block_on(handle).expect_err("the aborted task completed");
            assert!(error.is_cancelled(), "{mode:?}: {error:?}");
            assert!(
                state.resumed.load(SeqCst),
                "{mode:?}: the poll was not resumed"
            );
            assert_eq!(
                state.poll_sum.load(SeqCst),
                checksum(&make_data(3, 1000)),
                "{mode:?}: the rest of the poll did not run"
            );
            assert!(
                !state.after_boundary.load(SeqCst),
                "{mode:?}: polled after the abort"
            );
            assert_eq!(drops.get(), 1, "{mode:?}");
        }
    });
}

#[test]
fn dropping_the_runtime_finishes_a_switched_poll_before_returning() {
    bounded(|| {
        for mode in [RunMode::None, RunMode::Poll] {
            let rt = one_worker_lifo_first();
            let drops = Counter::new();
            let state = Arc::new(SwitchedTask::default());
            let dropping = Arc::new(AtomicBool::new(false));
            let (held_tx, held_rx) = mpsc::channel();
            let held_until_shutdown = Arc::new(AtomicBool::new(false));
            let handle = {
                let dropping = dropping.clone();
                let held_until_shutdown = held_until_shutdown.clone();
                spawn_switched(
                    &rt,
                    mode,
                    state.clone(),
                    drops.clone(),
                    true,
                    move |resumed| {
                        held_tx.send(resumed).unwrap();
                        held_until_shutdown.store(hold_worker_until_shutdown(&dropping), SeqCst);
                    },
                )
            };
            let resumed = held_rx.recv_timeout(TIMEOUT).unwrap();
            assert!(
                !resumed,
                "{mode:?}: the switched poll was resumed before the holder ran"
            );
            dropping.store(true, SeqCst);
            drop(rt);
            assert!(
                held_until_shutdown.load(SeqCst),
                "{mode:?}: the holder did not see the shutdown begin"
            );
            assert!(
                state.resumed.load(SeqCst),
                "{mode:?}: drop returned before the poll ended"
            );
            assert_eq!(
                state.poll_sum.load(SeqCst),
                checksum(&make_data(3, 1000)),
                "{mode:?}"
            );
            assert_eq!(drops.get(), 1, "{mode:?}");
            let value = futures::executor::block_on(handle).expect("the finished poll's value");
            assert_eq!(value, checksum(&make_data(3, 1000)), "{mode:?}");
        }
    });
}

/// How many abandoned tasks `child` reported on stderr, in all of its report lines.
fn abandoned_reported(child: &coroutine_common::ChildOutput) -> usize {
    child
        .stderr
        .lines()
        .filter_map(|line| line.strip_prefix("maniac: shutdown abandoned "))
        .map(|rest| rest.split(' ').next().unwrap().parse::<usize>().unwrap())
        .sum()
}

/// Fails the test unless `child` passed and said on stderr that it abandoned `count` task(s).
#[track_caller]
fn assert_abandoned(child: &coroutine_common::ChildOutput, count: usize) {
    child.assert_passed();
    let line = format!("maniac: shutdown abandoned {count} task(s)");
    assert!(
        child.stderr.contains(&line),
        "no {line:?} on stderr:\n{}",
        child.stderr
    );
    assert_eq!(
        child.stderr.matches("maniac: shutdown abandoned").count(),
        1,
        "the abandonment was reported more than once:\n{}",
        child.stderr
    );
}

/// Shuts `rt` down with `timeout` and checks that it returned in time.
fn shut_down_in_time(rt: Runtime, timeout: Duration) {
    let started = Instant::now();
    rt.shutdown_timeout(timeout);
    let took = started.elapsed();
    println!("shutdown_timeout({timeout:?}) took {took:?}");
    assert!(
        took < timeout + Duration::from_secs(5),
        "shutdown_timeout({timeout:?}) took {took:?}"
    );
}

/// Awaits a join handle off the runtime (which is gone), bounded.
fn join_off_runtime<T: Send + 'static>(
    handle: JoinHandle<T>,
) -> Result<T, maniac::task::JoinError> {
    with_timeout(TIMEOUT, move || futures::executor::block_on(handle))
}

/// Awaits `handle` on a foreign thread; returns once that thread's first poll of it returned
/// `Pending` (its waker is registered), with a receiver for the result.
fn await_on_a_thread<T: Send + 'static>(
    mut handle: JoinHandle<T>,
) -> mpsc::Receiver<Result<T, maniac::task::JoinError>> {
    let (polled_tx, polled_rx) = mpsc::channel();
    let (result_tx, result_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut first = true;
        let result = futures::executor::block_on(std::future::poll_fn(|cx| {
            let polled = std::pin::Pin::new(&mut handle).poll(cx);
            if std::mem::take(&mut first) {
                let _ = polled_tx.send(polled.is_pending());
            }
            polled
        }));
        let _ = result_tx.send(result);
    });
    let pending = polled_rx
        .recv_timeout(TIMEOUT)
        .expect("the waiter thread did not poll");
    assert!(pending, "the task finished before the shutdown");
    result_rx
}

#[test]
fn shutdown_timeout_abandons_a_task_stuck_in_sync_await() {
    let child = in_child(
        "shutdown_timeout_abandons_a_task_stuck_in_sync_await",
        || {
            bounded(|| {
                let rt = common::multi(1);
                let drops = Counter::new();
                let (waiting_tx, waiting_rx) = mpsc::channel();
                let handle = {
                    let _enter = rt.enter();
                    let guard = DropGuard(drops.clone());
                    spawn_pinned(async move {
                        let _guard = guard;
                        waiting_tx.send(()).unwrap();
                        sync_await(std::future::pending::<()>());
                        unreachable!("a pending future completed");
                    })
                };
                waiting_rx.recv_timeout(TIMEOUT).unwrap();
                worker_is_free(&rt); // suspended in sync_await now
                shut_down_in_time(rt, Duration::from_millis(500));
                let error = join_off_runtime(handle).expect_err("the stuck task completed");
                assert!(error.is_cancelled(), "{error:?}");
                assert_eq!(drops.get(), 0, "an abandoned task's destructors ran");
                // Its stack is leaked on purpose; every other one is unmapped.
                assert_eq!(live_stacks(), 1, "{:?}", stack_stats());
            });
        },
    );
    if let Some(child) = child {
        assert_abandoned(&child, 1);
    }
}

#[test]
fn dropping_the_runtime_abandons_a_task_stuck_in_sync_await() {
    let child = in_child(
        "dropping_the_runtime_abandons_a_task_stuck_in_sync_await",
        || {
            bounded(|| {
                let rt = common::multi(2);
                let (waiting_tx, waiting_rx) = mpsc::channel();
                let handles: Vec<_> = (0..2)
                    .map(|_| {
                        let _enter = rt.enter();
                        let waiting_tx = waiting_tx.clone();
                        spawn_pinned(async move {
                            waiting_tx.send(()).unwrap();
                            sync_await(std::future::pending::<()>())
                        })
                    })
                    .collect();
                for _ in 0..2 {
                    waiting_rx.recv_timeout(TIMEOUT).unwrap();
                }
                drop(rt);
                for handle in handles {
                    assert!(join_off_runtime(handle).unwrap_err().is_cancelled());
                }
                assert_eq!(live_stacks(), 2, "{:?}", stack_stats());
            });
        },
    );
    if let Some(child) = child {
        assert_abandoned(&child, 2);
    }
}

/// The child's part of the two tests below: a task in None mode and one in Poll mode whose polls
/// never end (`never_ending(mode, started)`, which calls `started` once it runs), both awaited on
/// foreign threads; `shutdown_timeout(300 ms)` must abandon both at its deadline, cancel and wake
/// their join handles, run none of their destructors, and let the workers exit. `ready` says when
/// the shutdown may begin.
fn shutdown_abandons_never_ending_polls<Fut>(
    never_ending: fn(RunMode, Arc<Counter>) -> Fut,
    ready: impl Fn(&maniac::runtime::Runtime) -> bool,
) where
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    const WORKERS: usize = 2;
    let (exits, exited) = mpsc::channel();
    let rt = Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .on_thread_start(move || signal_thread_exit(exits.clone()))
        .build()
        .unwrap();
    let drops = Counter::new();
    let started = Counter::new();
    let handles: Vec<_> = [RunMode::None, RunMode::Poll]
        .into_iter()
        .map(|mode| {
            let _enter = rt.enter();
            let guard = DropGuard(drops.clone());
            let body = never_ending(mode, started.clone());
            let task = async move {
                let _guard = guard;
                body.await
            };
            match mode {
                RunMode::Poll => spawn_pinned(task),
                _ => maniac::spawn(task),
            }
        })
        .collect();
    started.expect(2, TIMEOUT, "both tasks to start");
    let since = std::time::Instant::now();
    while !ready(&rt) {
        assert!(since.elapsed() < TIMEOUT, "never ready to shut down");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Both handles are already being awaited (on foreign threads) when the shutdown abandons
    // their tasks: the abandonment must wake them.
    let waiters: Vec<_> = handles.into_iter().map(await_on_a_thread).collect();
    shut_down_in_time(rt, Duration::from_millis(300));
    for waiter in waiters {
        let error = waiter
            .recv_timeout(TIMEOUT)
            .expect("a waiting join handle was not woken")
            .expect_err("a never-ending poll ended");
        assert!(error.is_cancelled(), "{error:?}");
    }
    assert_eq!(drops.get(), 0, "an abandoned task's destructors ran");
    // shutdown_timeout returned at its deadline, while the workers were still abandoning: they
    // finish (and report) on their own.
    for _ in 0..WORKERS {
        exited
            .recv_timeout(TIMEOUT)
            .expect("a worker thread did not exit");
    }
}

/// The parent's part: the child passed and reported both tasks abandoned (in one line normally,
/// two if the caller reported while a worker was still abandoning).
fn assert_two_abandoned(child: Option<coroutine_common::ChildOutput>) {
    if let Some(child) = child {
        child.assert_passed();
        let reported = abandoned_reported(&child);
        assert_eq!(reported, 2, "abandoned tasks reported:\n{}", child.stderr);
    }
}

#[test]
fn shutdown_timeout_abandons_switched_polls_that_never_end() {
    let child = in_child(
        "shutdown_timeout_abandons_switched_polls_that_never_end",
        || {
            bounded(|| {
                shutdown_abandons_never_ending_polls(
                    |mode, started| async move {
                        assert_eq!(run_mode(), Some(mode));
                        started.inc();
                        loop {
                            switch_now().expect("switch");
                        }
                    },
                    |_| true,
                );
                // The switched worker generator and the pinned task's own stack are leaked.
                assert_eq!(live_stacks(), 2, "{:?}", stack_stats());
            });
        },
    );
    assert_two_abandoned(child);
}

/// ARCHITECTURE.md: shutdown resumes preempted polls until they end, up to the shutdown
/// timeout, then abandons them (no destructors run) and says so. Hogs that never end, in None and
/// Poll mode, preempted before the shutdown begins.
#[test]
fn shutdown_timeout_abandons_preempted_polls_that_never_end() {
    if !maniac::preempt::is_supported() {
        eprintln!("preemption is not supported here: nothing to test");
        return;
    }
    let child = in_child(
        "shutdown_timeout_abandons_preempted_polls_that_never_end",
        || {
            bounded(|| {
                shutdown_abandons_never_ending_polls(
                    |_, started| async move {
                        started.inc();
                        let mut x = 1u64;
                        loop {
                            x = std::hint::black_box(x.wrapping_mul(6364136223846793005) + 1);
                        }
                    },
                    |rt| rt.metrics().preemptions() >= 4,
                );
            });
        },
    );
    assert_two_abandoned(child);
}

thread_local! {
    /// Sends on its channel when the thread that set it exits (after everything the thread's
    /// body did, which for a worker includes its part of the shutdown).
    static ON_EXIT: std::cell::RefCell<Option<ExitSignal>> = const { std::cell::RefCell::new(None) };
}

struct ExitSignal(mpsc::Sender<()>);

impl Drop for ExitSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// For `Builder::on_thread_start`: `exits` receives one message when this thread has exited.
fn signal_thread_exit(exits: mpsc::Sender<()>) {
    ON_EXIT.with(|slot| *slot.borrow_mut() = Some(ExitSignal(exits)));
}

#[test]
fn dropping_the_runtime_unmaps_the_stacks_of_idle_pinned_tasks() {
    const TASKS: usize = 200;
    let child = in_child(
        "dropping_the_runtime_unmaps_the_stacks_of_idle_pinned_tasks",
        || {
            bounded(|| {
                let rt = common::multi(2);
                let drops = Counter::new();
                let idle = Counter::new();
                let (_tx, rx) = tokio::sync::watch::channel(());
                let handles: Vec<_> = (0..TASKS)
                    .map(|i| {
                        let _enter = rt.enter();
                        let guard = DropGuard(drops.clone());
                        let idle = idle.clone();
                        let mut rx = rx.clone();
                        let task = async move {
                            let _guard = guard;
                            sync_await(yield_now());
                            switch_now().expect("switch");
                            idle.inc();
                            // Between polls from here on, in Poll mode.
                            let _ = rx.changed().await;
                        };
                        if i % 2 == 0 {
                            spawn_pinned(task)
                        } else {
                            maniac::spawn(async move {
                                maniac::coroutine::pin_stack();
                                yield_now().await;
                                task.await
                            })
                        }
                    })
                    .collect();
                idle.expect(TASKS, TIMEOUT, "the pinned tasks to go idle");
                assert!(live_stacks() >= TASKS, "{} stacks live", live_stacks());
                drop(rt);
                assert_eq!(
                    drops.get(),
                    TASKS,
                    "futures of idle tasks survived the drop"
                );
                for handle in handles {
                    assert!(join_off_runtime(handle).unwrap_err().is_cancelled());
                }
                let stats = stack_stats();
                assert_eq!(
                    stats.mapped, stats.unmapped,
                    "stacks left mapped: {stats:?}"
                );
            });
        },
    );
    if let Some(child) = child {
        child.assert_passed();
        assert!(
            !child.stderr.contains("maniac: shutdown abandoned"),
            "idle tasks were abandoned:\n{}",
            child.stderr
        );
    }
}

#[test]
fn a_task_spawned_pinned_after_shutdown_is_cancelled_and_never_polled() {
    bounded(|| {
        let rt = common::multi(2);
        let handle = rt.handle().clone();
        drop(rt);
        let polled = Arc::new(AtomicBool::new(false));
        let join = {
            let _enter = handle.enter();
            let polled = polled.clone();
            spawn_pinned(async move { polled.store(true, SeqCst) })
        };
        assert!(join.is_finished());
        let error = join_off_runtime(join).expect_err("ran after shutdown");
        assert!(error.is_cancelled(), "{error:?}");
        assert!(!polled.load(SeqCst));
    });
}
