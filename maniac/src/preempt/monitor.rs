//! The monitor: one thread per runtime that notices polls running past the quantum and asks
//! their workers to preempt them (Go's sysmon, for maniac).
//!
//! ## Rules
//! 1. It reads every worker's poll state (`slot` module doc) at each look, with the thread's
//!    timer slack at its minimum. The hot path therefore pays two plain stores per poll, no clock
//!    read and no system call. Between looks it sleeps a quarter of the quantum (at least 25 µs)
//!    while some poll has been running since the previous look; while none has (every poll is
//!    short, as in a busy server), it backs off, doubling the sleep up to one quantum: on a
//!    machine whose cores are all busy, each look costs a context switch of somebody's.
//! 2. A worker whose *same* poll it has seen running for at least the quantum since it first saw
//!    it gets a request: the pending flag, then `pthread_kill`. The monitor wakes for the moment
//!    the earliest poll it has seen reaches the quantum, and a period after each request (to
//!    time the poll that follows the preempted one); its periodic looks are only for workers
//!    that are not in a poll it is timing. So a poll is preempted after running between one
//!    quantum and one quantum and a period, plus the monitor's and the signal's own lateness;
//!    up to two quanta when it starts unseen (the monitor backed off, or every worker timed
//!    and the poll began right after a look). Requests coalesce: no second signal while one is
//!    pending. A deferred request is repeated at the next look while the same poll still runs.
//! 3. When every worker is parked it sleeps on its condvar; a worker that unparks wakes it
//!    ([`Monitor::worker_unparked`]). The worker writes "unparked" and then reads "sleeping"; the
//!    monitor writes "sleeping" and then reads "parked": with SeqCst one of them sees the other.
//! 4. While polls overrun, it runs at the lowest real-time priority if it may
//!    (`Builder::preemption_realtime_monitor`): a look that waits for a CPU behind the very polls
//!    it is to preempt comes late by as much. It raises itself when it sends a request and
//!    drops back to normal priority once [`RELAX_AFTER`] quanta have passed without one, or
//!    when every worker is parked: at
//!    real-time priority each of its wake-ups takes a core from somebody at once, which costs
//!    workloads of short polls (the foundation suite's `spawn_many_remote_busy2` ran 1.66 times
//!    slower with the monitor always real-time, BENCHMARKS.md).
//! 5. It stops when told to ([`Monitor::stop`]), and is joined then.
//! 6. A poll it has seen running for [`STUCK_REPORT`] (or ten quanta, if longer) while polls
//!    preempted on the same worker wait to resume there is reported on stderr, once per runtime:
//!    every request for it was deferred all that time, which is what a worker blocked for good on
//!    a lock one of those polls holds looks like (the `preempt` module doc's first hazard). A
//!    hang then says what to look for.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::PreemptionConfig;

use super::slot::WorkerSlot;

/// What one look at a worker found (rule 2).
#[derive(Debug, Default)]
struct Look {
    /// Its running poll was running at the previous look too.
    long: bool,
    /// When that poll reaches the quantum, if it has not yet.
    due: Option<Instant>,
    /// A request was sent for it.
    requested: bool,
}

/// The shortest look period (rule 1).
const MIN_PERIOD: Duration = Duration::from_micros(25);

/// Rule 4: quanta without a request after which the monitor drops back to normal priority.
const RELAX_AFTER: u32 = 10;

/// How long a poll may run beside waiting preempted polls before rule 6 reports it.
pub(crate) const STUCK_REPORT: Duration = Duration::from_secs(1);

/// What the monitor thread and the workers share.
#[derive(Debug)]
pub(crate) struct MonitorShared {
    pub(crate) slots: Box<[WorkerSlot]>,
    quantum: Duration,
    pub(crate) signal: libc::c_int,
    sleeping: AtomicBool,
    /// Whether rule 4's priority is permitted (and asked for).
    realtime_permitted: AtomicBool,
    /// Whether rule 6 has reported a worker.
    reported_stuck: AtomicBool,
    /// `true` once told to stop; the condvar's lock.
    stop: Mutex<bool>,
    wake: Condvar,
}

