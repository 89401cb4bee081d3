//! A worker's preemption slot: what the worker tells the monitor about its polls, the request
//! the monitor leaves for the signal handler, and the statistics.
//!
//! ## `poll_state`
//! `(sequence << SEQUENCE_SHIFT) | (starts_to_note << 1) | in_poll`. Only the worker thread
//! writes it, with plain stores (the hot path pays no read-modify-write):
//! [`WorkerSlot::begin_poll`] starts a new sequence number with the `in_poll` bit set,
//! [`WorkerSlot::end_poll`] clears the bit. A poll that is switched out counts as ended (it no
//! longer runs); resuming it begins a new one. The monitor reads it and takes "the same
//! sequence number, in a poll, at two looks a quantum apart" to mean "one poll has run for a
//! quantum". `starts_to_note` is the countdown of the next section.
//!
//! ## `requested`
//! `REQUESTED | sequence` of the poll a request is for (zero: none; sequence numbers have 59
//! bits). Set by the monitor
//! before it signals the worker, taken by the handler: at most one signal per worker is in flight
//! (Go's `signalPending`), and a signal that finds none is not ours and goes to the previous
//! handler. The handler preempts only if the poll running is the one requested: a signal takes
//! some microseconds to arrive, and the long poll it was for may have ended meanwhile, in which
//! case the poll it interrupts has only just begun (the request is stale, and dropped).
//!
//! The kernel can lose a request's signal: one sent while the worker's own timer's signal
//! is pending is merged into it (below, "own_timer"), and when that timer is re-armed or
//! disarmed before its signal is delivered (the handler re-arms it, with the signal blocked,
//! after a deferral), the kernel drops the timer's signal at delivery, and the request's with
//! it (seen on Linux 6.18; a test in `signal` shows it: a 600 s soak at 100 µs lost a request
//! once or twice in 3–6 M preemptions, and each left its worker unpreempted for the rest of
//! the run). A request's signal sent while another sender's signal to that thread is pending
//! is merged into that one too, which the handler passes on: the request waits for renewal.
//! The request would then stay pending for good, and coalescing would silence the monitor for
//! that worker. So the monitor renews a request it finds pending, unchanged, at two looks
//! between which the worker thread ran for a retry period (its CPU time, read through its
//! CPU-time clock; `monitor` rule 2): it replaces it with one for the running poll, marked
//! `RENEWED`, and signals again. Should the first signal have been late rather than lost, two
//! signals of ours come for one request: the second, finding none, is known as ours by its
//! siginfo (`signal` rule 2), and if that was lost, by the mark the first left
//! (`request_absorbed`, below).
//!
//! ## `follows_preemption`, `started_poll` and `started_at`
//! When a poll is preempted, the worker (in the trampoline's Switch operation, not in the
//! handler) notes the sequence number its next poll will have, and sets `poll_state`'s
//! countdown to [`STARTS_NOTED`]; parking clears both. While the countdown runs, `begin_poll`
//! takes its cold branch: the poll notes when it began (a clock read) and counts down. So the
//! monitor knows exactly when the polls right after a preemption began (the task the
//! preemption let in, then the next hog, if it comes within those eight), where for any other
//! poll it knows only "since the previous look": a hog preempted once is preempted again one
//! quantum after it resumed, not a quantum and a look period later, or two quanta after a short
//! poll went first. (A preempted poll waits in the pinned queue, which comes after the local
//! queue and the injector: behind more than seven other polls it is timed from the look that
//! first sees it, up to two quanta, `monitor` rule 2; the monitor is not calm, rule 7, for ten
//! quanta after a request.) The per-poll path pays nothing more than
//! a test of a bit field of the value it loads anyway; the clock is read only in the few polls
//! after a preemption, beside that preemption's signal. The pair `started_poll`/`started_at` is
//! not read atomically: a monitor that reads the number of one poll and the time of the next
//! times a poll that has already ended, a little late, and its next look replaces that record.
//!
//! ## `own_timer` and `timed_poll`
//! Each worker thread has a POSIX timer of its own (`CLOCK_MONOTONIC`, signalling that thread
//! with the preemption signal, `SIGEV_THREAD_ID`), created when it attaches. The poll that
//! directly follows a preemption arms it for one quantum (one `timer_settime`, in the cold
//! branch of `begin_poll` that already reads the clock) and records itself in `timed_poll`.
//! When it fires, the handler (`signal` rule 2) preempts the running poll if it noted its start
//! and has run its quantum since, as for the monitor's request; if it noted its start and has
//! not, the handler re-arms the timer for the rest of that poll's quantum (`timer_settime` is
//! async-signal-safe) and times it instead; otherwise it hands the worker back to the monitor
//! (`hand_back`: `timed_poll` cleared, the timer disarmed and the monitor woken,
//! async-signal-safely, through its futex) to time what runs; so do a failed arm and parking.
//! A deferred preemption re-arms the timer for the monitor's retry period. The monitor only
//! backs up a poll the timer covers (the timer is timing this worker's polls since a
//! preemption, and the poll noted its start): it asks for it only once the timer has been
//! silent for a while (two quanta up to 200 µs, eight beyond; `own_timer_signals`; `monitor`
//! rule 2). Between polls, a worker the timer is timing needs only that backup look too: the
//! next poll notes its start (the timer covers it) or the timer, when it fires, hands the
//! worker back. A worker whose timer cannot be created (or armed) is timed by the monitor
//! alone (one line on stderr, once per process, says so).
//!
//! Why: a worker that runs hog after hog then preempts itself, with no signal from another core
//! and no monitor wake-up per preemption (on our VMs each costs a computing thread some
//! 15–20 µs: BENCHMARKS.md, "The floor under the cost"), and the host takes one vCPU away for
//! milliseconds now and then while the other runs on (the two vCPUs' gaps almost never
//! overlap): the worker on the running vCPU is still preempted on time, where a monitor whose
//! wake-up timer sits on the stopped vCPU is late for every worker.
//!
//! The kernel keeps one instance of a pending standard signal: a request's signal sent while
//! the timer's signal is pending is dropped (the timer's own queue entry is never merged
//! away). So the handler serves a pending request at the timer's signal too, or that request
//! would stay pending and coalescing would silence the monitor. The request's own signal, if
//! it comes after all, finds no request and is ours by its siginfo. Only should that siginfo
//! be lost (`signal` rule 2) does the handler need to know that signal is on its way: when a
//! timer's signal (or a renewed request's) takes a request whose signal is still to come (the
//! monitor has not returned from sending it, `SENDING`, or the signal is pending), it marks it
//! (`request_absorbed`), and a signal that lost its origin and finds no request is ours if it
//! finds the mark. (The mark cannot tell a pending request's signal from another pending
//! instance, e.g. the timer's next one, nor see a signal the kernel merged away: it can be
//! left stale, and the next signal to arrive with its origin lost is then taken for ours.)
//!
//! ## `sighting`
//! Written by *other* workers for a calm monitor (`monitor` rule 7): the running poll they saw
//! here, since when they have seen it, and whether it has been *spotted*: seen running long
//! enough for the monitor to be woken for it. The monitor times a spotted poll from the first
//! sighting instead of from its own first look. Any worker may add to the record (a later poll
//! replaces it, an earlier one never does: a spotter that read the poll state and was then kept
//! off the CPU must not give the new poll its old time), so it is kept under a lock; each
//! spotter takes it at most eight times a quantum.

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
use std::io;
use std::ptr;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
use std::sync::Arc;
use std::sync::Mutex;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::time::TickGrid;

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
use super::monitor::MonitorWake;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
use super::signal;

