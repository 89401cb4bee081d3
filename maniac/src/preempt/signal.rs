//! The preemption request: the handler of the runtime's preemption signal.
//!
//! ## Rules
//! 1. Installed once per process and signal (`crate::signals`), with `SA_ONSTACK` (it runs on the
//!    worker's alternate signal stack, set up with the coroutine machinery) and `SA_RESTART`
//!    (system calls it interrupts resume by themselves where the kernel can).
//! 2. A signal is ours by its siginfo: a request's, which the monitor queues (`SI_QUEUE` from
//!    our pid, the slot's address as its value: [`send_request`]), or the worker's own timer
//!    firing (`SI_TIMER`, the slot's address as its value; `slot` module doc, "own_timer").
//!    Either takes the request pending, if any; one that finds none is still ours (its request
//!    was taken by another signal of ours, or merged with one) and nothing else. A signal that
//!    arrives with its origin lost (siginfo all zero but for `SI_USER`: the kernel had no room
//!    to queue it, the user's `RLIMIT_SIGPENDING` reached) is ours if it finds a request, or if
//!    the request it came for was taken by another signal of ours while it was on its way
//!    (`request_absorbed`). Anything else, the program's own `pthread_kill` to a worker
//!    included, goes to the action installed before ours. A request for a poll that has ended
//!    is dropped (`slot` module doc, "requested").
//!
//!    The price of the lost-origin case: a foreign signal that arrives the same way (another
//!    sender's, while the limit is reached, or a `kill` by root from an ancestor pid namespace)
//!    at a worker with a request pending (or a stale absorbed mark: set for a request whose
//!    other signal the kernel merged away) is taken for ours, and our own that follows, if it
//!    too lost its origin, then goes to the earlier action. Without it, every request goes to
//!    the earlier action while the limit lasts, and nothing is preempted.
//! 3. The handler never switches stacks. It checks the safe-point rules (`safepoint`) and, when
//!    they hold, rewrites the interrupted context so that the thread, on return from the signal,
//!    runs the trampoline (`trampoline`) as if the interrupted instruction had called it; when they
//!    do not, it counts the reason and returns (the monitor, or the own timer, asks again
//!    later).
//! 4. Async-signal-safe: it reads const-initialised thread-locals and immutable tables, updates
//!    atomics, reads the monotonic clock, and calls nothing that allocates or locks; its system
//!    calls (`timer_settime`, `sigpending`) are on POSIX's async-signal-safe list, and it keeps
//!    `errno` as it found it.

use std::cell::Cell;
use std::io;
use std::ptr;
use std::sync::Once;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use super::DeferReason;
use super::safepoint;
use super::slot::{OwnTimerExpiry, WorkerSlot};
use super::trampoline;
use crate::signals;

thread_local! {
    /// The preemption slot of the worker running on this thread, or null.
    static WORKER_SLOT: Cell<*const WorkerSlot> = const { Cell::new(ptr::null()) };
}

/// This process's id, for rule 2 (read by the handler, which may not call `getpid`).
static PROCESS_ID: AtomicI32 = AtomicI32::new(0);
/// This process's real user id, which a request's signal carries as its sender's.
static USER_ID: AtomicU32 = AtomicU32::new(0);

/// This process's id, as [`install`] recorded it (0 before): async-signal-safe.
fn process_id() -> libc::pid_t {
    PROCESS_ID.load(Ordering::Acquire)
}

/// Rule 1.
pub(crate) fn install(signal: libc::c_int) -> io::Result<()> {
    // SAFETY: getpid and getuid have no preconditions.
    PROCESS_ID.store(unsafe { libc::getpid() }, Ordering::Release);
    // SAFETY: as above.
    USER_ID.store(unsafe { libc::getuid() }, Ordering::Release);
    signals::install(signal, handle_request, libc::SA_ONSTACK | libc::SA_RESTART).map(drop)
}

/// Makes `slot` this thread's until the guard is dropped (the worker thread's whole life).
pub(crate) fn attach(slot: &WorkerSlot, signal: libc::c_int) -> AttachGuard {
    slot.attach_current_thread();
    if let Err(error) = slot.create_own_timer(signal) {
        static NOTICE: Once = Once::new();
        NOTICE.call_once(|| {
            super::notice(format_args!(
                "maniac: a worker could not create its preemption timer ({error}); the monitor \
                 alone times its polls"
            ));
        });
    }
    AttachGuard {
        previous: WORKER_SLOT.replace(slot),
        signal,
    }
}

