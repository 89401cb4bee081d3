//! A worker: the queues it owns (`Core`) and the loop that runs their tasks. The rules are in the
//! `scheduler` and `idle` module docs; comments here point at them.
//!
//! ## Who touches what
//! - `Core` belongs to the thread that runs the loop; owning the `Box<Core>` is the permission to
//!   run this worker's tasks. While the loop runs, the core sits in a `WorkerContext` on that
//!   thread's stack, reachable through the thread-local `CURRENT`, so that a task waking another
//!   task on the same thread can push into the LIFO slot. The core is borrowed only for queue
//!   operations, never across a poll, so such a push always finds it free.
//! - Other threads reach a worker only through its `Remote` (stealer, pinned inbox, parker).
//!
//! ## The worker loop runs on a generator
//! A multi-thread worker's thread body ([`run`]) is a small dispatcher on the thread's own stack.
//! It runs the worker loop on a *worker generator* from the stack pool, so that polling a task
//! (None mode) is a plain call. When a poll on it is switched out (`coroutine` module doc), the
//! generator suspends back to the dispatcher, which parks it in this worker's pinned queue as
//! [`Work::Switched`] and starts the loop again on a fresh generator. The loop later resumes the
//! switched generator from the pinned queue, nested inside its own; when the interrupted poll
//! ends, the old loop frames under it see that their generator is detached and return at once,
//! so the generator finishes and its stack goes back to the pool.
//!
//! ## After a preemption
//! The loop learns of a preemption where the preempted poll's generator suspends: the
//! dispatcher, a resumed switched generator that is switched out again, or a Poll-mode task's
//! own generator ([`poll_switched_out`]). There it takes the slot's flag (set by the signal
//! handler) and makes the drivers due, so that at its next iteration (after the LIFO chain in
//! progress, if the switched poll was a Poll-mode task's: up to three more polls) the loop
//! spreads started work (below) and looks at the drivers (when every poll is long, timers must
//! not wait 61 of them). So the loop itself pays nothing per iteration for it: the maintenance
//! countdown it tests anyway carries the news.
//!
//! ## The pinned queue
//! `Core::pinned` holds what must run on this thread: switched worker generators (pushed by the
//! dispatcher) and tasks whose own generator is suspended half-way (pushed by [`schedule`] when
//! the wake-up happens on this thread). Wake-ups of such tasks on other threads go to
//! `Remote::pinned_inbox` and unpark this worker. Neither is ever stolen from. They are looked at
//! after the injector (a preempted task waits behind newly woken ones), first every
//! [`PINNED_INTERVAL`] polls but for a LIFO chain that may go first (so that a worker whose
//! queues never empty still resumes them), and before stealing or parking. Their turn has its
//! own countdown, not `global_queue_interval`'s: with that set to 1 (tokio's "always look at
//! the injector first"), preempted hogs took every turn and the local queue starved.
//!
//! ## Spreading started work
//! A preempted poll resumes on its own thread, so a task is pinned to the worker that first
//! polled it as soon as it is preempted: stealing spreads only tasks not yet started. A worker
//! that keeps being preempted would start the tasks waiting in its local queue (or the
//! injector) one a quantum and keep them all, while another worker sleeps or times fewer hogs.
//! A worker's load is the number of polls it has started and not finished: its preempted polls
//! waiting to resume, plus the one it runs (both kept in its `WorkerSlot` for the monitor;
//! read here only after a preemption). After a preemption:
//! 1. If tasks wait to be started here (local queue or injector), it wakes an idle worker to
//!    steal them (idle rule 1). While a worker searches (that one, or another on its way), its
//!    next turn resumes a preempted poll instead of starting one, so the searcher finds them
//!    unstarted (searching ends as soon as the searcher steals or parks). While only a lighter
//!    worker (smaller load) is about, it does the same up to [`MAX_STARTS_PUT_OFF`] preemptions
//!    in a row: the lighter worker is meanwhile preempted and steals (2), and tasks here wait
//!    no more than that many quanta for want of a thief. (Once would do if every worker were
//!    preempted once a quantum; but a fresh poll's first preemption comes from the monitor,
//!    later when it is calm, and a worker's thread may be off its core for milliseconds.)
//! 2. If no task waits here, it steals half of the local queue of a heavier worker.
//!
//! A task in the LIFO slot is not held back (it goes first anyway). Four hogs spawned onto two
//! workers that were idle ended three and one (or four and none) in 5–6 of 40 runs at 1 ms and
//! 10–15 of 40 at 100 µs without this, and 0 and 1–3 with (BENCHMARKS.md, "How hogs spread").

use std::cell::{Cell, RefCell, RefMut};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use corosensei::CoroutineResult;

use super::{
    DEFERRED_INTERVAL, LOCAL_QUEUE_CAPACITY, MAINTENANCE_INTERVAL, MAX_LIFO_POLLS, PINNED_INTERVAL,
    Shared,
};
use crate::coroutine::stack::StackPool;
use crate::coroutine::{self, Exit, Generator, Header, Kind, Resume, Suspend};
use crate::preempt::{NoPreemptGuard, Preemption, Spotter, WorkerSlot};
use crate::runtime::context::{self, TaskRef};
use crate::task::{Runnable, TaskKind};

