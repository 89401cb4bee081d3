//! Async-safe points: where an interrupted thread may be switched out.
//!
//! The signal handler preempts only when all four rules hold; otherwise it counts the reason and
//! lets the monitor try again at its next look (and the poll's end settles it at the latest).
//!
//! 1. **Inside a task's poll** (the thread's current task is set). *Why:* outside a poll the
//!    thread runs the scheduler itself, whose state (queues, the core's `RefCell`, async-task's
//!    state machine) is not built to be left half-updated while the same thread runs other tasks.
//! 2. **No-preempt depth 0** (`preempt::no_preempt`, the allocator wrapper, user guards). *Why:* the
//!    code inside holds something the next task on this thread may need: a lock, a thread-local
//!    `RefCell` borrow, an allocator's per-thread state. A thread that is panicking (a panic
//!    hook, or destructors during unwinding, which are user code) counts as inside one: std's
//!    panic count is per thread, and another task panicking on it meanwhile would abort the
//!    process ("thread panicked while processing panic").
//! 3. **The interrupted instruction is in the main executable, outside the denylist.** *Why:* code
//!    in other objects (libc, the vDSO, `libgcc_s`) is not ours to reason about: `malloc` holding
//!    its arena lock, `memcpy` in the middle of a copy from a buffer another task may free. Inside
//!    the executable, the denylist covers what holds locks or thread-local state on behalf of its
//!    caller: the runtime whole (its scheduling, drivers and pools, and its wakers, which other
//!    crates call with their own locks held) and corosensei's switching;
//!    the whole standard library (`std`, `core`, `alloc`: its locks are held across calls into
//!    its small generic helpers, so no list of its modules is enough); the synchronisation
//!    crates a task commonly calls into, whole (tokio, futures, async-task, crossbeam,
//!    parking_lot, event-listener, async-channel, ...). A task's own code, and the code of other
//!    crates, stay preemptible. The denylist is built once, at start-up, from the executable's
//!    symbol table (demangled names, [`is_denied`]); a stripped executable has no symbol table,
//!    and then rule 3 reduces to "in the executable" (said once on stderr).
//!
//!    **The one exception: a task waiting for a std lock** ([`LOCK_WAITS`]). A task that blocks
//!    on a `std::sync::Mutex`, an `RwLock` or a `Once` (`OnceLock`, `LazyLock`) held by a task
//!    preempted on the same worker would block that worker for good: the holder can only resume
//!    there. So a thread inside libc's `syscall` wrapper, called from one of std's lock-wait
//!    functions, for a `FUTEX_WAIT` (with `rax` still the system call's number: the kernel
//!    restarts it on return) is preempted too. *Why it is safe:* the wrapper is a leaf that holds
//!    nothing but registers, which the trampoline saves; the wait functions hold nothing while
//!    they wait (the lock is not theirs yet); and returning to the rewound instruction makes the
//!    same `futex` call again, which returns at once if the lock word changed meanwhile, and
//!    std's loop tries again. The recognition is tight: `rax` is `SYS_futex` only from the
//!    wrapper's first instruction until the call returns (a result is never 202), the futex
//!    command is read from the register the kernel takes it from, and the return address at
//!    `rsp` must lie in one of those functions. The waiter pays up to a quantum of its
//!    worker's time per wait before it is preempted; a lock held *and waited for* by tasks that
//!    are never preempted costs what it always did.
//! 4. **The stack pointer lies in the current generator's stack, with room for the trampoline's
//!    frame** (its XSAVE area included). *Why:* the trampoline runs on the interrupted stack and
//!    the Switch operation suspends the generator that stack belongs to; on any other stack (the
//!    thread's own, a signal stack) there is nothing to switch, and a stack too full to take the
//!    frame would overflow into the guard page.
//!
//! The handler reads only what this module built before any signal could arrive (a sorted,
//! immutable table behind a `OnceLock`) and const-initialised thread-locals: no allocation, no
//! locks.