#[must_use = "the worker stops receiving requests when the guard is dropped"]
#[derive(Debug)]
pub(crate) struct AttachGuard {
    previous: *const WorkerSlot,
    signal: libc::c_int,
}

impl Drop for AttachGuard {
    fn drop(&mut self) {
        // A request sent just before the detach may still be on its way: blocked first, it stays
        // pending until the thread exits, instead of reaching a thread without a slot, where it
        // would look like somebody else's signal (rule 2) and go to the previous action.
        // SAFETY: a zeroed sigset is filled by sigemptyset; blocking a signal on this thread
        // has no other effect.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, self.signal);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, ptr::null_mut());
        }
        if let Some(slot) = current_slot() {
            slot.delete_own_timer();
            slot.detach_current_thread();
        }
        WORKER_SLOT.set(self.previous);
    }
}

/// A signal's siginfo as `rt_tgsigqueueinfo` takes it from the sender: the kernel's layout
/// (x86_64) for a queued signal (`_sifields._rt`: pid, uid, value), padded to a `siginfo_t`'s
/// size. libc's `siginfo_t` has only getters for these fields, no way to set them.
#[repr(C)]
struct QueuedSignalInfo {
    signal: libc::c_int,
    error: libc::c_int,
    code: libc::c_int,
    /// The union that follows is 8-byte aligned.
    _align: libc::c_int,
    sender: libc::pid_t,
    user: libc::uid_t,
    value: *const libc::c_void,
    _padding: [u8; 128 - 32],
}

const _: () =
    assert!(std::mem::size_of::<QueuedSignalInfo>() == std::mem::size_of::<libc::siginfo_t>());

/// Queues `signal` for thread `thread` of this process with the siginfo `code`, `sender`,
/// `user` and `value` say. The kernel takes them as given for a negative `code` other than
/// `SI_TKILL` (`SI_QUEUE`, say), and for any `code` only from the thread itself.
///
/// # Safety
/// `thread` must be a live thread of this process (a thread id can be reused once its thread
/// has exited, and then names another thread of ours).
unsafe fn queue_signal(
    thread: libc::pid_t,
    signal: libc::c_int,
    code: libc::c_int,
    sender: libc::pid_t,
    user: libc::uid_t,
    value: *const libc::c_void,
) -> io::Result<()> {
    let info = QueuedSignalInfo {
        signal,
        error: 0,
        code,
        _align: 0,
        sender,
        user,
        value,
        _padding: [0; 128 - 32],
    };
    // SAFETY: rt_tgsigqueueinfo reads `info`, a siginfo's worth of bytes, and only sends a
    // signal; the caller promises `thread` is one of ours.
    match unsafe {
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            process_id(),
            thread,
            signal,
            &raw const info,
        )
    } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Rule 2: sends `signal` to `slot`'s worker thread `thread` for the request pending there, as a
/// queued signal (`SI_QUEUE`) from this process whose value is the slot's address, by which
/// the handler tells it from another sender's. Not `tgkill` (which is what `pthread_kill`
/// sends): a signal of ours that finds no request (its request taken by another of ours) would
/// look like the program's own `pthread_kill`, and one of the two would go to the wrong
/// handler. Not `pthread_sigqueue` either: glibc's blocks and unblocks every signal around the
/// internal lock that keeps the thread from exiting meanwhile, and asks for the process id,
/// each time (three more system calls per request, on the monitor's path to every
/// preemption); the slot's own lock keeps the thread from exiting. `EAGAIN`: a real-time
/// signal the kernel has no room to queue.
///
/// # Safety
/// As [`queue_signal`]'s.
pub(crate) unsafe fn send_request(
    thread: libc::pid_t,
    signal: libc::c_int,
    slot: &WorkerSlot,
) -> io::Result<()> {
    let user = USER_ID.load(Ordering::Acquire);
    // SAFETY: the caller's promise.
    unsafe {
        queue_signal(
            thread,
            signal,
            libc::SI_QUEUE,
            process_id(),
            user,
            ptr::from_ref(slot).cast(),
        )
    }
}