/// How many preemptions in a row may put off starting a task for a lighter worker ("Spreading
/// started work", rule 1).
const MAX_STARTS_PUT_OFF: u32 = 4;

/// What a worker runs next. Two words, so that it is passed in registers: the hot path moves
/// one per poll, and the rare switched case is boxed.
#[derive(Debug)]
pub(crate) enum Work {
    /// Poll a task (or finish the suspended poll of a task on its own generator).
    Task(Runnable),
    /// Finish the poll a worker generator was switched out of.
    Switched(Box<Switched>),
}

/// A worker generator switched out of a poll, and the task whose poll it is.
#[derive(Debug)]
pub(crate) struct Switched {
    generator: Generator,
    task: TaskRef,
}

// SAFETY: a `Switched` never leaves its worker's thread (it lives only in that worker's
// `Core::pinned`, and a multi-thread core never moves to another thread); `TaskRef` is a pointer
// to a `Sync` `TaskMeta`.
unsafe impl Send for Switched {}

/// The queues of one worker and its bookkeeping.
#[derive(Debug)]
pub(crate) struct Core {
    index: usize,
    local: st3::fifo::Worker<Runnable>,
    lifo_slot: Option<Runnable>,
    /// What must run on this thread (module doc, "The pinned queue").
    pinned: VecDeque<Work>,
    /// Tasks that yielded (rule 2 of "where a scheduled task goes"), not yet back in the local
    /// queue. Not stealable until they are.
    deferred: Vec<Runnable>,
    /// Polls left before the injector must come first (counts down to 0, then is reset).
    /// A countdown rather than `tick % interval`, so that no path that polls several tasks
    /// between two looks (the LIFO loop) can step over the due point.
    until_global_check: u32,
    /// Polls left before the pinned queue must come first (as above; module doc, "The pinned
    /// queue").
    until_pinned_turn: u32,
    /// Whether the LIFO slot has already put off the turn that is due (`next_work`).
    turn_put_off: bool,
    /// How many preemptions in a row put off starting a task for a lighter worker ("Spreading
    /// started work", rule 1: at most [`MAX_STARTS_PUT_OFF`]).
    starts_put_off: u32,
    /// Polls left before the deferred tasks must go back to the local queue (as above).
    until_deferred_flush: u32,
    /// Polls left before the next look at the drivers (as above).
    until_maintenance: u32,
    /// Whether a poll was preempted since the last maintenance ("After a preemption").
    preempted: bool,
    /// Whether this worker is counted in the idle protocol's `num_searching`.
    is_searching: bool,
    /// Whether a wake-up on this thread may use the LIFO slot (off while a current-thread
    /// `block_on` polls its own future).
    lifo_enabled: bool,
    rng: FastRand,
}

impl Core {
    pub(super) fn new(index: usize) -> Box<Core> {
        Box::new(Core {
            index,
            local: st3::fifo::Worker::new(LOCAL_QUEUE_CAPACITY),
            lifo_slot: None,
            pinned: VecDeque::new(),
            deferred: Vec::new(),
            until_global_check: 0,
            until_pinned_turn: PINNED_INTERVAL,
            turn_put_off: false,
            starts_put_off: 0,
            until_deferred_flush: DEFERRED_INTERVAL,
            until_maintenance: MAINTENANCE_INTERVAL,
            preempted: false,
            is_searching: false,
            lifo_enabled: true,
            rng: FastRand::new(index as u64),
        })
    }

    pub(super) fn stealer(&self) -> st3::fifo::Stealer<Runnable> {
        self.local.stealer()
    }

    /// "Which task a worker runs next", up to (not including) stealing. Inlined: it runs once
    /// per poll (callgrind, yield_many: 1.5% fewer instructions in all than out of line).
    #[inline(always)]
    fn next_work(&mut self, shared: &Shared) -> Option<Work> {
        self.count_poll();
        if self.until_deferred_flush == 0 {
            self.until_deferred_flush = DEFERRED_INTERVAL;
            self.flush_deferred(shared);
        }
        // The LIFO slot first, even when a turn below is due: it holds the task the last poll
        // or the drivers just woke, which must not wait behind a whole poll of another (a
        // preempted hog's resumption runs a quantum). But it puts a due turn off once only:
        // the drivers refill the slot after every preemption, and a turn that waited for an
        // empty slot could wait for ever (long timer-woken tasks starved the injector).
        let turn_due = self.until_global_check == 0 || self.until_pinned_turn == 0;
        if !(turn_due && self.turn_put_off)
            && let Some(task) = self.lifo_slot.take()
        {
            self.turn_put_off = turn_due;
            return Some(Work::Task(task));
        }
        self.turn_put_off = false;
        if self.until_global_check == 0 {
            self.until_global_check = shared.global_queue_interval;
            if let Some(task) = self.pop_injector_batch(shared) {
                return Some(Work::Task(task));
            }
        }
        if self.until_pinned_turn == 0 {
            self.until_pinned_turn = PINNED_INTERVAL;
            if let Some(work) = self.pop_pinned(shared) {
                return Some(work);
            }
        }
        self.lifo_slot
            .take()
            .or_else(|| self.local.pop())
            .or_else(|| self.pop_injector_batch(shared))
            .map(Work::Task)
            .or_else(|| self.pop_pinned(shared))
    }

