//! The preemption trampoline: x86_64 assembly that runs, in the interrupted thread, as if the
//! interrupted instruction had called it, saves the whole machine state, switches the generator
//! out, and on resumption restores everything and returns to that instruction.
//!
//! ## How it is entered
//! The signal handler (`signal` module) never switches stacks itself. When it preempts, it
//! rewrites the interrupted context so that the kernel's `sigreturn` "returns" into
//! [`maniac_preempt_trampoline`] with:
//! - `rsp` = the interrupted `rsp` − 128 (the red zone, which a leaf function may be using) − 8;
//! - `[rsp]` = the interrupted `rip`, written there by the handler, as a `call` would have;
//! - every other register as it was.
//!
//! ## Stack layout (addresses grow upwards; the stack grows down)
//! ```text
//!   interrupted rsp ─► ┌──────────────────────────────────┐ ◄── CFA (the "caller's" rsp)
//!                      │ red zone: 128 bytes, untouched   │
//!                      ├──────────────────────────────────┤ CFA − 128
//!                      │ interrupted rip                  │ CFA − 136  (written by the handler)
//!                      ├──────────────────────────────────┤
//!                      │ rflags                           │ CFA − 144  (pushfq)
//!                      │ rax, rbx, rcx, rdx, rsi, rdi,    │ CFA − 152 … CFA − 264
//!                      │ rbp, r8 … r15                    │   (one push each, in this order)
//!            rbp ────► ├──────────────────────────────────┤ CFA − 264
//!                      │ alignment padding (< 64 bytes)   │
//!                      ├──────────────────────────────────┤
//!                      │ XSAVE area (XSAVE_SIZE bytes,    │ 64-byte aligned; its 64-byte header
//!                      │ x87, SSE, AVX, AVX-512, ...)     │ at +512 is zeroed before XSAVE
//!    rsp at call ────► └──────────────────────────────────┘
//! ```
//!
//! ## Steps
//! 1. `pushfq` and push every general register (the list is one table, below); `rbp` then anchors
//!    the frame.
//! 2. `cld` (the ABI wants the direction flag clear in Rust code), carve and align the XSAVE
//!    area, zero its header (XRSTOR faults on a header with reserved bits set, and XSAVE writes only
//!    `XSTATE_BV`), and `xsave64` with the mask of every component the OS enabled (XCR0).
//! 3. Give the code that runs next a default floating-point environment (`fninit`, MXCSR 0x1F80,
//!    `vzeroupper` where AVX is on): the task's own is saved, and the worker loop that continues
//!    after the switch must not compute with the interrupted task's rounding mode.
//! 4. `call maniac_preempt_entry`, which performs the Switch operation, keeping the thread's
//!    `errno` across it (other tasks set it meanwhile). It returns when the task is resumed, on
//!    this same thread.
//! 5. `xrstor64`, restore `rsp` from `rbp`, pop the registers and the flags, and `ret 128`: the
//!    `ret` pops the interrupted `rip`, and the immediate discards the red zone's 128 bytes, so
//!    `rsp` is exactly the interrupted value again.
//!
//! ## Unwind information
//! The CFI describes every step, so that gdb, perf and panics' backtraces walk from the runtime
//! through the trampoline into the interrupted frames: the CFA is the interrupted `rsp`, the return
//! address sits at CFA − 136, and each register's save slot is recorded as it is pushed
//! (`.cfi_rel_offset reg, 0` right after its push). `.cfi_signal_frame` marks the frame as one
//! whose return address is not a call site, so unwinders look up the FDE of the interrupted
//! instruction itself rather than of the byte before it.

use std::arch::global_asm;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