/// Whether `info` is a request's signal for `slot`, as [`send_request`] sends it.
/// Async-signal-safe.
///
/// # Safety
/// `info` must be the siginfo the kernel passed to an `SA_SIGINFO` handler.
unsafe fn is_request_signal(info: *const libc::siginfo_t, slot: &WorkerSlot) -> bool {
    // SAFETY: the caller's promise; a queued signal's siginfo carries its sender and value.
    unsafe { slot.is_carried_by(info, libc::SI_QUEUE) && (*info).si_pid() == process_id() }
}

/// The slot of the worker on this thread, if any.
pub(crate) fn current_slot() -> Option<&'static WorkerSlot> {
    // SAFETY: non-null only while an `AttachGuard` lives, which borrows a slot the runtime keeps
    // until its workers have exited.
    unsafe { WORKER_SLOT.get().as_ref() }
}

extern "C" fn handle_request(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // Rule 2.
    let slot = current_slot();
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let own_timer = slot.is_some_and(|slot| unsafe { slot.is_own_timer(info) });
    if let Some(slot) = slot.filter(|_| own_timer) {
        slot.count_own_timer_signal();
    }
    // SAFETY: as above.
    let from_monitor = slot.is_some_and(|slot| unsafe { is_request_signal(info, slot) });
    // SAFETY: as above; the kernel fills in every field of the siginfo it passes (those a
    // signal's kind does not use are zero), so the sender's fields may be read whatever the kind.
    let origin_lost = unsafe {
        (*info).si_code == libc::SI_USER && (*info).si_pid() == 0 && (*info).si_uid() == 0
    };
    // A request's signal sent while the own timer's signal is pending is merged into it: the
    // timer's signal serves a pending request too (`slot` module doc, "own_timer"). Another
    // signal of ours may follow one that takes a request: the request's own, when the own
    // timer's signal took it, or the second of a renewed request's two (`slot` module doc,
    // "requested"). It is ours by its siginfo, unless that was lost: for that case the taking
    // signal marks the request absorbed if the other is on its way (the monitor still sending
    // it, or the signal pending).
    let ours = slot
        .filter(|_| own_timer || from_monitor || origin_lost)
        .map(|slot| (slot, slot.take_request()))
        .filter(|(slot, request)| match request {
            Some(taken) => {
                if (own_timer || taken.renewed) && (taken.sending || is_pending(signal)) {
                    slot.set_request_absorbed();
                }
                true
            }
            // Our own signal consumes the mark too (else it lasts, and swallows the next
            // lost-origin signal); the timer's must not (the marked signal is still to come).
            None => own_timer || slot.take_request_absorbed() || from_monitor,
        });
    let Some((slot, request)) = ours else {
        // SAFETY: our handler for `signal`, with the kernel's arguments.
        unsafe { signals::forward(signal, info, context) };
        return;
    };
    let timer_due = slot.own_timer_expired() == OwnTimerExpiry::Due;
    let requested = request.is_some_and(|taken| taken.current);
    if request.is_some() && !requested {
        slot.count_deferral(DeferReason::Stale);
    }
    if !requested && !timer_due {
        return;
    }
    // SAFETY: the kernel's context for this handler.
    if let Err(reason) = unsafe { preempt_if_safe(slot, context, own_timer) } {
        slot.count_deferral(reason);
        if timer_due {
            slot.own_timer_deferred();
        }
    }
}

/// Whether `signal` is pending for this thread (a signal of ours on its way in, perhaps).
/// Async-signal-safe (`sigpending`, `sigismember`).
fn is_pending(signal: libc::c_int) -> bool {
    // SAFETY: a zeroed sigset is valid for sigpending to fill; both calls only read and write
    // `set`.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut set) == 0 && libc::sigismember(&set, signal) == 1
    }
}