use std::sync::OnceLock;

use super::DeferReason;
use crate::coroutine;
use crate::runtime::context;

/// The paths (demangled, by prefix) whose code rule 3 keeps out (module doc). A function is
/// denied if its path starts with one of these, or, for an impl `<Type as Trait>::f`, if `Type`
/// does, or `Type` is not a path (a primitive, a slice, a reference to one) and `Trait` does or
/// there is none (`<[T]>::sort`).
pub(crate) const DENIED_PATHS: &[&str] = &[
    // The runtime, whole (but for `EXEMPT_PATHS`): its scheduling, registries, drivers and
    // pools, and also its wakers, which other crates call with their own locks held (an
    // event-listener notifying under its list's lock).
    "maniac::",
    // Stack switching: a signal in the middle of a switch sees the next generator as current
    // while the registers and stack are still half the previous one's.
    "corosensei::",
    // The standard library, whole: its locks (`Mutex`, the channels' wakers, `Once`), its
    // thread-locals (the panic count, `StdoutLock`'s owner) and its allocator are held across
    // calls into small generic helpers (`Option::map`, `Vec::push`, `drop_in_place`), so no
    // module list is enough: a preemption in such a helper, called by `std::sync::mpmc` with
    // its waker lock held, once deadlocked every worker that sent on the channel afterwards.
    "std::",
    "core::",
    "alloc::",
    // Synchronisation crates tasks commonly call into, whole for the same reason (tokio's
    // channels lock through a wrapper in `tokio::loom`, outside `tokio::sync`).
    "tokio::",
    "futures_util::",
    "futures_executor::",
    "futures_channel::",
    "async_task::",
    "crossbeam",
    "parking_lot",
    "lock_api::",
    "event_listener",
    "async_channel::",
    "concurrent_queue::",
    "flume::",
    "dashmap::",
    "once_cell::",
    "slab::",
    "hashbrown::",
];

/// Paths under [`DENIED_PATHS`] that stay allowed: the generic wrappers of a task's poll, into
/// which the compiler inlines the task's own code (`poll_user::<F>` holds the user's future's
/// whole poll in a release build). They hold nothing for anybody while the task's code runs.
pub(crate) const EXEMPT_PATHS: &[&str] = &["maniac::task::cell::", "maniac::task::coop::"];

/// Symbol-name prefixes (not Rust paths) rule 3 keeps out: the trampoline, corosensei's
/// assembly, the allocator shims, the panic runtime and the unwinder; and the sanitizers'
/// runtimes, which a `-Zsanitizer` build links into the executable (their C entry points and
/// interceptors, whose aliases `malloc`, `memcpy`, `pthread_mutex_lock`... share their
/// addresses, and their C++ internals, matched mangled): ASan's allocator takes a lock, and
/// under ASan `preempt_storm` once hung with every worker waiting for it, held by a task
/// preempted inside `malloc`.
pub(crate) const DENIED_SYMBOLS: &[&str] = &[
    "maniac_preempt_",
    "stack_init_trampoline",
    "stack_call_trampoline",
    "__rust_",
    "__rdl_",
    "__rg_",
    "rust_begin_unwind",
    "rust_panic",
    "rust_eh_personality",
    "_Unwind_",
    "__asan",
    "__lsan",
    "__ubsan",
    "__tsan",
    "__msan",
    "__sanitizer",
    "__interceptor_",
    "___interceptor_",
    "_ZN6__asan",
    "_ZN6__lsan",
    "_ZN7__ubsan",
    "_ZN6__tsan",
    "_ZN6__msan",
    "_ZN11__sanitizer",
    "_ZN14__interception",
];

