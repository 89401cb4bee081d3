#![cfg(not(loom))]
//! Run-mode transitions (`maniac::coroutine` module doc, "Run modes"): None → Switch → None,
//! Switch → Poll, Poll → Switch, None → Poll, each with data held across the switch and the
//! task's result checked, on 1, 2 and 4 workers; where the Switch operation refuses; many
//! switches in one poll and across many tasks; pinned tasks that yield thousands of times.

mod common;
mod coroutine_common;

use std::collections::HashSet;

use common::{bounded, spawn_in_mode};
use coroutine_common::{checksum, make_data};
use maniac::coroutine::{
    RunMode, SwitchError, pin_stack, run_mode, spawn_pinned, switch_now, sync_await,
};
use maniac::task::yield_now;

/// The worker counts every transition is checked on.
const WORKER_COUNTS: [usize; 3] = [1, 2, 4];

/// Tasks per runtime in each transition test: more than workers, so that several switched polls
/// wait on one worker at once.
const TASKS: u64 = 12;

/// What a task saw: its run mode at each step, and checksums of its data at each step.
#[derive(Debug, PartialEq, Eq)]
struct Trace {
    modes: Vec<Option<RunMode>>,
    sums: Vec<u64>,
}

/// Runs `task(seed)` for every seed in `0..TASKS` on a runtime with `workers` workers, and returns
/// the traces in seed order. Preemption is off: the traces record the run modes the tasks' own
/// switches lead to, and a preemption adds switches of its own (preempt_*.rs test those).
fn run_tasks<F, Fut>(
    workers: usize,
    spawn: fn(Fut) -> maniac::task::JoinHandle<Trace>,
    task: F,
) -> Vec<Trace>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Trace> + Send + 'static,
{
    let rt = maniac::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .preemption(false)
        .build()
        .unwrap();
    rt.block_on(async {
        let handles: Vec<_> = (0..TASKS).map(|seed| spawn(task(seed))).collect();
        let mut traces = Vec::new();
        for handle in handles {
            traces.push(handle.await.expect("the task failed"));
        }
        traces
    })
}

/// The checksum of `make_data(seed, len)` with `extra` appended, computed off the runtime.
fn expected_sum(seed: u64, len: usize, extra: &[u64]) -> u64 {
    let mut data = make_data(seed, len);
    data.extend_from_slice(extra);
    checksum(&data)
}

async fn none_to_switch_to_none(seed: u64) -> Trace {
    let mut modes = vec![run_mode()];
    let mut data = make_data(seed, 4096);
    let mut sums = vec![checksum(&data)];
    switch_now().expect("the Switch operation refused a None-mode poll");
    modes.push(run_mode());
    sums.push(checksum(&data));
    data.push(seed);
    sums.push(checksum(&data));
    // The end of the interrupted poll: the next one runs in None mode again.
    yield_now().await;
    modes.push(run_mode());
    data.push(seed + 1);
    sums.push(checksum(&data));
    Trace { modes, sums }
}

#[test]
fn none_to_switch_and_back_to_none_keeps_the_poll_and_its_data() {
    bounded(|| {
        for workers in WORKER_COUNTS {
            let traces = run_tasks(workers, maniac::spawn, none_to_switch_to_none);
            for (seed, trace) in (0..).zip(traces) {
                let expected = Trace {
                    modes: vec![
                        Some(RunMode::None),
                        Some(RunMode::Switch),
                        Some(RunMode::None),
                    ],
                    sums: vec![
                        expected_sum(seed, 4096, &[]),
                        expected_sum(seed, 4096, &[]),
                        expected_sum(seed, 4096, &[seed]),
                        expected_sum(seed, 4096, &[seed, seed + 1]),
                    ],
                };
                assert_eq!(trace, expected, "{workers} worker(s), task {seed}");
            }
        }
    });
}

async fn switch_to_poll(seed: u64) -> Trace {
    let mut modes = vec![run_mode()];
    let mut data = make_data(seed, 2048);
    let mut sums = vec![checksum(&data)];
    switch_now().expect("the Switch operation refused a None-mode poll");
    modes.push(run_mode());
    // Asked in the rest of the switched poll: takes effect at the next poll boundary.
    pin_stack();
    modes.push(run_mode());
    data.push(seed);
    sums.push(checksum(&data));
    yield_now().await;
    modes.push(run_mode());
    // Poll mode for real: synchronous code may wait for a future that is pending at first.
    let waited = sync_await(async {
        yield_now().await;
        seed * 3
    });
    data.push(waited);
    modes.push(run_mode());
    sums.push(checksum(&data));
    yield_now().await;
    modes.push(run_mode());
    Trace { modes, sums }
}

