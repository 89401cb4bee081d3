#![cfg(all(not(loom), target_os = "linux"))]
//! std's blocking locks under preemption: a task preempted while it holds a `std::sync::Mutex`,
//! an `RwLock` or a `OnceLock` being initialised must not deadlock its worker when another task
//! there waits for the same lock. The waiter is preempted in its wait (`maniac::preempt` module
//! doc, "Lock waits"), the worker resumes the holder, and both finish.
//!
//! The first tests make the deadlock certain without the lock-wait rule: one worker, a holder
//! that computes with the lock held until the waiter (which can only run on that worker once the
//! holder is preempted) has started to wait, and then for a while longer, so that the holder can
//! finish only if the waiter is preempted in its wait. Every combination of the None and Poll
//! modes is tried. The stress test mixes hogs that hold a shared lock across long computations
//! on four workers, with results checked. The last test takes a lock that is not std's (a
//! pthread mutex, waited for inside libc): that deadlock is real, and the runtime must say so.

mod common;
mod coroutine_common;
mod preempt_common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use common::{TIMEOUT, spawn_in_mode};
use coroutine_common::in_child;
use maniac::runtime::Runtime;
use preempt_common::{
    bounded_test, figures, hog_for, hog_until, join_within, runtime, supported, work,
};

/// Lock waits preempted so far on every worker of `rt`.
fn lock_waits_preempted(rt: &Runtime) -> u64 {
    let metrics = rt.metrics();
    (0..metrics.num_workers())
        .filter_map(|worker| metrics.worker_preemption(worker))
        .map(|stats| stats.lock_waits_preempted())
        .sum()
}

/// How a waiter waits for the lock a holder holds: `hold` runs `body` with the lock held (in
/// the holder), `wait` takes the lock (in the waiter) and returns what it saw behind it.
trait Lock: Send + Sync + 'static {
    fn hold(&self, body: impl FnOnce() -> u64) -> u64;
    fn wait(&self) -> u64;
}

struct StdMutex(Mutex<u64>);

impl Lock for StdMutex {
    fn hold(&self, body: impl FnOnce() -> u64) -> u64 {
        let mut guard = self.0.lock().unwrap();
        *guard = body();
        *guard
    }
    fn wait(&self) -> u64 {
        *self.0.lock().unwrap()
    }
}

/// A writer holds it, a reader waits.
struct ReadAfterWrite(RwLock<u64>);

impl Lock for ReadAfterWrite {
    fn hold(&self, body: impl FnOnce() -> u64) -> u64 {
        let mut guard = self.0.write().unwrap();
        *guard = body();
        *guard
    }
    fn wait(&self) -> u64 {
        *self.0.read().unwrap()
    }
}

/// A reader holds it, a writer waits.
struct WriteAfterRead(RwLock<u64>, AtomicU64);

impl Lock for WriteAfterRead {
    fn hold(&self, body: impl FnOnce() -> u64) -> u64 {
        let _guard = self.0.read().unwrap();
        let value = body();
        self.1.store(value, Ordering::SeqCst);
        value
    }
    fn wait(&self) -> u64 {
        let guard = self.0.write().unwrap();
        drop(guard);
        self.1.load(Ordering::SeqCst)
    }
}

/// The holder initialises it, the waiter waits for the initialisation.
struct Initialising(OnceLock<u64>);

impl Lock for Initialising {
    fn hold(&self, body: impl FnOnce() -> u64) -> u64 {
        *self.0.get_or_init(body)
    }
    fn wait(&self) -> u64 {
        *self
            .0
            .get_or_init(|| panic!("the waiter initialised the OnceLock"))
    }
}

/// One round on a 1-worker runtime (module doc): the holder takes the lock, spawns the waiter
/// and computes; the waiter must see the holder's result.
fn holder_and_waiter<L: Lock>(
    rt: &Runtime,
    lock: L,
    holder_own_stack: bool,
    waiter_own_stack: bool,
) {
    let lock = Arc::new(lock);
    let waiting = Arc::new(AtomicBool::new(false));
    let holder = rt.spawn(async move {
        let (computed, waiter) = spawn_in_mode(holder_own_stack, async move {
            let mut waiter = None;
            let computed = lock.hold(|| {
                waiter = Some(spawn_in_mode(waiter_own_stack, {
                    let (lock, waiting) = (lock.clone(), waiting.clone());
                    async move {
                        waiting.store(true, Ordering::SeqCst);
                        lock.wait()
                    }
                }));
                // The waiter runs only once this is preempted; then the lock is held long enough
                // for the waiter to block in its wait.
                let (_, x) = hog_until(7, &waiting);
                let (_, y) = hog_for(x, Duration::from_millis(10));
                y
            });
            (computed, waiter.expect("no waiter"))
        })
        .await
        .expect("the holder failed");
        let seen = waiter.await.expect("the waiter failed");
        (computed, seen)
    });
    let (computed, seen) = join_within(holder, TIMEOUT)
        .unwrap_or_else(|| panic!("holder and waiter deadlocked ({})", figures(rt)))
        .expect("the round failed");
    assert_eq!(seen, computed, "the waiter did not see the holder's result");
}

fn every_mode<L: Lock>(test: &'static str, make: fn() -> L) {
    if !supported(test) {
        return;
    }
    bounded_test(move || {
        let rt = runtime(1, Duration::from_millis(1));
        for holder_own_stack in [false, true] {
            for waiter_own_stack in [false, true] {
                for _ in 0..3 {
                    holder_and_waiter(&rt, make(), holder_own_stack, waiter_own_stack);
                }
            }
        }
        let lock_waits = lock_waits_preempted(&rt);
        println!(
            "{test}: {lock_waits} lock waits preempted; {}",
            figures(&rt)
        );
        // Each round can end only through a preempted wait.
        assert!(
            lock_waits >= 12,
            "{test}: {lock_waits} lock waits preempted in 12 rounds"
        );
    });
}

