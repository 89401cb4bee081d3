//! Non-cooperative preemption: a task that computes for longer than its quantum without
//! reaching an `.await` is interrupted in the middle of its poll, parked, and its worker goes on
//! with other tasks.
//!
//! ## The mechanism
//! 1. **Noticing.** Every worker marks the start and the end of each poll in its slot (two plain
//!    stores: no system call, and a clock read only in the few polls after a preemption, which
//!    note when they began; `slot`). A monitor thread per runtime looks at a slot when the poll
//!    it times there reaches its quantum, and otherwise up to four times a quantum (backing off
//!    to once every eight quanta while every poll it sees is short; the workers then spot long
//!    polls for it), sleeps while every worker is parked, and sends the worker's thread a
//!    signal only when the *same* poll has been running for at least the quantum
//!    (`monitor`). Requests coalesce: one pending signal per worker at most; a request still
//!    untaken once its worker thread has run a retry period since is renewed and signalled
//!    again, since the kernel drops a request's signal merged into a worker timer's that a
//!    re-arm voided (`WorkerPreemptionStats::requests_renewed` counts them). While polls
//!    overrun, the monitor runs at real-time priority where it may, so that its looks are not
//!    late behind the very polls they are for. After that, the worker times itself: each
//!    worker thread has a POSIX timer of its own, which the poll right after a preemption arms
//!    for one quantum, and whose signal the handler takes as the monitor's request for the
//!    running poll if that poll noted its start and has run its quantum (`slot`, "own_timer").
//!    So a worker running hog after hog preempts itself, with no signal across cores and no
//!    monitor wake-up per preemption, and stays on time while the host has taken away the vCPU
//!    the monitor would have woken on (BENCHMARKS.md, "Preemption"); the monitor only backs up
//!    the polls that timer covers, should it fall silent.
//! 2. **Deciding.** The signal handler runs on the worker's alternate signal stack. It knows the
//!    runtime's signals by their siginfo (the monitor's are queued with the worker's slot as
//!    their value, the timer's carry it too) and passes every other one, the program's own
//!    `pthread_kill` to a worker included, to the handler installed before it. It takes the
//!    request and checks whether the interrupted instruction is an *async-safe point*
//!    (`safepoint`: inside a task's poll; no `no_preempt` section; in the executable, outside a
//!    denylist built from its symbol table, or waiting for one of std's locks; on the current
//!    generator's stack with room). If not,
//!    it counts the reason and returns: the monitor (or the worker's own timer) asks again a
//!    quarter quantum later, and the end of the poll settles the matter at the latest.
//! 3. **Switching.** The handler never switches stacks itself (nothing a signal handler may call
//!    could). It rewrites the interrupted context so that, on return from the signal, the thread
//!    runs the trampoline as if the interrupted instruction had called it (`signal`). The
//!    trampoline saves every general register, the flags and the whole extended state (XSAVE with
//!    the OS's mask), and calls the Switch operation of `coroutine`, keeping the thread's `errno`
//!    across it (the tasks that run meanwhile set it; the interrupted code may be about to read
//!    it after a failed call): the generator with the interrupted poll on it goes to the
//!    worker's pinned queue, and the worker continues on another generator (`trampoline`).
//! 4. **Resuming.** The worker resumes the switched poll from its pinned queue, on the same
//!    thread (the thread-affinity rule of `coroutine`). The trampoline restores everything and
//!    returns to the interrupted instruction with `rsp` exactly as it was.
//!
//! What rule 3 needs to know about the program's code (the *code map*: the executable's symbol
//! table and the call-frame information of the pure library functions) is read once per
//! process, on a thread of its own, when a runtime's monitor first finds a poll that has run its
//! quantum, or 100 ms after the runtime started, whichever comes first; a poll that runs its
//! quantum before is preempted once the map is read (a few milliseconds later in a release
//! build, some hundreds in a debug one). So a runtime starts within 0.3–0.4 ms of tokio's (0.7
//! against 0.4 ms here, BENCHMARKS.md "Start-up"), a short run whose polls stay short (and are
//! not held past the quantum by the machine) never reads it, and a longer-lived program has it
//! read before its first hog as a rule; [`prepare`] reads it beforehand, for a program that
//! wants its first hog preempted on time whenever it comes (`monitor` rule 8). In a debug build
//! the read is mostly unoptimised code (0.5 s here): `opt-level = 3` for the packages `maniac`,
//! `rustc-demangle`, `gimli` and `object` under `[profile.dev.package]` brought it to 37 ms. A
//! process forked (without `exec`) while another of its threads reads the map inherits it
//! half-read: there, runtimes never preempt and [`prepare`] never returns. POSIX allows such a
//! child only async-signal-safe calls anyway; `fork` followed by `exec`
//! (`std::process::Command`) is not affected.
//!
//! When the kernel has no room to queue signals (the user's `RLIMIT_SIGPENDING` reached, a count
//! over all of the user's processes), workers get no timers of their own and the monitor
//! preempts alone; its standard signal then arrives with its sender lost and is taken for a
//! pending request (`signal` rule 2, which says what that costs a foreign signal arriving the
//! same way), while a real-time preemption signal is refused outright: nothing is preempted
//! until the limit allows, and one line on stderr says so.
//!
//! ## Rejected alternatives
//! - *Yielding from inside the signal handler* (the design note this project started from): a
//!   handler may only call async-signal-safe functions, and switching stacks from it leaves the
//!   kernel's signal frame and mask behind on the old stack, half-done. The handler here only
//!   edits the context it was given.
//! - *A periodic timer per worker* (`timer_create`): CPU-time clocks fire only on the kernel tick
//!   (every 4 ms here, whatever period is asked), and a periodic monotonic timer costs ~19 µs a
//!   tick in a VM (19 % at 100 µs) even when every poll is short. Signalling only the overrunning
//!   worker costs nothing when tasks behave: the workers' own timers are one-shot, armed only by
//!   a poll that follows a preemption, so a worker whose polls are short never arms its own.
//! - *Checks compiled into user code* (Go's cooperative preemption points, loop back-edges): they
//!   need the compiler's help, which Rust does not give, and they cost every loop iteration.
//! - *Saving only the SSE registers*: a task using AVX, AVX-512 or x87 state would find it
//!   clobbered by the next task on the worker. XSAVE saves every enabled component.
//!
//! ## Hazards, and their remedies
//! Preemption can only happen at an async-safe point, but the code of a task can still hold
//! something across one that the next task on the same worker needs:
//! - **A blocking lock held across a preemption.** A task preempted while it holds one can only
//!   resume on its worker; if another task there blocks on the same lock, the worker waits for a
//!   holder that cannot run. *std's own locks are taken care of*: a task waiting for a
//!   `std::sync::Mutex`, an `RwLock` or a `Once` (`OnceLock`, `LazyLock`) is itself preempted
//!   in its wait (`safepoint`, rule 3's exception; counted by
//!   [`WorkerPreemptionStats::lock_waits_preempted`]), and the worker goes back to the holder.
//!   The waiter's worker loses up to a quantum per such wait, so a std lock held across long
//!   computations is still slow, but it is live. (An executable built with LTO may have std's
//!   wait functions inlined away; the runtime then says so when it reads the code map, and the
//!   rest of this item applies to std's locks too.) *Any other blocking wait* for a preempted
//!   task on the same worker (`parking_lot`'s locks, a pthread mutex inside a C library, a
//!   blocking `recv` on `std::sync::mpsc`, a `Condvar`) deadlocks the worker, and the monitor
//!   says so on stderr once the worker has been stuck for a second (`monitor` rule 6): use
//!   async locks and channels (`tokio::sync`), or hold the lock inside [`no_preempt`]. (A spin
//!   lock written in the program itself is preempted while it spins, like any other code of
//!   the program.)
//! - **A `thread_local!` `RefCell` borrowed across a long computation**: another task on the same
//!   thread sees it borrowed (a panic, with `borrow_mut`). Keep such borrows short, or inside
//!   [`no_preempt`]. A long library call counts as the task's computation: inside
//!   `TLS.with(|cell| cell.borrow_mut().sort())`, or a sort under a `parking_lot` guard (the
//!   item above), the task is preempted in the sort.
//! - **Locks that are reentrant per thread** (`std::io::StdoutLock`, any `ReentrantMutex`): a task
//!   preempted while holding one makes every other task on that worker "hold" it too; a second
//!   `println!` meets the first one's `RefCell` already borrowed. std's I/O paths are in the
//!   denylist, so a task is not preempted *inside* `println!`; one that holds `stdout().lock()`
//!   across its own computation must do that computation inside [`no_preempt`].
//! - **A global allocator written in Rust** linked into the executable: rule 3 would allow
//!   preempting it with its per-thread state half-updated; wrap it in
//!   [`crate::alloc::NoPreempt`]. The system allocator lives in libc, and the C code of
//!   mimalloc or jemalloc under their Rust wrappers has no Rust symbol names: rule 3 never
//!   interrupts either (the wrapper costs nothing there, and keeps its Rust shims out too).
//!
//! ## What is and is not enforced
//! Rules 1, 2 and 4 are checked exactly; rule 2 includes "the thread is not panicking" (std's
//! panic count is per thread: a task preempted in a panic hook or while unwinding would make the
//! next task's panic abort the process). The runtime protects its own critical sections with
//! rule 2, not with the denylist: every runtime lock a poll can reach is taken through
//! `preempt::lock`, and the scheduler's, the stack pool's and the runtime context's `RefCell`s
//! are borrowed under a [`NoPreemptGuard`], so a task is never preempted while the runtime
//! holds something on its behalf (a symbol denylist cannot see the helper functions such code
//! calls: a preemption inside `st3`'s queue push, reached from a wake-up, once left the worker's
//! core borrowed).
//! Third-party synchronisation crates are denied whole, not by module (tokio's channels lock
//! through a wrapper in `tokio::loom`, outside `tokio::sync`: a preemption on the return from it
//! would hold the lock across the switch, and the next task on the worker to touch the channel
//! would block the worker for good). Rule 3's denylist is by symbol: code of a denied
//! function that the compiler *inlined* into an allowed one is not recognised, and a crate not on
//! the list that holds a blocking lock or a thread-local borrow inside its own code is not known
//! to be unsafe to interrupt; for such code the hazards above and their remedies apply. So does
//! a waker written in the program itself: crates call wakers with their own locks held
//! (event-listener notifies under its list's lock), and a waker's code is the program's.
//! The price of denying the standard library whole would be latency: most hogs spend their
//! time in library functions the compiler did not inline (reading the clock, sorting, hash-map
//! inserts, formatting). So a poll inside a *pure* one (`core`, `alloc`, `hashbrown`, std's
//! collections, clock and hasher, instantiated with pure types only; compiler-builtins'
//! arithmetic; libc's `clock_gettime` and the vDSO's functions) is preempted there when the
//! frames above it, walked with the call-frame information, lead through pure functions only
//! to the task's own code (`safepoint` rule 3, counted by
//! [`WorkerPreemptionStats::library_calls_preempted`]); called from std's I/O or locks, or any
//! other denied code, it is not. What remains deferred is impure library code (std's I/O and
//! synchronisation, libc's `malloc` and `memcpy`), until the poll comes back to its own code
//! or ends. The inlining limitation above reaches further: a pure function called from denied
//! code that the compiler inlined into the task's own is taken as called by the task (a
//! generic writer's `write_fmt` adapter is inlined so, harmlessly: it holds nothing; a
//! lock-holding crate's generic code could be too). And a generic function instantiated in the
//! program's own crate is named without its type arguments (Rust's legacy symbol mangling,
//! `alloc::vec::Vec<T,A>`): of those of `core` and `alloc`, the ones whose work is dropping
//! elements (a container's `Drop`, `truncate`, `clear`, `retain`, `Arc`'s `drop_slow`) are
//! kept out, but any other that runs its argument's code (a closure's call, a poll through a
//! `Pin`) is judged by its path alone.
//!
//! ## Where it runs
//! Linux on x86_64, multi-thread runtimes (a current-thread runtime's next `block_on` may run on
//! another thread, and a suspended poll may not move). Elsewhere everything here compiles to a
//! cooperative fallback and says so once at start-up.

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod monitor;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod safepoint;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod signal;
mod slot;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod trampoline;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod unwind;