#[test]
fn switch_to_poll_when_pin_stack_is_called_in_the_switched_poll() {
    bounded(|| {
        for workers in WORKER_COUNTS {
            let traces = run_tasks(workers, maniac::spawn, switch_to_poll);
            for (seed, trace) in (0..).zip(traces) {
                let expected = Trace {
                    modes: vec![
                        Some(RunMode::None),
                        Some(RunMode::Switch),
                        Some(RunMode::Switch),
                        Some(RunMode::Poll),
                        Some(RunMode::Poll),
                        Some(RunMode::Poll),
                    ],
                    sums: vec![
                        expected_sum(seed, 2048, &[]),
                        expected_sum(seed, 2048, &[seed]),
                        expected_sum(seed, 2048, &[seed, seed * 3]),
                    ],
                };
                assert_eq!(trace, expected, "{workers} worker(s), task {seed}");
            }
        }
    });
}

async fn poll_to_switch(seed: u64) -> Trace {
    let mut modes = vec![run_mode()];
    let mut data = make_data(seed, 2048);
    let mut sums = vec![checksum(&data)];
    switch_now().expect("the Switch operation refused a Poll-mode poll");
    // The poll is resumed on the task's own generator, which it keeps: still Poll mode, and
    // `sync_await` still works in the rest of this poll.
    modes.push(run_mode());
    sums.push(checksum(&data));
    let waited = sync_await(async {
        yield_now().await;
        seed + 100
    });
    data.push(waited);
    sums.push(checksum(&data));
    switch_now().expect("a second switch in the same poll");
    modes.push(run_mode());
    yield_now().await;
    modes.push(run_mode());
    data.push(seed);
    sums.push(checksum(&data));
    Trace { modes, sums }
}

#[test]
fn poll_to_switch_resumes_the_poll_on_the_tasks_own_generator() {
    bounded(|| {
        for workers in WORKER_COUNTS {
            let traces = run_tasks(workers, spawn_pinned, poll_to_switch);
            for (seed, trace) in (0..).zip(traces) {
                let expected = Trace {
                    modes: vec![Some(RunMode::Poll); 4],
                    sums: vec![
                        expected_sum(seed, 2048, &[]),
                        expected_sum(seed, 2048, &[]),
                        expected_sum(seed, 2048, &[seed + 100]),
                        expected_sum(seed, 2048, &[seed + 100, seed]),
                    ],
                };
                assert_eq!(trace, expected, "{workers} worker(s), task {seed}");
            }
        }
    });
}

async fn none_to_poll(seed: u64) -> Trace {
    let mut modes = vec![run_mode()];
    let mut data = make_data(seed, 1024);
    let mut sums = vec![checksum(&data)];
    pin_stack();
    // Not before the next poll boundary.
    modes.push(run_mode());
    yield_now().await;
    modes.push(run_mode());
    let waited = sync_await(async {
        let (tx, rx) = tokio::sync::oneshot::channel();
        maniac::spawn(async move {
            yield_now().await;
            tx.send(seed ^ 0xff).unwrap();
        });
        rx.await.unwrap()
    });
    data.push(waited);
    sums.push(checksum(&data));
    // Asking again is a no-op.
    pin_stack();
    yield_now().await;
    modes.push(run_mode());
    Trace { modes, sums }
}

#[test]
fn none_to_poll_at_the_next_poll_boundary_after_pin_stack() {
    bounded(|| {
        for workers in WORKER_COUNTS {
            let traces = run_tasks(workers, maniac::spawn, none_to_poll);
            for (seed, trace) in (0..).zip(traces) {
                let expected = Trace {
                    modes: vec![
                        Some(RunMode::None),
                        Some(RunMode::None),
                        Some(RunMode::Poll),
                        Some(RunMode::Poll),
                    ],
                    sums: vec![
                        expected_sum(seed, 1024, &[]),
                        expected_sum(seed, 1024, &[seed ^ 0xff]),
                    ],
                };
                assert_eq!(trace, expected, "{workers} worker(s), task {seed}");
            }
        }
    });
}

#[test]
fn spawn_pinned_tasks_run_in_poll_mode_from_their_first_poll() {
    bounded(|| {
        for workers in WORKER_COUNTS {
            let rt = common::multi(workers);
            let modes = rt.block_on(async {
                spawn_pinned(async {
                    let first = run_mode();
                    yield_now().await;
                    (first, run_mode())
                })
                .await
                .unwrap()
            });
            assert_eq!(
                modes,
                (Some(RunMode::Poll), Some(RunMode::Poll)),
                "{workers} worker(s)"
            );
        }
    });
}

