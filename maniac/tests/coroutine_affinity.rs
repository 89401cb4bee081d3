#![cfg(not(loom))]
//! Thread affinity (`maniac::coroutine` module doc, "Thread affinity"): a poll suspended half-way
//! (switched, or in `sync_await`) resumes on the OS thread that suspended it, every time, under
//! heavy stealing pressure; between polls a Poll-mode task may move to another worker and still
//! works there.
//!
//! Thread identity is the kernel's (`gettid`), read before and after each suspension point.

mod common;
mod coroutine_common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use common::{TIMEOUT, bounded, spawn_in_mode};
use coroutine_common::{checksum, gettid, hold_worker, make_data};
use maniac::coroutine::{RunMode, run_mode, spawn_pinned, switch_now, sync_await};
use maniac::task::yield_now;

/// Where a trial went wrong: which kind of suspension, and the threads before and after.
type Mismatches = Arc<Mutex<Vec<String>>>;

/// Counts trials and records the ones that resumed on another thread.
#[derive(Clone, Default)]
struct Trials {
    done: Arc<AtomicUsize>,
    mismatches: Mismatches,
}

impl Trials {
    fn check(&self, what: &str, before: libc::pid_t, after: libc::pid_t) {
        self.done.fetch_add(1, SeqCst);
        if before != after {
            self.mismatches
                .lock()
                .unwrap()
                .push(format!("{what}: suspended on {before}, resumed on {after}"));
        }
    }

    #[track_caller]
    fn assert_all_on_their_thread(&self, expected: usize) {
        let mismatches = self.mismatches.lock().unwrap();
        assert!(
            mismatches.is_empty(),
            "{} of {} trials resumed on another OS thread, e.g. {:?}",
            mismatches.len(),
            self.done.load(SeqCst),
            &mismatches[..mismatches.len().min(5)]
        );
        assert_eq!(self.done.load(SeqCst), expected, "trials run");
    }
}

/// Tasks that keep every worker busy and their queues full until `stop`: yield storms, and
/// spawners whose short tasks other workers steal.
fn start_pressure(stop: &Arc<AtomicBool>, storms: usize) -> Vec<maniac::task::JoinHandle<()>> {
    (0..storms)
        .map(|i| {
            let stop = stop.clone();
            maniac::spawn(async move {
                while !stop.load(SeqCst) {
                    if i % 2 == 0 {
                        for _ in 0..4 {
                            maniac::spawn(async {
                                yield_now().await;
                            });
                        }
                    }
                    yield_now().await;
                }
            })
        })
        .collect()
}

/// One child of the switch trials: `switches` switches, each checked, with yields between some of
/// them so that the task is stolen between polls; returns a checksum over data held throughout.
async fn switching_child(seed: u64, switches: u64, trials: Trials) -> u64 {
    let pinned = run_mode() == Some(RunMode::Poll);
    let what = if pinned {
        "Poll-mode switch"
    } else {
        "None-mode switch"
    };
    let mut data = make_data(seed, 64);
    for round in 0..switches {
        let before = gettid();
        switch_now().expect("switch");
        let after = gettid();
        trials.check(what, before, after);
        if !pinned && run_mode() != Some(RunMode::Switch) {
            trials
                .mismatches
                .lock()
                .unwrap()
                .push(format!("resumed in {:?} instead of Switch", run_mode()));
        }
        data[round as usize % 64] ^= round + seed;
        if round % 2 == 1 {
            yield_now().await;
        }
    }
    checksum(&data)
}

fn switching_child_expected(seed: u64, switches: u64) -> u64 {
    let mut data = make_data(seed, 64);
    for round in 0..switches {
        data[round as usize % 64] ^= round + seed;
    }
    checksum(&data)
}

#[test]
fn a_switched_poll_resumes_on_its_os_thread_under_stealing_pressure() {
    bounded(|| {
        // 4 workers on 2 cores: workers are descheduled mid-poll and steal from each other.
        const SPAWNERS: u64 = 50;
        const CHILDREN: u64 = 20;
        const SWITCHES: u64 = 5;
        let rt = common::multi(4);
        let trials = Trials::default();
        let sums = rt.block_on({
            let trials = trials.clone();
            async move {
                let stop = Arc::new(AtomicBool::new(false));
                let pressure = start_pressure(&stop, 8);
                let spawners: Vec<_> = (0..SPAWNERS)
                    .map(|spawner| {
                        let trials = trials.clone();
                        maniac::spawn(async move {
                            let children: Vec<_> = (0..CHILDREN)
                                .map(|child| {
                                    let seed = spawner * CHILDREN + child;
                                    let task = switching_child(seed, SWITCHES, trials.clone());
                                    // Half None mode (None → Switch), half Poll mode
                                    // (Poll → Switch).
                                    spawn_in_mode(seed % 2 == 1, task)
                                })
                                .collect();
                            let mut sums = Vec::new();
                            for child in children {
                                sums.push(child.await.expect("child failed"));
                            }
                            sums
                        })
                    })
                    .collect();
                let mut sums = Vec::new();
                for spawner in spawners {
                    sums.extend(spawner.await.expect("spawner failed"));
                }
                stop.store(true, SeqCst);
                for task in pressure {
                    task.await.unwrap();
                }
                sums
            }
        });
        trials.assert_all_on_their_thread((SPAWNERS * CHILDREN * SWITCHES) as usize);
        for (seed, sum) in (0..).zip(sums) {
            assert_eq!(sum, switching_child_expected(seed, SWITCHES), "task {seed}");
        }
    });
}