    fn pop_pinned(&mut self, shared: &Shared) -> Option<Work> {
        if let Some(work) = self.pinned.pop_front() {
            return Some(work);
        }
        // `is_empty` first: it is two loads, where a `steal` of an empty injector also fences.
        let remote = &shared.remotes[self.index];
        if remote.has_pinned_inbox_work() {
            remote.pop_pinned_inbox().map(Work::Task)
        } else {
            None
        }
    }

    /// Counts one poll against both intervals.
    fn count_poll(&mut self) {
        self.until_global_check = self.until_global_check.saturating_sub(1);
        self.until_pinned_turn = self.until_pinned_turn.saturating_sub(1);
        self.until_deferred_flush = self.until_deferred_flush.saturating_sub(1);
        self.until_maintenance = self.until_maintenance.saturating_sub(1);
    }

    /// Whether the drivers are due for a look (and if so, the countdown restarts).
    fn maintenance_due(&mut self) -> bool {
        if self.until_maintenance > 0 {
            return false;
        }
        self.until_maintenance = MAINTENANCE_INTERVAL;
        true
    }

    /// One task from the injector to run now, plus a fair share of the rest moved into the
    /// local queue so that the next polls need not touch the shared queue.
    fn pop_injector_batch(&mut self, shared: &Shared) -> Option<Runnable> {
        if shared.injector.is_empty() {
            return None;
        }
        let first = shared.pop_injector()?;
        let share = (shared.injector.len() / shared.remotes.len())
            .min(self.local.spare_capacity() / 2)
            .min(LOCAL_QUEUE_CAPACITY / 2);
        for _ in 0..share {
            let Some(task) = shared.pop_injector() else {
                break;
            };
            if let Err(task) = self.local.push(task) {
                // Cannot happen (we checked the spare capacity), but never lose a task.
                shared.injector.push(task);
                break;
            }
        }
        Some(first)
    }

    /// The yielded tasks, once nothing else is runnable here: back into the local queue (where
    /// idle workers may now steal them), and the first of them to run. The drivers are looked at
    /// after that one (as tokio does when only yielded tasks are left): when every poll is long
    /// and preemption is off, timers would otherwise wait 61 of them.
    fn next_deferred(&mut self, shared: &Shared) -> Option<Runnable> {
        if self.deferred.is_empty() {
            return None;
        }
        self.flush_deferred(shared);
        self.until_maintenance = 0;
        self.local.pop()
    }

    fn flush_deferred(&mut self, shared: &Shared) {
        if self.deferred.is_empty() {
            return;
        }
        let mut deferred = std::mem::take(&mut self.deferred);
        for task in deferred.drain(..) {
            self.push_back(shared, task);
        }
        self.deferred = deferred; // keep the allocation
        shared.notify_parked();
    }

    /// Steals as a searcher (idle rule 2): half of another worker's local queue, else the
    /// injector.
    fn steal_work(&mut self, shared: &Shared) -> Option<Runnable> {
        if !self.is_searching {
            if !shared.idle.try_begin_searching() {
                return None;
            }
            self.is_searching = true;
        }
        let workers = shared.remotes.len();
        let start = self.rng.below(workers);
        for offset in 0..workers {
            let victim = (start + offset) % workers;
            if victim == self.index {
                continue;
            }
            if let Some(task) = self.steal_from(shared, victim) {
                return Some(task);
            }
        }
        self.pop_injector_batch(shared)
    }

    /// Rule 2 of "Spreading started work": half of `victim`'s local queue into ours, to be
    /// started next.
    fn steal_into_local(&mut self, shared: &Shared, victim: usize) {
        loop {
            match shared.remotes[victim]
                .stealer
                .steal(&self.local, |available| available - available / 2)
            {
                Ok(_) | Err(st3::StealError::Empty) => return,
                Err(st3::StealError::Busy) => std::hint::spin_loop(),
            }
        }
    }

    fn steal_from(&mut self, shared: &Shared, victim: usize) -> Option<Runnable> {
        loop {
            match shared.remotes[victim]
                .stealer
                .steal_and_pop(&self.local, |available| available - available / 2)
            {
                Ok((task, _moved)) => return Some(task),
                Err(st3::StealError::Empty) => return None,
                // Another thief is mid-steal on this queue; it finishes in a few instructions.
                Err(st3::StealError::Busy) => std::hint::spin_loop(),
            }
        }
    }

