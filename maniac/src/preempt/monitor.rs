//! The monitor: one thread per runtime that notices polls running past the quantum and asks
//! their workers to preempt them (Go's sysmon, for maniac).
//!
//! ## Rules
//! 1. It reads every worker's poll state (`slot` module doc) at each look, with the thread's
//!    timer slack at its minimum. The hot path therefore pays two plain stores per poll and no
//!    system call; it reads the clock only in the few polls after a preemption.
//!    Between looks it sleeps a quarter of the quantum (at least 25 µs) while some poll has
//!    been running since the previous look; while none has (every poll is short, as in a busy
//!    server), it backs off, doubling the sleep up to a quantum, and, once [`RELAX_AFTER`]
//!    quanta have passed since its last request, up to [`CALM_QUANTA`] quanta: from a sleep of
//!    one quantum on it is then *calm* (rule 7). Each look costs a context switch, and on our
//!    machines a thread that merely wakes a thousand times a second slows latency-bound work on
//!    the other threads by about a tenth (tokio's by more: BENCHMARKS.md, "Preemption", the
//!    foundation suite's `chained_spawn`).
//! 2. A worker whose *same* poll has run for at least the quantum gets a request: the pending
//!    flag, then its signal (`signal::send_request`). A poll runs since the monitor first saw
//!    it, or, for the few polls right after a preemption on its worker, since it noted its
//!    start (`slot` module doc): so a hog that resumes after a short poll (the task the
//!    preemption let in) is preempted one quantum after it resumed. Due times are put off to
//!    the time driver's next tick when it comes within an eighth of a quantum: a preemption
//!    just after a tick serves
//!    every timer due by then (the worker looks at its timers after a preemption), where one
//!    just before it leaves them for a whole quantum (at a quantum of one tick, 100 µs,
//!    nothing is put off by more than 12.5 µs). The monitor wakes when a worker's look is due:
//!    when the poll it times reaches its quantum; after a request, when the poll that will
//!    follow the preemption reaches it (the quantum plus the average delay from request to
//!    preemption), or a period later if this worker's last preemption took more than one
//!    request (or this one is still on its way), to repeat it. Its periodic looks are only for
//!    workers that are not in a poll it is timing, nor timed by their own timer (below). So a
//!    poll is preempted after one quantum (up to a period more if it was first seen at a
//!    periodic look, up to an eighth of a quantum more for the alignment), plus the monitor's
//!    and the signal's own lateness; up to two quanta when it starts unseen and not soon after
//!    a preemption (the monitor backing off, or every worker timed when it began); when the
//!    monitor is calm, rule 7. Requests coalesce: no
//!    second signal while one is pending; but a request still pending, unchanged, at two looks
//!    between which its worker thread ran for a period lost its signal (the kernel drops one
//!    merged into an own timer's signal that a re-arm voided: `slot` module doc, "requested"),
//!    and is renewed for the running poll and signalled again ([`WorkerSlot::renew_request`]),
//!    or coalescing would leave that worker unpreempted for good. A poll its worker's own timer
//!    covers (`slot` module doc, "own_timer": the timer is timing that worker's polls since a
//!    preemption, and this poll noted its start) gets no request while that timer is heard from (its signals
//!    counted in the slot) often enough (`own_timer_backup_after`: two quanta up to 200 µs,
//!    eight beyond): the timer preempts it at one quantum, and asks again every period while
//!    that is deferred; the monitor only backs it up, should the timer fall silent (such a
//!    poll then runs until that backup). When the timer stops timing a worker (it
//!    finds a poll that did not note its start, it cannot be armed, or the worker parks) it
//!    wakes the monitor, which then times that worker's polls as above. A repeated request for
//!    the same poll waits out the period even when the monitor was woken early. Such polls
//!    overrun as much as those it asks for: while they run the monitor does not become calm
//!    (rule 7) and keeps its real-time priority (rule 4); with every worker in such polls, or
//!    between polls its own timer is timing (the next either notes its start, or the timer
//!    finds it and hands the worker back), it wakes only for their backup looks.
//! 3. When every worker is parked it sleeps on its event count (`MonitorWake`, a futex, which
//!    a signal handler may wake too); a worker that unparks wakes it
//!    ([`Monitor::worker_unparked`]). The worker writes "unparked" and then reads "sleeping"; the
//!    monitor writes "sleeping" and then reads "parked": with SeqCst one of them sees the other.
//!    A parked worker needs no periodic look either while others run: when every other worker
//!    is timed (rule 2), the monitor sleeps in the same way until its next due look, and the
//!    first parked worker to unpark meanwhile wakes it; but not within a quantum of being woken
//!    so, so that a worker that parks and unparks often costs no more wake-ups than periodic
//!    looks. (Beside hogs preempting themselves on one worker, the parked other cost a monitor
//!    wake-up every quantum.)
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
//! 7. A calm monitor does not time a poll it sees for the first time (no look is due for it): a
//!    poll still running at its next look is timed from the look that first saw it, and after a
//!    calm sleep, longer than a quantum, it is asked for at once. So a hog that starts in a calm
//!    period is first preempted within two calm sleeps (up to 2 × [`CALM_QUANTA`] quanta; Go's
//!    sysmon, backed off, takes up to 20 ms), unless another worker spots it first: while the
//!    monitor is calm, each worker, at most every eighth of a quantum (judged by the clock its
//!    maintenance, every 61 polls, reads anyway: [`MonitorShared::maintain_and_spot`]), looks
//!    at the next other worker that is in a poll, in turn, so that a look pulls one line another
//!    core writes, not all of them. The first sighting of a poll is kept in its slot (`slot`
//!    module doc); a worker that finds that poll still running [`spot_after`] later, when the
//!    monitor cannot already time it from a noted start, wakes the monitor, which times it from
//!    the first sighting. A hog beside a worker that runs short polls, the case of a busy
//!    server, is thus preempted a quantum after it was first seen: on a two-worker runtime about
//!    a quantum and a quarter after it began at most; with W workers, if only one of the others
//!    runs short polls, up to (W − 1) eighths of a quantum more for that one to come round to it
//!    (fewer when several spot); beside polls so long that maintenances come less often than
//!    every eighth of a quantum, the quantum and two maintenance intervals (beside 50 µs polls,
//!    maintenances every 3 ms: up to 7 ms); never later than the calm looks. A hog with no
//!    worker in short polls beside it (one worker; the others parked, or hogs themselves) waits
//!    for the calm looks: with the others parked it delays only what waits on its own worker
//!    (its LIFO slot, its yielded tasks, its preempted polls), as tasks queued where others can
//!    take them wake a parked worker to steal them.
//!    A request ends the calm at once, and the monitor is not calm again before [`RELAX_AFTER`]
//!    quanta without one: a preempted hog that resumes after more polls than note their start
//!    (`slot` module doc) is timed as in rule 2. After every worker was parked the monitor stays
//!    as calm as it was: workers that unpark say nothing about polls getting long.
//! 8. It sends no request before the code map (`safepoint`: what code rule 3 lets the handler
//!    preempt) is read, since the handler would defer every one. It starts reading the map on a
//!    thread of its own, once per process ([`start_reading_code_map`]), the first time a poll
//!    it times reaches its quantum (and looks again a period later), or at its first pass
//!    [`READ_CODE_MAP_AFTER`] after its runtime started, whichever comes first. Read where a
//!    runtime started, it made that start take 8 ms in a release build and 300 ms in a debug
//!    one (tokio's takes 0.4 ms), which a CLI tool paid at every run; read at the start on a
//!    thread of its own, it still made the start take 2–4 ms on two cores, even at
//!    `SCHED_IDLE` (a thread merely spinning beside the start cost it less: the reading's own
//!    memory traffic, page faults and mappings, seems to be what the start waits behind).
//!    Read so, a short-lived program whose polls stay short never reads it, a longer-lived one
//!    has it read before its first hog as a rule, and a hog that comes earlier is preempted
//!    once it is read (a few ms after its quantum in a release build, hundreds in a debug
//!    one); `maniac::preempt::prepare` reads it beforehand, for a program that wants its first
//!    hog preempted on time whenever it comes.

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use super::{PreemptionConfig, Spotter};

use super::safepoint;
use super::slot::WorkerSlot;
use crate::time::TickGrid;

/// What one look at a worker found (rule 2).
#[derive(Debug, Default)]
struct Look {
    /// Its running poll was running at the previous look too.
    long: bool,
    /// When this worker needs the next look, if it is in a poll being timed, or timed by its
    /// own timer (in a poll or between polls: then this is the backup look).
    due: Option<Instant>,
    /// A request was sent for it.
    requested: bool,
    /// The worker (its running poll, or the next) is timed by its own timer (`slot` module
    /// doc, "own_timer").
    own_timed: bool,
}