#[test]
fn mutex_waiter_is_preempted_while_its_holder_is() {
    every_mode("mutex", || StdMutex(Mutex::new(0)));
}

#[test]
fn rwlock_reader_waiting_for_a_writer_is_preempted() {
    every_mode("rwlock read", || ReadAfterWrite(RwLock::new(0)));
}

#[test]
fn rwlock_writer_waiting_for_a_reader_is_preempted() {
    every_mode("rwlock write", || {
        WriteAfterRead(RwLock::new(0), AtomicU64::new(0))
    });
}

#[test]
fn once_lock_waiter_is_preempted_while_the_initialiser_is() {
    every_mode("once lock", || Initialising(OnceLock::new()));
}

/// How long a stress round holds the lock: 0 to 600,000 steps of `work` (a few microseconds to
/// several quanta).
fn steps(seed: u64) -> u64 {
    seed.wrapping_mul(7_919) % 600_000
}

/// Tasks on four workers take turns at one `std::sync::Mutex`, each holding it across
/// computations from a few microseconds to several quanta; the counter it guards must come out
/// exact, and the computations' results right.
#[test]
fn contended_mutex_held_across_preemptions_stays_live_and_exact() {
    if !supported("contended mutex") {
        return;
    }
    bounded_test(|| {
        const TASKS: u64 = 12;
        const ROUNDS: u64 = 40;
        let rt = runtime(4, Duration::from_micros(200));
        let shared = Arc::new(Mutex::new((0u64, 0u64)));
        let handles: Vec<_> = (0..TASKS)
            .map(|task| {
                let shared = shared.clone();
                let _enter = rt.enter();
                spawn_in_mode(task % 2 == 1, async move {
                    for round in 0..ROUNDS {
                        let seed = task << 32 | round;
                        {
                            let mut guard = shared.lock().unwrap();
                            guard.0 += 1;
                            guard.1 = guard.1.wrapping_add(work(seed, steps(seed)));
                        }
                        if round % 4 == 0 {
                            maniac::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for (task, handle) in handles.into_iter().enumerate() {
            join_within(handle, TIMEOUT)
                .unwrap_or_else(|| panic!("task {task} did not finish ({})", figures(&rt)))
                .unwrap_or_else(|error| panic!("task {task} failed: {error:?}"));
        }
        let (count, sum) = *shared.lock().unwrap();
        let expected_sum = (0..TASKS)
            .flat_map(|task| (0..ROUNDS).map(move |round| task << 32 | round))
            .fold(0u64, |sum, seed| sum.wrapping_add(work(seed, steps(seed))));
        assert_eq!(count, TASKS * ROUNDS, "lost updates");
        assert_eq!(sum, expected_sum, "wrong results");
        println!(
            "contended mutex: {} lock waits preempted; {}",
            lock_waits_preempted(&rt),
            figures(&rt)
        );
    });
}

/// A pthread mutex for the last test, leaked (the child process exits with it locked).
struct PthreadMutex(*mut libc::pthread_mutex_t);

// SAFETY: a pthread mutex is made to be locked from any thread; the pointer is never freed.
unsafe impl Send for PthreadMutex {}
// SAFETY: as above.
unsafe impl Sync for PthreadMutex {}

impl PthreadMutex {
    fn new() -> PthreadMutex {
        PthreadMutex(Box::into_raw(Box::new(libc::PTHREAD_MUTEX_INITIALIZER)))
    }

    fn lock(&self) {
        // SAFETY: the mutex is initialised and never moves or is freed (leaked above).
        assert_eq!(unsafe { libc::pthread_mutex_lock(self.0) }, 0);
    }
}

/// A waiter blocked inside libc on a pthread mutex held by a task preempted on the same worker:
/// no safe point can free the worker, and the monitor must report it (`monitor` rule 6) rather
/// than leave a silent hang.
#[test]
fn worker_blocked_on_a_foreign_lock_held_by_a_preempted_task_is_reported() {
    const NAME: &str = "worker_blocked_on_a_foreign_lock_held_by_a_preempted_task_is_reported";
    if !supported(NAME) {
        return;
    }
    let child = in_child(NAME, || {
        let rt = runtime(1, Duration::from_millis(1));
        let lock = Arc::new(PthreadMutex::new());
        let waiting = Arc::new(AtomicBool::new(false));
        rt.spawn(async move {
            lock.lock();
            maniac::spawn({
                let (lock, waiting) = (lock.clone(), waiting.clone());
                async move {
                    waiting.store(true, Ordering::SeqCst);
                    lock.lock();
                }
            });
            hog_until(7, &waiting);
            hog_until(7, &AtomicBool::new(false));
        });
        // Rule 6 reports when the monitor sees the waiter's poll at a second; a look later it
        // has recorded a longer poll. The worker never comes back.
        let longest = || rt.metrics().worker_preemption(0).unwrap().longest_poll();
        let deadline = std::time::Instant::now() + TIMEOUT;
        while longest() < Duration::from_millis(1_200) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("{}", figures(&rt));
        std::process::exit(0);
    });
    if let Some(child) = child {
        assert!(
            child.status.success()
                && child
                    .stderr
                    .contains("maniac: worker 0 has been in one poll for")
                && child
                    .stderr
                    .contains("while 1 preempted poll(s) wait to resume"),
            "no report of the deadlocked worker ({}):\n--- stdout\n{}\n--- stderr\n{}",
            child.status,
            child.stdout,
            child.stderr
        );
    }
}
