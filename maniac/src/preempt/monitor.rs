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
//!    it gets a request: the pending flag, then `pthread_kill`. So a poll is preempted after
//!    running between one quantum and one quantum and a period (two quanta and a quarter when
//!    it starts while the monitor is backed off). Requests coalesce: no second signal while one
//!    is pending. A deferred request is repeated at the next look while the same poll still
//!    runs.
//! 3. When every worker is parked it sleeps on its condvar; a worker that unparks wakes it
//!    ([`Monitor::worker_unparked`]). The worker writes "unparked" and then reads "sleeping"; the
//!    monitor writes "sleeping" and then reads "parked": with SeqCst one of them sees the other.
//! 4. It stops when told to ([`Monitor::stop`]), and is joined then.
//! 5. A poll it has seen running for [`STUCK_REPORT`] (or ten quanta, if longer) while polls
//!    preempted on the same worker wait to resume there is reported on stderr, once per runtime:
//!    every request for it was deferred all that time, which is what a worker blocked for good on
//!    a lock one of those polls holds looks like (the `preempt` module doc's first hazard). A
//!    hang then says what to look for.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::slot::WorkerSlot;

/// The shortest look period (rule 1).
const MIN_PERIOD: Duration = Duration::from_micros(25);

/// How long a poll may run beside waiting preempted polls before rule 5 reports it.
pub(crate) const STUCK_REPORT: Duration = Duration::from_secs(1);

/// What the monitor thread and the workers share.
#[derive(Debug)]
pub(crate) struct MonitorShared {
    pub(crate) slots: Box<[WorkerSlot]>,
    quantum: Duration,
    pub(crate) signal: libc::c_int,
    sleeping: AtomicBool,
    /// Whether rule 5 has reported a worker.
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
    pub(crate) fn start(
        workers: usize,
        quantum: Duration,
        signal: libc::c_int,
    ) -> std::io::Result<Monitor> {
        let shared = Arc::new(MonitorShared {
            slots: (0..workers).map(|_| WorkerSlot::new()).collect(),
            quantum,
            signal,
            sleeping: AtomicBool::new(false),
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
        Ok(Monitor {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Rule 3, on the worker's side.
    pub(crate) fn worker_unparked(&self, slot: &WorkerSlot) {
        slot.set_parked(false);
        if self.shared.sleeping.load(Ordering::SeqCst) {
            let _lock = self.shared.stop.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_one();
        }
    }

    /// Rule 4.
    pub(crate) fn stop(&self) {
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_one();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
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
        while !self.stopped() {
            let now = Instant::now();
            let mut any_long = false;
            for (index, (slot, seen)) in self.slots.iter().zip(seen.iter_mut()).enumerate() {
                any_long |= self.look(index, slot, seen, now);
            }
            if self.slots.iter().all(WorkerSlot::is_parked) {
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
                thread::sleep(sleep);
            }
        }
    }

    /// Rule 2 for one worker. Returns whether its running poll was running at the previous look.
    fn look(
        &self,
        index: usize,
        slot: &WorkerSlot,
        seen: &mut Option<(u64, Instant)>,
        now: Instant,
    ) -> bool {
        let Some(poll) = slot.running_poll() else {
            *seen = None;
            return false;
        };
        match *seen {
            Some((same, since)) if same == poll => {
                let running = now - since;
                slot.record_poll_length(u64::try_from(running.as_nanos()).unwrap_or(u64::MAX));
                if running >= self.quantum && slot.request(poll) {
                    self.signal(slot);
                }
                if running >= STUCK_REPORT.max(self.quantum * 10) {
                    self.report_stuck(index, slot, running);
                }
                true
            }
            _ => {
                *seen = Some((poll, now));
                false
            }
        }
    }

    /// Rule 5.
    fn report_stuck(&self, index: usize, slot: &WorkerSlot, running: Duration) {
        let waiting = slot.preempted_waiting();
        if waiting == 0 || self.reported_stuck.swap(true, Ordering::Relaxed) {
            return;
        }
        eprintln!(
            "maniac: worker {index} has been in one poll for {running:.1?}, never at a point \
             where it could be preempted, while {waiting} preempted poll(s) wait to resume on that \
             worker. If that poll is blocked on a lock one of them holds (a parking_lot or C \
             library lock: std's locks are handled), the worker is deadlocked: hold such locks \
             inside maniac::preempt::no_preempt or use an async lock (maniac::preempt docs, \
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