/// The monitor's record of one worker (rule 2).
#[derive(Debug, Clone, Copy, Default)]
struct Watch {
    /// The poll being timed, and since when it runs.
    poll: Option<(u64, Instant)>,
    /// The last poll a preemption was requested for, and when; kept until a look finds
    /// another poll running, whatever it finds in between.
    requested: Option<(u64, Instant)>,
    /// Requests sent for that poll.
    requests: u32,
    /// Whether this worker's last preemption took more than one request (the first was
    /// deferred): then the look after a request comes a period later, to repeat it, rather
    /// than when the following poll reaches its quantum.
    deferring: bool,
    /// The worker's own-timer signals counted at the last look that saw the count change, and
    /// when (`slot` module doc, "own_timer"): a timer silent for `own_timer_backup_after` over
    /// a poll it covers, or while it times the worker between polls, has stopped, and the
    /// monitor takes the worker over.
    own_timer_heard: Option<(u64, Instant)>,
    /// A request found pending in the slot by a look that could not make its own, and the CPU
    /// time its worker thread had used then (rule 2: still pending once the thread has run for
    /// a period since, it is renewed).
    held: Option<(u64, Duration)>,
}

impl Watch {
    /// When the worker's own timer was last heard from, as of `now`: the look that first saw
    /// its signal count where it is (rule 2).
    fn own_timer_heard(&mut self, slot: &WorkerSlot, now: Instant) -> Instant {
        let signals = slot.own_timer_signals();
        match self.own_timer_heard {
            Some((count, at)) if count == signals => at,
            _ => {
                self.own_timer_heard = Some((signals, now));
                now
            }
        }
    }
}

/// What the monitor keeps from one look to the next.
#[derive(Debug)]
struct Watches {
    workers: Vec<Watch>,
    /// How long a request takes to become a preemption (signal, handler, Switch), averaged:
    /// the monitor wakes that much after the quantum of the poll that will follow a request.
    delay: Duration,
}

/// The longest sleep between looks, in quanta, of a monitor that sees only short polls
/// (rules 1 and 7). Eight: the suite's `chained_spawn`, on 2 cores, is 1.12 times slower with
/// looks once a quantum than without a monitor, 1.03–1.09 with looks every four quanta, and
/// 0.97–1.02 with looks every eight (BENCHMARKS.md).
const CALM_QUANTA: u32 = 8;

/// Rule 2: how long a worker's own timer may be silent over a poll it covers before the monitor
/// takes that poll over. The timer hands every other poll back at once (it wakes the monitor),
/// so the backup is for a timer that fires late or not at all. Where two quanta still come
/// within the latency the design aims at (a quantum + 200 µs: quanta up to 200 µs), the backup
/// comes then, and rescues ticks that a late timer would make miss it (at 100 µs, p99.9 of
/// 187–393 µs with it against 187–552 µs without, alternated rounds); beyond, it could not come
/// in time, and each backup look costs the hogs a monitor wake-up, so it comes after eight
/// quanta (at 1 ms, p99.9 0.81–1.00 ms against 1.10–3.62 ms: BENCHMARKS.md, "A quiet spell").
fn own_timer_backup_after(quantum: Duration) -> Duration {
    if quantum <= Duration::from_micros(200) {
        quantum * 2
    } else {
        quantum * 8
    }
}

/// How long another worker must have seen a poll running before it wakes a calm monitor for it
/// (rule 7): three quarters of a quantum leave the monitor the last quarter to wake and time
/// it, and spare it a wake-up for each poll of half a quantum.
fn spot_after(quantum: Duration) -> Duration {
    quantum * 3 / 4
}

/// The first guess of [`Watches::delay`]: a signal to a busy thread on our machines.
const INITIAL_DELAY: Duration = Duration::from_micros(20);

/// The shortest look period (rule 1).
const MIN_PERIOD: Duration = Duration::from_micros(25);

/// Rule 2: the first tick of `ticks` at or after `at`, if it comes within an eighth of
/// `quantum` (else `at`). Async-signal-safe (the own timer's handler uses it too).
pub(crate) fn after_timer_tick(ticks: TickGrid, quantum: Duration, at: Instant) -> Instant {
    let tick = ticks.instant(ticks.tick_at_or_after(at));
    if tick.saturating_duration_since(at) <= quantum / 8 {
        tick
    } else {
        at
    }
}

/// The period of rule 1's looks, and of repeated requests (rule 2), at `quantum`.
pub(crate) fn look_period(quantum: Duration) -> Duration {
    (quantum / 4).max(MIN_PERIOD)
}

/// Rule 4: quanta without a request after which the monitor drops back to normal priority.
const RELAX_AFTER: u32 = 10;

/// Rule 8: how long after its runtime started a monitor starts reading the code map unasked.
/// Long enough for a runtime's start (under a millisecond) and a short CLI run to be over; short
/// beside the life of a server, whose first hog then finds the map read.
const READ_CODE_MAP_AFTER: Duration = Duration::from_millis(100);

/// How long a poll may run beside waiting preempted polls before rule 6 reports it.
pub(crate) const STUCK_REPORT: Duration = Duration::from_secs(1);

/// What the monitor thread and the workers share.
#[derive(Debug)]
pub(crate) struct MonitorShared {
    pub(crate) slots: Box<[WorkerSlot]>,
    /// When the runtime started (rule 8).
    started: Instant,
    quantum: Duration,
    /// The time driver's ticks (rule 2).
    timer_ticks: TickGrid,
    pub(crate) signal: libc::c_int,
    /// Whether the monitor sleeps without looking at parked workers (rule 3): one that unparks
    /// wakes it.
    sleeping: AtomicBool,
    /// Whether the monitor is calm: workers spot for it (rule 7).
    calm: AtomicBool,
    /// Whether rule 4's priority is permitted (and asked for).
    realtime_permitted: AtomicBool,
    /// Whether rule 6 has reported a worker.
    reported_stuck: AtomicBool,
    /// Whether a request's signal has been refused by the kernel (reported once).
    reported_unsendable: AtomicBool,
    /// `true` once told to stop.
    stop: AtomicBool,
    /// What the monitor sleeps on (rules 3, 5 and 7, and `slot`'s hand-backs).
    pub(crate) wake: Arc<MonitorWake>,
}

/// The monitor's sleep, and what wakes it: an event count on a futex. A waker bumps the count
/// and wakes the futex; the monitor reads the count before it looks at what it waits for (the
/// slots, at the top of each pass; the parked flags; the stop flag), and sleeps
/// only while the count is still what it read, so no wake-up is lost between its looks and
/// its sleep. Not a `Condvar`: a worker's signal handler wakes the monitor too, when the
/// worker's own timer hands a poll back to it (`slot` module doc, "own_timer"), and a handler
/// may take no lock; a `FUTEX_WAKE` is one system call on an atomic.
#[derive(Debug, Default)]
pub(crate) struct MonitorWake {
    count: AtomicU32,
}

impl MonitorWake {
    /// Wakes the monitor from its sleep, or keeps its next one from beginning.
    /// Async-signal-safe, and keeps `errno`.
    pub(crate) fn wake(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        // SAFETY: errno is this thread's; FUTEX_WAKE reads nothing but the address of an aligned
        // u32 that lives as long as `self`.
        unsafe {
            let errno = *libc::__errno_location();
            libc::syscall(
                libc::SYS_futex,
                self.count.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                1,
            );
            *libc::__errno_location() = errno;
        }
    }

    /// The count to pass to [`wait`](Self::wait), read before checking what to wait for.
    fn observe(&self) -> u32 {
        self.count.load(Ordering::SeqCst)
    }

    /// Sleeps unless woken since `seen` was observed, until woken or `timeout` (none: no limit)
    /// has passed; may return sooner (a signal, or a wake-up meant for an earlier sleep).
    fn wait(&self, seen: u32, timeout: Option<Duration>) {
        let spec = timeout.map(|timeout| libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
        });
        let spec = spec.as_ref().map_or(ptr::null(), ptr::from_ref);
        // SAFETY: FUTEX_WAIT reads the aligned u32 at the first address (which lives as long as
        // `self`) and the timespec at the fourth argument, valid or null.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.count.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                seen,
                spec,
            );
        }
    }
}

/// Rule 8: starts reading the code map on a thread of its own, unless it is read or being read
/// already; reads it on the calling thread if no thread can be started. A read that panics (a
/// defect) leaves preemption off in this process, said once on stderr after the panic's own
/// message, rather than taking the monitor down with it.
fn start_reading_code_map() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let read = || {
            if std::panic::catch_unwind(safepoint::read_code_map).is_err() {
                super::notice(format_args!(
                    "maniac: reading the code map panicked; preemption stays off in this process"
                ));
            }
        };
        if thread::Builder::new()
            .name("maniac-code-map".into())
            .spawn(read)
            .is_err()
        {
            read();
        }
    });
}

