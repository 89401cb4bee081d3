//! Stack overflow in a coroutine: a SIGSEGV/SIGBUS handler that recognises a hit on the guard
//! page of the generator this thread is running, says so, and aborts, as Rust does for a thread
//! that overflows its stack. Any other fault goes to the handler installed before ours (std's,
//! which reports overflows of thread stacks, or the default action).
//!
//! ## Rules
//! 1. Installed once per process, before the first worker runs a generator, with `SA_ONSTACK`:
//!    the overflowing stack has no room left, so the handler must run on an alternate signal
//!    stack. std gives each thread it spawns one when it owns the SIGSEGV handler; a worker that
//!    finds none installs its own ([`AltStack`]).
//! 2. The handler is async-signal-safe: it reads one const-initialised thread-local (the current
//!    generator's header, `generator::guard_page_hit`), formats into a stack buffer, calls
//!    `write(2)` and `abort(3)`.
//! 3. Any other fault goes to the action installed before ours (`crate::signals`).

use super::generator;
use crate::signals;

/// Installs the handler (rule 1); idempotent.
pub(crate) fn install_handler() {
    for signal in [libc::SIGSEGV, libc::SIGBUS] {
        if let Err(error) = signals::install(signal, handle_fault, libc::SA_ONSTACK) {
            eprintln!("maniac: cannot install the stack overflow handler: {error}");
        }
    }
}

extern "C" fn handle_fault(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers of SIGSEGV/SIGBUS.
    let address = unsafe { (*info).si_addr() } as usize;
    if let Some(stack_size) = generator::guard_page_hit(address) {
        report_overflow_and_abort(stack_size);
    }
    // SAFETY: this is our handler for `signal`, called by the kernel with these arguments.
    unsafe { signals::forward(signal, info, context) };
}

/// Writes the overflow message to stderr and aborts (rule 2: no allocation, no locks).
fn report_overflow_and_abort(stack_size: usize) -> ! {
    let mut buffer = [0u8; 160];
    let mut length = 0;
    let mut push = |bytes: &[u8]| {
        let n = bytes.len().min(buffer.len() - length);
        buffer[length..length + n].copy_from_slice(&bytes[..n]);
        length += n;
    };
    push(b"maniac: task stack overflow (stack size ");
    let mut digits = [0u8; 20];
    let mut kib = stack_size / 1024;
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (kib % 10) as u8;
        kib /= 10;
        if kib == 0 {
            break;
        }
    }
    push(&digits[start..]);
    push(b" KiB); raise Builder::coroutine_stack_size\n");
    // SAFETY: write(2) and abort(3) are async-signal-safe; the buffer is ours.
    unsafe {
        libc::write(libc::STDERR_FILENO, buffer.as_ptr().cast(), length);
        libc::abort();
    }
}

/// An alternate signal stack for a worker thread that has none (rule 1), removed on drop.
#[derive(Debug)]
pub(crate) struct AltStack {
    mapping: Option<(*mut libc::c_void, usize)>,
}

/// Size of our alternate signal stacks: the handler's frame is small, but a chained previous
/// handler (std's) formats a message.
const ALT_STACK_SIZE: usize = 64 * 1024;

impl AltStack {
    /// Installs an alternate signal stack on this thread unless it already has one.
    pub(crate) fn ensure() -> AltStack {
        // SAFETY: an all-zero `stack_t` is a valid value (null pointer, zero flags and size).
        let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: querying the current alternate stack writes only into `current`.
        unsafe { libc::sigaltstack(std::ptr::null(), &mut current) };
        if current.ss_flags & libc::SS_DISABLE == 0 {
            return AltStack { mapping: None };
        }
        // SAFETY: a fresh private mapping, ours alone.
        let memory = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ALT_STACK_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if memory == libc::MAP_FAILED {
            return AltStack { mapping: None }; // an overflow then dies by SIGSEGV, unexplained
        }
        let stack = libc::stack_t {
            ss_sp: memory,
            ss_flags: 0,
            ss_size: ALT_STACK_SIZE,
        };
        // SAFETY: `stack` describes the mapping above, which outlives its installation (drop
        // uninstalls it before unmapping).
        unsafe { libc::sigaltstack(&stack, std::ptr::null_mut()) };
        AltStack {
            mapping: Some((memory, ALT_STACK_SIZE)),
        }
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        if let Some((memory, size)) = self.mapping {
            let disable = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            // SAFETY: uninstall first, so that no signal can run on the memory we unmap next.
            unsafe {
                libc::sigaltstack(&disable, std::ptr::null_mut());
                libc::munmap(memory, size);
            }
        }
    }
}