use std::io;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub(crate) use slot::WorkerSlot;
pub use slot::{DeferReason, WorkerPreemptionStats};

use crate::runtime::context;
use crate::time::TickGrid;

/// The shortest quantum `Builder::preemption_quantum` accepts.
pub const MIN_QUANTUM: Duration = Duration::from_micros(100);
/// The longest quantum `Builder::preemption_quantum` accepts.
pub const MAX_QUANTUM: Duration = Duration::from_millis(100);
/// The default quantum (justified in BENCHMARKS.md, "Why the default quantum is 1 ms"). Measured
/// on our 2-vCPU VM: a hog preempted every quantum loses 3–5 % of its throughput (35–55 µs a
/// preemption, mostly the VM's signal delivery and the monitor's wake-ups), 25–33 % at 100 µs;
/// a ticker beside CPU hogs wakes within about 1.1–1.4 ms at p99.9 when the VM leaves its
/// vCPUs alone (0.3–1.3 ms at 100 µs), 100 µs at the median.
pub const DEFAULT_QUANTUM: Duration = Duration::from_millis(1);
/// The default signal: SIGURG, for Go's reasons (ignored by default, unused by libc, harmless
/// when it arrives spuriously).
pub const DEFAULT_SIGNAL: i32 = libc::SIGURG;