#[test]
fn run_mode_is_none_outside_a_task_and_switch_now_says_not_in_task() {
    bounded(|| {
        assert_eq!(run_mode(), None);
        assert_eq!(switch_now(), Err(SwitchError::NotInTask));
        for workers in WORKER_COUNTS {
            let rt = common::multi(workers);
            // The block_on future is not a task.
            let (mode, switched) = rt.block_on(async { (run_mode(), switch_now()) });
            assert_eq!(mode, None, "{workers} worker(s)");
            assert_eq!(switched, Err(SwitchError::NotInTask), "{workers} worker(s)");
            let _enter = rt.enter();
            assert_eq!(switch_now(), Err(SwitchError::NotInTask));
        }
        let rt = common::current();
        let (mode, switched) = rt.block_on(async { (run_mode(), switch_now()) });
        assert_eq!(mode, None);
        assert_eq!(switched, Err(SwitchError::NotInTask));
    });
}

#[test]
fn switch_now_on_a_current_thread_runtime_is_refused_and_the_task_goes_on() {
    bounded(|| {
        let rt = common::current();
        let (none, pinned) = rt.block_on(async {
            let none = maniac::spawn(async {
                let data = make_data(1, 512);
                let refused = (run_mode(), switch_now());
                yield_now().await;
                (refused, checksum(&data))
            });
            let pinned = spawn_pinned(async {
                let data = make_data(2, 512);
                let refused = (run_mode(), switch_now());
                yield_now().await;
                (refused, run_mode(), checksum(&data))
            });
            (none.await.unwrap(), pinned.await.unwrap())
        });
        assert_eq!(
            none,
            (
                (Some(RunMode::None), Err(SwitchError::NotOnGenerator)),
                expected_sum(1, 512, &[])
            )
        );
        assert_eq!(
            pinned,
            (
                (Some(RunMode::Poll), Err(SwitchError::CurrentThreadRuntime)),
                Some(RunMode::Poll),
                expected_sum(2, 512, &[])
            )
        );
    });
}

#[test]
fn switch_now_in_a_blocking_closure_is_refused() {
    bounded(|| {
        let rt = common::multi(2);
        let refused =
            rt.block_on(async { maniac::task::spawn_blocking(switch_now).await.unwrap() });
        assert!(
            refused.is_err(),
            "a blocking closure was switched: {refused:?}"
        );
    });
}

/// Switches `switches` times in one poll (starting in whatever mode the task is in), changing its
/// data between switches; then ends the poll and checks the mode of the next one.
async fn many_switches(seed: u64, switches: u64) -> Trace {
    let mut modes = vec![run_mode()];
    let mut data = make_data(seed, 256);
    for round in 0..switches {
        switch_now().expect("switch");
        let mode = run_mode();
        if modes.last() != Some(&mode) {
            modes.push(mode);
        }
        data[(round % 256) as usize] ^= round;
    }
    let sums = vec![checksum(&data)];
    yield_now().await;
    modes.push(run_mode());
    Trace { modes, sums }
}

fn many_switches_expected(seed: u64, switches: u64) -> u64 {
    let mut data = make_data(seed, 256);
    for round in 0..switches {
        data[(round % 256) as usize] ^= round;
    }
    checksum(&data)
}

#[test]
fn a_poll_switched_many_times_keeps_its_data() {
    bounded(|| {
        const SWITCHES: u64 = 300;
        for workers in WORKER_COUNTS {
            let none = run_tasks(workers, maniac::spawn, |seed| many_switches(seed, SWITCHES));
            let poll = run_tasks(workers, spawn_pinned, |seed| many_switches(seed, SWITCHES));
            for (seed, (none, poll)) in (0..).zip(none.into_iter().zip(poll)) {
                let sums = vec![many_switches_expected(seed, SWITCHES)];
                let expected_none = Trace {
                    modes: vec![
                        Some(RunMode::None),
                        Some(RunMode::Switch),
                        Some(RunMode::None),
                    ],
                    sums: sums.clone(),
                };
                let expected_poll = Trace {
                    modes: vec![Some(RunMode::Poll), Some(RunMode::Poll)],
                    sums,
                };
                assert_eq!(none, expected_none, "{workers} worker(s), task {seed}");
                assert_eq!(poll, expected_poll, "{workers} worker(s), task {seed}");
            }
        }
    });
}

