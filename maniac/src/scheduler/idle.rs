//! The idle protocol: which workers look for work, which ones sleep, whom a new task wakes, and why
//! no wake-up is ever lost.
//!
//! ## State
//! `state` packs two counters into one word so that both change in one atomic step (read through
//! [`Snapshot`]):
//! - `num_searching` (bits 0..16): workers looking for work in other workers' queues and the
//!   injector;
//! - `num_unparked` (bits 16..): workers that are not asleep.
//!
//! `sleepers` lists the parked workers. Its mutex also serialises every change of `num_unparked`,
//! so under the lock `num_workers - num_unparked == sleepers.len()`.
//!
//! ## Rules
//! 1. Whoever makes work visible to other workers (a push onto a stealable local queue or onto the
//!    injector) then calls [`Idle::worker_to_notify`]. If no worker is searching and one is parked,
//!    that worker leaves `sleepers` already counted as unparked *and searching*, and the caller
//!    unparks it. While a worker searches, nobody else is woken: the searcher will find the work, and
//!    a second searcher would only race it for the same task. A worker whose poll was just
//!    preempted also wakes one when tasks wait to be started (not for lost wake-ups: to spread
//!    hogs), since it would start them one a quantum, each pinned to it once preempted; and while
//!    a worker searches, it resumes a preempted poll instead of starting one, so that the
//!    searcher finds them unstarted.
//! 2. A worker whose own queues are empty may search only while fewer than half of the workers
//!    search ([`Idle::try_begin_searching`]); otherwise it parks at once, the searchers cover it.
//! 3. A searcher that finds work stops searching ([`Idle::end_searching`]). If it was the last
//!    searcher it wakes another worker (rule 1): there may be more work where it found this, and
//!    nobody is looking any more.
//! 4. A worker parks by leaving the counts and joining `sleepers` in one step under the lock
//!    ([`Idle::transition_to_parked`]). If it was the last searcher it then looks at every queue
//!    once more, and applies rule 1 if it sees work.
//! 5. A worker woken from its parker checks that it has left `sleepers` ([`Idle::is_parked`]): only
//!    a rule-1 wake-up takes it off the list. Any other wake-up was spurious and it parks again.
//!
//! ## Why no wake-up is lost
//! Rule 1 after a push, and rule 4 followed by the last searcher's re-check, are both "write, SeqCst,
//! read": the pusher writes a queue and then reads `state`; the last searcher writes `state` and then
//! reads the queues. In the single total order of SeqCst operations one of the two writes comes
//! first, so one of the two reads sees the other's write: either the pusher sees no searcher and
//! wakes a sleeper, or the last searcher sees the work. A worker that parks without searching (rule
//! 2) is covered because at that moment a searcher exists, and the last searcher to stop re-checks
//! (rule 4) or hands over (rule 3). The loom model at the end of this file checks exactly this.

use crate::loom::Mutex;
use crate::loom::atomic::Ordering::SeqCst;
use crate::loom::atomic::{AtomicUsize, fence};

/// Where `num_unparked` starts in the state word; `num_searching` sits below it.
const UNPARKED_SHIFT: usize = 16;
/// Mask of the `num_searching` counter.
const SEARCHING_MASK: usize = (1 << UNPARKED_SHIFT) - 1;
/// One searching worker, as an increment of the state word.
const ONE_SEARCHING: usize = 1;
/// One unparked worker, as an increment of the state word.
const ONE_UNPARKED: usize = 1 << UNPARKED_SHIFT;

/// The most workers the state word can count (`num_searching` must not overflow into
/// `num_unparked`).
pub(crate) const MAX_WORKERS: usize = SEARCHING_MASK;

/// A read of the state word.
#[derive(Clone, Copy, Debug)]
struct Snapshot(usize);

impl Snapshot {
    fn num_searching(self) -> usize {
        self.0 & SEARCHING_MASK
    }

    fn num_unparked(self) -> usize {
        self.0 >> UNPARKED_SHIFT
    }
}

#[derive(Debug)]
pub(crate) struct Idle {
    state: AtomicUsize,
    num_workers: usize,
    sleepers: Mutex<Vec<usize>>,
}

impl Idle {
    /// All workers start unparked and not searching.
    pub(crate) fn new(num_workers: usize) -> Idle {
        assert!((1..=MAX_WORKERS).contains(&num_workers));
        Idle {
            state: AtomicUsize::new(num_workers * ONE_UNPARKED),
            num_workers,
            sleepers: Mutex::new(Vec::with_capacity(num_workers)),
        }
    }