/// Bytes of the XSAVE area for the components in XCR0 (CPUID leaf 0xD, sub-leaf 0, EBX).
static XSAVE_SIZE: AtomicU64 = AtomicU64::new(0);
/// XCR0, the components XSAVE saves and XRSTOR restores (low and high halves: EAX and EDX).
static XSAVE_MASK_LOW: AtomicU32 = AtomicU32::new(0);
static XSAVE_MASK_HIGH: AtomicU32 = AtomicU32::new(0);
/// Whether AVX state is enabled (then `vzeroupper` is valid).
static HAS_AVX: AtomicU8 = AtomicU8::new(0);
/// MXCSR's power-on value: all exceptions masked, round to nearest.
static DEFAULT_MXCSR: AtomicU32 = AtomicU32::new(0x1F80);

/// XCR0's AVX bit.
const XCR0_AVX: u64 = 1 << 2;

/// Reads the machine's XSAVE configuration. Returns the XSAVE area size, or `None` if the CPU or
/// the OS does not support XSAVE (then preemption stays off).
pub(crate) fn configure() -> Option<usize> {
    if !std::arch::is_x86_feature_detected!("xsave") {
        return None;
    }
    // SAFETY: XSAVE support (and so OSXSAVE, which `is_x86_feature_detected` also requires) was
    // just checked, so XGETBV with ECX = 0 and CPUID leaf 0xD are valid.
    let (xcr0, size) = unsafe {
        let xcr0 = std::arch::x86_64::_xgetbv(0);
        let leaf = std::arch::x86_64::__cpuid_count(0xD, 0);
        (xcr0, leaf.ebx as usize)
    };
    if size == 0 {
        return None;
    }
    XSAVE_SIZE.store(size as u64, Ordering::Release);
    XSAVE_MASK_LOW.store(xcr0 as u32, Ordering::Release);
    XSAVE_MASK_HIGH.store((xcr0 >> 32) as u32, Ordering::Release);
    HAS_AVX.store(u8::from(xcr0 & XCR0_AVX != 0), Ordering::Release);
    Some(size)
}

/// Stack bytes the trampoline and the Switch operation need below the interrupted `rsp`.
pub(crate) fn frame_bytes() -> usize {
    const REGISTERS_AND_RED_ZONE: usize = 128 + 8 + 8 + 15 * 8;
    const ALIGNMENT: usize = 64;
    /// The Switch operation's own frames (a few function calls) and corosensei's switch.
    const SWITCH_FRAMES: usize = 4096;
    REGISTERS_AND_RED_ZONE + ALIGNMENT + XSAVE_SIZE.load(Ordering::Acquire) as usize + SWITCH_FRAMES
}

/// The address the handler makes the interrupted thread "return" to.
pub(crate) fn trampoline_address() -> usize {
    maniac_preempt_trampoline as *const () as usize
}

unsafe extern "C" {
    /// The trampoline (module doc). Never called from Rust: entered only through a rewritten
    /// signal context.
    fn maniac_preempt_trampoline();
}

/// Step 4: the Switch operation, from the trampoline. `extern "C"`: a panic here aborts rather
/// than unwinding into the assembly (none is expected: the handler checked the conditions).
#[unsafe(no_mangle)]
extern "C" fn maniac_preempt_entry() {
    // The handler checked every condition of the Switch operation on this very thread, and
    // nothing ran in between: it cannot refuse. The poll resumes on this thread, so on the same
    // worker's slot.
    let slot = super::signal::current_slot();
    slot.inspect(|slot| {
        slot.note_preemption();
        slot.set_preempted_waiting(true);
    });
    // errno is the thread's, not the machine's, but the interrupted code may be between a call
    // that set it and its read of it; the tasks that run meanwhile set it too (every read
    // that would block leaves EAGAIN). The handler kept it as it found it.
    // SAFETY: errno is this thread's, and the poll resumes on this thread.
    let errno = unsafe { *libc::__errno_location() };
    let switched = crate::coroutine::switch_now();
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
    slot.inspect(|slot| slot.set_preempted_waiting(false));
    debug_assert!(
        switched.is_ok(),
        "preemption could not switch: {switched:?}"
    );
}