/// How many polls from the one after a preemption on note when they began (module doc).
pub(crate) const STARTS_NOTED: u64 = 8;

/// Where `poll_state`'s sequence number starts; below it, the countdown and `in_poll`.
const SEQUENCE_SHIFT: u32 = 5;
/// `poll_state`'s countdown of polls left to note their start (module doc).
const STARTS_TO_NOTE: u64 = ((1 << SEQUENCE_SHIFT) - 1) & !1;
const _: () = assert!((STARTS_NOTED << 1) <= STARTS_TO_NOTE);

/// `follows_preemption` when there is none: not a sequence number (they have 59 bits).
const NO_PREEMPTION: u64 = 1 << 63;

/// Marks `requested` as holding a request (module doc).
const REQUESTED: u64 = 1 << 63;
/// Marks a request whose signal the monitor has not yet returned from sending (module doc,
/// "own_timer").
const SENDING: u64 = 1 << 62;
/// Marks a request the monitor renewed, its first signal lost or late (module doc).
const RENEWED: u64 = 1 << 61;

/// A request the handler took (`WorkerSlot::take_request`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TakenRequest {
    /// It is for the poll running now (else that poll has ended: the request is stale).
    pub(crate) current: bool,
    /// The monitor had not yet returned from sending its signal.
    pub(crate) sending: bool,
    /// The monitor renewed it: its first signal was lost, or is late (module doc).
    pub(crate) renewed: bool,
}

/// The worker thread, as the monitor signals it and reads its CPU time.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[derive(Debug, Clone, Copy)]
struct WorkerThread {
    id: libc::pid_t,
    cpu_clock: libc::clockid_t,
}

/// `timed_poll` when the own timer times no poll: not a sequence number.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
const NOT_TIMED: u64 = 1 << 63;

/// What the handler makes of the worker's own timer firing (module doc, `own_timer`).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OwnTimerExpiry {
    /// The poll it times has run its quantum: preempt it.
    Due,
    /// Nothing to preempt now (re-armed for a later poll, or left to the monitor).
    NotDue,
}