    /// Rule 1: after making work visible, which parked worker (if any) the caller must unpark.
    #[must_use = "the returned worker must be unparked, or its wake-up is lost"]
    pub(crate) fn worker_to_notify(&self) -> Option<usize> {
        // Fast path without the lock: most pushes happen while someone searches or nobody sleeps.
        if !self.notify_should_wake() {
            return None;
        }
        let mut sleepers = self.sleepers.lock().unwrap();
        // Again under the lock, which orders us with every park and every other notifier.
        if !self.notify_should_wake() {
            return None;
        }
        // The woken worker counts as unparked and searching before it even runs, so that the
        // next pusher does not wake a second one for the same work.
        self.state.fetch_add(ONE_SEARCHING | ONE_UNPARKED, SeqCst);
        let worker = sleepers.pop();
        debug_assert!(
            worker.is_some(),
            "num_unparked < num_workers implies a sleeper"
        );
        worker
    }

    fn notify_should_wake(&self) -> bool {
        // The pusher's half of "write, SeqCst, read": its queue write must be ordered before this
        // read of the counters (see the module doc).
        fence(SeqCst);
        let state = Snapshot(self.state.load(SeqCst));
        state.num_searching() == 0 && state.num_unparked() < self.num_workers
    }

    /// Rule 2: whether the calling worker may start searching (if so, it is now counted).
    #[must_use = "a worker that was allowed to search is counted as searching and must end it"]
    pub(crate) fn try_begin_searching(&self) -> bool {
        let state = Snapshot(self.state.load(SeqCst));
        if 2 * state.num_searching() >= self.num_workers {
            return false;
        }
        // Not a CAS: two workers may both pass the check and exceed half by one. That costs a
        // little spinning, never correctness.
        self.state.fetch_add(ONE_SEARCHING, SeqCst);
        true
    }

    /// Rule 3: the calling worker found work and stops searching. Returns whether it was the last
    /// searcher, in which case the caller must apply rule 1.
    #[must_use = "the last searcher must hand over by notifying another worker"]
    pub(crate) fn end_searching(&self) -> bool {
        let previous = Snapshot(self.state.fetch_sub(ONE_SEARCHING, SeqCst));
        debug_assert!(previous.num_searching() > 0);
        previous.num_searching() == 1
    }

    /// Rule 4: the calling worker goes to sleep. Returns whether it was the last searcher, in
    /// which case the caller must look at every queue once more.
    #[must_use = "the last searcher must re-check every queue before sleeping"]
    pub(crate) fn transition_to_parked(&self, worker: usize, is_searching: bool) -> bool {
        let mut sleepers = self.sleepers.lock().unwrap();
        let decrement = ONE_UNPARKED + if is_searching { ONE_SEARCHING } else { 0 };
        let previous = Snapshot(self.state.fetch_sub(decrement, SeqCst));
        sleepers.push(worker);
        is_searching && previous.num_searching() == 1
    }

    /// Rule 5: whether `worker` is still listed as asleep (its wake-up was not a rule-1 one).
    pub(crate) fn is_parked(&self, worker: usize) -> bool {
        self.sleepers.lock().unwrap().contains(&worker)
    }

    /// For a thread that drives a current-thread scheduler and was woken by its own `block_on`
    /// future rather than by rule 1: it leaves `sleepers` by itself and counts as unparked again.
    /// Returns whether rule 1 had already taken it off the list (then it also counts as searching).
    #[must_use = "a worker woken by rule 1 is counted as searching and must end it"]
    pub(crate) fn leave_parked(&self, worker: usize) -> bool {
        let mut sleepers = self.sleepers.lock().unwrap();
        match sleepers.iter().position(|&w| w == worker) {
            Some(position) => {
                sleepers.swap_remove(position);
                self.state.fetch_add(ONE_UNPARKED, SeqCst);
                false
            }
            None => true,
        }
    }