/// Whether this build can preempt at all (Linux on x86_64, with XSAVE).
pub fn is_supported() -> bool {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        trampoline::configure().is_some()
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    {
        false
    }
}

/// Reads, on the calling thread, what preemption needs to know about the program's code (which
/// functions of the executable rule 3 lets it interrupt, from its symbol table, and how to walk
/// up from the pure library functions, from their call-frame information), unless that is read
/// already; if a runtime's thread is reading it, waits for that. Blocks (a few milliseconds in
/// a release build, some hundreds in a debug one): call it before starting a runtime, not from
/// a task.
///
/// Without it, the map is read on a thread of its own when a runtime's monitor first finds a
/// poll that has run its quantum, which is preempted once the map is read, or 100 ms after the
/// runtime started (module doc). A program that wants even a hog of its first 100 ms preempted
/// on time (a benchmark, a test of latencies) calls this first. Once a process has read the
/// map, a call returns at once. Does nothing where preemption is not supported.
pub fn prepare() {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    safepoint::read_code_map();
}

/// Whether the process has read what [`prepare`] reads: preemption can then begin at the first
/// poll that runs its quantum. `false` where preemption is not supported.
pub fn is_prepared() -> bool {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        safepoint::code_map_read()
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    {
        false
    }
}

/// Runs `f` with preemption held off on this thread: a preemption request that comes meanwhile
/// waits until `f` returns (and the poll is preempted later, if it still runs). For code that
/// holds a lock, a thread-local borrow or other per-thread state across a long computation (the
/// module doc's hazards).
pub fn no_preempt<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoPreemptGuard::new();
    f()
}