/// Why a preemption request was not taken (the handler's safe-point rules, `safepoint` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeferReason {
    /// The poll the request was for had ended when the signal arrived (`slot` module doc).
    Stale,
    /// The thread was not inside a task's poll (rule 1).
    NotInPoll,
    /// A `no_preempt` section (or the runtime's own) was running (rule 2).
    NoPreempt,
    /// The thread was panicking: running a panic hook or unwinding (rule 2).
    Panicking,
    /// The interrupted instruction was outside the executable (libc, the vDSO, ...) (rule 3).
    OutsideExecutable,
    /// The interrupted instruction was in code that must not be suspended (rule 3's denylist).
    Denylisted,
    /// The stack pointer was not in the current generator's stack with room (rule 4).
    Stack,
    /// The code map (rule 3's view of the program's code) was not read yet. The monitor sends
    /// no request before it is (its rule 8), so this counts only a request that came anyway.
    CodeMapUnread,
}

impl DeferReason {
    /// Every reason, in the order of the statistics.
    pub const ALL: [DeferReason; 8] = [
        DeferReason::Stale,
        DeferReason::NotInPoll,
        DeferReason::NoPreempt,
        DeferReason::Panicking,
        DeferReason::OutsideExecutable,
        DeferReason::Denylisted,
        DeferReason::Stack,
        DeferReason::CodeMapUnread,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// One worker's slot (module doc). Cache-line aligned: the monitor reads it, its worker writes it.
#[repr(align(128))]
#[derive(Debug)]
pub(crate) struct WorkerSlot {
    poll_state: AtomicU64,
    requested: AtomicU64,
    /// Whether the worker is parked (the monitor sleeps when every worker is).
    parked: AtomicBool,
    /// Set when a poll of this worker was preempted; the worker takes it where the poll is
    /// switched out and looks at its drivers at once (timers must not wait for the next
    /// maintenance when every poll is long; `scheduler::worker`, "After a preemption").
    preempted: AtomicBool,
    /// The sequence number of the poll that follows the last preemption, [`NO_PREEMPTION`] if
    /// none (or the worker parked since) (module doc).
    follows_preemption: AtomicU64,
    /// The last poll that noted its start, written after `started_at` (module doc).
    started_poll: AtomicU64,
    /// When it began, in nanoseconds since `epoch`.
    started_at: AtomicU64,
    epoch: Instant,
    /// The worker thread, while it runs. The monitor signals it, and reads its CPU time, with
    /// the lock held, and the worker clears it (under the lock) before it exits, so neither is
    /// ever done to a thread that is gone (nor to a later thread that reused its id).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    thread: Mutex<Option<WorkerThread>>,
    /// The worker thread's own timer, its id plus one; zero if it has none (module doc).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    own_timer: AtomicUsize,
    /// The quantum, for arming the own timer.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    quantum: Duration,
    /// The time driver's ticks: the own timer fires just after one, as the monitor's
    /// requests come (`monitor` rule 2).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    timer_ticks: TickGrid,
    /// The poll the own timer times, [`NOT_TIMED`] if none (module doc).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    timed_poll: AtomicU64,
    /// Whether a signal of ours took a pending request while that request's own signal was
    /// still on its way; consulted only by a signal whose siginfo the kernel lost (module doc,
    /// "own_timer").
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    request_absorbed: AtomicBool,
    /// The own timer's signals handled so far, for the monitor's backup (module doc).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    own_timer_signals: AtomicU64,
    /// Woken when the own timer hands this worker back to the monitor (module doc).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    monitor_wake: Arc<MonitorWake>,
    preemptions: AtomicU64,
    /// Of `preemptions`, those the own timer asked for.
    own_timer_preemptions: AtomicU64,
    /// Polls preempted on this worker that have not resumed yet (for the monitor's report of
    /// a worker that looks deadlocked, `monitor` rule 6).
    preempted_waiting: AtomicU64,
    /// Of `preemptions`, those of a poll waiting for a std lock (`safepoint` rule 3's exception).
    lock_waits_preempted: AtomicU64,
    /// Of `preemptions`, those inside a pure library function (`safepoint` rule 3, `unwind`).
    library_calls_preempted: AtomicU64,
    deferred: [AtomicU64; DeferReason::ALL.len()],
    /// The longest poll the monitor has seen, in nanoseconds.
    longest_poll_ns: AtomicU64,
    /// Requests the monitor renewed (module doc, "requested").
    requests_renewed: AtomicU64,
    /// What other workers saw of the running poll (module doc). On a line of its own: the
    /// spotters' lock must not take the line of `poll_state`, which the worker stores to every
    /// poll.
    sighting: CachePadded<Mutex<Option<Sighting>>>,
}

/// Other workers' record of a slot's running poll (module doc).
#[derive(Debug, Clone, Copy)]
struct Sighting {
    poll: u64,
    /// When a worker first saw it running.
    since: Instant,
    /// Whether it has been seen running long enough to wake the monitor for it.
    spotted: bool,
}

impl WorkerSlot {
    pub(crate) fn new(
        quantum: Duration,
        timer_ticks: TickGrid,
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))] monitor_wake: Arc<MonitorWake>,
    ) -> WorkerSlot {
        #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
        let _ = (quantum, timer_ticks);
        WorkerSlot {
            poll_state: AtomicU64::new(0),
            requested: AtomicU64::new(0),
            parked: AtomicBool::new(false),
            preempted: AtomicBool::new(false),
            follows_preemption: AtomicU64::new(NO_PREEMPTION),
            started_poll: AtomicU64::new(0),
            started_at: AtomicU64::new(0),
            epoch: Instant::now(),
            #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
            thread: Mutex::new(None),
            #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
            own_timer: AtomicUsize::new(0),
            #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
            quantum,
            #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
            timer_ticks,
            #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
            timed_poll: AtomicU64::new(NOT_TIMED),
            #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
            request_absorbed: AtomicBool::new(false),
            #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
            own_timer_signals: AtomicU64::new(0),
            #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
            monitor_wake,
            preemptions: AtomicU64::new(0),
            own_timer_preemptions: AtomicU64::new(0),
            preempted_waiting: AtomicU64::new(0),
            lock_waits_preempted: AtomicU64::new(0),
            library_calls_preempted: AtomicU64::new(0),
            deferred: Default::default(),
            longest_poll_ns: AtomicU64::new(0),
            requests_renewed: AtomicU64::new(0),
            sighting: CachePadded::new(Mutex::new(None)),
        }
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    fn thread_lock(&self) -> std::sync::MutexGuard<'_, Option<WorkerThread>> {
        self.thread.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// On the worker thread, before it runs anything: which thread to signal.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(crate) fn attach_current_thread(&self) {
        let mut cpu_clock: libc::clockid_t = 0;
        // SAFETY: gettid has no preconditions; pthread_getcpuclockid writes the calling
        // thread's CPU-time clock into `cpu_clock`, which it only writes.
        let (id, clock_found) = unsafe {
            (
                libc::gettid(),
                libc::pthread_getcpuclockid(libc::pthread_self(), &mut cpu_clock) == 0,
            )
        };
        assert!(clock_found, "a thread without a CPU-time clock");
        *self.thread_lock() = Some(WorkerThread { id, cpu_clock });
    }

    /// For the monitor: the CPU time the worker thread has used so far, if it runs (module
    /// doc, "requested": a thread that has run since a signal was sent to it has had it).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(crate) fn thread_cpu_time(&self) -> Option<Duration> {
        let thread = self.thread_lock();
        let thread = (*thread)?;
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: the thread is alive (it clears `thread` under this lock before it exits, and
        // the lock is held until the call returns), so its clock is valid; `now` is written.
        let read = unsafe { libc::clock_gettime(thread.cpu_clock, &mut now) } == 0;
        read.then(|| Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
    }

    /// On the worker thread, before it exits: no more signals.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(crate) fn detach_current_thread(&self) {
        *self.thread_lock() = None;
    }

    /// On the worker thread, when it attaches: creates its own timer (module doc), which sends
    /// `signal` to this thread with this slot's address as its value. Without one (the kernel
    /// refused it, e.g. `EAGAIN` with `RLIMIT_SIGPENDING` reached: a timer's signal is queued in
    /// advance) the monitor alone times this worker.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(crate) fn create_own_timer(&self, signal: libc::c_int) -> io::Result<()> {
        // SAFETY: a zeroed sigevent is a valid value; the fields the kernel reads are set below.
        let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = signal;
        event.sigev_value = libc::sigval {
            sival_ptr: ptr::from_ref(self).cast_mut().cast(),
        };
        // SAFETY: gettid has no preconditions.
        event.sigev_notify_thread_id = unsafe { libc::gettid() };
        let mut timer: libc::timer_t = ptr::null_mut();
        // SAFETY: both pointers are valid for the call; the timer signals this thread, which
        // deletes it before it exits (`delete_own_timer`).
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer) } != 0 {
            return Err(io::Error::last_os_error());
        }
        self.own_timer.store(timer as usize + 1, Ordering::Release);
        Ok(())
    }

    /// On the worker thread, before it exits, with the signal blocked: deletes its own timer.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(crate) fn delete_own_timer(&self) {
        if let Some(timer) = self.own_timer.swap(0, Ordering::AcqRel).checked_sub(1) {
            // SAFETY: the id `create_own_timer` stored, no longer stored, so never armed again.
            unsafe { libc::timer_delete(timer as libc::timer_t) };
        }
    }

    /// Whether `info` is this slot's own timer firing (module doc). Async-signal-safe.
    ///
    /// # Safety
    /// `info` must be the siginfo the kernel passed to an `SA_SIGINFO` handler.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(crate) unsafe fn is_own_timer(&self, info: *const libc::siginfo_t) -> bool {
        // SAFETY: the caller's promise.
        unsafe { self.is_carried_by(info, libc::SI_TIMER) }
    }

    /// Whether `info` is of kind `code` (`SI_TIMER`, `SI_QUEUE`: kinds that carry a value)
    /// with this slot's address as its value, as the runtime's own signals are (module doc,
    /// `signal` rule 2). Async-signal-safe.
    ///
    /// # Safety
    /// `info` must be the siginfo the kernel passed to an `SA_SIGINFO` handler.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(crate) unsafe fn is_carried_by(
        &self,
        info: *const libc::siginfo_t,
        code: libc::c_int,
    ) -> bool {
        // SAFETY: the caller's promise; the siginfo of a kind that carries a value has it
        // where `si_value` reads it (timers and queued signals alike).
        unsafe {
            (*info).si_code == code
                && ptr::eq(
                    (*info).si_value().sival_ptr.cast_const(),
                    ptr::from_ref(self).cast(),
                )
        }
    }

    /// For the handler: counts a signal of the own timer, the monitor's sign that the timer is
    /// alive (module doc). Async-signal-safe.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(crate) fn count_own_timer_signal(&self) {
        self.own_timer_signals.fetch_add(1, Ordering::Relaxed);
    }

    /// For the monitor: the own timer's signals handled so far (module doc).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(crate) fn own_timer_signals(&self) -> u64 {
        self.own_timer_signals.load(Ordering::Relaxed)
    }

    /// Arms the own timer, if there is one, to fire `after` from now for poll `poll`. Owner
    /// thread (the worker or its signal handler): async-signal-safe, and keeps `errno`.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    fn arm_own_timer(&self, poll: u64, after: Duration) {
        self.timed_poll.store(poll, Ordering::Release);
        // A zero expiry would disarm the timer.
        if !self.set_own_timer(after.max(Duration::from_micros(1))) {
            // Never covered by a timer that will not fire: the monitor times it.
            self.hand_back();
        }
    }

    /// The own timer stops timing this worker's polls: if it was, it is disarmed (a request's
    /// signal may hand back before the timer fired, and it must not fire later at a parked
    /// thread) and the monitor is woken to time them (module doc). Owner thread (the worker or
    /// its signal handler): async-signal-safe, and keeps `errno`.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    fn hand_back(&self) {
        if self.timed_poll.swap(NOT_TIMED, Ordering::AcqRel) != NOT_TIMED {
            self.set_own_timer(Duration::ZERO);
            self.monitor_wake.wake();
        }
    }

    /// Sets the own timer to fire `after` from now (zero: never). Returns whether the timer
    /// exists and took it. Async-signal-safe, and keeps `errno`.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    fn set_own_timer(&self, after: Duration) -> bool {
        let Some(timer) = self.own_timer.load(Ordering::Acquire).checked_sub(1) else {
            return false;
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: errno is this thread's; `timer` is this thread's live timer (deleted only
        // after `own_timer` no longer holds it); `spec` is a valid itimerspec.
        unsafe {
            let errno = *libc::__errno_location();
            let status = libc::timer_settime(timer as libc::timer_t, 0, &spec, ptr::null_mut());
            *libc::__errno_location() = errno;
            status == 0
        }
    }

    /// For the handler, on any signal of ours (its own timer's may have been merged into it,
    /// module doc): whether the running poll, if it noted its start, has run its quantum; if it
    /// has not, the own timer is re-armed for the rest of it. Async-signal-safe.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(crate) fn own_timer_expired(&self) -> OwnTimerExpiry {
        if self.own_timer.load(Ordering::Relaxed) == 0 {
            return OwnTimerExpiry::NotDue;
        }
        let noted = self
            .running_poll()
            .and_then(|poll| Some((poll, self.poll_start(poll)?.0)));
        // Any other poll is the monitor's to time.
        let Some((poll, began)) = noted else {
            self.hand_back();
            return OwnTimerExpiry::NotDue;
        };
        match self
            .quantum_due(began)
            .checked_duration_since(Instant::now())
        {
            Some(left) if !left.is_zero() => {
                self.arm_own_timer(poll, left);
                OwnTimerExpiry::NotDue
            }
            _ => {
                self.timed_poll.store(poll, Ordering::Release);
                OwnTimerExpiry::Due
            }
        }
    }

    /// For the handler: the own timer's preemption of the timed poll was deferred; it asks
    /// again a look period later, as the monitor would. Async-signal-safe.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(crate) fn own_timer_deferred(&self) {
        let poll = self.timed_poll.load(Ordering::Relaxed);
        if poll != NOT_TIMED {
            self.arm_own_timer(poll, super::monitor::look_period(self.quantum));
        }
    }

    /// For the monitor: whether the own timer is timing this worker's polls since a preemption
    /// (module doc). Then it is armed, or, from a preemption it asked for until the next poll
    /// begins, that poll arms it; it stays so until it hands the worker back.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(crate) fn own_timer_timing(&self) -> bool {
        self.timed_poll.load(Ordering::Acquire) != NOT_TIMED
    }

    /// For the monitor: whether the own timer covers poll `poll` (module doc): it is timing
    /// this worker's polls since a preemption, and `poll` noted its start, so the timer (armed
    /// for a quantum after an earlier poll of those began, at the latest) fires in time for it.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(crate) fn own_timer_covers(&self, poll: u64) -> bool {
        self.own_timer_timing() && self.poll_start(poll).is_some()
    }

    /// For the handler: a signal took the monitor's pending request while another signal of
    /// ours for it is still to come (module doc, "requested" and "own_timer").
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(crate) fn set_request_absorbed(&self) {
        self.request_absorbed.store(true, Ordering::Relaxed);
    }

    /// For the handler: clears the mark and says whether it was set: for a signal of ours that
    /// finds no request, or one whose siginfo the kernel lost, which is then ours (module doc,
    /// "own_timer"). Async-signal-safe.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(crate) fn take_request_absorbed(&self) -> bool {
        self.request_absorbed.swap(false, Ordering::Relaxed)
    }

    /// When a poll that began at `began` is to be preempted: a quantum on, put off to the time
    /// driver's next tick as the monitor's requests are (`monitor` rule 2).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    fn quantum_due(&self, began: Instant) -> Instant {
        super::monitor::after_timer_tick(self.timer_ticks, self.quantum, began + self.quantum)
    }

    /// For the monitor: sends the pending request's `signal` to the worker thread
    /// (`signal::send_request`), if it still runs. Returns whether it was sent, or the
    /// kernel's refusal (`EAGAIN` for a real-time signal it has no room to queue).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(crate) fn send(&self, signal: libc::c_int) -> io::Result<bool> {
        let thread = self.thread_lock();
        let Some(WorkerThread { id: thread, .. }) = *thread else {
            return Ok(false);
        };
        // SAFETY: the thread is alive: it clears this field under this lock before it exits,
        // and the lock is held until the call returns.
        unsafe { signal::send_request(thread, signal, self) }.map(|()| true)
    }

    /// A poll starts (module doc). Owner thread only.
    #[inline]
    pub(crate) fn begin_poll(&self) {
        let state = self.poll_state.load(Ordering::Relaxed);
        if state & STARTS_TO_NOTE != 0 {
            return self.begin_noted_poll(state);
        }
        let next = (((state >> SEQUENCE_SHIFT).wrapping_add(1)) << SEQUENCE_SHIFT) | 1;
        // Release: nothing to publish, but it keeps the store from being sunk past the poll.
        self.poll_state.store(next, Ordering::Release);
    }

    /// [`begin_poll`](Self::begin_poll) for a poll soon after a preemption, which notes when it
    /// began (module doc). Owner thread only.
    #[cold]
    #[inline(never)]
    fn begin_noted_poll(&self, state: u64) {
        let poll = (state >> SEQUENCE_SHIFT).wrapping_add(1);
        let at = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.started_at.store(at, Ordering::Relaxed);
        // Release: a monitor that reads this number reads the time stored before it.
        self.started_poll.store(poll, Ordering::Release);
        let starts_left = (state & STARTS_TO_NOTE) - (1 << 1);
        self.poll_state.store(
            (poll << SEQUENCE_SHIFT) | starts_left | 1,
            Ordering::Release,
        );
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        if self.follows_preemption.load(Ordering::Relaxed) == poll {
            let began = self.epoch + Duration::from_nanos(at);
            self.arm_own_timer(poll, self.quantum_due(began) - began);
        }
    }

    /// The poll ends, or is switched out (module doc). Owner thread only.
    #[inline]
    pub(crate) fn end_poll(&self) {
        let state = self.poll_state.load(Ordering::Relaxed);
        self.poll_state.store(state & !1, Ordering::Release);
    }

    /// For the monitor: the current poll's sequence number, if one runs.
    pub(crate) fn running_poll(&self) -> Option<u64> {
        let state = self.poll_state.load(Ordering::Acquire);
        (state & 1 == 1).then_some(state >> SEQUENCE_SHIFT)
    }

    /// For the monitor: claims the right to send a signal for poll `poll` (coalescing; module
    /// doc).
    pub(crate) fn request(&self, poll: u64) -> bool {
        self.requested
            .compare_exchange(
                0,
                REQUESTED | SENDING | poll,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// For the monitor: the pending request as it stands (0: none), to tell at a later look
    /// whether that same request is still pending (module doc). The monitor, the only writer
    /// but for the handler's take, never sees `SENDING` here.
    pub(crate) fn pending_request(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// For the monitor: replaces the pending request `held`, whose signal was lost (or is
    /// late), with a renewed one for poll `poll`, to signal again; fails if the handler took
    /// `held` meanwhile (module doc).
    pub(crate) fn renew_request(&self, held: u64, poll: u64) -> bool {
        let renewed = self
            .requested
            .compare_exchange(
                held,
                REQUESTED | SENDING | RENEWED | poll,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if renewed {
            self.requests_renewed.fetch_add(1, Ordering::Relaxed);
        }
        renewed
    }

    /// For the monitor: it has sent the pending request's signal.
    pub(crate) fn request_sent(&self) {
        self.requested.fetch_and(!SENDING, Ordering::AcqRel);
    }

    /// For the monitor: a signal could not be sent; the next look may try again.
    pub(crate) fn withdraw_request(&self) {
        self.requested.store(0, Ordering::Release);
    }

    /// For the handler: takes the pending request, if there is one (module doc).
    /// Async-signal-safe.
    pub(crate) fn take_request(&self) -> Option<TakenRequest> {
        match self.requested.swap(0, Ordering::AcqRel) {
            0 => None,
            requested => Some(TakenRequest {
                current: self
                    .running_poll()
                    .is_some_and(|poll| REQUESTED | poll == requested & !(SENDING | RENEWED)),
                sending: requested & SENDING != 0,
                renewed: requested & RENEWED != 0,
            }),
        }
    }

    /// Parking also ends the noting of poll starts after the last preemption (module doc).
    /// Owner thread only.
    pub(crate) fn set_parked(&self, parked: bool) {
        if parked {
            // No timer left to wake the parked thread for a poll that has ended, and the
            // monitor told (the worker's next polls are its own to time).
            #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
            self.hand_back();
            self.follows_preemption
                .store(NO_PREEMPTION, Ordering::Relaxed);
            let state = self.poll_state.load(Ordering::Relaxed);
            self.poll_state
                .store(state & !STARTS_TO_NOTE, Ordering::Relaxed);
        }
        self.parked.store(parked, Ordering::SeqCst);
    }

    /// The poll running now is being preempted (module doc). Owner thread, outside the handler:
    /// the trampoline's call, inside the poll, so never between a load and a store of
    /// `begin_poll` or `end_poll` (maniac's own code is not an async-safe point).
    pub(crate) fn note_preemption(&self) {
        let state = self.poll_state.load(Ordering::Relaxed);
        let running = state >> SEQUENCE_SHIFT;
        self.follows_preemption
            .store(running.wrapping_add(1), Ordering::Relaxed);
        self.poll_state.store(
            (state & !STARTS_TO_NOTE) | (STARTS_NOTED << 1),
            Ordering::Relaxed,
        );
    }

    /// For the monitor: the sequence number of the poll after the last preemption (module
    /// doc).
    pub(crate) fn follows_preemption(&self) -> u64 {
        self.follows_preemption.load(Ordering::Relaxed)
    }

    /// For the monitor: when poll `poll` began, if it noted it, and whether it is the poll that
    /// directly followed a preemption (module doc).
    pub(crate) fn poll_start(&self, poll: u64) -> Option<(Instant, bool)> {
        if self.started_poll.load(Ordering::Acquire) != poll {
            return None;
        }
        let at = Duration::from_nanos(self.started_at.load(Ordering::Relaxed));
        let follows = self.follows_preemption.load(Ordering::Relaxed) == poll;
        Some((self.epoch + at, follows))
    }

    /// For another worker (module doc): poll `poll` was running when it read the poll state,
    /// before `now`. Returns whether the poll has now been seen running for `spot_after`, for
    /// the first time: the monitor is to be woken for it.
    pub(crate) fn sight(&self, poll: u64, now: Instant, spot_after: Duration) -> bool {
        let mut sighting = self.sighting.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *sighting {
            Some(seen) if seen.poll == poll => {
                let news = !seen.spotted && now.saturating_duration_since(seen.since) >= spot_after;
                seen.spotted |= news;
                news
            }
            Some(seen) if seen.poll > poll => false,
            _ => {
                *sighting = Some(Sighting {
                    poll,
                    since: now,
                    spotted: false,
                });
                false
            }
        }
    }

    /// For the monitor: since when other workers have seen poll `poll` running, if they
    /// spotted it (module doc).
    pub(crate) fn spotted_since(&self, poll: u64) -> Option<Instant> {
        let sighting = *self.sighting.lock().unwrap_or_else(|e| e.into_inner());
        sighting
            .filter(|seen| seen.poll == poll && seen.spotted)
            .map(|seen| seen.since)
    }

    pub(crate) fn is_parked(&self) -> bool {
        self.parked.load(Ordering::SeqCst)
    }

    /// Async-signal-safe. `by_own_timer`: the own timer asked for it, not the monitor.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub(crate) fn count_preemption(&self, point: super::safepoint::SafePoint, by_own_timer: bool) {
        use super::safepoint::SafePoint;
        self.preemptions.fetch_add(1, Ordering::Relaxed);
        if by_own_timer {
            self.own_timer_preemptions.fetch_add(1, Ordering::Relaxed);
        }
        match point {
            SafePoint::Code => {}
            SafePoint::LockWait => {
                self.lock_waits_preempted.fetch_add(1, Ordering::Relaxed);
            }
            SafePoint::LibraryCall => {
                self.library_calls_preempted.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.preempted.store(true, Ordering::Relaxed);
    }

    /// A preempted poll is switched out (`true`), or resumes (`false`). Owner thread only.
    pub(crate) fn set_preempted_waiting(&self, switched_out: bool) {
        if switched_out {
            self.preempted_waiting.fetch_add(1, Ordering::Relaxed);
        } else {
            self.preempted_waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// For the monitor: how many preempted polls wait to resume on this worker.
    pub(crate) fn preempted_waiting(&self) -> u64 {
        self.preempted_waiting.load(Ordering::Relaxed)
    }

    /// For the worker, where a poll is switched out: whether a poll was preempted since the last
    /// call. Owner thread only (the flag is set by this thread's signal handler).
    #[inline]
    pub(crate) fn take_preempted(&self) -> bool {
        self.preempted.load(Ordering::Relaxed) && self.preempted.swap(false, Ordering::Relaxed)
    }

    /// Async-signal-safe.
    pub(crate) fn count_deferral(&self, reason: DeferReason) {
        self.deferred[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_poll_length(&self, nanos: u64) {
        self.longest_poll_ns.fetch_max(nanos, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> WorkerPreemptionStats {
        WorkerPreemptionStats {
            preemptions: self.preemptions.load(Ordering::Relaxed),
            own_timer_preemptions: self.own_timer_preemptions.load(Ordering::Relaxed),
            lock_waits_preempted: self.lock_waits_preempted.load(Ordering::Relaxed),
            library_calls_preempted: self.library_calls_preempted.load(Ordering::Relaxed),
            deferred: DeferReason::ALL.map(|reason| {
                (
                    reason,
                    self.deferred[reason.index()].load(Ordering::Relaxed),
                )
            }),
            longest_poll: Duration::from_nanos(self.longest_poll_ns.load(Ordering::Relaxed)),
            requests_renewed: self.requests_renewed.load(Ordering::Relaxed),
        }
    }
}

/// One worker's preemption figures (see `RuntimeMetrics::worker_preemption`).
#[derive(Debug, Clone)]
pub struct WorkerPreemptionStats {
    preemptions: u64,
    own_timer_preemptions: u64,
    lock_waits_preempted: u64,
    library_calls_preempted: u64,
    deferred: [(DeferReason, u64); DeferReason::ALL.len()],
    longest_poll: Duration,
    requests_renewed: u64,
}

impl WorkerPreemptionStats {
    /// Polls preempted so far.
    pub fn preemptions(&self) -> u64 {
        self.preemptions
    }

    /// Of [`preemptions`](Self::preemptions), those the worker's own timer asked for (a poll
    /// that began soon after a preemption on its worker, `maniac::preempt` module doc); the
    /// others came from the monitor's requests.
    pub fn preempted_by_own_timer(&self) -> u64 {
        self.own_timer_preemptions
    }

    /// Of [`preemptions`](Self::preemptions), those of a poll that was waiting for a
    /// `std::sync::Mutex`, `RwLock` or `Once` (`maniac::preempt` module doc, "Hazards"): each
    /// one a wait that would otherwise have blocked the worker, perhaps for good.
    pub fn lock_waits_preempted(&self) -> u64 {
        self.lock_waits_preempted
    }

    /// Of [`preemptions`](Self::preemptions), those of a poll inside a library function that
    /// holds nothing for its caller (reading the clock, sorting, a hash map's insert), called
    /// from the task's own code (`maniac::preempt` module doc, "What is and is not enforced").
    pub fn library_calls_preempted(&self) -> u64 {
        self.library_calls_preempted
    }

    /// Requests deferred for `reason` so far.
    pub fn deferred(&self, reason: DeferReason) -> u64 {
        self.deferred[reason.index()].1
    }

    /// Requests deferred so far, for every reason.
    pub fn deferred_total(&self) -> u64 {
        self.deferred.iter().map(|(_, count)| count).sum()
    }

    /// The longest poll the monitor saw running (a lower bound of the longest poll: it sees a
    /// poll only while it runs).
    pub fn longest_poll(&self) -> Duration {
        self.longest_poll
    }

    /// Requests whose signal had not come after the worker thread ran a retry period, so that
    /// the monitor sent another: lost (the kernel drops a request's signal merged into the
    /// worker's own timer's when that timer is re-armed before delivery) or late
    /// (`maniac::preempt` module doc, "The mechanism").
    pub fn requests_renewed(&self) -> u64 {
        self.requests_renewed
    }
}