    /// The last searcher's look before sleeping (idle rule 4): whether any queue has work. Work
    /// found in another worker's local queue is stolen into ours, where whoever is woken finds it.
    fn work_is_visible(&mut self, shared: &Shared) -> bool {
        if !shared.injector.is_empty() {
            return true;
        }
        (0..shared.remotes.len())
            .filter(|&victim| victim != self.index)
            .any(|victim| {
                matches!(
                    shared.remotes[victim]
                        .stealer
                        .steal(&self.local, |n| n - n / 2),
                    Ok(_) | Err(st3::StealError::Busy)
                )
            })
    }

    /// Rules 1 and 2 of "where a scheduled task goes".
    fn schedule_local(&mut self, shared: &Shared, task: Runnable, yielded: bool) {
        if yielded {
            self.deferred.push(task);
            return;
        }
        if !self.lifo_enabled {
            self.push_back(shared, task);
            shared.notify_parked();
            return;
        }
        if let Some(task) = self.lifo_slot.replace(task) {
            self.push_back(shared, task);
            shared.notify_parked();
        }
    }

    /// The back of the local queue; when it is full, half of it and `task` go to the injector.
    fn push_back(&mut self, shared: &Shared, task: Runnable) {
        let Err(task) = self.local.push(task) else {
            return;
        };
        if let Ok(half) = self.local.drain(|available| available / 2) {
            for moved in half {
                shared.injector.push(moved);
            }
        }
        shared.injector.push(task);
    }

    /// Idle rule 3, when a searcher gets a task.
    fn end_searching(&mut self, shared: &Shared) {
        if std::mem::take(&mut self.is_searching) && shared.idle.end_searching() {
            shared.notify_parked();
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // Shutdown: the tasks still queued here are dropped (their futures with them).
        drop(self.lifo_slot.take());
        drop(std::mem::take(&mut self.deferred));
        // Switched generators were finished or abandoned by `finish_pinned` before the core is
        // dropped; tasks left here are dropped (a suspended poll of theirs is abandoned).
        for work in std::mem::take(&mut self.pinned) {
            match work {
                Work::Task(task) => drop(task),
                Work::Switched(switched) => shared_abandon(*switched),
            }
        }
        while let Some(task) = self.local.pop() {
            drop(task);
        }
    }
}

/// Gives up on a switched generator (only when the core is dropped with one still queued, which
/// `finish_pinned` prevents; kept so that no path can drop a suspended generator).
fn shared_abandon(switched: Switched) {
    // SAFETY: the suspended poll's caller (async-task's `run`, on the generator) holds a
    // reference to the task, and the abandoned generator is never freed.
    let meta = unsafe { switched.task.as_ref() };
    meta.scheduler.abandon_switched(switched.generator, meta);
}

/// A worker's state on its own thread.
struct WorkerContext {
    shared: Arc<Shared>,
    core: RefCell<Option<Box<Core>>>,
    /// Free stacks for this worker's generators (never borrowed across a resume).
    stacks: RefCell<StackPool>,
    /// This worker's preemption slot, or null when preemption is off. Points into
    /// `shared.preemption`, which lives as long as `shared`.
    slot: *const WorkerSlot,
    /// This worker's looks at the others' polls for a calm preemption monitor.
    spotter: RefCell<Spotter>,
}

thread_local! {
    /// The worker context of the loop running on this thread, or null.
    static CURRENT: Cell<*const WorkerContext> = const { Cell::new(ptr::null()) };
}

/// Points `CURRENT` at a context for as long as the guard lives.
struct CurrentGuard {
    previous: *const WorkerContext,
}

impl CurrentGuard {
    fn enter(cx: &WorkerContext) -> CurrentGuard {
        CurrentGuard {
            previous: CURRENT.replace(cx),
        }
    }
}

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        CURRENT.set(self.previous);
    }
}

/// Runs `f` with the worker context of this thread, if there is one.
fn with_current<R>(f: impl FnOnce(Option<&WorkerContext>) -> R) -> R {
    let cx = CURRENT.get();
    // SAFETY: `CURRENT` is non-null only while a `CurrentGuard` lives, and the guard is created
    // after, and dropped before, the `WorkerContext` it points to, which lives on this thread's
    // stack; a thread-local is only read by its own thread.
    f(unsafe { cx.as_ref() })
}

/// The scheduler whose worker loop runs on this thread, if any.
pub(super) fn current_shared() -> Option<*const Shared> {
    with_current(|cx| cx.map(|cx| Arc::as_ptr(&cx.shared)))
}

impl WorkerContext {
    fn slot(&self) -> Option<&WorkerSlot> {
        // SAFETY: null, or a slot of `self.shared.preemption`, which `self.shared` keeps alive.
        unsafe { self.slot.as_ref() }
    }

