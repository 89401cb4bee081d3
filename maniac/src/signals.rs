//! Signal handlers that chain: installing ours in front of whatever handled a signal before, and
//! handing that previous action every signal that is not for us.
//!
//! ## Rules
//! 1. A signal gets one handler of ours, installed once per process under a lock; the action it
//!    replaces is saved before ours is installed and never changes afterwards, so a handler may
//!    read it without synchronisation.
//! 2. [`forward`] runs the previous action as the kernel would have: an `SA_SIGINFO` handler with
//!    the same arguments, a plain handler with the signal number; nothing for an ignored signal.
//!    For the default action it does what that action would: nothing for a signal whose default
//!    is to be ignored (`SIGURG`, the preemption signal's default, `SIGCHLD`, `SIGWINCH`,
//!    `SIGCONT`), so that a stray one leaves our handler in place; for a fault, it restores the
//!    default and returns, so that the fault recurs with its default effect (a core dump); for
//!    any other signal, it restores the default and raises the signal again, which the kernel
//!    delivers (with its default effect, the end of the process) when our handler returns.

use std::cell::UnsafeCell;
use std::io;
use std::mem::MaybeUninit;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// A handler of ours.
pub(crate) type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Signal numbers we may chain (Linux has 64, numbered from 1).
const SIGNALS: usize = 65;

struct Previous {
    actions: [UnsafeCell<MaybeUninit<libc::sigaction>>; SIGNALS],
    installed: [AtomicBool; SIGNALS],
}

// SAFETY: an action slot is written once, under `INSTALL`, before `installed` is set and before
// our handler for that signal can run (rule 1); afterwards it is only read.
unsafe impl Sync for Previous {}

static PREVIOUS: Previous = Previous {
    actions: [const { UnsafeCell::new(MaybeUninit::uninit()) }; SIGNALS],
    installed: [const { AtomicBool::new(false) }; SIGNALS],
};
static INSTALL: Mutex<()> = Mutex::new(());

/// Installs `handler` for `signal` with `flags` (`SA_SIGINFO` is added), once (rule 1).
/// Returns whether this call installed it.
pub(crate) fn install(
    signal: libc::c_int,
    handler: Handler,
    flags: libc::c_int,
) -> io::Result<bool> {
    let index = usize::try_from(signal)
        .ok()
        .filter(|&index| (1..SIGNALS).contains(&index))
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("no signal {signal}"))
        })?;
    let _lock = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if PREVIOUS.installed[index].load(Ordering::Acquire) {
        return Ok(false);
    }
    // SAFETY: a zeroed sigaction is a valid value to fill in; `sigaction` writes the previous
    // action into its slot (ours, under the lock) before the new one takes effect (rule 1).
    let result = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as *const () as usize;
        action.sa_flags = flags | libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        let previous = (*PREVIOUS.actions[index].get()).as_mut_ptr();
        libc::sigaction(signal, &action, previous)
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    PREVIOUS.installed[index].store(true, Ordering::Release);
    Ok(true)
}

/// Rule 2: runs the action that `signal` had before ours. Async-signal-safe.
///
/// # Safety
/// Call only from our handler for `signal` (so the previous action is recorded), with the
/// arguments the kernel gave it.
pub(crate) unsafe fn forward(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    let index = signal as usize;
    if !PREVIOUS.installed[index].load(Ordering::Acquire) {
        return;
    }
    // SAFETY: recorded before our handler was installed and never written again (rule 1).
    let previous = unsafe { (*PREVIOUS.actions[index].get()).assume_init_ref() };
    match previous.sa_sigaction {
        libc::SIG_IGN => {}
        libc::SIG_DFL => {
            const IGNORED_BY_DEFAULT: [libc::c_int; 4] =
                [libc::SIGURG, libc::SIGCHLD, libc::SIGWINCH, libc::SIGCONT];
            const FAULTS: [libc::c_int; 5] = [
                libc::SIGSEGV,
                libc::SIGBUS,
                libc::SIGILL,
                libc::SIGFPE,
                libc::SIGTRAP,
            ];
            if IGNORED_BY_DEFAULT.contains(&signal) {
                return;
            }
            // SAFETY: resetting a signal to its default action is always valid; a fault then
            // recurs when we return, with its default effect.
            unsafe { libc::signal(signal, libc::SIG_DFL) };
            if !FAULTS.contains(&signal) {
                // SAFETY: raise is async-signal-safe; the signal is blocked while our handler
                // runs, so it is delivered, with its default effect, when the handler returns.
                unsafe { libc::raise(signal) };
            }
        }
        handler if previous.sa_flags & libc::SA_SIGINFO != 0 => {
            // SAFETY: installed as an SA_SIGINFO handler, so this is its documented signature,
            // called as the kernel would have.
            let handler: Handler = unsafe { std::mem::transmute(handler) };
            handler(signal, info, context);
        }
        handler => {
            // SAFETY: as above, for a plain `sa_handler`.
            let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
            handler(signal);
        }
    }
}