/// A foreign thread that completes the oneshots it is sent, in order, until its channel closes.
fn foreign_completer() -> (
    mpsc::Sender<(tokio::sync::oneshot::Sender<u64>, u64)>,
    thread::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel::<(tokio::sync::oneshot::Sender<u64>, u64)>();
    let thread = thread::spawn(move || {
        for (reply, value) in rx {
            let _ = reply.send(value);
        }
    });
    (tx, thread)
}

#[test]
fn sync_await_resumes_on_its_os_thread_under_stealing_pressure() {
    bounded(|| {
        const TASKS: u64 = 200;
        const WAITS: u64 = 6;
        let rt = common::multi(4);
        let trials = Trials::default();
        let (completer, completer_thread) = foreign_completer();
        let totals = rt.block_on({
            let trials = trials.clone();
            async move {
                let stop = Arc::new(AtomicBool::new(false));
                let pressure = start_pressure(&stop, 8);
                let handles: Vec<_> = (0..TASKS)
                    .map(|seed| {
                        let trials = trials.clone();
                        let completer = completer.clone();
                        spawn_pinned(async move {
                            let data = make_data(seed, 32);
                            let mut total = checksum(&data);
                            for round in 0..WAITS {
                                let value = seed * 100 + round;
                                let before = gettid();
                                let (got, what) = match round % 3 {
                                    // Completed by a task, which other workers may run.
                                    0 => {
                                        let (tx, rx) = tokio::sync::oneshot::channel();
                                        maniac::spawn(async move {
                                            yield_now().await;
                                            tx.send(value).unwrap();
                                        });
                                        (sync_await(rx).unwrap(), "sync_await (task)")
                                    }
                                    // Completed by a foreign std thread.
                                    1 => {
                                        let (tx, rx) = tokio::sync::oneshot::channel();
                                        completer.send((tx, value)).unwrap();
                                        (sync_await(rx).unwrap(), "sync_await (thread)")
                                    }
                                    // The awaited future is itself switched mid-poll.
                                    _ => {
                                        let got = sync_await(async {
                                            let inner = gettid();
                                            switch_now().expect("switch inside sync_await");
                                            trials.check(
                                                "switch inside sync_await",
                                                inner,
                                                gettid(),
                                            );
                                            maniac::spawn(async move { value }).await.unwrap()
                                        });
                                        (got, "sync_await (join handle)")
                                    }
                                };
                                trials.check(what, before, gettid());
                                total = total.wrapping_mul(7).wrapping_add(got);
                                yield_now().await;
                            }
                            total
                        })
                    })
                    .collect();
                let mut totals = Vec::new();
                for handle in handles {
                    totals.push(handle.await.expect("task failed"));
                }
                stop.store(true, SeqCst);
                for task in pressure {
                    task.await.unwrap();
                }
                totals
            }
        });
        // The sender and its clones went with the block_on future and the tasks.
        completer_thread.join().unwrap();
        let switches_inside = (0..WAITS).filter(|round| round % 3 == 2).count() as u64;
        trials.assert_all_on_their_thread((TASKS * (WAITS + switches_inside)) as usize);
        for (seed, total) in (0..).zip(totals) {
            let expected = (0..WAITS).fold(checksum(&make_data(seed, 32)), |total, round| {
                total.wrapping_mul(7).wrapping_add(seed * 100 + round)
            });
            assert_eq!(total, expected, "task {seed}");
        }
    });
}