/// std's functions that wait for a lock with `FUTEX_WAIT` (rule 3's exception), as inherent
/// methods of the futex implementations on Linux. A future std that renames them turns the
/// exception off, and the unit test below fails.
pub(crate) const LOCK_WAITS: &[&str] = &[
    "std::sys::sync::mutex::futex::Mutex::lock_contended",
    "std::sys::sync::rwlock::futex::RwLock::read_contended",
    "std::sys::sync::rwlock::futex::RwLock::write_contended",
    "std::sys::sync::once::futex::Once::call",
];

/// Which of [`LOCK_WAITS`] a demangled name is, if any (`<Type>::method` in the v0 mangling,
/// `Type::method` in the legacy one).
fn lock_wait_index(name: &str) -> Option<usize> {
    let path = match name.strip_prefix('<') {
        Some(impl_method) => impl_method.replacen(">::", "::", 1),
        None => name.to_owned(),
    };
    LOCK_WAITS.iter().position(|wait| *wait == path)
}

/// Whether `name` starts with one of [`DENIED_SYMBOLS`].
fn has_denied_symbol_prefix(name: &str) -> bool {
    DENIED_SYMBOLS.iter().any(|prefix| name.starts_with(prefix))
}

/// A symbol's demangled name, as rule 3's lists spell it.
fn demangled(symbol: &str) -> String {
    // `{:#}`: without the hashes (legacy `::h…` suffixes, and v0's `std[…]` crate
    // disambiguators, which would defeat every prefix).
    format!("{:#}", rustc_demangle::demangle(symbol))
}

/// Whether rule 3 denies the function with this demangled name (see [`DENIED_PATHS`]).
pub(crate) fn is_denied(name: &str) -> bool {
    let denied_path = |path: &str| {
        DENIED_PATHS.iter().any(|prefix| path.starts_with(prefix))
            && !EXEMPT_PATHS.iter().any(|prefix| path.starts_with(prefix))
    };
    if has_denied_symbol_prefix(name) {
        return true;
    }
    let Some(impl_header) = name.strip_prefix('<') else {
        return denied_path(name);
    };
    // `<Type as Trait>::f` or `<Type>::f`.
    let header_end = impl_header.find(">::").unwrap_or(impl_header.len());
    let header = &impl_header[..header_end];
    let (self_type, trait_path) = match header.split_once(" as ") {
        Some((self_type, trait_path)) => (self_type, Some(trait_path)),
        None => (header, None),
    };
    // `&T`, `*const T`, `[T]`, `(T, U)`, and `<<T>::f as Trait>` (a closure of an impl's method).
    let self_type = self_type.trim_start_matches(['&', '*', '[', '(', '<']);
    let self_type = self_type
        .strip_prefix("mut ")
        .or_else(|| self_type.strip_prefix("const "))
        .unwrap_or(self_type);
    // Function pointers and trait objects are not paths either (`<fn(Runnable) as
    // async_task::Schedule>::schedule`, the glue that calls a runtime's schedule function).
    let not_a_path = !self_type.contains("::")
        || ["fn(", "unsafe ", "extern ", "dyn "]
            .iter()
            .any(|prefix| self_type.starts_with(prefix));
    // A type that is not a path has its inherent impls in `core`/`alloc`/`std` only.
    denied_path(self_type) || (not_a_path && trait_path.is_none_or(denied_path))
}

/// What rule 3 knows about the executable.
#[derive(Debug)]
pub(crate) struct CodeMap {
    /// The executable's code, as `[start, end)` ranges in memory.
    executable: Vec<(usize, usize)>,
    /// Where rule 3 allows preemption: the executable's sized function symbols that are not
    /// denied, minus every denied one's range (aliases of one body share an address), sorted
    /// and merged `[start, end)` ranges in memory. `None` for a stripped executable. Code under no
    /// sized symbol (the PLT's stubs, through which the runtime's and std's own calls to libc
    /// pass with their locks held) is never allowed.
    allowed: Option<Vec<(usize, usize)>>,
    /// The [`LOCK_WAITS`] functions, in memory (sorted; empty for a stripped executable).
    lock_waits: Vec<(usize, usize)>,
}