#[derive(Debug)]
pub(crate) struct Monitor {
    pub(crate) shared: Arc<MonitorShared>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Monitor {
    pub(crate) fn start(
        workers: usize,
        config: PreemptionConfig,
        timer_ticks: TickGrid,
    ) -> std::io::Result<Monitor> {
        let shared = Arc::new(MonitorShared::new(
            workers,
            config.quantum,
            config.signal,
            timer_ticks,
        ));
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
        self.shared.worker_unparked(slot);
    }

    /// Rule 5.
    pub(crate) fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.wake();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// The earlier of two optional times.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
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
    fn new(
        workers: usize,
        quantum: Duration,
        signal: libc::c_int,
        timer_ticks: TickGrid,
    ) -> MonitorShared {
        let wake = Arc::new(MonitorWake::default());
        MonitorShared {
            started: Instant::now(),
            slots: (0..workers)
                .map(|_| WorkerSlot::new(quantum, timer_ticks, wake.clone()))
                .collect(),
            quantum,
            timer_ticks,
            signal,
            sleeping: AtomicBool::new(false),
            calm: AtomicBool::new(false),
            realtime_permitted: AtomicBool::new(false),
            reported_stuck: AtomicBool::new(false),
            reported_unsendable: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            wake,
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn run(&self) {
        // Rule 1: sleeps this short need the timer slack at its minimum (the default is 50 µs).
        // SAFETY: PR_SET_TIMERSLACK only changes this thread's timer slack.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0) };
        let period = look_period(self.quantum);
        let mut sleep = period;
        let mut watches = Watches {
            workers: vec![Watch::default(); self.slots.len()],
            delay: INITIAL_DELAY,
        };
        // Rule 4: whether the monitor runs at real-time priority; rules 4 and 7: when the last
        // request was sent; rule 7: whether the next look is calm (and the workers spot for it
        // meanwhile).
        let mut realtime = false;
        let mut last_request: Option<Instant> = None;
        let mut calm = false;
        // Rule 3: which workers the last looks found parked, and when an unparking last ended
        // a sleep past them.
        let mut parked = vec![false; self.slots.len()];
        let mut woken_by_unpark: Option<Instant> = None;
        while !self.stopped() {
            let now = Instant::now();
            if now.saturating_duration_since(self.started) >= READ_CODE_MAP_AFTER
                && !safepoint::code_map_read()
            {
                // Rule 8.
                start_reading_code_map();
            }
            let mut any_long = false;
            let mut requested = false;
            let mut own_timed = false;
            // Whether every worker is in a poll being timed, or timed by its own timer (rule 2),
            // or parked (rule 3); `parked[index]`: whether worker `index` was parked.
            let mut all_timed = true;
            let mut next_due: Option<Instant> = None;
            // Before the looks: a hand-back or a spot during them ends the sleep after them.
            let seen = self.wake.observe();
            for (index, was_parked) in parked.iter_mut().enumerate() {
                let look = self.look(index, &mut watches, now, period, calm);
                any_long |= look.long;
                requested |= look.requested;
                own_timed |= look.own_timed;
                *was_parked = look.due.is_none() && self.slots[index].is_parked();
                all_timed &= look.due.is_some() || *was_parked;
                next_due = earliest(next_due, look.due);
            }
            // Polls preempting themselves are polls overrunning, as much as those the monitor
            // asks for: the monitor stays out of calm (rule 7: a hog that starts unnoted among
            // them is timed as in rule 2) and at real-time priority (rule 4: it starts each
            // chain of them, and backs them up).
            if requested || own_timed {
                last_request = Some(now);
            }
            let settled = self.settled(last_request, now);
            realtime = self.adjust_priority(realtime, requested, settled);
            if self.slots.iter().all(WorkerSlot::is_parked) {
                // Rule 4: nothing overruns while every worker is parked.
                if std::mem::take(&mut realtime) {
                    // SAFETY: pthread_self has no preconditions.
                    set_realtime(unsafe { libc::pthread_self() }, false);
                }
                self.sleep_while_all_parked();
                watches.workers.fill(Watch::default());
            } else {
                let next_calm;
                (sleep, next_calm) = self.back_off(sleep, period, any_long || requested, settled);
                if calm != next_calm {
                    calm = next_calm;
                    self.calm.store(calm, Ordering::Relaxed);
                }
                // Rule 2's timing: awake when a worker's look is due, not at the next periodic
                // look after it (which would add up to a period, plus each sleep's lateness);
                // no periodic look while every worker is timed, or parked and still so once
                // the monitor is known to sleep (rule 3), unless an unparking woke it within
                // the last quantum (a worker that parks and unparks often would otherwise wake
                // it each time, more often than the periodic looks).
                let any_parked = parked.contains(&true);
                let unparks_quiet = woken_by_unpark
                    .is_none_or(|at| now.saturating_duration_since(at) >= self.quantum);
                let past_parked =
                    all_timed && any_parked && unparks_quiet && self.sleep_past_parked(&parked);
                let no_periodic = all_timed && (!any_parked || past_parked);
                let periodic = (!no_periodic).then_some(now + sleep);
                let wake = earliest(next_due, periodic).unwrap_or(now + sleep);
                self.sleep_until(wake, seen);
                // The worker whose unparking ended the sleep cleared `sleeping`.
                if past_parked && !self.sleeping.swap(false, Ordering::SeqCst) {
                    woken_by_unpark = Some(Instant::now());
                }
            }
        }
    }

    /// Rules 4 and 7: whether [`RELAX_AFTER`] quanta have passed, at `now`, since the last
    /// request.
    fn settled(&self, last_request: Option<Instant>, now: Instant) -> bool {
        last_request.is_none_or(|at| now.saturating_duration_since(at) > self.quantum * RELAX_AFTER)
    }

    /// Rules 1 and 7, after a look that found a poll running since the previous look or sent a
    /// request (`overran`), or neither: the sleep until the next periodic look, and whether that
    /// look is calm. The sleep doubles from `period` while no poll overran, up to one quantum
    /// and, once the monitor has `settled`, up to [`CALM_QUANTA`] of them: a preempted hog that
    /// resumes after more polls than note their start (`slot` module doc) is then still timed as
    /// in rule 2, not left to the calm looks.
    fn back_off(
        &self,
        sleep: Duration,
        period: Duration,
        overran: bool,
        settled: bool,
    ) -> (Duration, bool) {
        let one_quantum = self.quantum.max(period);
        let longest = if settled {
            one_quantum * CALM_QUANTA
        } else {
            one_quantum
        };
        let sleep = if overran {
            period
        } else {
            (sleep * 2).min(longest)
        };
        (sleep, settled && sleep >= self.quantum)
    }

    /// Rule 4, after a look: whether the monitor is to run at real-time priority, given whether
    /// it does (`realtime`), sent a request at this look, and has `settled` since the last one.
    fn adjust_priority(&self, realtime: bool, requested: bool, settled: bool) -> bool {
        // SAFETY: pthread_self has no preconditions.
        let this_thread = || unsafe { libc::pthread_self() };
        if requested && !realtime && self.realtime_permitted.load(Ordering::Relaxed) {
            set_realtime(this_thread(), true)
        } else if realtime && settled {
            set_realtime(this_thread(), false);
            false
        } else {
            realtime
        }
    }

    /// Rules 2 and 7 for worker `index`, at `now`.
    fn look(
        &self,
        index: usize,
        watches: &mut Watches,
        now: Instant,
        period: Duration,
        calm: bool,
    ) -> Look {
        let slot = &self.slots[index];
        let watch = &mut watches.workers[index];
        let Some(poll) = slot.running_poll() else {
            watch.poll = None;
            return self.look_between_polls(slot, watch, now);
        };
        let (since, long) = match watch.poll {
            // A poll first seen at a calm look and spotted since: timed from its first sighting
            // if that came first (rule 7).
            Some((same, since)) if same == poll && calm => {
                let since = slot
                    .spotted_since(poll)
                    .map_or(since, |spotted| spotted.min(since));
                watch.poll = Some((poll, since));
                (since, true)
            }
            Some((same, since)) if same == poll => (since, true),
            _ => {
                // A poll soon after a preemption noted when it began (`slot` module doc), one
                // another worker spotted runs since it was seen (rule 7); any other began at
                // some time since the previous look, taken to be now.
                let start = slot.poll_start(poll);
                if let Some((asked_for, requested_at)) = watch.requested.take() {
                    if slot.follows_preemption() == asked_for.wrapping_add(1) {
                        // The poll asked for was preempted: whether that took more than one
                        // request, and (seeing the poll right after it) how long it took.
                        watch.deferring = watch.requests > 1;
                        if let Some((began, true)) = start {
                            let delay = began.saturating_duration_since(requested_at).min(period);
                            watches.delay = (watches.delay * 7 + delay) / 8;
                        }
                    }
                    watch.requests = 0;
                }
                let known = start
                    .map(|(began, _)| began)
                    .or_else(|| calm.then(|| slot.spotted_since(poll)).flatten());
                // The clock after the poll state, as the spotters read it: a poll that began while
                // this thread was kept off the CPU after reading `now` is not timed from before.
                let seen_at = || now.max(Instant::now());
                if calm && known.is_none() {
                    // Rule 7: timed from now, but no look is due for it.
                    watch.poll = Some((poll, seen_at()));
                    return Look::default();
                }
                let since = known.unwrap_or_else(seen_at);
                watch.poll = Some((poll, since));
                (since, false)
            }
        };
        let running = now.saturating_duration_since(since);
        slot.record_poll_length(u64::try_from(running.as_nanos()).unwrap_or(u64::MAX));
        if running >= STUCK_REPORT.max(self.quantum * 10) {
            self.report_stuck(index, slot, running);
        }
        if slot.own_timer_covers(poll) {
            // Its worker's own timer preempts it, and asks again when that is deferred; the
            // monitor steps in only if the timer has been silent for `own_timer_backup_after`
            // since the poll began.
            let silent_since = watch.own_timer_heard(slot, now).max(since);
            if let Some(look) = self.own_timer_backup(silent_since, now) {
                return look;
            }
        }
        if running < self.quantum {
            return Look {
                long,
                due: Some(self.after_timer_tick(since + self.quantum)),
                requested: false,
                own_timed: false,
            };
        }
        if !safepoint::code_map_read() {
            // Rule 8.
            start_reading_code_map();
            return Look {
                long,
                due: Some(now + period),
                requested: false,
                own_timed: false,
            };
        }
        // A repeated request for the same poll waits out the retry period, however the monitor
        // came to look early (a hand-back or a spot wakes it): each one a deferral costs the
        // worker a signal.
        if let Some((asked_for, at)) = watch.requested
            && asked_for == poll
            && now.saturating_duration_since(at) < period
        {
            return Look {
                long,
                due: Some(at + period),
                requested: false,
                own_timed: false,
            };
        }
        let requested = if slot.request(poll) {
            watch.held = None;
            true
        } else {
            Self::renew_lost_request(slot, watch, poll, period)
        };
        if requested {
            // From the second request for this very poll on, the first was taken and deferred.
            watch.requests += 1;
            watch.deferring |= watch.requests > 1;
            self.signal(slot);
            watch.requested = Some((poll, now));
        }
        // Next, the poll that will follow the preemption reaches its quantum, unless requests
        // here have been deferred (or the last is still on its way): then the next look
        // repeats the request.
        let due = if watch.deferring || !requested {
            now + period
        } else {
            self.after_timer_tick(now + watches.delay + self.quantum)
        };
        Look {
            long,
            due: Some(due),
            requested,
            own_timed: false,
        }
    }

    /// Rule 2: whether the request pending in `slot`, which kept this look from making its own
    /// for poll `poll`, was pending unchanged at an earlier look, since which the worker thread
    /// has run for at least `period`; it is then renewed for `poll`, to be signalled again. A
    /// thread gets a signal sent to it the moment it next runs (the kernel kicks a running
    /// thread, and delivers to a scheduled one on its way back to user mode), so one that ran
    /// a period with the request still pending lost its signal (or blocks it: a renewal then
    /// merges into the pending one); one kept off the CPU (a worker waiting for a core, a
    /// vCPU the host took away) has it still to come, and is left alone.
    fn renew_lost_request(
        slot: &WorkerSlot,
        watch: &mut Watch,
        poll: u64,
        period: Duration,
    ) -> bool {
        let held = slot.pending_request();
        let Some(ran) = slot.thread_cpu_time() else {
            watch.held = None;
            return false;
        };
        match watch.held {
            Some((same, ran_before)) if same == held => {
                if ran.saturating_sub(ran_before) < period {
                    return false;
                }
                watch.held = None;
                slot.renew_request(held, poll)
            }
            _ => {
                watch.held = (held != 0).then_some((held, ran));
                false
            }
        }
    }

    /// Rule 2 for a worker between polls, at `now`: while its own timer is timing it and is
    /// heard from, no periodic look. Its next poll either notes its start, and the timer covers
    /// it, or does not, and the timer, armed for a quantum after a noted poll began at the
    /// latest, finds it when it fires and hands the worker back, waking the monitor: that poll
    /// is timed from then, so preempted within two quanta of its start, as one the monitor
    /// first sees at a periodic look may be. (Beside two hogs preempting themselves at 100 µs,
    /// the monitor woke 5,200–5,350 times a second with these periodic looks, 4,500–4,800
    /// without: BENCHMARKS.md, "Monitor wake-ups".)
    fn look_between_polls(&self, slot: &WorkerSlot, watch: &mut Watch, now: Instant) -> Look {
        if slot.own_timer_timing() {
            let heard = watch.own_timer_heard(slot, now);
            if let Some(look) = self.own_timer_backup(heard, now) {
                return look;
            }
        }
        Look::default()
    }

    /// Rule 2's backup of a worker's own timer, silent since `silent_since`, at `now`: a look
    /// due [`own_timer_backup_after`] later, or none if that has passed (the monitor then times
    /// the worker itself).
    fn own_timer_backup(&self, silent_since: Instant, now: Instant) -> Option<Look> {
        let backup_after = own_timer_backup_after(self.quantum);
        (now.saturating_duration_since(silent_since) < backup_after).then(|| Look {
            long: false,
            due: Some(self.after_timer_tick(silent_since + backup_after)),
            requested: false,
            own_timed: true,
        })
    }

    /// Rule 2's alignment of a due time `at`.
    fn after_timer_tick(&self, at: Instant) -> Instant {
        after_timer_tick(self.timer_ticks, self.quantum, at)
    }

    /// Rule 6.
    fn report_stuck(&self, index: usize, slot: &WorkerSlot, running: Duration) {
        let waiting = slot.preempted_waiting();
        if waiting == 0 || self.reported_stuck.swap(true, Ordering::Relaxed) {
            return;
        }
        super::notice(format_args!(
            "maniac: worker {index} has been in one poll for {running:.1?}, never at a point \
             where it could be preempted, while {waiting} preempted poll(s) wait to resume on that \
             worker. If that poll is blocked waiting for one of them (on a lock other than std's \
             Mutex, RwLock and Once, which are handled; on a blocking channel or a condition \
             variable), the worker is deadlocked: hold such locks inside \
             maniac::preempt::no_preempt, or use async locks and channels (maniac::preempt docs, \
             \"Hazards\"). Reported once per runtime."
        ));
    }

    fn signal(&self, slot: &WorkerSlot) {
        match slot.send(self.signal) {
            Ok(true) => slot.request_sent(),
            Ok(false) => slot.withdraw_request(),
            Err(error) => {
                slot.withdraw_request();
                self.report_unsendable(error);
            }
        }
    }

    /// The kernel refused a request's signal: said once per runtime, since nothing is
    /// preempted while it does.
    fn report_unsendable(&self, error: std::io::Error) {
        if self.reported_unsendable.swap(true, Ordering::Relaxed) {
            return;
        }
        super::notice(format_args!(
            "maniac: the preemption signal {} could not be sent ({error}); nothing is preempted \
             while that lasts. A real-time signal is refused once the user's RLIMIT_SIGPENDING \
             is reached; a standard one (the default, SIGURG) is always delivered. Reported \
             once per runtime.",
            self.signal
        ));
    }

    /// Rule 1's sleep: until `wake`, or until a worker spots a poll (rule 7) or hands one back.
    /// `seen`: the wake count observed before the looks this sleep follows, so that a wake-up
    /// since ends it at once (one before was for what those looks have seen).
    fn sleep_until(&self, wake: Instant, seen: u32) {
        if self.stopped() {
            return;
        }
        let timeout = wake.saturating_duration_since(Instant::now());
        self.wake.wait(seen, Some(timeout));
    }

    /// Rule 7, on worker `index`'s side: its maintenance `maintain` (which returns the time it
    /// read), and around it a look at the next other worker in a poll, if the monitor is calm
    /// and the look is due.
    pub(crate) fn maintain_and_spot(
        &self,
        index: usize,
        spotter: &mut Spotter,
        maintain: impl FnOnce() -> Instant,
    ) {
        // Judged by the previous maintenance's time (this one's is read after the poll state),
        // and so is the next look's due time.
        let judged_at = spotter.last_maintenance;
        // The time first: the shared flag is read at most eight times a quantum, not at every
        // maintenance.
        let look_due = match (judged_at, spotter.next_look) {
            (Some(last), Some(next)) => last >= next,
            _ => true,
        };
        let due = look_due && self.slots.len() > 1 && self.calm.load(Ordering::Relaxed);
        let target = if due {
            self.next_in_poll(index, spotter)
        } else {
            None
        };
        // The clock after the poll state: the poll began before this time, so a poll first seen
        // now is not taken to have run longer than it has.
        let now = maintain();
        spotter.last_maintenance = Some(now);
        if !look_due {
            return;
        }
        spotter.next_look = Some(judged_at.unwrap_or(now) + self.quantum / 8);
        if !due {
            return;
        }
        let Some((target, poll)) = target else {
            return;
        };
        let slot = &self.slots[target];
        let news =
            slot.poll_start(poll).is_none() && slot.sight(poll, now, spot_after(self.quantum));
        if news {
            self.wake.wake();
        }
    }

    /// Rule 7: the next worker after the spotter's last target, other than `index`, that is in
    /// a poll, and that poll (a look at a parked worker would be wasted). Moves the turn on.
    fn next_in_poll(&self, index: usize, spotter: &mut Spotter) -> Option<(usize, u64)> {
        let workers = self.slots.len();
        let candidates = (spotter.next..spotter.next + workers).map(|at| at % workers);
        for target in candidates.filter(|&target| target != index) {
            if let Some(poll) = self.slots[target].running_poll() {
                spotter.next = target + 1;
                return Some((target, poll));
            }
        }
        spotter.next += 1;
        None
    }

    /// Rule 3, on the worker's side: the first worker to unpark during such a sleep ends it
    /// (and clears `sleeping`, so that the others pay no system call).
    fn worker_unparked(&self, slot: &WorkerSlot) {
        slot.set_parked(false);
        if self.sleeping.load(Ordering::SeqCst) && self.sleeping.swap(false, Ordering::SeqCst) {
            self.wake.wake();
        }
    }

    /// Rule 3, on the monitor's side, before a sleep with no periodic look: whether the workers
    /// that its looks found parked (`parked[index]`) are still parked, now that it is known to
    /// sleep (the first that unparks from now on wakes it, and clears `sleeping`; else the
    /// caller clears it after the sleep; if this returns false, it is cleared here). (Only with
    /// some worker parked: a worker in a timed poll that
    /// parks and unparks meanwhile runs unseen until the next due look, as rule 2 says.)
    fn sleep_past_parked(&self, parked: &[bool]) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        let still = self
            .slots
            .iter()
            .zip(parked)
            .all(|(slot, &parked)| !parked || slot.is_parked());
        if !still {
            self.sleeping.store(false, Ordering::SeqCst);
        }
        still
    }

    /// Rule 3, on the monitor's side.
    fn sleep_while_all_parked(&self) {
        loop {
            // Again each time: the worker whose unparking woke the monitor cleared it.
            self.sleeping.store(true, Ordering::SeqCst);
            let seen = self.wake.observe();
            if self.stopped() || !self.slots.iter().all(WorkerSlot::is_parked) {
                break;
            }
            self.wake.wait(seen, None);
        }
        self.sleeping.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preempt::slot::OwnTimerExpiry;

    const QUANTUM: Duration = Duration::from_millis(1);

    /// A monitor's shared state with `workers` slots and no thread: its signals find no worker
    /// thread to go to, so every request is withdrawn at once (`MonitorShared::signal`). The
    /// code map is read first (rule 8: no request before).
    fn monitor(workers: usize, quantum: Duration, origin: Instant) -> MonitorShared {
        safepoint::read_code_map();
        MonitorShared::new(workers, quantum, libc::SIGURG, TickGrid::new(origin))
    }

    fn watches(workers: usize) -> Watches {
        Watches {
            workers: vec![Watch::default(); workers],
            delay: INITIAL_DELAY,
        }
    }

    /// The running poll of `slot` is preempted; returns the poll that follows, which runs.
    fn preempt_running(slot: &WorkerSlot) -> u64 {
        slot.note_preemption();
        slot.end_poll();
        slot.begin_poll();
        slot.running_poll().unwrap()
    }

    /// A poll begins on `slot` and is preempted; returns the poll that follows, which runs.
    fn preempt_one_poll(slot: &WorkerSlot) -> u64 {
        slot.begin_poll();
        preempt_running(slot)
    }

    /// One worker in a poll: the monitor, its watches and that poll.
    fn one_worker_in_a_poll() -> (MonitorShared, Watches, u64) {
        let shared = monitor(1, QUANTUM, Instant::now());
        shared.slots[0].begin_poll();
        let poll = shared.slots[0].running_poll().unwrap();
        (shared, watches(1), poll)
    }

    fn next_poll(slot: &WorkerSlot) -> u64 {
        slot.end_poll();
        slot.begin_poll();
        slot.running_poll().unwrap()
    }

    /// Rule 2: the own timer wakes the monitor whenever it stops timing a worker's polls (a
    /// poll it finds unnoted, or parking), so that the monitor, whose backup looks for covered
    /// polls are rare, times what follows at once; a hand-back between the monitor's looks and
    /// its sleep ends that sleep.
    #[test]
    fn an_own_timer_that_hands_a_worker_back_wakes_the_monitor() {
        let shared = monitor(1, QUANTUM, Instant::now());
        let (slot, wake) = (&shared.slots[0], &shared.wake);
        // The timer signals this thread (SIGURG: ignored, or forwarded to the default action,
        // which ignores it) only if the test is kept off the CPU for a quantum between an arming
        // and the hand-back or parking that disarms it.
        slot.create_own_timer(libc::SIGURG).expect("no timer");
        let covered = preempt_one_poll(slot);
        assert!(slot.own_timer_covers(covered));
        let seen = wake.observe();
        let look = shared.look(
            0,
            &mut watches(1),
            Instant::now(),
            look_period(QUANTUM),
            false,
        );
        assert!(
            look.own_timed,
            "the monitor did not leave the covered poll to the timer"
        );
        // The noted polls after the preemption run out; the next is not noted.
        let (mut last_noted, mut poll) = (covered, covered);
        while slot.poll_start(poll).is_some() {
            last_noted = poll;
            poll = next_poll(slot);
        }
        assert!(slot.own_timer_covers(last_noted));
        assert_eq!(wake.observe(), seen, "no hand-back before the timer fires");
        assert_eq!(slot.own_timer_expired(), OwnTimerExpiry::NotDue);
        assert!(
            !slot.own_timer_covers(last_noted),
            "still timed after the hand-back"
        );
        assert_ne!(
            wake.observe(),
            seen,
            "the hand-back did not wake the monitor"
        );
        // The look above had put the backup off for eight quanta; the hand-back since ends the
        // sleep at once.
        let began = Instant::now();
        shared.sleep_until(look.due.expect("no due time"), seen);
        assert!(began.elapsed() < QUANTUM * 4, "slept {:?}", began.elapsed());
        // Parking after a preemption hands the worker back too; parking with nothing timed
        // wakes nobody.
        slot.end_poll();
        let covered = preempt_one_poll(slot);
        assert!(slot.own_timer_covers(covered));
        let seen = wake.observe();
        slot.end_poll();
        slot.set_parked(true);
        let parked = wake.observe();
        assert_ne!(parked, seen, "parking did not wake the monitor");
        slot.set_parked(false);
        slot.set_parked(true);
        assert_eq!(wake.observe(), parked);
        slot.delete_own_timer();
    }

    /// Rule 2: between polls its own timer is timing, a worker needs the backup look only, not
    /// the periodic ones (the timer covers a noted poll and hands back an unnoted one); once
    /// the timer has been silent for the backup, or has handed the worker back, the monitor
    /// looks at it periodically again.
    #[test]
    fn a_worker_between_polls_its_own_timer_times_needs_only_the_backup_look() {
        let shared = monitor(1, QUANTUM, Instant::now());
        let slot = &shared.slots[0];
        let period = look_period(QUANTUM);
        // As in the test above, the timer's signal is ignored if it comes at all.
        slot.create_own_timer(libc::SIGURG).expect("no timer");
        preempt_one_poll(slot);
        slot.end_poll();
        let mut watches = watches(1);
        let now = Instant::now();
        let look = shared.look(0, &mut watches, now, period, false);
        assert!(look.own_timed && !look.requested, "{look:?}");
        let backup = look.due.expect("no backup look");
        let backup_after = own_timer_backup_after(QUANTUM);
        assert!(
            backup >= now + backup_after && backup <= now + backup_after + QUANTUM / 8,
            "backup look {:?} after the look",
            backup - now
        );
        let silent = shared.look(0, &mut watches, backup, period, false);
        assert!(
            !silent.own_timed && silent.due.is_none(),
            "a silent timer still trusted: {silent:?}"
        );
        // Heard from again (its count changed), then handed back: periodic looks.
        slot.count_own_timer_signal();
        let heard = shared.look(0, &mut watches, backup, period, false);
        assert!(heard.own_timed, "{heard:?}");
        slot.set_parked(true);
        slot.set_parked(false);
        let handed_back = shared.look(0, &mut watches, backup, period, false);
        assert!(
            !handed_back.own_timed && handed_back.due.is_none(),
            "{handed_back:?}"
        );
        slot.delete_own_timer();
    }

    #[test]
    fn the_polls_after_a_preemption_note_their_start_until_the_worker_parks() {
        let slot = WorkerSlot::new(QUANTUM, TickGrid::new(Instant::now()), Arc::default());
        slot.begin_poll();
        assert!(slot.poll_start(slot.running_poll().unwrap()).is_none());
        let before = Instant::now();
        let follower = preempt_one_poll(&slot);
        let (began, follows) = slot.poll_start(follower).unwrap();
        assert!(follows && began >= before && began <= Instant::now());
        let second = next_poll(&slot);
        let (later, follows) = slot.poll_start(second).unwrap();
        assert!(!follows && later >= began);
        for _ in 2..super::super::slot::STARTS_NOTED {
            let poll = next_poll(&slot);
            assert!(slot.poll_start(poll).is_some());
        }
        let unnoted = next_poll(&slot);
        assert!(slot.poll_start(unnoted).is_none());
        preempt_one_poll(&slot);
        slot.end_poll();
        slot.set_parked(true);
        slot.set_parked(false);
        slot.begin_poll();
        assert!(slot.poll_start(slot.running_poll().unwrap()).is_none());
    }

    #[test]
    fn a_poll_that_follows_a_preemption_runs_since_it_began() {
        let shared = monitor(1, QUANTUM, Instant::now());
        let mut watches = watches(1);
        preempt_one_poll(&shared.slots[0]);
        // First seen a quantum after it began: requested at this very look.
        let later = Instant::now() + QUANTUM;
        let look = shared.look(0, &mut watches, later, QUANTUM / 4, false);
        assert!(look.requested, "{look:?}");
    }

    #[test]
    fn a_poll_first_seen_without_a_preemption_runs_since_it_was_seen() {
        let (shared, mut watches, _) = one_worker_in_a_poll();
        let now = Instant::now();
        let look = shared.look(0, &mut watches, now, QUANTUM / 4, false);
        assert!(!look.requested && !look.long, "{look:?}");
        let due = look.due.unwrap();
        assert!(due >= now + QUANTUM && due <= now + QUANTUM + QUANTUM / 8);
        let look = shared.look(0, &mut watches, due, QUANTUM / 4, false);
        assert!(look.requested && look.long, "{look:?}");
    }

    /// Short polls after a preemption are timed from their own starts, not from the
    /// preemption: timed from it, each poll the monitor found running a quantum after a
    /// preemption was preempted in turn, and that preemption started the next such slice
    /// (the review of 500c351 measured up to 144 preemptions of 300 µs polls in 400 ms).
    #[test]
    fn a_later_poll_runs_since_it_began_not_since_the_preemption() {
        let shared = monitor(1, QUANTUM, Instant::now());
        let slot = &shared.slots[0];
        let mut watches = watches(1);
        preempt_one_poll(slot);
        std::thread::sleep(QUANTUM * 2);
        let short = next_poll(slot);
        let (began, _) = slot.poll_start(short).unwrap();
        let look = shared.look(0, &mut watches, began + QUANTUM / 2, QUANTUM / 4, false);
        assert!(!look.requested, "{look:?}");
        let look = shared.look(0, &mut watches, began + QUANTUM, QUANTUM / 4, false);
        assert!(look.requested, "{look:?}");
    }

    /// The look after a request is due when the following poll would reach its quantum,
    /// unless this worker's last preemption took more than one request: then a period later.
    #[test]
    fn requests_that_had_to_be_repeated_are_repeated_a_period_later() {
        let origin = Instant::now();
        let shared = monitor(1, QUANTUM, origin);
        let slot = &shared.slots[0];
        let period = QUANTUM / 4;
        let mut watches = watches(1);
        slot.begin_poll();
        // Ahead of the clock: the look takes the later of its `now` and the clock's.
        let seen = Instant::now() + QUANTUM;
        shared.look(0, &mut watches, seen, period, false);
        let first = shared.look(0, &mut watches, seen + QUANTUM, period, false);
        assert!(first.requested);
        assert!(first.due.unwrap() >= seen + QUANTUM * 2, "{first:?}");
        // The request was taken (and deferred): the same poll still runs.
        let again = shared.look(0, &mut watches, seen + QUANTUM * 2, period, false);
        assert!(again.requested);
        assert_eq!(again.due, Some(seen + QUANTUM * 2 + period));
        // Preempted at last: the next slice still repeats its requests a period apart.
        preempt_running(slot);
        let next = shared.look(0, &mut watches, Instant::now() + QUANTUM * 2, period, false);
        assert!(next.requested);
        assert!(next.due.unwrap() <= Instant::now() + QUANTUM * 2 + period);
    }

    /// Rule 2: a request still pending, unchanged, at two looks between which its worker thread
    /// ran for a period has lost its signal (`slot` module doc, "requested": the kernel drops
    /// one merged into a voided own timer's), and is renewed for the running poll; not while
    /// the thread is kept off the CPU (its signal is still to come), however long, and not
    /// one the handler took meanwhile.
    #[test]
    fn a_request_pending_while_its_worker_ran_a_period_is_renewed() {
        // The handler, so that a request's signal has the process id; on a thread it has no
        // slot for, it passes SIGURG on to the default action: ignored.
        crate::preempt::signal::install(libc::SIGURG).expect("cannot install the handler");
        let shared = monitor(1, QUANTUM, Instant::now());
        let slot = &shared.slots[0];
        let period = QUANTUM / 4;
        let mut watches = watches(1);
        let (to_worker, orders) = std::sync::mpsc::channel::<bool>();
        let (to_test, done) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|scope| {
            // Dropped if the test fails, which ends the worker thread.
            let to_worker = to_worker;
            // The worker thread: attached (the monitor's signals to it are ignored), off the
            // CPU until told to run for two periods.
            scope.spawn(move || {
                slot.attach_current_thread();
                to_test.send(()).unwrap();
                while orders.recv().unwrap() {
                    let ran = slot.thread_cpu_time().unwrap();
                    while slot.thread_cpu_time().unwrap() - ran < period * 2 {
                        std::hint::spin_loop();
                    }
                    to_test.send(()).unwrap();
                }
                slot.detach_current_thread();
            });
            done.recv().unwrap();
            // A request for an earlier poll whose signal never came (made by hand: a signal of
            // the monitor's would not be taken, as no handler of ours runs for this slot).
            slot.begin_poll();
            let lost = slot.running_poll().unwrap();
            assert!(slot.request(lost));
            slot.request_sent();
            next_poll(slot);
            // Ahead of the clock: the look takes the later of its `now` and the clock's.
            let seen = Instant::now() + QUANTUM;
            shared.look(0, &mut watches, seen, period, false);
            let first = shared.look(0, &mut watches, seen + QUANTUM, period, false);
            assert!(!first.requested, "{first:?}");
            assert_eq!(first.due, Some(seen + QUANTUM + period));
            // Off the CPU for as long as it takes: its signal is still to come.
            std::thread::sleep(period * 2);
            let idle = shared.look(0, &mut watches, seen + QUANTUM * 10, period, false);
            assert!(!idle.requested, "renewed while its thread was off the CPU");
            // It runs for two periods with the request still pending: renewed.
            to_worker.send(true).unwrap();
            done.recv().unwrap();
            let renewed = shared.look(0, &mut watches, seen + QUANTUM * 11, period, false);
            assert!(renewed.requested, "the lost request was not renewed");
            assert_eq!(slot.stats().requests_renewed(), 1);
            let taken = slot
                .take_request()
                .expect("the renewed request is not pending");
            assert!(taken.current && taken.renewed, "{taken:?}");
            // A request the handler takes while its thread runs is not renewed: the next look
            // makes a request of its own.
            let next = next_poll(slot);
            let at = seen + QUANTUM * 20;
            shared.look(0, &mut watches, at, period, false);
            assert!(slot.request(next));
            slot.request_sent();
            assert!(
                !shared
                    .look(0, &mut watches, at + QUANTUM, period, false)
                    .requested
            );
            to_worker.send(true).unwrap();
            done.recv().unwrap();
            assert!(slot.take_request().is_some());
            let fresh = shared.look(0, &mut watches, at + QUANTUM + period, period, false);
            assert!(fresh.requested);
            assert_eq!(
                slot.stats().requests_renewed(),
                1,
                "a fresh request counted as renewed"
            );
            to_worker.send(false).unwrap();
        });
    }

    /// A preemption that took one request ends the repeating, even when the look after it finds
    /// the worker between polls and the poll that followed the preemption already over.
    #[test]
    fn a_preemption_at_the_first_request_ends_the_repeating() {
        let shared = monitor(1, QUANTUM, Instant::now());
        let slot = &shared.slots[0];
        let period = QUANTUM / 4;
        let mut watches = watches(1);
        watches.workers[0].deferring = true;
        slot.begin_poll();
        // Ahead of the clock: the look takes the later of its `now` and the clock's.
        let seen = Instant::now() + QUANTUM;
        shared.look(0, &mut watches, seen, period, false);
        assert!(
            shared
                .look(0, &mut watches, seen + QUANTUM, period, false)
                .requested
        );
        preempt_running(slot);
        slot.end_poll();
        assert!(
            shared
                .look(0, &mut watches, Instant::now(), period, false)
                .due
                .is_none()
        );
        slot.begin_poll();
        let resumed = Instant::now();
        shared.look(0, &mut watches, resumed, period, false);
        assert!(!watches.workers[0].deferring, "{:?}", watches.workers[0]);
        let next = shared.look(0, &mut watches, resumed + QUANTUM * 2, period, false);
        assert!(next.requested);
        assert!(next.due.unwrap() >= resumed + QUANTUM * 3, "{next:?}");
    }

    #[test]
    fn due_times_move_to_the_next_timer_tick_within_an_eighth_of_a_quantum() {
        let origin = Instant::now();
        let at = |micros| origin + Duration::from_micros(micros);
        let shared = monitor(1, QUANTUM, origin);
        assert_eq!(shared.after_timer_tick(at(950)), at(1000));
        assert_eq!(shared.after_timer_tick(at(1000)), at(1000));
        assert_eq!(shared.after_timer_tick(at(1001)), at(1100));
        let shared = monitor(1, Duration::from_micros(100), origin);
        assert_eq!(shared.after_timer_tick(at(950)), at(950));
        assert_eq!(shared.after_timer_tick(at(990)), at(1000));
        // Far from the origin (beyond u32 ticks): no overflow, still aligned.
        let far = Duration::from_secs(10 * 24 * 3600);
        let shared = monitor(1, QUANTUM, origin);
        assert_eq!(
            shared.after_timer_tick(origin + far - Duration::from_micros(10)),
            origin + far
        );
    }

    /// Rule 7: a calm monitor gives a poll it sees for the first time no due look, and asks for
    /// one it finds again at its next look at once.
    #[test]
    fn a_calm_monitor_asks_for_a_poll_it_finds_at_two_looks() {
        let (shared, mut watches, _) = one_worker_in_a_poll();
        let period = QUANTUM / 4;
        let now = Instant::now();
        let first = shared.look(0, &mut watches, now, period, true);
        assert!(first.due.is_none() && !first.requested, "{first:?}");
        let calm_sleep = QUANTUM * CALM_QUANTA;
        let second = shared.look(0, &mut watches, now + calm_sleep, period, true);
        assert!(second.long && second.requested, "{second:?}");
        // A poll that began after the first look is new at the second: not yet asked for.
        let next = next_poll(&shared.slots[0]);
        let third = shared.look(0, &mut watches, now + calm_sleep * 2, period, true);
        assert!(
            !third.long && !third.requested && third.due.is_none(),
            "{third:?}"
        );
        assert_eq!(shared.slots[0].running_poll(), Some(next));
    }

    /// Rule 7: a poll another worker spotted is timed, by a calm monitor, from when a worker
    /// first saw it.
    #[test]
    fn a_spotted_poll_runs_since_it_was_first_seen() {
        let (shared, mut watches, poll) = one_worker_in_a_poll();
        let slot = &shared.slots[0];
        let period = QUANTUM / 4;
        let seen = Instant::now();
        let spotted = seen + spot_after(QUANTUM);
        assert!(!slot.sight(poll, seen, spot_after(QUANTUM)));
        assert!(
            slot.spotted_since(poll).is_none(),
            "a sighting alone is no spot"
        );
        assert!(slot.sight(poll, spotted, spot_after(QUANTUM)));
        assert_eq!(slot.spotted_since(poll), Some(seen));
        let look = shared.look(0, &mut watches, spotted, period, true);
        let due = look.due.expect("a spotted poll has a due look");
        assert!(
            due >= seen + QUANTUM && due <= seen + QUANTUM + QUANTUM / 8,
            "{look:?}"
        );
        assert!(
            shared
                .look(0, &mut watches, seen + QUANTUM, period, true)
                .requested
        );
        let other = next_poll(slot);
        assert!(slot.spotted_since(other).is_none());
    }

    /// Rule 7, the spotters' side: they look at the other workers in turn; a poll seen running
    /// for three quarters of a quantum since its first sighting (by any worker) wakes the
    /// monitor, once; a shorter one, one with a noted start, or an older poll sighted late does
    /// not; and nothing is looked at for a monitor that is not calm.
    #[test]
    fn workers_spot_long_polls_in_turn_for_a_calm_monitor() {
        let shared = monitor(3, QUANTUM, Instant::now());
        shared.calm.store(true, Ordering::Relaxed);
        let (mut first, mut second) = (Spotter::default(), Spotter::default());
        let t0 = Instant::now();
        let look = |spotter: &mut Spotter, index: usize, at: Instant| {
            spotter.next_look = None; // due
            shared.maintain_and_spot(index, spotter, || at);
        };
        shared.slots[1].begin_poll();
        preempt_one_poll(&shared.slots[2]);
        let (long, noted) = (
            shared.slots[1].running_poll().unwrap(),
            shared.slots[2].running_poll().unwrap(),
        );
        look(&mut first, 0, t0); // slot 1: first sighting
        look(&mut first, 0, t0); // slot 2
        let late = t0 + spot_after(QUANTUM);
        // Slot 1, slot 0 (not in a poll) skipped; then slot 1 again.
        look(&mut second, 2, late - Duration::from_micros(1));
        look(&mut second, 2, late - Duration::from_micros(1));
        assert_eq!(second.next, 2);
        assert!(
            shared.slots[1].spotted_since(long).is_none(),
            "spotted too soon"
        );
        let before = shared.wake.observe();
        look(&mut first, 0, late); // slot 1, by another worker than the first sighting's
        assert_eq!(shared.slots[1].spotted_since(long), Some(t0));
        assert_ne!(
            shared.wake.observe(),
            before,
            "the spot did not wake the monitor"
        );
        look(&mut first, 0, late); // slot 2
        assert!(
            shared.slots[2].spotted_since(noted).is_none(),
            "the monitor times this one from its noted start"
        );
        let before = shared.wake.observe();
        look(&mut first, 0, late + QUANTUM); // slot 1 again: no news
        assert_eq!(shared.wake.observe(), before, "woken for no news");
        // A later poll replaces the record; a sighting of the older one, late, does not.
        let later = next_poll(&shared.slots[1]);
        assert!(!shared.slots[1].sight(later, late, spot_after(QUANTUM)));
        assert!(!shared.slots[1].sight(long, late + QUANTUM, spot_after(QUANTUM)));
        assert!(shared.slots[1].sight(later, late + QUANTUM, spot_after(QUANTUM)));
        assert_eq!(shared.slots[1].spotted_since(later), Some(late));
        // A monitor that is not calm gets no look (the turn stays where it was), but the
        // maintenance runs, and the pace goes on (the flag is read only when a look is due).
        shared.calm.store(false, Ordering::Relaxed);
        let mut idle = Spotter::default();
        let mut maintained = false;
        shared.maintain_and_spot(0, &mut idle, || {
            maintained = true;
            t0
        });
        assert!(maintained && idle.next == 0 && idle.next_look == Some(t0 + QUANTUM / 8));
    }

    /// Rule 7's pace: a worker whose maintenances come often looks at most every eighth of a
    /// quantum; one whose maintenances come seldom looks at each.
    #[test]
    fn a_spotter_looks_at_most_every_eighth_of_a_quantum() {
        let shared = monitor(2, QUANTUM, Instant::now());
        shared.calm.store(true, Ordering::Relaxed);
        let mut spotter = Spotter::default();
        let mut now = Instant::now();
        let mut looks = 0;
        let mut maintain = |spotter: &mut Spotter, step: Duration| {
            now += step;
            let before = spotter.next_look;
            shared.maintain_and_spot(0, spotter, || now);
            usize::from(spotter.next_look != before)
        };
        for _ in 0..100_000 {
            looks += maintain(&mut spotter, Duration::from_micros(3));
        }
        // 300 ms of maintenances: a look every 42 of them (126 µs) would be 2,380.
        assert!((2_200..=2_400).contains(&looks), "{looks} looks in 300 ms");
        // (The first is judged by the last quick maintenance's time, and may not look.)
        maintain(&mut spotter, QUANTUM);
        let looks: usize = (0..20).map(|_| maintain(&mut spotter, QUANTUM)).sum();
        assert_eq!(looks, 20);
    }

    /// Rule 7: a spot wakes the monitor from its sleep, and one made while it was awake keeps it
    /// from going to sleep.
    #[test]
    fn a_spot_wakes_the_sleeping_monitor() {
        let shared = Arc::new(monitor(2, QUANTUM, Instant::now()));
        shared.calm.store(true, Ordering::Relaxed);
        shared.slots[1].begin_poll();
        let poll = shared.slots[1].running_poll().unwrap();
        let t0 = Instant::now();
        assert!(!shared.slots[1].sight(poll, t0, spot_after(QUANTUM)));
        let sleeper = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let began = Instant::now();
                shared.sleep_until(began + Duration::from_secs(30), shared.wake.observe());
                began.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        shared.maintain_and_spot(0, &mut Spotter::default(), || t0 + QUANTUM);
        let slept = sleeper.join().unwrap();
        assert!(
            slept < Duration::from_secs(10),
            "the spot did not wake it: {slept:?}"
        );
        // A spot while the monitor is awake, after it observed the count, ends its next sleep
        // at once.
        let poll = next_poll(&shared.slots[1]);
        assert!(!shared.slots[1].sight(poll, t0, spot_after(QUANTUM)));
        let seen = shared.wake.observe();
        shared.maintain_and_spot(0, &mut Spotter::default(), || t0 + QUANTUM);
        let began = Instant::now();
        shared.sleep_until(began + Duration::from_secs(30), seen);
        assert!(began.elapsed() < Duration::from_secs(10));
    }

    /// Rule 3: the monitor sleeps past a parked worker (no periodic look) only if it finds it
    /// still parked once it is known to sleep, and that worker, unparking, then wakes it.
    #[test]
    fn a_worker_that_unparks_wakes_a_monitor_sleeping_past_it() {
        let shared = Arc::new(monitor(2, QUANTUM, Instant::now()));
        let parked = [false, true];
        shared.slots[1].set_parked(true);
        let seen = shared.wake.observe();
        assert!(shared.sleep_past_parked(&parked));
        let sleeper = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let began = Instant::now();
                shared.sleep_until(began + Duration::from_secs(30), seen);
                shared.sleeping.store(false, Ordering::SeqCst);
                began.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        shared.worker_unparked(&shared.slots[1]);
        let slept = sleeper.join().unwrap();
        assert!(
            slept < Duration::from_secs(10),
            "the unparking did not wake it: {slept:?}"
        );
        // Unparked between the look and the check: no sleep past it.
        shared.slots[1].set_parked(true);
        shared.worker_unparked(&shared.slots[1]);
        assert!(!shared.sleep_past_parked(&parked));
    }

    /// Rules 1 and 7's back-off: doubling up to eight quanta, calm from one quantum on, back to
    /// the period when a poll overran; within ten quanta of a request, up to one quantum and
    /// never calm.
    #[test]
    fn the_monitor_is_calm_only_ten_quanta_after_its_last_request() {
        let shared = monitor(1, QUANTUM, Instant::now());
        let period = QUANTUM / 4;
        let now = Instant::now();
        let mut sleep = period;
        let mut steps = Vec::new();
        for _ in 0..6 {
            let calm;
            (sleep, calm) = shared.back_off(sleep, period, false, shared.settled(None, now));
            steps.push((sleep, calm));
        }
        let q = QUANTUM;
        assert_eq!(
            steps,
            [
                (q / 2, false),
                (q, true),
                (q * 2, true),
                (q * 4, true),
                (q * 8, true),
                (q * 8, true)
            ]
        );
        assert_eq!(shared.back_off(q * 8, period, true, true), (period, false));
        let settled = |at| shared.settled(Some(now), at);
        assert_eq!(
            shared.back_off(q, period, false, settled(now + q * 5)),
            (q, false)
        );
        assert_eq!(
            shared.back_off(q, period, false, settled(now + q * 11)),
            (q * 2, true)
        );
    }

    /// Rule 7: a poll a calm look saw first, and a worker had sighted before it, is timed from
    /// that first sighting once it is spotted.
    #[test]
    fn a_poll_seen_at_a_calm_look_and_spotted_later_runs_since_its_first_sighting() {
        let (shared, mut watches, poll) = one_worker_in_a_poll();
        let slot = &shared.slots[0];
        let period = QUANTUM / 4;
        let t0 = Instant::now();
        assert!(!slot.sight(poll, t0, spot_after(QUANTUM)));
        let calm_look = shared.look(0, &mut watches, t0 + QUANTUM * 7 / 10, period, true);
        assert!(calm_look.due.is_none(), "{calm_look:?}");
        let spotted = t0 + spot_after(QUANTUM);
        assert!(slot.sight(poll, spotted, spot_after(QUANTUM)));
        let look = shared.look(0, &mut watches, spotted, period, true);
        let due = look.due.expect("a spotted poll has a due look");
        assert!(
            due >= t0 + QUANTUM && due <= t0 + QUANTUM + QUANTUM / 8,
            "{look:?}"
        );
    }

    /// Rule 7: a spotter reads the poll state before its maintenance reads the clock, so a poll
    /// that began during the maintenance is not recorded with that time; and it skips workers
    /// not in a poll.
    #[test]
    fn a_spotter_reads_the_poll_state_first_and_looks_only_at_polls() {
        let shared = monitor(3, QUANTUM, Instant::now());
        shared.calm.store(true, Ordering::Relaxed);
        let after = spot_after(QUANTUM);
        shared.slots[2].begin_poll();
        let before = shared.slots[2].running_poll().unwrap();
        let t = Instant::now();
        let mut spotter = Spotter::default();
        // Worker 1 is not in a poll: worker 0's look goes to worker 2.
        shared.maintain_and_spot(0, &mut spotter, || {
            next_poll(&shared.slots[2]);
            t
        });
        let during = shared.slots[2].running_poll().unwrap();
        assert!(
            shared.slots[2].sight(before, t + after, after),
            "the poll loaded before the maintenance was recorded with its time"
        );
        assert!(!shared.slots[2].sight(during, t + after, after));
        assert_eq!(spotter.next, 3);
    }

    /// The voluntary context switches of thread `tid` of this process so far: each of the
    /// monitor's sleeps is one.
    fn voluntary_switches(tid: libc::pid_t) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
            .expect("cannot read the monitor thread's status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|count| count.trim().parse().ok())
            .expect("no voluntary_ctxt_switches in /proc status")
    }

    /// Rule 3 through the monitor's own loop (`run`, on a thread of its own): beside a worker
    /// timed by its own timer, a parked worker costs no periodic looks (the monitor wakes only
    /// for the backup looks, every eight quanta, not every quantum), and when it unparks it
    /// wakes the monitor, which then times its poll at once instead of after the backup.
    #[test]
    fn the_monitor_loop_sleeps_past_a_parked_worker_until_it_unparks() {
        const QUANTUM: Duration = Duration::from_millis(10);
        const PHASE: Duration = Duration::from_millis(400);
        // The handler, as a runtime installs it: it also records the process id the monitor's
        // signals need.
        crate::preempt::signal::install(libc::SIGURG).expect("cannot install the handler");
        let shared = Arc::new(monitor(2, QUANTUM, Instant::now()));
        let (timed, parked) = (&shared.slots[0], &shared.slots[1]);
        // Worker 0: a poll its own timer covers, heard from every millisecond (this thread
        // stands in for its handler; the timer's one signal, a quantum after the arming, finds
        // no slot on this thread, and the handler passes it to SIGURG's earlier action, which
        // ignores it).
        timed.create_own_timer(libc::SIGURG).expect("no timer");
        let covered = preempt_one_poll(timed);
        assert!(timed.own_timer_covers(covered));
        // Worker 1: parked, on a thread that blocks SIGURG, so that a request the monitor signals
        // stays pending where the test can see it.
        parked.set_parked(true);
        let (attached_tx, attached_rx) = std::sync::mpsc::channel();
        let (finish_tx, finish_rx) = std::sync::mpsc::channel::<()>();
        let target = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                // SAFETY: a zeroed sigset is filled by sigemptyset; blocking a signal on this
                // thread has no other effect.
                unsafe {
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    libc::sigaddset(&mut set, libc::SIGURG);
                    libc::pthread_sigmask(libc::SIG_BLOCK, &set, ptr::null_mut());
                }
                shared.slots[1].attach_current_thread();
                attached_tx.send(()).unwrap();
                let _ = finish_rx.recv();
                shared.slots[1].detach_current_thread();
            })
        };
        attached_rx.recv().unwrap();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let monitor_thread = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                // SAFETY: gettid has no preconditions.
                tid_tx.send(unsafe { libc::gettid() }).unwrap();
                shared.run();
            })
        };
        let tid = tid_rx.recv().unwrap();
        let hear_from_the_timer_until = |end: Instant| {
            while Instant::now() < end {
                timed.count_own_timer_signal();
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        // Settle (the first looks), then count the sleeps over 40 quanta.
        hear_from_the_timer_until(Instant::now() + QUANTUM * 2);
        let before = voluntary_switches(tid);
        hear_from_the_timer_until(Instant::now() + PHASE);
        let sleeps = voluntary_switches(tid) - before;
        // About 5 backup looks; a look every quantum would be 40.
        assert!(
            sleeps < 20,
            "the monitor woke {sleeps} times in {PHASE:?} beside a parked worker and a worker \
             its own timer times (quantum {QUANTUM:?})"
        );
        // Worker 1 unparks and begins a long poll: the monitor asks for it about a quantum
        // later (two, if its first look comes before the poll), not after the next backup look.
        let unparked = Instant::now();
        shared.worker_unparked(parked);
        parked.begin_poll();
        let long_poll = parked.running_poll().unwrap();
        let asked = loop {
            timed.count_own_timer_signal();
            if let Some(request) = parked.take_request() {
                break request;
            }
            assert!(
                unparked.elapsed() < Duration::from_secs(10),
                "the monitor never asked for the unparked worker's poll"
            );
            std::thread::sleep(Duration::from_micros(200));
        };
        let after = unparked.elapsed();
        assert!(asked.current, "the request was not for poll {long_poll}");
        assert!(
            after >= QUANTUM && after < own_timer_backup_after(QUANTUM) * 3 / 4,
            "asked {after:?} after the worker unparked (quantum {QUANTUM:?}, backup looks every \
             {:?})",
            own_timer_backup_after(QUANTUM)
        );
        shared.stop.store(true, Ordering::SeqCst);
        shared.wake.wake();
        monitor_thread.join().unwrap();
        finish_tx.send(()).unwrap();
        target.join().unwrap();
        timed.delete_own_timer();
    }
}