    /// How many workers are searching now (stale as soon as read: a hint, never a guarantee).
    pub(crate) fn num_searching(&self) -> usize {
        Snapshot(self.state.load(SeqCst)).num_searching()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn searchers_are_capped_at_half() {
        let idle = Idle::new(4);
        assert!(idle.try_begin_searching());
        assert!(idle.try_begin_searching());
        assert!(
            !idle.try_begin_searching(),
            "a third searcher of four is one too many"
        );
        assert!(!idle.end_searching());
        assert!(
            idle.end_searching(),
            "the second to stop was the last searcher"
        );
        assert_eq!(idle.num_searching(), 0);
    }

    #[test]
    fn notify_wakes_one_sleeper_only_while_nobody_searches() {
        let idle = Idle::new(2);
        assert!(!idle.transition_to_parked(0, false));
        assert!(!idle.transition_to_parked(1, false));
        let first = idle.worker_to_notify();
        assert!(first.is_some());
        assert_eq!(
            idle.worker_to_notify(),
            None,
            "the woken worker searches, so a second push wakes nobody"
        );
        assert!(!idle.is_parked(first.unwrap()));
        assert!(idle.end_searching());
        assert!(idle.worker_to_notify().is_some());
        assert_eq!(idle.worker_to_notify(), None, "nobody left asleep");
    }

    #[test]
    fn last_searcher_is_told_to_recheck() {
        let idle = Idle::new(2);
        assert!(idle.try_begin_searching());
        assert!(!idle.transition_to_parked(1, false));
        assert!(idle.transition_to_parked(0, true));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! The worker loop of `scheduler::worker`, reduced to the idle protocol: one shared queue
    //! stands for every queue a worker can see (local queues are stealable, so "visible work" is
    //! the same notion), and running a task is taking an item.
    use super::Idle;
    use crate::loom::atomic::AtomicBool;
    use crate::loom::atomic::Ordering::SeqCst;
    use crate::loom::{Arc, Condvar, Mutex};
    use crate::scheduler::park::Parker;

    struct Model {
        idle: Idle,
        parkers: Vec<Parker>,
        queue: Mutex<usize>,
        done: Mutex<usize>,
        all_done: Condvar,
        shutdown: AtomicBool,
    }

    impl Model {
        fn notify(&self) {
            if let Some(worker) = self.idle.worker_to_notify() {
                self.parkers[worker].unpark();
            }
        }

        fn push(&self) {
            *self.queue.lock().unwrap() += 1;
            self.notify();
        }

        fn pop(&self) -> bool {
            let mut queue = self.queue.lock().unwrap();
            if *queue == 0 {
                return false;
            }
            *queue -= 1;
            true
        }

        fn run_item(&self) {
            *self.done.lock().unwrap() += 1;
            self.all_done.notify_all();
        }

        fn worker(&self, index: usize) {
            let mut searching = false;
            while !self.shutdown.load(SeqCst) {
                // next_task: own queues and the injector.
                if self.pop() {
                    self.found_work(&mut searching);
                    continue;
                }
                // steal_work: only as a searcher (rule 2).
                if !searching && self.idle.try_begin_searching() {
                    searching = true;
                }
                if searching && self.pop() {
                    self.found_work(&mut searching);
                    continue;
                }
                // park (rule 4, then 5).
                if self.idle.transition_to_parked(index, searching)
                    && *self.queue.lock().unwrap() > 0
                {
                    self.notify();
                }
                searching = false;
                loop {
                    self.parkers[index].park();
                    if self.shutdown.load(SeqCst) {
                        return;
                    }
                    if !self.idle.is_parked(index) {
                        searching = true;
                        break;
                    }
                }
            }
        }

        fn found_work(&self, searching: &mut bool) {
            if std::mem::take(searching) && self.idle.end_searching() {
                self.notify(); // rule 3
            }
            self.run_item();
        }
    }

    /// Two workers and an outside pusher: every pushed item gets run, whatever the interleaving.
    /// A lost wake-up leaves both workers parked and the main thread waiting forever, which loom
    /// reports as a deadlock.
    #[test]
    fn no_lost_wakeup_two_workers_outside_pusher() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            const ITEMS: usize = 2;
            let model = Arc::new(Model {
                idle: Idle::new(2),
                parkers: vec![Parker::new(), Parker::new()],
                queue: Mutex::new(0),
                done: Mutex::new(0),
                all_done: Condvar::new(),
                shutdown: AtomicBool::new(false),
            });
            let workers: Vec<_> = (0..2)
                .map(|index| {
                    let model = model.clone();
                    loom::thread::spawn(move || model.worker(index))
                })
                .collect();
            for _ in 0..ITEMS {
                model.push();
            }
            let mut done = model.done.lock().unwrap();
            while *done < ITEMS {
                done = model.all_done.wait(done).unwrap();
            }
            drop(done);
            model.shutdown.store(true, SeqCst);
            for parker in &model.parkers {
                parker.unpark();
            }
            for worker in workers {
                worker.join().unwrap();
            }
        });
    }
}