#[test]
fn many_tasks_switching_concurrently_all_finish_correctly() {
    bounded(|| {
        const TASKS: u64 = 400;
        const ROUNDS: u64 = 8;
        for workers in [2, 4] {
            let rt = common::multi(workers);
            let sums = rt.block_on(async {
                let handles: Vec<_> = (0..TASKS)
                    .map(|seed| {
                        let task = async move {
                            let mut data = make_data(seed, 128);
                            for round in 0..ROUNDS {
                                switch_now().expect("switch");
                                data[round as usize] = data[round as usize].wrapping_add(seed);
                                // Between polls the task may be stolen; within one, never.
                                yield_now().await;
                            }
                            checksum(&data)
                        };
                        spawn_in_mode(seed % 2 == 1, task)
                    })
                    .collect();
                let mut sums = Vec::new();
                for handle in handles {
                    sums.push(handle.await.expect("task failed"));
                }
                sums
            });
            for (seed, sum) in (0..).zip(sums) {
                let mut data = make_data(seed, 128);
                for round in 0..ROUNDS {
                    data[round as usize] = data[round as usize].wrapping_add(seed);
                }
                assert_eq!(sum, checksum(&data), "{workers} workers, task {seed}");
            }
        }
    });
}

#[test]
fn a_switched_task_then_awaits_a_channel() {
    bounded(|| {
        const MESSAGES: u64 = 200;
        for workers in WORKER_COUNTS {
            let rt = common::multi_cooperative(workers);
            let (total, modes) = rt.block_on(async {
                let (tx, rx) = async_channel::bounded::<u64>(1);
                let receiver = maniac::spawn(async move {
                    let data = make_data(7, 64);
                    switch_now().expect("switch");
                    let mut modes = vec![run_mode()];
                    let mut total = checksum(&data);
                    for _ in 0..MESSAGES {
                        total = total.wrapping_add(rx.recv().await.expect("closed early"));
                        let mode = run_mode();
                        if modes.last() != Some(&mode) {
                            modes.push(mode);
                        }
                    }
                    assert!(rx.recv().await.is_err(), "the channel was not closed");
                    yield_now().await;
                    modes.push(run_mode());
                    (total, modes)
                });
                // Half of the messages from another task, half from a foreign thread.
                let task_tx = tx.clone();
                let sender = maniac::spawn(async move {
                    for i in 0..MESSAGES / 2 {
                        task_tx.send(i).await.unwrap();
                    }
                });
                let thread = std::thread::spawn(move || {
                    for i in MESSAGES / 2..MESSAGES {
                        tx.send_blocking(i).unwrap();
                    }
                });
                sender.await.unwrap();
                let output = receiver.await.unwrap();
                thread.join().unwrap();
                output
            });
            let expected = (0..MESSAGES).fold(checksum(&make_data(7, 64)), u64::wrapping_add);
            assert_eq!(total, expected, "{workers} worker(s)");
            // Switch until the switched poll ends at the first pending receive, None after it.
            assert_eq!(
                modes.first(),
                Some(&Some(RunMode::Switch)),
                "{workers}: {modes:?}"
            );
            assert_eq!(
                modes.last(),
                Some(&Some(RunMode::None)),
                "{workers}: {modes:?}"
            );
            assert!(
                modes.len() <= 3,
                "{workers} worker(s): went back to Switch: {modes:?}"
            );
        }
    });
}

#[test]
fn pinned_tasks_yield_thousands_of_times() {
    bounded(|| {
        const YIELDS: usize = 3000;
        for workers in WORKER_COUNTS {
            let rt = common::multi(workers);
            let results = rt.block_on(async {
                let mut handles = Vec::new();
                for seed in 0..4u64 {
                    let pinned = seed % 2 == 0;
                    let task = async move {
                        if !pinned {
                            assert_eq!(run_mode(), Some(RunMode::None));
                            pin_stack();
                            yield_now().await;
                        }
                        let data = make_data(seed, 97);
                        let mut total = 0u64;
                        let mut off_mode = 0;
                        for i in 0..YIELDS {
                            yield_now().await;
                            if run_mode() != Some(RunMode::Poll) {
                                off_mode += 1;
                            }
                            total = total.wrapping_mul(31).wrapping_add(data[i % data.len()]);
                        }
                        (total, off_mode)
                    };
                    handles.push(spawn_in_mode(pinned, task));
                }
                let mut results = Vec::new();
                for handle in handles {
                    results.push(handle.await.expect("task failed"));
                }
                results
            });
            for (seed, (total, off_mode)) in (0..).zip(results) {
                let data = make_data(seed, 97);
                let expected = (0..YIELDS).fold(0u64, |total, i| {
                    total.wrapping_mul(31).wrapping_add(data[i % data.len()])
                });
                assert_eq!(total, expected, "{workers} worker(s), task {seed}");
                assert_eq!(
                    off_mode, 0,
                    "{workers} worker(s), task {seed} left Poll mode"
                );
            }
        }
    });
}