/// The registers the trampoline saves, in push order (it pops them in reverse): every general
/// register but `rsp`, which the layout itself preserves.
macro_rules! with_saved_registers {
    ($then:ident) => {
        $then!(
            rax, rbx, rcx, rdx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13, r14, r15
        )
    };
}

/// `push reg` for each, with its CFI: the CFA moves by 8 and the register's slot is at the new
/// stack top.
macro_rules! push_registers {
    ($($reg:ident),*) => {
        concat!($(
            "push ", stringify!($reg), "\n",
            ".cfi_adjust_cfa_offset 8\n",
            ".cfi_rel_offset ", stringify!($reg), ", 0\n",
        )*)
    };
}

/// `pop reg` for each, in reverse order of the list, with its CFI.
macro_rules! pop_registers {
    ($($reg:ident),*) => { pop_registers!(@reverse [$($reg)*] []) };
    (@reverse [$first:ident $($rest:ident)*] [$($reversed:ident)*]) => {
        pop_registers!(@reverse [$($rest)*] [$first $($reversed)*])
    };
    (@reverse [] [$($reg:ident)*]) => {
        concat!($(
            "pop ", stringify!($reg), "\n",
            ".cfi_adjust_cfa_offset -8\n",
            ".cfi_restore ", stringify!($reg), "\n",
        )*)
    };
}

global_asm!(
    ".globl maniac_preempt_trampoline",
    ".type maniac_preempt_trampoline, @function",
    ".p2align 4",
    "maniac_preempt_trampoline:",
    ".cfi_startproc",
    ".cfi_signal_frame",
    // On entry: the return address (the interrupted rip) at [rsp], the red zone above it.
    ".cfi_def_cfa rsp, 136",
    ".cfi_offset rip, -136",
    // Step 1.
    "pushfq",
    ".cfi_adjust_cfa_offset 8",
    with_saved_registers!(push_registers),
    "mov rbp, rsp",
    ".cfi_def_cfa_register rbp",
    // Step 2.
    "cld",
    "sub rsp, qword ptr [rip + {xsave_size}]",
    "and rsp, -64",
    "xor eax, eax",
    "mov qword ptr [rsp + 512], rax",
    "mov qword ptr [rsp + 520], rax",
    "mov qword ptr [rsp + 528], rax",
    "mov qword ptr [rsp + 536], rax",
    "mov qword ptr [rsp + 544], rax",
    "mov qword ptr [rsp + 552], rax",
    "mov qword ptr [rsp + 560], rax",
    "mov qword ptr [rsp + 568], rax",
    "mov eax, dword ptr [rip + {mask_low}]",
    "mov edx, dword ptr [rip + {mask_high}]",
    "xsave64 [rsp]",
    // Step 3.
    "fninit",
    "ldmxcsr dword ptr [rip + {default_mxcsr}]",
    "cmp byte ptr [rip + {has_avx}], 0",
    "je 2f",
    "vzeroupper",
    "2:",
    // Step 4: rsp is 64-byte aligned here, as the call needs (16).
    "call {entry}",
    // Step 5.
    "mov eax, dword ptr [rip + {mask_low}]",
    "mov edx, dword ptr [rip + {mask_high}]",
    "xrstor64 [rsp]",
    "mov rsp, rbp",
    ".cfi_def_cfa_register rsp",
    with_saved_registers!(pop_registers),
    "popfq",
    ".cfi_adjust_cfa_offset -8",
    "ret 128",
    ".cfi_endproc",
    ".size maniac_preempt_trampoline, . - maniac_preempt_trampoline",
    xsave_size = sym XSAVE_SIZE,
    mask_low = sym XSAVE_MASK_LOW,
    mask_high = sym XSAVE_MASK_HIGH,
    has_avx = sym HAS_AVX,
    default_mxcsr = sym DEFAULT_MXCSR,
    entry = sym maniac_preempt_entry,
);