/// The interrupted thread's registers that the rules read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Interrupted {
    pub(crate) pc: usize,
    pub(crate) sp: usize,
    /// The system call number while inside the `syscall` instruction (or about to enter it).
    pub(crate) rax: u64,
    /// The futex command, in a `futex` call.
    pub(crate) rsi: u64,
}

/// Where rule 3 allows a preemption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SafePoint {
    /// A task's own code.
    Code,
    /// A wait for a std lock (rule 3's exception).
    LockWait,
}

static CODE_MAP: OnceLock<CodeMap> = OnceLock::new();

/// Builds the code map (once per process).
pub(crate) fn build_code_map() {
    CODE_MAP.get_or_init(CodeMap::read);
}

impl CodeMap {
    fn read() -> CodeMap {
        let (bias, executable) = executable_segments();
        let (allowed, lock_waits) = match functions(bias) {
            Ok(functions) => {
                // One missing function may just be unused (the linker drops it), but std uses
                // its own Mutex: none at all means LTO inlined them, or std renamed them.
                if !functions.lock_waits_found.contains(&true) {
                    eprintln!(
                        "maniac: preemption finds none of std's lock-wait functions in the \
                         executable (inlined by LTO, or renamed by this std): a task waiting for \
                         a std lock held by a task preempted on its worker will block that \
                         worker (maniac::preempt docs, \"Hazards\")"
                    );
                }
                (Some(functions.allowed), functions.lock_waits)
            }
            Err(why) => {
                eprintln!(
                    "maniac: preemption reads no symbol table ({why}); it will interrupt any \
                     code of the executable (rule 3 of maniac::preempt reduced to its first half)"
                );
                (None, Vec::new())
            }
        };
        CodeMap {
            executable,
            allowed,
            lock_waits,
        }
    }

    fn contains(ranges: &[(usize, usize)], address: usize) -> bool {
        let after = ranges.partition_point(|&(start, _)| start <= address);
        after > 0 && address < ranges[after - 1].1
    }
}

/// The main executable's load bias and its executable segments, from the dynamic loader.
fn executable_segments() -> (usize, Vec<(usize, usize)>) {
    struct Found {
        bias: usize,
        segments: Vec<(usize, usize)>,
        done: bool,
    }
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `Found` passed below; `info` is valid for this call, and its
        // program headers array has `dlpi_phnum` entries.
        unsafe {
            let found = &mut *data.cast::<Found>();
            if found.done {
                return 1;
            }
            // The first object reported is the main executable.
            found.done = true;
            let info = &*info;
            found.bias = info.dlpi_addr as usize;
            for index in 0..usize::from(info.dlpi_phnum) {
                let header = &*info.dlpi_phdr.add(index);
                if header.p_type == libc::PT_LOAD && header.p_flags & libc::PF_X != 0 {
                    let start = found.bias + header.p_vaddr as usize;
                    found
                        .segments
                        .push((start, start + header.p_memsz as usize));
                }
            }
            1
        }
    }
    let mut found = Found {
        bias: 0,
        segments: Vec::new(),
        done: false,
    };
    // SAFETY: the callback only writes into `found`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut found).cast()) };
    found.segments.sort_unstable();
    (found.bias, found.segments)
}

/// What rule 3 takes from the executable's symbol table.
struct Functions {
    /// `CodeMap::allowed`.
    allowed: Vec<(usize, usize)>,
    /// `CodeMap::lock_waits`.
    lock_waits: Vec<(usize, usize)>,
    /// Which of [`LOCK_WAITS`] were found.
    lock_waits_found: [bool; LOCK_WAITS.len()],
}