/// Holds preemption off on this thread while it lives, as [`no_preempt`]. Not `Send`: the hold is
/// the thread's, so the guard may not be carried across an `.await` in a task that could move.
#[must_use = "preemption is held off only while the guard lives"]
#[derive(Debug)]
pub struct NoPreemptGuard {
    _thread_bound: PhantomData<*const ()>,
}

impl NoPreemptGuard {
    /// Holds preemption off until the guard is dropped.
    #[inline]
    pub fn new() -> NoPreemptGuard {
        context::add_no_preempt_depth(1);
        NoPreemptGuard {
            _thread_bound: PhantomData,
        }
    }
}

impl Default for NoPreemptGuard {
    fn default() -> NoPreemptGuard {
        NoPreemptGuard::new()
    }
}

impl Drop for NoPreemptGuard {
    #[inline]
    fn drop(&mut self) {
        context::add_no_preempt_depth(-1);
    }
}

/// Locks one of the runtime's own mutexes with preemption held off while it is held (module doc,
/// "What is and is not enforced"). A poisoned lock is taken anyway: no runtime code panics while
/// holding one, so its state is consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> Held<'_, T> {
    let hold = NoPreemptGuard::new();
    Held {
        guard: mutex.lock().unwrap_or_else(|e| e.into_inner()),
        _hold: hold,
    }
}

/// A runtime mutex held with preemption off ([`lock`]).
pub(crate) struct Held<'a, T> {
    // Declared first: unlocked before preemption is allowed again.
    guard: MutexGuard<'a, T>,
    _hold: NoPreemptGuard,
}