    fn core(&self) -> RefMut<'_, Box<Core>> {
        RefMut::map(self.core.borrow_mut(), |core| {
            core.as_mut()
                .expect("maniac: worker loop running without its core")
        })
    }

    fn find_work(&self) -> Option<Work> {
        let mut core = self.core();
        core.next_work(&self.shared).or_else(|| {
            core.steal_work(&self.shared)
                .or_else(|| core.next_deferred(&self.shared))
                .map(Work::Task)
        })
    }

    /// "After a preemption" (module doc): a poll of this worker was switched out; if a
    /// preemption did it, the loop's next iteration spreads started work and maintains.
    fn note_switched_out(&self) {
        if self.slot().is_some_and(WorkerSlot::take_preempted) {
            let mut core = self.core();
            core.preempted = true;
            core.until_maintenance = 0;
        }
    }

    /// "Spreading started work" (module doc), after a preemption.
    fn spread_started_work(&self, preemption: &Preemption) {
        let shared = &*self.shared;
        let mut core = self.core();
        let me = core.index;
        // Nothing of ours runs now: the poll just preempted waits with the others.
        let load = preemption.slot(me).preempted_waiting();
        let others = || {
            (0..shared.remotes.len())
                .filter(move |&other| other != me)
                .map(|other| {
                    let slot = preemption.slot(other);
                    (
                        other,
                        slot.preempted_waiting() + u64::from(slot.running_poll().is_some()),
                    )
                })
        };
        if !core.local.is_empty() || !shared.injector.is_empty() {
            shared.notify_parked();
            let searched = shared.idle.num_searching() > 0;
            let lighter = core.starts_put_off < MAX_STARTS_PUT_OFF
                && others().any(|(_, theirs)| theirs < load);
            core.starts_put_off = if searched || !lighter {
                0
            } else {
                core.starts_put_off + 1
            };
            if searched || lighter {
                core.until_pinned_turn = 0;
            }
        } else if let Some((heavier, _)) = others()
            .filter(|&(_, theirs)| theirs > load)
            .max_by_key(|&(_, theirs)| theirs)
        {
            core.steal_into_local(shared, heavier);
        }
    }

    /// The worker loop (module doc), on the worker generator `generator` (`None`: on the
    /// thread's own stack). Returns `Detached` if that generator was taken over by a switched
    /// poll, as soon as that poll ends.
    fn worker_loop(&self, generator: Option<&Header>) -> Exit {
        while !self.shared.is_shutdown() {
            debug_assert!(
                !generator.is_some_and(Header::is_detached),
                "maniac: a worker loop went on on a generator a switched poll had taken over"
            );
            // No borrow of the core across the drivers' wake-ups, which schedule onto it.
            let maintenance_due = self.core().maintenance_due();
            if maintenance_due {
                let preempted = std::mem::take(&mut self.core().preempted);
                if preempted && let Some(preemption) = &self.shared.preemption {
                    self.spread_started_work(preemption);
                }
                self.maintain();
            }
            match self.find_work() {
                Some(Work::Task(task)) => {
                    if self.run_task(task, generator) {
                        return Exit::Detached;
                    }
                }
                Some(Work::Switched(switched)) => self.resume_switched(switched),
                None => self.park(),
            }
        }
        Exit::Stopped
    }

    /// The drivers' maintenance (`Shared::maintain`), with the spotting for a calm preemption
    /// monitor around it (`preempt::monitor` rule 7). No borrow of the core across it: the
    /// drivers' wake-ups schedule onto it, and with the core borrowed they would all go to the
    /// injector.
    fn maintain(&self) {
        let maintain = || {
            debug_assert!(
                self.core.try_borrow_mut().is_ok(),
                "maniac: the core is borrowed across the maintenance"
            );
            self.shared.maintain()
        };
        match &self.shared.preemption {
            Some(preemption) => {
                let index = self.core().index;
                preemption.maintain_and_spot(index, &mut self.spotter.borrow_mut(), maintain);
            }
            None => drop(maintain()),
        }
    }

    /// Polls `task`, then the tasks it puts in the LIFO slot (at most `MAX_LIFO_POLLS` in a row).
    /// Returns `true` if a poll was switched out and has now ended on a detached generator: the
    /// loop frames on it must return without touching the worker's queues again.
    fn run_task(&self, task: Runnable, generator: Option<&Header>) -> bool {
        self.core().end_searching(&self.shared);
        let mut task = task;
        let mut lifo_polls = 0;
        loop {
            // No borrow of the core is held here: the poll may schedule onto it.
            debug_assert!(
                !generator.is_some_and(Header::is_detached),
                "maniac: a poll started on a generator a switched poll had taken over"
            );
            self.poll(task);
            if generator.is_some_and(Header::is_detached) {
                return true;
            }
            let mut core = self.core();
            let Some(next) = core.lifo_slot.take() else {
                return false;
            };
            if lifo_polls == MAX_LIFO_POLLS {
                core.push_back(&self.shared, next);
                self.shared.notify_parked();
                return false;
            }
            lifo_polls += 1;
            core.count_poll();
            task = next;
        }
    }

    /// Runs one poll of `task`, marked in the preemption slot so that the monitor sees it
    /// (`preempt::slot` module doc).
    fn poll(&self, task: Runnable) {
        let slot = self.slot();
        if let Some(slot) = slot {
            slot.begin_poll();
        }
        task.run();
        if let Some(slot) = slot {
            slot.end_poll();
        }
    }

    /// Finishes (as far as it goes now) the poll a worker generator was switched out of.
    fn resume_switched(&self, mut switched: Box<Switched>) {
        let slot = self.slot();
        if let Some(slot) = slot {
            slot.begin_poll();
        }
        let resumed = switched.generator.resume(Resume::Continue);
        if let Some(slot) = slot {
            slot.end_poll();
        }
        match resumed {
            // The interrupted poll ended and the loop frames under it returned.
            CoroutineResult::Return(Exit::Detached) => {
                let stack = switched.generator.into_stack();
                self.stacks.borrow_mut().give_back(stack);
            }
            // Switched again before the poll ended: back in line.
            CoroutineResult::Yield(Suspend::Switched) => {
                self.core().pinned.push_back(Work::Switched(switched));
                self.note_switched_out();
            }
            other => unreachable!("maniac: a switched generator resumed into {other:?}"),
        }
    }

    /// Idle rules 4 and 5 for a multi-thread worker. Work for this worker's pinned inbox also
    /// ends the sleep (the pusher unparks this worker directly).
    fn park(&self) {
        let shared = &self.shared;
        let index = {
            let mut core = self.core();
            let was_searching = std::mem::take(&mut core.is_searching);
            if shared.idle.transition_to_parked(core.index, was_searching)
                && core.work_is_visible(shared)
            {
                shared.notify_parked();
            }
            core.index
        };
        let remote = &shared.remotes[index];
        if let Some(slot) = self.slot() {
            slot.set_parked(true);
        }
        // The monitor may sleep while every worker is parked; it must hear that this one is not.
        struct Unparked<'a>(&'a WorkerContext, usize);
        impl Drop for Unparked<'_> {
            fn drop(&mut self) {
                if let Some(preemption) = &self.0.shared.preemption {
                    preemption.worker_unparked(self.1);
                }
            }
        }
        let _unparked = Unparked(self, index);
        loop {
            if remote.has_pinned_inbox_work() {
                self.core().is_searching = shared.idle.leave_parked(index);
                return;
            }
            let drove = shared.sleep(index);
            if shared.is_shutdown() {
                return;
            }
            if !shared.idle.is_parked(index) {
                // Woken by rule 1, which counted us as searching.
                self.core().is_searching = true;
                return;
            }
            if drove {
                // A timer or an I/O event may have woken tasks (onto this worker's queues, or
                // the injector): go and look, as a worker that left the sleepers by itself.
                self.core().is_searching = shared.idle.leave_parked(index);
                return;
            }
        }
    }

    /// The worker generator loop on this thread (module doc): returns at shutdown.
    fn run_on_generators(&self) {
        loop {
            // Bound first: the borrow must end before the fallback below runs the loop.
            let taken = self.stacks.borrow_mut().take();
            let stack = match taken {
                Ok(stack) => stack,
                Err(error) => {
                    eprintln!(
                        "maniac: cannot map a stack for the worker generator ({error}); this \
                         worker runs its loop on its thread's stack, where polls cannot be \
                         switched out"
                    );
                    self.worker_loop(None);
                    return;
                }
            };
            let cx: *const WorkerContext = self;
            let mut generator = Generator::new(Kind::Worker, stack, true, move |header| {
                // SAFETY: the context lives on this thread's stack for the whole of `run`, which
                // outlives every generator it makes (they are finished, or leaked by
                // abandonment, before `run` returns).
                let cx = unsafe { &*cx };
                cx.worker_loop(Some(header))
            });
            match generator.resume(Resume::Start) {
                CoroutineResult::Yield(Suspend::Switched) => {
                    // The interrupted poll no longer runs (`preempt::slot` module doc).
                    if let Some(slot) = self.slot() {
                        slot.end_poll();
                    }
                    let task = generator
                        .suspended_task()
                        .expect("maniac: a poll was switched out without a current task");
                    let switched = Box::new(Switched { generator, task });
                    self.core().pinned.push_back(Work::Switched(switched));
                    self.note_switched_out();
                }
                CoroutineResult::Return(Exit::Stopped) => {
                    self.stacks.borrow_mut().give_back(generator.into_stack());
                    return;
                }
                other => unreachable!("maniac: the worker generator stopped with {other:?}"),
            }
        }
    }

    /// Shutdown: finishes the polls suspended half-way on this worker, up to the shutdown
    /// deadline, and abandons what is still suspended after it (`coroutine` module doc).
    fn finish_pinned(&self) {
        let deadline = self.shared.shutdown_deadline();
        loop {
            let next = {
                let mut core = self.core();
                let shared = &self.shared;
                core.pop_pinned(shared)
            };
            let Some(work) = next else {
                return;
            };
            let overdue = deadline.is_some_and(|deadline| Instant::now() >= deadline);
            match work {
                Work::Switched(switched) if overdue => shared_abandon(*switched),
                Work::Switched(switched) => self.resume_switched(switched),
                // Dropping it abandons its suspended poll.
                Work::Task(task) if overdue => drop(task),
                Work::Task(task) => self.poll(task),
            }
        }
    }

    /// Runs `f` with what it schedules on this core going to the back of the local queue (the
    /// LIFO slot is enabled again even if `f` panics).
    fn without_lifo<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Enable<'a>(&'a WorkerContext);
        impl Drop for Enable<'_> {
            fn drop(&mut self) {
                // Not `core()`: a panic here, while unwinding, would abort.
                if let Ok(mut core) = self.0.core.try_borrow_mut()
                    && let Some(core) = core.as_mut()
                {
                    core.lifo_enabled = true;
                }
            }
        }
        self.core().lifo_enabled = false;
        let _enable = Enable(self);
        f()
    }

    /// Idle rules 4 and 5 for the current-thread driver, which may also be woken by its own
    /// `block_on` future. It always parks as the last searcher, so it always re-checks: with
    /// one worker there is no other searcher to cover for it.
    fn park_current_thread(&self) {
        let shared = &self.shared;
        {
            let mut core = self.core();
            let is_searching = core.is_searching || shared.idle.try_begin_searching();
            core.is_searching = false;
            if shared.idle.transition_to_parked(core.index, is_searching)
                && core.work_is_visible(shared)
            {
                shared.notify_parked();
            }
        }
        shared.sleep(0);
        let notified = shared.idle.leave_parked(0);
        self.core().is_searching = notified;
    }
}