/// Reads the executable's symbol table (`CodeMap`).
fn functions(bias: usize) -> Result<Functions, String> {
    use object::{Object, ObjectSymbol, SymbolKind};
    let path = std::env::current_exe().map_err(|e| e.to_string())?;
    let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file = object::File::parse(&*data).map_err(|e| e.to_string())?;
    let (mut allowed, mut denied, mut lock_waits) = (Vec::new(), Vec::new(), Vec::new());
    let mut lock_waits_found = [false; LOCK_WAITS.len()];
    for symbol in file.symbols() {
        if symbol.kind() != SymbolKind::Text || symbol.size() == 0 {
            continue;
        }
        let start = bias + symbol.address() as usize;
        let range = (start, start + symbol.size() as usize);
        // A name that cannot be read is denied: nothing says what the code does.
        let Ok(name) = symbol.name() else {
            denied.push(range);
            continue;
        };
        // Raw as well as demangled: the sanitizers' C++ internals are matched mangled.
        if has_denied_symbol_prefix(name) {
            denied.push(range);
            continue;
        }
        let name = demangled(name);
        if let Some(index) = lock_wait_index(&name) {
            lock_waits.push(range);
            lock_waits_found[index] = true;
        }
        if is_denied(&name) {
            denied.push(range);
        } else {
            allowed.push(range);
        }
    }
    if allowed.is_empty() && denied.is_empty() {
        return Err("the executable is stripped".into());
    }
    Ok(Functions {
        allowed: subtract(&merge(allowed), &merge(denied)),
        lock_waits: merge(lock_waits),
        lock_waits_found,
    })
}