#[derive(Debug)]
pub(crate) struct Monitor {
    pub(crate) shared: Arc<MonitorShared>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Monitor {
    pub(crate) fn start(workers: usize, config: PreemptionConfig) -> std::io::Result<Monitor> {
        let shared = Arc::new(MonitorShared {
            slots: (0..workers).map(|_| WorkerSlot::new()).collect(),
            quantum: config.quantum,
            signal: config.signal,
            sleeping: AtomicBool::new(false),
            realtime_permitted: AtomicBool::new(false),
            reported_stuck: AtomicBool::new(false),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let thread = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("maniac-monitor".into())
                .spawn(move || shared.run())?
        };
        // Rule 4's permission, tried once here (no poll can overrun before the workers start,
        // so the monitor is not changing its own priority meanwhile).
        let permitted = config.realtime_monitor && {
            use std::os::unix::thread::JoinHandleExt;
            let thread = thread.as_pthread_t();
            set_realtime(thread, true) && set_realtime(thread, false)
        };
        shared
            .realtime_permitted
            .store(permitted, Ordering::Relaxed);
        Ok(Monitor {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Whether rule 4's priority is permitted.
    pub(crate) fn realtime_permitted(&self) -> bool {
        self.shared.realtime_permitted.load(Ordering::Relaxed)
    }

    /// Rule 3, on the worker's side.
    pub(crate) fn worker_unparked(&self, slot: &WorkerSlot) {
        slot.set_parked(false);
        if self.shared.sleeping.load(Ordering::SeqCst) {
            let _lock = self.shared.stop.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_one();
        }
    }

    /// Rule 5.
    pub(crate) fn stop(&self) {
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_one();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// Rule 4: gives `thread` the lowest real-time priority, or the normal one back. Returns whether
/// the system allowed it.
fn set_realtime(thread: libc::pthread_t, realtime: bool) -> bool {
    let (policy, priority) = if realtime {
        (libc::SCHED_FIFO, 1)
    } else {
        (libc::SCHED_OTHER, 0)
    };
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `thread` is the monitor thread, alive or at least not joined (its handle is held,
    // or it is the calling thread), so the pthread_t is valid; the call only changes its
    // scheduling, or fails (EPERM).
    unsafe { libc::pthread_setschedparam(thread, policy, &param) == 0 }
}

impl MonitorShared {
    fn stopped(&self) -> bool {
        *self.stop.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        // Rule 1: sleeps this short need the timer slack at its minimum (the default is 50 µs).
        // SAFETY: PR_SET_TIMERSLACK only changes this thread's timer slack.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0) };
        let period = (self.quantum / 4).max(MIN_PERIOD);
        let mut sleep = period;
        let mut seen: Vec<Option<(u64, Instant)>> = vec![None; self.slots.len()];
        // Rule 4: since when no request was sent, while at real-time priority.
        let mut realtime: Option<Instant> = None;
        // Rule 2: the look a period after a request, which times the poll that follows it.
        let mut follow_up: Option<Instant> = None;
        let earliest = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        while !self.stopped() {
            let now = Instant::now();
            let mut any_long = false;
            let mut requested = false;
            let mut all_timed = true;
            let mut next_due: Option<Instant> = None;
            for (index, (slot, seen)) in self.slots.iter().zip(seen.iter_mut()).enumerate() {
                let look = self.look(index, slot, seen, now);
                any_long |= look.long;
                requested |= look.requested;
                all_timed &= look.due.is_some();
                next_due = earliest(next_due, look.due);
            }
            follow_up = if requested {
                Some(now + period)
            } else {
                follow_up.filter(|&at| at > now)
            };
            realtime = self.adjust_priority(realtime, requested, now);
            if self.slots.iter().all(WorkerSlot::is_parked) {
                // Rule 4: nothing overruns while every worker is parked.
                if realtime.take().is_some() {
                    // SAFETY: pthread_self has no preconditions.
                    set_realtime(unsafe { libc::pthread_self() }, false);
                }
                self.sleep_while_all_parked();
                seen.iter_mut().for_each(|seen| *seen = None);
                sleep = period;
            } else {
                // Rule 1's back-off.
                sleep = if any_long {
                    period
                } else {
                    (sleep * 2).min(self.quantum.max(period))
                };
                // Rule 2's timing: awake when a poll seen reaches the quantum, not at the next
                // look after it (which would add up to a period, plus each sleep's lateness);
                // no periodic look while every worker is in a poll being timed.
                let periodic = (!all_timed).then_some(now + sleep);
                let wake = earliest(earliest(next_due, follow_up), periodic);
                let wake = wake.unwrap_or(now + sleep);
                thread::sleep(wake.saturating_duration_since(Instant::now()));
            }
        }
    }

    /// Rule 4, after a look: returns when the monitor last requested while it is real-time.
    fn adjust_priority(
        &self,
        realtime: Option<Instant>,
        requested: bool,
        now: Instant,
    ) -> Option<Instant> {
        // SAFETY: pthread_self has no preconditions.
        let this_thread = || unsafe { libc::pthread_self() };
        match realtime {
            _ if requested && realtime.is_some() => Some(now),
            None if requested && self.realtime_permitted.load(Ordering::Relaxed) => {
                set_realtime(this_thread(), true).then_some(now)
            }
            Some(since) if now - since > self.quantum * RELAX_AFTER => {
                set_realtime(this_thread(), false);
                None
            }
            unchanged => unchanged,
        }
    }

    /// Rule 2 for one worker.
    fn look(
        &self,
        index: usize,
        slot: &WorkerSlot,
        seen: &mut Option<(u64, Instant)>,
        now: Instant,
    ) -> Look {
        let Some(poll) = slot.running_poll() else {
            *seen = None;
            return Look::default();
        };
        match *seen {
            Some((same, since)) if same == poll => {
                let running = now - since;
                slot.record_poll_length(u64::try_from(running.as_nanos()).unwrap_or(u64::MAX));
                if running < self.quantum {
                    return Look {
                        long: true,
                        due: Some(since + self.quantum),
                        requested: false,
                    };
                }
                let requested = slot.request(poll);
                if requested {
                    self.signal(slot);
                }
                if running >= STUCK_REPORT.max(self.quantum * 10) {
                    self.report_stuck(index, slot, running);
                }
                Look {
                    long: true,
                    due: None,
                    requested,
                }
            }
            _ => {
                *seen = Some((poll, now));
                Look {
                    long: false,
                    due: Some(now + self.quantum),
                    requested: false,
                }
            }
        }
    }

    /// Rule 6.
    fn report_stuck(&self, index: usize, slot: &WorkerSlot, running: Duration) {
        let waiting = slot.preempted_waiting();
        if waiting == 0 || self.reported_stuck.swap(true, Ordering::Relaxed) {
            return;
        }
        eprintln!(
            "maniac: worker {index} has been in one poll for {running:.1?}, never at a point \
             where it could be preempted, while {waiting} preempted poll(s) wait to resume on that \
             worker. If that poll is blocked waiting for one of them (on a lock other than std's \
             Mutex, RwLock and Once, which are handled; on a blocking channel or a condition \
             variable), the worker is deadlocked: hold such locks inside \
             maniac::preempt::no_preempt, or use async locks and channels (maniac::preempt docs, \
             \"Hazards\"). Reported once per runtime."
        );
    }

    fn signal(&self, slot: &WorkerSlot) {
        if !slot.send(self.signal) {
            slot.withdraw_request();
        }
    }

    /// Rule 3, on the monitor's side.
    fn sleep_while_all_parked(&self) {
        let mut stop = self.stop.lock().unwrap_or_else(|e| e.into_inner());
        self.sleeping.store(true, Ordering::SeqCst);
        while !*stop && self.slots.iter().all(WorkerSlot::is_parked) {
            stop = self.wake.wait(stop).unwrap_or_else(|e| e.into_inner());
        }
        self.sleeping.store(false, Ordering::SeqCst);
    }
}