/// Rules 1–3 of "where a scheduled task goes", for a task that is not a blocking one, and the
/// pinned queue for a task whose poll is suspended half-way on a worker.
pub(super) fn schedule(task: Runnable, yielded: bool) {
    // Reached from polls (wake-ups, spawns): the core's `RefCell`, the queues and the parkers
    // must not be left half-done by a preemption (`preempt` module doc).
    let _hold = NoPreemptGuard::new();
    let scheduler = Arc::as_ptr(&task.metadata().scheduler);
    let affinity = task.metadata().affinity();
    let task = with_current(|cx| {
        let Some(cx) = cx.filter(|cx| ptr::eq(Arc::as_ptr(&cx.shared), scheduler)) else {
            return Some(task);
        };
        // The core is absent while the worker shuts down, and borrowed if a wake-up comes from
        // inside a queue operation (a task dropped there waking another): use the injector then.
        let Ok(mut core) = cx.core.try_borrow_mut() else {
            return Some(task);
        };
        let Some(core) = core.as_mut() else {
            return Some(task);
        };
        match affinity {
            None => core.schedule_local(&cx.shared, task, yielded),
            Some(worker) if worker == core.index => core.pinned.push_back(Work::Task(task)),
            Some(_) => return Some(task),
        }
        None
    });
    if let Some(task) = task {
        // This waker clone holds a reference to the task, and so to the `Arc<Shared>` in its
        // metadata, until we are done: once pushed, the task may run to completion and drop its
        // reference on another worker before `schedule_remote` returns.
        let _keep_alive = task.waker();
        // SAFETY: `scheduler` points into the `Arc` held by the task's metadata, which
        // `_keep_alive` keeps alive for the rest of this function.
        let shared = unsafe { &*scheduler };
        match affinity {
            None => shared.schedule_remote(task),
            Some(worker) => shared.remotes[worker].push_pinned_inbox(task),
        }
    }
}