#[test]
fn a_poll_mode_task_moved_to_another_worker_between_polls_still_works() {
    bounded(|| {
        // Forces a move: the task's first worker is held by a task it spawned (into that
        // worker's LIFO slot, which nobody steals), and it is then woken from a foreign thread,
        // so the other worker takes it from the injector.
        const ROUNDS: u64 = 20;
        let rt = common::multi(2);
        for round in 0..ROUNDS {
            let (tid_tx, tid_rx) = mpsc::channel::<(&'static str, libc::pid_t)>();
            let (go_tx, go_rx) = tokio::sync::oneshot::channel::<u64>();
            let release = Arc::new(AtomicBool::new(false));
            let task = {
                let release = release.clone();
                let _enter = rt.enter();
                spawn_pinned(async move {
                    let first = gettid();
                    let data = make_data(round, 512);
                    let holder_release = release.clone();
                    let holder_tids = tid_tx.clone();
                    maniac::spawn(async move {
                        holder_tids.send(("holder", gettid())).unwrap();
                        hold_worker(&holder_release)
                    });
                    tid_tx.send(("first poll", first)).unwrap();
                    let go = go_rx.await.unwrap();
                    let second = gettid();
                    // On the new worker: Poll mode, a switch and a sync_await still work, and
                    // both resume on the new worker's thread.
                    let mode = run_mode();
                    switch_now().expect("switch after the move");
                    let after_switch = gettid();
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    thread::spawn(move || tx.send(go * 2).unwrap());
                    let waited = sync_await(rx).unwrap();
                    let after_wait = gettid();
                    release.store(true, SeqCst);
                    (
                        first,
                        [second, after_switch, after_wait],
                        mode,
                        checksum(&data).wrapping_add(waited),
                    )
                })
            };
            let mut tids = HashSet::new();
            let mut first = None;
            let mut holder = None;
            for _ in 0..2 {
                let (what, tid) = tid_rx.recv_timeout(TIMEOUT).expect("task did not start");
                tids.insert(tid);
                match what {
                    "holder" => holder = Some(tid),
                    _ => first = Some(tid),
                }
            }
            assert_eq!(
                holder, first,
                "round {round}: the holder ran on another worker"
            );
            go_tx.send(round + 1).unwrap();
            let (first_poll, later, mode, sum) = rt.block_on(task).expect("task failed");
            assert_eq!(Some(first_poll), first);
            assert_ne!(later[0], first_poll, "round {round}: the task did not move");
            assert_eq!(
                later, [later[0]; 3],
                "round {round}: a suspension changed thread"
            );
            assert_eq!(mode, Some(RunMode::Poll), "round {round}");
            assert_eq!(
                sum,
                checksum(&make_data(round, 512)).wrapping_add((round + 1) * 2),
                "round {round}"
            );
            release.store(true, SeqCst);
        }
    });
}

#[test]
fn poll_mode_tasks_may_migrate_between_polls_and_stay_correct() {
    bounded(|| {
        const TASKS: u64 = 64;
        const POLLS: u64 = 200;
        let rt = common::multi(4);
        let results = rt.block_on(async {
            let stop = Arc::new(AtomicBool::new(false));
            let pressure = start_pressure(&stop, 6);
            let handles: Vec<_> = (0..TASKS)
                .map(|seed| {
                    spawn_pinned(async move {
                        let mut data = make_data(seed, 256);
                        let mut threads = HashSet::new();
                        let mut off_mode = 0;
                        for poll in 0..POLLS {
                            threads.insert(gettid());
                            if run_mode() != Some(RunMode::Poll) {
                                off_mode += 1;
                            }
                            data[(poll % 256) as usize] = data[(poll % 256) as usize]
                                .rotate_left(3)
                                .wrapping_add(poll);
                            if poll % 50 == 0 {
                                let (tx, rx) = tokio::sync::oneshot::channel();
                                thread::spawn(move || tx.send(poll).unwrap());
                                data[0] ^= sync_await(rx).unwrap();
                            }
                            yield_now().await;
                        }
                        (checksum(&data), threads.len(), off_mode)
                    })
                })
                .collect();
            let mut results = Vec::new();
            for handle in handles {
                results.push(handle.await.expect("task failed"));
            }
            stop.store(true, SeqCst);
            for task in pressure {
                task.await.unwrap();
            }
            results
        });
        let mut moved = 0;
        for (seed, (sum, threads, off_mode)) in (0..).zip(results) {
            let mut data = make_data(seed, 256);
            for poll in 0..POLLS {
                data[(poll % 256) as usize] = data[(poll % 256) as usize]
                    .rotate_left(3)
                    .wrapping_add(poll);
                if poll % 50 == 0 {
                    data[0] ^= poll;
                }
            }
            assert_eq!(sum, checksum(&data), "task {seed}");
            assert_eq!(off_mode, 0, "task {seed} left Poll mode");
            if threads > 1 {
                moved += 1;
            }
        }
        // Moving is allowed, not required; the forced move is tested above.
        println!("{moved} of {TASKS} Poll-mode tasks ran on more than one thread");
    });
}