/// Sorts `ranges` and merges the overlapping ones.
fn merge(mut ranges: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// `from` without `remove` (both sorted and merged).
fn subtract(from: &[(usize, usize)], remove: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut result = Vec::with_capacity(from.len());
    let mut removed = remove.iter().peekable();
    for &(mut start, end) in from {
        // Skip the removals that end before this range starts.
        while removed.peek().is_some_and(|&&(_, r_end)| r_end <= start) {
            removed.next();
        }
        let mut later = removed.clone();
        while let Some(&&(r_start, r_end)) = later.peek() {
            if r_start >= end {
                break;
            }
            if r_start > start {
                result.push((start, r_start));
            }
            start = start.max(r_end);
            later.next();
        }
        if start < end {
            result.push((start, end));
        }
    }
    result
}

/// The four rules, for an interrupted thread. Async-signal-safe.
pub(crate) fn check(at: &Interrupted) -> Result<SafePoint, DeferReason> {
    // Rule 1.
    if context::current_task().is_none() {
        return Err(DeferReason::NotInPoll);
    }
    // Rule 2.
    if context::no_preempt_depth() != 0 {
        return Err(DeferReason::NoPreempt);
    }
    // Rule 2, std's own depth: a global atomic, then a const thread-local (no allocation).
    if std::thread::panicking() {
        return Err(DeferReason::Panicking);
    }
    // Rule 4 comes first only in the evaluation (the exception of rule 3 reads the stack); a
    // request that fails both counts as rule 3's.
    let stack = coroutine::current_switchable_stack();
    let stack_top = stack.map_or(0, |(_, high)| high);
    let stack_has_room = matches!(
        stack,
        Some((low, high)) if at.sp > low + super::trampoline::frame_bytes() && at.sp <= high
    );
    // Rule 3.
    let Some(map) = CODE_MAP.get() else {
        return Err(DeferReason::OutsideExecutable);
    };
    let point = if CodeMap::contains(&map.executable, at.pc) {
        if map
            .allowed
            .as_ref()
            .is_some_and(|allowed| !CodeMap::contains(allowed, at.pc))
        {
            return Err(DeferReason::Denylisted);
        }
        SafePoint::Code
    } else if stack_has_room && at.sp + 8 <= stack_top && map.is_lock_wait(at) {
        SafePoint::LockWait
    } else {
        return Err(DeferReason::OutsideExecutable);
    };
    // Rule 4.
    if stack_has_room {
        Ok(point)
    } else {
        Err(DeferReason::Stack)
    }
}

impl CodeMap {
    /// Rule 3's exception (module doc), for a thread interrupted outside the executable whose
    /// stack pointer lies in its generator's stack with at least 8 bytes above it.
    /// Async-signal-safe.
    fn is_lock_wait(&self, at: &Interrupted) -> bool {
        const FUTEX_COMMAND: u64 = !(libc::FUTEX_PRIVATE_FLAG | libc::FUTEX_CLOCK_REALTIME) as u64;
        let waits = matches!(
            at.rsi & FUTEX_COMMAND,
            command if command == libc::FUTEX_WAIT as u64 || command == libc::FUTEX_WAIT_BITSET as u64
        );
        if at.rax != libc::SYS_futex as u64 || !waits || self.lock_waits.is_empty() {
            return false;
        }
        // Unaligned: nothing promises alignment of a stack pointer caught between instructions.
        // SAFETY: the caller checked that `sp` lies in the current generator's stack and that
        // `sp + 8` does not pass its top, so the 8 bytes at `sp` are mapped and readable.
        let return_address = unsafe { (at.sp as *const usize).read_unaligned() };
        CodeMap::contains(&self.lock_waits, return_address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_lookup_is_half_open_and_sorted() {
        let ranges = [(10, 20), (30, 40)];
        assert!(!CodeMap::contains(&ranges, 9));
        assert!(CodeMap::contains(&ranges, 10));
        assert!(CodeMap::contains(&ranges, 19));
        assert!(!CodeMap::contains(&ranges, 20));
        assert!(CodeMap::contains(&ranges, 35));
        assert!(!CodeMap::contains(&ranges, 40));
    }

    #[test]
    fn denied_names_cover_impls_on_denied_and_primitive_types() {
        for denied in [
            "std::sync::mpmc::waker::SyncWaker::notify",
            "core::ptr::drop_in_place<std::sync::poison::mutex::MutexGuard<u8>>",
            "<alloc::vec::Vec<T,A> as core::ops::drop::Drop>::drop",
            "<&mut [u8] as core::fmt::Debug>::fmt",
            "<u32 as core::ops::arith::Add>::add",
            "<[T]>::sort",
            "<<std::sync::once::Once>::call_once_force<F>::{closure#0} as core::ops::function::FnOnce<(&std::sync::once::OnceState,)>>::call_once",
            "<tokio::sync::oneshot::Receiver<T> as core::future::future::Future>::poll",
            "maniac::scheduler::worker::schedule",
            "corosensei::coroutine::Yielder<Input,Yield>::suspend",
            "__rust_alloc",
            "maniac_preempt_trampoline",
            "maniac::task::join::JoinHandle<T>::abort",
            "<fn(async_task::runnable::Runnable<maniac::task::cell::TaskMeta>, async_task::runnable::ScheduleInfo) as async_task::runnable::Schedule<maniac::task::cell::TaskMeta>>::schedule",
            "<dyn core::any::Any as core::fmt::Debug>::fmt",
        ] {
            assert!(is_denied(denied), "{denied} is not denied");
        }
        for allowed in [
            "myapp::compute::hog",
            "<myapp::Matrix as core::ops::arith::Mul>::mul",
            "<myapp::Job as core::future::future::Future>::poll",
            "myapp::compute::hog::{closure#0}",
            "maniac::task::cell::poll_user::<myapp::Job>",
            "<maniac::task::cell::TaskFuture<myapp::Job> as core::future::future::Future>::poll",
            "maniac::task::coop::with_budget::<core::task::poll::Poll<()>, myapp::F>",
            "<fn(u64) -> u64 as myapp::Kernel>::run",
        ] {
            assert!(!is_denied(allowed), "{allowed} is denied");
        }
    }

    #[test]
    fn symbols_of_both_manglings_are_recognised() {
        // std's `SyncWaker::notify` (which holds the channel's waker lock), v0 and legacy.
        for symbol in [
            "_RNvMs0_NtNtNtCsjrHSEGnQ3l9_3std4sync4mpmc5wakerNtB5_9SyncWaker6notify",
            "_ZN3std4sync4mpmc5waker5Waker6notify17he264fc2137c85dd6E",
        ] {
            assert!(is_denied(&demangled(symbol)), "{symbol} is not denied");
        }
        assert!(!is_denied(&demangled("_ZN5myapp3hog17h0123456789abcdefE")));
        // A sanitizer runtime's C++ internals are matched before demangling.
        assert!(has_denied_symbol_prefix(
            "_ZN6__asan9Allocator8AllocateEmmPNS_20BufferedStackTraceE"
        ));
        // The lock waits, in both spellings.
        assert_eq!(
            lock_wait_index("<std::sys::sync::mutex::futex::Mutex>::lock_contended"),
            Some(0)
        );
        assert_eq!(
            lock_wait_index("std::sys::sync::rwlock::futex::RwLock::write_contended"),
            Some(2)
        );
        assert_eq!(
            lock_wait_index("<std::sys::sync::condvar::futex::Condvar>::wait"),
            None
        );
    }

    #[test]
    fn this_test_binary_has_every_lock_wait() {
        let bias = executable_segments().0;
        let found = functions(bias).unwrap().lock_waits_found;
        for (wait, found) in LOCK_WAITS.iter().zip(found) {
            assert!(
                found,
                "std has no {wait} any more: rule 3's exception needs the new name"
            );
        }
    }

    #[test]
    fn subtracting_ranges_cuts_and_splits() {
        let from = [(0, 10), (20, 30), (40, 50)];
        let remove = [(5, 8), (9, 22), (45, 60)];
        assert_eq!(
            subtract(&from, &remove),
            [(0, 5), (8, 9), (22, 30), (40, 45)]
        );
        assert_eq!(subtract(&from, &[]), from);
        assert_eq!(subtract(&[(0, 10)], &[(0, 10)]), []);
        assert_eq!(
            merge(vec![(5, 9), (0, 3), (2, 6), (20, 21)]),
            [(0, 9), (20, 21)]
        );
    }

    #[test]
    fn this_test_binary_allows_only_code_that_is_not_denied() {
        use object::{Object, ObjectSection};
        build_code_map();
        let map = CODE_MAP.get().unwrap();
        let allowed = map
            .allowed
            .as_ref()
            .expect("a test binary has a symbol table");
        let allows = |address: usize| CodeMap::contains(allowed, address);
        // A scheduler function, and a std generic instantiated in this crate (a v0 symbol of
        // ours, std's path): denied.
        let internal = crate::scheduler::schedule_task as *const () as usize;
        assert!(CodeMap::contains(&map.executable, internal));
        assert!(!allows(internal), "scheduler code allowed");
        let std_generic = std::sync::Mutex::<u64>::lock as *const () as usize;
        assert!(!allows(std_generic), "Mutex::<u64>::lock allowed");
        // A dependency that holds nothing for its caller: allowed.
        let dependency = rustc_demangle::try_demangle as *const () as usize;
        assert!(
            allows(dependency),
            "rustc_demangle::try_demangle not allowed"
        );
        // The PLT's stubs (no sized symbol): never allowed.
        let (bias, _) = executable_segments();
        let data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let mut stubs = 0;
        for section in file.sections() {
            if matches!(section.name(), Ok(".plt" | ".plt.sec" | ".plt.got")) {
                for offset in (0..section.size()).step_by(4) {
                    let address = bias + (section.address() + offset) as usize;
                    assert!(!allows(address), "a PLT stub is allowed");
                    stubs += 1;
                }
            }
        }
        assert!(stubs > 0, "no PLT found to check");
    }
}