/// A Poll-mode task's own generator was switched out on this thread, a worker of `shared`
/// ("After a preemption").
pub(crate) fn poll_switched_out(shared: &Shared) {
    let _hold = NoPreemptGuard::new();
    with_current(|cx| {
        if let Some(cx) = cx.filter(|cx| ptr::eq(Arc::as_ptr(&cx.shared), shared)) {
            cx.note_switched_out();
        }
    });
}

/// The index of the worker of `shared` running on this thread, if any.
pub(crate) fn current_worker_index(shared: &Shared) -> Option<usize> {
    let _hold = NoPreemptGuard::new();
    with_current(|cx| {
        let cx = cx.filter(|cx| ptr::eq(Arc::as_ptr(&cx.shared), shared))?;
        cx.core.try_borrow().ok()?.as_ref().map(|core| core.index)
    })
}

/// The schedule function of every task (async-task calls it when a task is woken).
pub(crate) fn schedule_task(task: Runnable, info: async_task::ScheduleInfo) {
    match task.metadata().kind {
        TaskKind::Async => schedule(task, info.woken_while_running),
        TaskKind::Blocking => {
            let shared = task.metadata().scheduler.clone();
            shared.blocking.schedule(&shared, task);
        }
    }
}

/// A multi-thread worker's thread body.
pub(super) fn run(shared: Arc<Shared>, core: Box<Core>) {
    let handle = shared.handle();
    let _driving = context::enter_runtime(&handle);
    // Inside the runtime context, as tokio runs them.
    shared.threads.on_start();
    let _alt_stack = coroutine::prepare_thread();
    let index = core.index;
    let _attached = shared.preemption.as_ref().map(|p| p.attach_worker(index));
    let slot = shared
        .preemption
        .as_ref()
        .map_or(ptr::null(), |preemption| {
            ptr::from_ref(preemption.slot(index))
        });
    let cx = WorkerContext {
        core: RefCell::new(Some(core)),
        stacks: RefCell::new(StackPool::new(shared.stacks.clone())),
        slot,
        spotter: RefCell::default(),
        shared,
    };
    let _current = CurrentGuard::enter(&cx);
    let _pool = coroutine::enter_pool(&cx.stacks);
    cx.run_on_generators();
    cx.finish_pinned();
    // Shutdown: drop this worker's queued tasks, with the core no longer reachable, so that what
    // their destructors wake goes to the injector (drained by the final step of shutdown).
    let core = cx.core.borrow_mut().take();
    drop(core);
    cx.shared.threads.on_stop();
}