/// Rule 3 for the poll running on `slot`'s worker, which a request or the worker's own timer
/// asked to preempt; `by_own_timer`: the signal was the timer's (for the statistics).
///
/// # Safety
/// `context` must be the `ucontext_t` the kernel passed to this SA_SIGINFO handler, which it
/// restores on return.
unsafe fn preempt_if_safe(
    slot: &WorkerSlot,
    context: *mut libc::c_void,
    by_own_timer: bool,
) -> Result<(), DeferReason> {
    // SAFETY: for an SA_SIGINFO handler the third argument is the interrupted `ucontext_t`,
    // which the kernel restores on return; we are its only user until then.
    let registers = unsafe { &mut (*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    let at = safepoint::Interrupted {
        pc: registers[libc::REG_RIP as usize] as usize,
        sp: registers[libc::REG_RSP as usize] as usize,
        rax: registers[libc::REG_RAX as usize] as u64,
        rsi: registers[libc::REG_RSI as usize] as u64,
        rbp: registers[libc::REG_RBP as usize] as usize,
    };
    let (pc, sp) = (at.pc, at.sp);
    // Rule 3.
    let point = safepoint::check(&at)?;
    // What a `call trampoline` at `pc` would have done, below the red zone.
    let return_address = sp - 128 - 8;
    // SAFETY: rule 4 of the safe points checked that `sp` lies in the current generator's
    // stack with room for the trampoline's frame, which starts here; nothing else uses that
    // memory (it is below the stack pointer and the red zone).
    unsafe { ptr::write(return_address as *mut u64, pc as u64) };
    registers[libc::REG_RSP as usize] = return_address as i64;
    registers[libc::REG_RIP as usize] = trampoline::trampoline_address() as i64;
    slot.count_preemption(point, by_own_timer);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU32;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::preempt::monitor::MonitorWake;
    use crate::time::TickGrid;

    /// How often the action installed before ours ran, by signal number.
    static EARLIER_ACTION_RUNS: [AtomicU32; 65] = [const { AtomicU32::new(0) }; 65];

    extern "C" fn earlier_action(signal: libc::c_int) {
        EARLIER_ACTION_RUNS[signal as usize].fetch_add(1, Ordering::SeqCst);
    }

    fn earlier_action_runs(signal: libc::c_int) -> u32 {
        EARLIER_ACTION_RUNS[signal as usize].load(Ordering::SeqCst)
    }

    /// The monitor's signal for the request pending in `slot`, to the calling thread, which
    /// `slot` is attached to, as `MonitorShared::signal` sends it.
    fn request_signal(slot: &WorkerSlot, signal: libc::c_int) {
        assert!(
            slot.send(signal).expect("cannot send"),
            "no thread attached"
        );
    }

    /// Another sender's `pthread_kill` of `signal` to the calling thread (a `tgkill`).
    fn foreign_signal(signal: libc::c_int) {
        // SAFETY: tgkill only sends a signal, here to this very thread, which handles it.
        let sent = unsafe { libc::syscall(libc::SYS_tgkill, process_id(), libc::gettid(), signal) };
        assert_eq!(sent, 0, "tgkill: {}", io::Error::last_os_error());
    }

    /// `signal` to the calling thread as the kernel delivers a signal it had no room to queue
    /// the siginfo of (rule 2: `SI_USER`, sender and user 0), whoever sent it.
    fn origin_lost_signal(signal: libc::c_int) {
        // SAFETY: to this very thread (which may send itself any siginfo), which handles it.
        unsafe { queue_signal(libc::gettid(), signal, libc::SI_USER, 0, 0, ptr::null()) }
            .expect("rt_tgsigqueueinfo");
    }

    /// Blocks (`how` = `SIG_BLOCK`) or unblocks (`SIG_UNBLOCK`) `signal` on this thread.
    fn mask(how: libc::c_int, signal: libc::c_int) {
        // SAFETY: a zeroed sigset is filled by sigemptyset; the mask is this thread's own.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal);
            assert_eq!(libc::pthread_sigmask(how, &set, ptr::null_mut()), 0);
        }
    }

    /// Runs `race` on a thread attached to a slot as a worker is, with `signal` (which no other
    /// code of this binary may use) handled by ours and, before ours, by a counting action.
    /// Checks first that another sender's signal is passed on and a request's signal that
    /// finds no request is not (so the action has run once when `race` begins). The thread
    /// runs no task: a preemption the handler would make is deferred.
    fn on_a_worker_thread(signal: libc::c_int, race: impl FnOnce(&WorkerSlot) + Send) {
        // SAFETY: a plain handler that only counts, installed before ours (which then forwards
        // to it); no other code of this binary uses this signal.
        let earlier = unsafe {
            libc::signal(
                signal,
                earlier_action as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
        assert_ne!(earlier, libc::SIG_ERR);
        install(signal).expect("cannot install the handler");
        let slot = WorkerSlot::new(
            Duration::from_millis(1),
            TickGrid::new(Instant::now()),
            Arc::new(MonitorWake::default()),
        );
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let _attached = attach(&slot, signal);
                foreign_signal(signal);
                assert_eq!(
                    earlier_action_runs(signal),
                    1,
                    "another sender's signal was not passed on"
                );
                request_signal(&slot, signal);
                assert_eq!(
                    earlier_action_runs(signal),
                    1,
                    "a request's signal that found no request was passed on"
                );
                race(&slot);
                slot.end_poll();
                slot.set_parked(true);
            });
        });
    }

    /// Begins a poll on `slot` that its own timer times (a poll right after a preemption: the
    /// timer fires a quantum after it began); returns it.
    fn begin_own_timed_poll(slot: &WorkerSlot) -> u64 {
        slot.begin_poll();
        slot.note_preemption();
        slot.end_poll();
        slot.begin_poll();
        let poll = slot.running_poll().unwrap();
        assert!(
            slot.own_timer_covers(poll),
            "the own timer does not time it"
        );
        poll
    }

    /// Waits until the own timer has fired into `signal`, which this thread blocks: its signal
    /// is pending.
    fn wait_for_the_own_timer(signal: libc::c_int) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_pending(signal) {
            assert!(Instant::now() < deadline, "the own timer never fired");
            std::hint::spin_loop();
        }
    }

    /// Begins a poll its own timer times on `slot` (the calling thread's), claims a request for
    /// it as the monitor does before it sends the signal, and waits until the timer has fired
    /// and its signal has taken that request.
    fn let_the_own_timer_take_a_request_being_sent(slot: &WorkerSlot) {
        let poll = begin_own_timed_poll(slot);
        assert!(slot.request(poll));
        let heard = slot.own_timer_signals();
        let deadline = Instant::now() + Duration::from_secs(10);
        while slot.own_timer_signals() == heard {
            assert!(Instant::now() < deadline, "the own timer never fired");
            std::hint::spin_loop();
        }
        assert!(slot.take_request().is_none(), "the timer left the request");
    }

    /// Begins a poll its own timer times on `slot` (the calling thread's) with the real-time
    /// `signal` blocked, lets the timer fire (its signal waits in the queue), claims a request
    /// for that poll and has `send` queue the request's signal behind the timer's, as the
    /// monitor would while the timer's handler runs; then unblocks the signal and checks that
    /// the timer's signal took the request and the request's signal was handled after it.
    fn let_the_own_timer_take_a_request_whose_signal_is_pending(
        slot: &WorkerSlot,
        signal: libc::c_int,
        send: impl FnOnce(),
    ) {
        let poll = begin_own_timed_poll(slot);
        mask(libc::SIG_BLOCK, signal);
        wait_for_the_own_timer(signal);
        assert!(slot.request(poll));
        send();
        slot.request_sent();
        let heard = slot.own_timer_signals();
        mask(libc::SIG_UNBLOCK, signal);
        assert!(
            slot.own_timer_signals() > heard,
            "the timer's signal was not handled"
        );
        assert!(slot.take_request().is_none(), "the timer left the request");
        assert!(!is_pending(signal), "the request's signal was not handled");
    }

    /// Rule 2, `slot` module doc ("own_timer"): when the own timer's signal takes a request
    /// whose signal the monitor is still sending (`SENDING`), that signal, which then finds no
    /// request, is still ours, not passed on to the action installed before ours. Real
    /// signals, with the interleaving forced: the request claimed, the timer's signal handled,
    /// then the request's.
    #[test]
    fn a_request_signal_whose_request_the_own_timer_took_is_not_passed_on() {
        const SIGNAL: libc::c_int = libc::SIGUSR2;
        on_a_worker_thread(SIGNAL, |slot| {
            // The monitor claims a request and is about to send its signal, when the timer
            // fires and its signal takes the request.
            let_the_own_timer_take_a_request_being_sent(slot);
            // The monitor's signal arrives.
            request_signal(slot, SIGNAL);
            slot.request_sent();
            assert_eq!(
                earlier_action_runs(SIGNAL),
                1,
                "the signal of a request the own timer took was passed on"
            );
            // That signal consumed the mark: a lost-origin signal now is another sender's.
            origin_lost_signal(SIGNAL);
            assert_eq!(
                earlier_action_runs(SIGNAL),
                2,
                "a stale absorbed mark swallowed a lost-origin signal"
            );
        });
    }

    /// As above, with the request's signal already sent (the monitor has returned) but still
    /// pending when the timer's signal is handled, as when it arrives while the timer's handler
    /// runs: the handler sees it pending. A real-time signal, so that the kernel queues both
    /// instances, in the order they were sent, while the thread blocks them (of a standard
    /// signal it would keep one), and the timer's is handled first.
    #[test]
    fn a_request_signal_pending_while_the_own_timer_takes_its_request_is_not_passed_on() {
        let signal = libc::SIGRTMAX() - 1;
        on_a_worker_thread(signal, |slot| {
            let_the_own_timer_take_a_request_whose_signal_is_pending(slot, signal, || {
                request_signal(slot, signal);
            });
            assert_eq!(
                earlier_action_runs(signal),
                1,
                "the signal of a request the own timer took was passed on"
            );
        });
    }

    /// `slot` module doc ("requested"): the kernel merges a request's signal into the own
    /// timer's pending signal, and when the timer is disarmed (here by parking) or re-armed
    /// before that signal is delivered, drops both (Linux 6.18 does). The request stays
    /// pending; renewed, as the monitor renews it, it is served by its new signal, as the
    /// running poll's (not stale), and nothing is passed on to the earlier action.
    #[test]
    fn a_request_whose_signal_the_kernel_dropped_is_served_once_renewed() {
        const SIGNAL: libc::c_int = libc::SIGUSR1;
        on_a_worker_thread(SIGNAL, |slot| {
            let poll = begin_own_timed_poll(slot);
            mask(libc::SIG_BLOCK, SIGNAL);
            wait_for_the_own_timer(SIGNAL);
            // The monitor's request and its signal, merged into the timer's ...
            assert!(slot.request(poll));
            request_signal(slot, SIGNAL);
            slot.request_sent();
            // ... which the timer's disarming voids.
            slot.set_parked(true);
            slot.set_parked(false);
            mask(libc::SIG_UNBLOCK, SIGNAL);
            let held = slot.pending_request();
            if held == 0 {
                eprintln!("this kernel delivered the voided timer's signal: no request was lost");
            } else {
                assert!(slot.renew_request(held, poll));
                request_signal(slot, SIGNAL);
                slot.request_sent();
            }
            assert_eq!(slot.pending_request(), 0, "the request was never served");
            assert_eq!(
                slot.stats().deferred(DeferReason::Stale),
                0,
                "the renewed request was taken for a stale one"
            );
            assert_eq!(
                earlier_action_runs(SIGNAL),
                1,
                "a signal of the request was passed on"
            );
        });
    }

    /// Begins a poll on `slot` (the calling thread's), claims a request for it and sends its
    /// signal while the thread blocks `signal` (the signal is late), renews the request as the
    /// monitor would before it signals again, and unblocks: the first signal takes the renewed
    /// request while its second signal is, as far as the handler knows, still being sent.
    fn let_a_renewed_requests_first_signal_take_it(slot: &WorkerSlot, signal: libc::c_int) {
        slot.begin_poll();
        let poll = slot.running_poll().unwrap();
        mask(libc::SIG_BLOCK, signal);
        assert!(slot.request(poll));
        request_signal(slot, signal);
        slot.request_sent();
        let held = slot.pending_request();
        assert!(slot.renew_request(held, poll));
        mask(libc::SIG_UNBLOCK, signal);
        assert_eq!(
            slot.pending_request(),
            0,
            "the first signal took no request"
        );
    }

    /// `slot` module doc ("requested"): a request renewed while its first signal was only late
    /// gets two signals; the first takes the renewed request while the monitor is still sending
    /// the second, and that one, finding no request, is still ours, not passed on.
    #[test]
    fn the_second_signal_of_a_renewed_request_is_not_passed_on() {
        let signal = libc::SIGRTMAX() - 2;
        on_a_worker_thread(signal, |slot| {
            let_a_renewed_requests_first_signal_take_it(slot, signal);
            request_signal(slot, signal);
            slot.request_sent();
            assert_eq!(
                earlier_action_runs(signal),
                1,
                "the renewed request's second signal was passed on"
            );
        });
    }

    /// Rule 2's lost-origin case, the absorbed mark's pending branch: the own timer's signal
    /// takes a request whose signal is already sent but still pending (here queued behind it
    /// while the thread blocks both), and that signal arrives with its origin lost, finding no
    /// request: ours, by the mark the timer's signal left because it saw it pending. The mark
    /// is then spent: the next lost-origin signal is another sender's. A real-time signal, so
    /// that both instances queue in the order sent.
    #[test]
    fn a_lost_origin_signal_pending_while_the_own_timer_takes_its_request_is_ours() {
        let signal = libc::SIGRTMAX() - 5;
        on_a_worker_thread(signal, |slot| {
            // The monitor's request, whose signal the kernel queues without its siginfo.
            let_the_own_timer_take_a_request_whose_signal_is_pending(slot, signal, || {
                origin_lost_signal(signal);
            });
            assert_eq!(
                earlier_action_runs(signal),
                1,
                "the lost-origin signal of a request the own timer took while it was pending \
                 was passed on"
            );
            origin_lost_signal(signal);
            assert_eq!(
                earlier_action_runs(signal),
                2,
                "the absorbed mark outlived the signal it was for"
            );
        });
    }

    /// Rule 2's lost-origin case, the absorbed mark's renewed branch: a renewed request's
    /// first (late) signal takes it while the monitor is still sending the second, which
    /// arrives with its origin lost and finds no request: ours, by the mark, and the mark is
    /// then spent.
    #[test]
    fn a_renewed_requests_second_signal_with_its_origin_lost_is_ours() {
        let signal = libc::SIGRTMAX() - 6;
        on_a_worker_thread(signal, |slot| {
            let_a_renewed_requests_first_signal_take_it(slot, signal);
            // The second, which the kernel delivers without its siginfo.
            origin_lost_signal(signal);
            slot.request_sent();
            assert_eq!(
                earlier_action_runs(signal),
                1,
                "the renewed request's lost-origin second signal was passed on"
            );
            origin_lost_signal(signal);
            assert_eq!(
                earlier_action_runs(signal),
                2,
                "the absorbed mark outlived the signal it was for"
            );
        });
    }

    /// Rule 2: a signal is ours by its siginfo, not by what it finds. The own timer's signal
    /// takes a request whose signal the monitor is still sending, and that signal never
    /// comes on its own (the kernel merged it into the timer's, as a signal sent while the
    /// timer's is pending is): a `pthread_kill` of the signal from elsewhere in the process
    /// that follows is that sender's, passed on, not taken for the merged one.
    #[test]
    fn another_senders_signal_after_a_request_the_own_timer_took_is_passed_on() {
        let signal = libc::SIGRTMAX() - 3;
        on_a_worker_thread(signal, |slot| {
            let_the_own_timer_take_a_request_being_sent(slot);
            // The monitor returns from sending the signal the kernel merged away.
            slot.request_sent();
            foreign_signal(signal);
            assert_eq!(
                earlier_action_runs(signal),
                2,
                "another sender's signal was taken for the request's"
            );
        });
    }

    /// Rule 2's lost-origin case: a signal whose siginfo the kernel had no room to queue is
    /// ours only if it finds a request, or the request it was sent for was taken by another
    /// signal of ours while it was on its way (`request_absorbed`); otherwise it is passed on.
    #[test]
    fn a_signal_whose_origin_was_lost_is_ours_only_for_a_request() {
        let signal = libc::SIGRTMAX() - 4;
        on_a_worker_thread(signal, |slot| {
            origin_lost_signal(signal);
            assert_eq!(
                earlier_action_runs(signal),
                2,
                "with no request pending, it was not passed on"
            );
            slot.begin_poll();
            assert!(slot.request(slot.running_poll().unwrap()));
            slot.request_sent();
            origin_lost_signal(signal);
            assert_eq!(slot.pending_request(), 0, "it did not take the request");
            assert_eq!(
                earlier_action_runs(signal),
                2,
                "it took the request, and was passed on"
            );
            slot.end_poll();
            // The own timer's signal takes a request the monitor is still sending; that
            // request's signal comes with its origin lost.
            let_the_own_timer_take_a_request_being_sent(slot);
            origin_lost_signal(signal);
            slot.request_sent();
            assert_eq!(
                earlier_action_runs(signal),
                2,
                "the signal of a request the own timer took was passed on"
            );
        });
    }
}