impl<T> Deref for Held<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for Held<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// What `Builder` decided about preemption.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PreemptionConfig {
    pub(crate) quantum: Duration,
    pub(crate) signal: i32,
    /// `Builder::preemption_realtime_monitor`.
    pub(crate) realtime_monitor: bool,
}

/// A worker's looks at the others' polls for a calm monitor (`monitor` rule 7): which worker
/// it looks at next, the time of its last maintenance, and when its next look is due.
#[derive(Debug, Default)]
pub(crate) struct Spotter {
    next: usize,
    last_maintenance: Option<Instant>,
    next_look: Option<Instant>,
}

/// A runtime's preemption machinery: the workers' slots and the monitor.
#[derive(Debug)]
pub(crate) struct Preemption {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    monitor: monitor::Monitor,
}

impl Preemption {
    /// Starts preemption for `workers` workers, or says once why it cannot (then `None`: the
    /// runtime is cooperative). `timer_ticks` are the time driver's (`monitor` rule 2
    /// preempts just after them).
    pub(crate) fn start(
        workers: usize,
        config: PreemptionConfig,
        timer_ticks: TickGrid,
    ) -> io::Result<Option<Preemption>> {
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        {
            if trampoline::configure().is_none() {
                notice_once("this CPU or kernel has no XSAVE");
                return Ok(None);
            }
            signal::install(config.signal)?;
            let monitor = monitor::Monitor::start(workers, config, timer_ticks)?;
            Ok(Some(Preemption { monitor }))
        }
        #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
        {
            let _ = (workers, config, timer_ticks);
            notice_once("this target is not Linux on x86_64");
            Ok(None)
        }
    }

    /// The slot of worker `index`.
    pub(crate) fn slot(&self, index: usize) -> &WorkerSlot {
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        {
            &self.monitor.shared.slots[index]
        }
        #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
        {
            let _ = index;
            unreachable!("no preemption on this target")
        }
    }

    /// Whether the monitor got its real-time priority.
    pub(crate) fn monitor_is_realtime(&self) -> bool {
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        {
            self.monitor.realtime_permitted()
        }
        #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
        {
            false
        }
    }

    /// Every worker's figures.
    pub(crate) fn stats(&self) -> Vec<WorkerPreemptionStats> {
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        {
            self.monitor
                .shared
                .slots
                .iter()
                .map(WorkerSlot::stats)
                .collect()
        }
        #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
        {
            Vec::new()
        }
    }

    /// On the worker thread of slot `index`, for its whole life: receives requests.
    pub(crate) fn attach_worker(&self, index: usize) -> WorkerAttachment {
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        {
            WorkerAttachment {
                _guard: signal::attach(self.slot(index), self.monitor.shared.signal),
            }
        }
        #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
        {
            let _ = index;
            WorkerAttachment {}
        }
    }

    /// Worker `index`'s maintenance: runs `maintain` (which returns the time it read) and,
    /// around it, spots long polls on the others for a calm monitor (`monitor` rule 7).
    pub(crate) fn maintain_and_spot(
        &self,
        index: usize,
        spotter: &mut Spotter,
        maintain: impl FnOnce() -> Instant,
    ) {
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        self.monitor
            .shared
            .maintain_and_spot(index, spotter, maintain);
        #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
        {
            let _ = (index, spotter);
            maintain();
        }
    }

    /// A worker leaves its parked state (the monitor may be asleep; `monitor` rule 3).
    pub(crate) fn worker_unparked(&self, index: usize) {
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        self.monitor.worker_unparked(self.slot(index));
        #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
        let _ = index;
    }

    /// Stops the monitor (after the workers have left their loops).
    pub(crate) fn stop(&self) {
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        self.monitor.stop();
    }
}

/// Keeps a worker thread attached to its slot (see [`Preemption::attach_worker`]).
#[derive(Debug)]
#[must_use = "the worker receives requests only while this lives"]
pub(crate) struct WorkerAttachment {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    _guard: signal::AttachGuard,
}

/// The one start-up line of a runtime that asked for preemption and cannot have it.
fn notice_once(why: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        notice(format_args!(
            "maniac: preemption is off ({why}); tasks are scheduled cooperatively"
        ));
    });
}

/// One line of the preemption machinery's on stderr. Not `eprintln!`, which panics if stderr
/// is closed: these lines come from worker and monitor threads, which must go on.
pub(crate) fn notice(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}