/// How many tasks the current-thread driver runs between two looks at its own future.
const TASKS_PER_BLOCK_ON_POLL: usize = 61;

/// Drives a current-thread runtime's core on this thread until `future` completes.
pub(super) fn block_on_core<F: Future>(
    shared: &Arc<Shared>,
    core: Box<Core>,
    mut future: Pin<&mut F>,
) -> F::Output {
    let cx = WorkerContext {
        shared: shared.clone(),
        core: RefCell::new(Some(core)),
        stacks: RefCell::new(StackPool::new(shared.stacks.clone())),
        // Current-thread runtimes are cooperative (`preempt` module doc).
        slot: ptr::null(),
        spotter: RefCell::default(),
    };
    let _current = CurrentGuard::enter(&cx);
    let _pool = coroutine::enter_pool(&cx.stacks);
    // Poll-mode tasks run on generators here too: their overflows must be reported.
    let _alt_stack = coroutine::prepare_thread();
    // Hands the core back even if `future` panics.
    let _return_core = ReturnCore(&cx);
    let main = Arc::new(MainWake {
        woken: AtomicBool::new(true),
        shared: shared.clone(),
    });
    let waker = Waker::from(main.clone());
    let mut main_cx = Context::from_waker(&waker);
    loop {
        // Acquire: what the waker's thread wrote before waking is visible to the poll.
        if main.woken.swap(false, Ordering::AcqRel) {
            // What the main future spawns goes to the back of the local queue, not the LIFO
            // slot: the LIFO slot is for a task handing work to the next, and a main future that
            // spawns in a loop would otherwise always jump the queue.
            let polled = cx.without_lifo(|| future.as_mut().poll(&mut main_cx));
            if let Poll::Ready(output) = polled {
                return output;
            }
        }
        // Then queued tasks run, whether or not the main future is already woken again (it may
        // have yielded): a main future that keeps waking itself must not starve them.
        // The drivers' wake-ups, too, go to the back in the order they come (tokio's
        // current-thread order: timers of equal deadlines run in the order they were set).
        let maintenance_due = cx.core().maintenance_due();
        if maintenance_due {
            cx.without_lifo(|| cx.shared.maintain());
        }
        let mut ran = 0;
        while ran < TASKS_PER_BLOCK_ON_POLL {
            let next = {
                let mut core = cx.core();
                core.next_work(&cx.shared)
                    .or_else(|| core.next_deferred(&cx.shared).map(Work::Task))
            };
            match next {
                Some(Work::Task(task)) => {
                    let detached = cx.run_task(task, None);
                    debug_assert!(!detached, "current-thread polls run on no generator");
                }
                // Polls are never switched out on a current-thread runtime (`coroutine` doc).
                Some(Work::Switched(_)) => {
                    unreachable!("maniac: a current-thread poll was switched")
                }
                None => break,
            }
            ran += 1;
        }
        if ran == 0 && !main.woken.load(Ordering::Acquire) {
            cx.without_lifo(|| cx.park_current_thread());
        }
    }
}

struct ReturnCore<'a>(&'a WorkerContext);

impl Drop for ReturnCore<'_> {
    fn drop(&mut self) {
        let core = self.0.core.borrow_mut().take();
        if let Some(core) = core {
            self.0.shared.return_core(core);
        }
    }
}

/// The waker of a current-thread `block_on` future: marks it woken and unparks the driver.
struct MainWake {
    woken: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for MainWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.shared.remotes[0].parker.unpark();
    }
}

/// A small xorshift generator for choosing steal victims (no need for quality, only spread).
#[derive(Debug)]
struct FastRand(u64);

impl FastRand {
    fn new(seed: u64) -> FastRand {
        FastRand(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, bound: usize) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        ((x >> 32) as usize * bound) >> 32
    }
}