#[test]
fn a_join_set_of_pinned_tasks_yields_every_result() {
    bounded(|| {
        const MEMBERS: u64 = 48;
        for workers in WORKER_COUNTS {
            let rt = common::multi(workers);
            let results = rt.block_on(async {
                let mut set = maniac::task::JoinSet::new();
                let mut senders = Vec::new();
                for seed in 0..MEMBERS {
                    let (tx, rx) = tokio::sync::oneshot::channel::<u64>();
                    senders.push(tx);
                    set.spawn(async move {
                        pin_stack();
                        yield_now().await;
                        let data = make_data(seed, 64);
                        // Waits for the block_on future, on the task's own stack.
                        let extra = sync_await(rx).expect("sender dropped");
                        switch_now().expect("switch");
                        (seed, run_mode(), checksum(&data).wrapping_add(extra))
                    });
                }
                for (seed, tx) in (0..).zip(senders) {
                    tx.send(seed * seed).unwrap();
                    if seed % 8 == 0 {
                        yield_now().await;
                    }
                }
                let mut results = Vec::new();
                while let Some(joined) = set.join_next().await {
                    results.push(joined.expect("member failed"));
                }
                results
            });
            assert_eq!(results.len() as u64, MEMBERS, "{workers} worker(s)");
            let mut seen = HashSet::new();
            for (seed, mode, sum) in results {
                assert!(seen.insert(seed), "{workers}: task {seed} joined twice");
                assert_eq!(
                    mode,
                    Some(RunMode::Poll),
                    "{workers} worker(s), task {seed}"
                );
                assert_eq!(
                    sum,
                    checksum(&make_data(seed, 64)).wrapping_add(seed * seed),
                    "{workers} worker(s), task {seed}"
                );
            }
        }
    });
}

#[test]
fn pin_stack_and_spawn_pinned_outside_their_context_panic_with_a_message() {
    coroutine_common::quiet_panics();
    let message = common::panic_text(pin_stack);
    assert!(
        message.contains("pin_stack") && message.contains("outside a task"),
        "{message}"
    );
    let rt = common::multi(1);
    // The block_on future is not a task either.
    let message = rt.block_on(async { common::panic_text(pin_stack) });
    assert!(message.contains("pin_stack"), "{message}");
    drop(rt);
    let message = common::panic_text(|| spawn_pinned(async {}));
    assert!(
        message.contains("spawn_pinned") && message.contains("no maniac runtime"),
        "{message}"
    );
}

/// A future that wakes its task and then suspends its poll half-way (`suspend`), once, before
/// returning `Pending`: the wake-up it gave itself must still lead to another poll.
struct WakeThenSuspend<S> {
    suspend: S,
    polls: u32,
}

impl<S: FnMut() + Unpin> std::future::Future for WakeThenSuspend<S> {
    type Output = u32;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<u32> {
        self.polls += 1;
        if self.polls > 1 {
            return std::task::Poll::Ready(self.polls);
        }
        cx.waker().wake_by_ref();
        (self.suspend)();
        std::task::Poll::Pending
    }
}

/// `own_stack` rule 6: a wake-up a Poll-mode task gave itself before its poll was switched out
/// (as a preemption right after `yield_now`'s wake-up does) is not lost.
#[test]
fn a_self_wake_before_a_switch_in_poll_mode_still_polls_the_task_again() {
    for workers in WORKER_COUNTS {
        bounded(move || {
            let rt = common::multi(workers);
            let polls = rt.block_on(async {
                spawn_pinned(WakeThenSuspend {
                    suspend: || switch_now().expect("switch refused"),
                    polls: 0,
                })
                .await
                .expect("task failed")
            });
            assert_eq!(polls, 2, "{workers} workers");
        });
    }
}

/// The same with the poll waiting half-way in `sync_await`.
#[test]
fn a_self_wake_before_sync_await_in_poll_mode_still_polls_the_task_again() {
    for workers in WORKER_COUNTS {
        bounded(move || {
            let rt = common::multi(workers);
            let polls = rt.block_on(async {
                spawn_pinned(WakeThenSuspend {
                    suspend: || {
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        std::thread::spawn(move || {
                            std::thread::sleep(std::time::Duration::from_millis(5));
                            tx.send(()).unwrap();
                        });
                        sync_await(rx).unwrap();
                    },
                    polls: 0,
                })
                .await
                .expect("task failed")
            });
            assert_eq!(polls, 2, "{workers} workers");
        });
    }
}
