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
//!    caller: the runtime's own scheduling, registries, drivers, pools and coroutine switching;
//!    the whole standard library (`std`, `core`, `alloc`: its locks are held across calls into
//!    its small generic helpers, so no list of its modules is enough); the synchronisation
//!    crates a task commonly calls into, whole (tokio, futures, async-task, crossbeam,
//!    parking_lot, event-listener, async-channel, ...). A task's own code, and the code of other
//!    crates, stay preemptible. The denylist is built once, at start-up, from the executable's
//!    symbol table (demangled names, [`is_denied`]); a stripped executable has no symbol table,
//!    and then rule 3 reduces to "in the executable" (said once on stderr).
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
    // The runtime's own internals: scheduling, registries, drivers, pools, switching.
    "maniac::scheduler::",
    "maniac::task::registry::",
    "maniac::task::join_set::",
    "maniac::coroutine::",
    "maniac::preempt::",
    "maniac::io::reactor::",
    "maniac::io::scheduled_io::",
    "maniac::time::driver::",
    "maniac::time::wheel::",
    "maniac::blocking::",
    "maniac::runtime::",
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

/// Symbol-name prefixes (not Rust paths) rule 3 keeps out: the trampoline, corosensei's
/// assembly, the allocator shims, the panic runtime and the unwinder.
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
];

/// Whether rule 3 denies the function with this (mangled) symbol name.
fn is_denied_symbol(symbol: &str) -> bool {
    // `{:#}`: without the hashes (legacy `::h…` suffixes, and v0's `std[…]` crate
    // disambiguators, which would defeat every prefix).
    is_denied(&format!("{:#}", rustc_demangle::demangle(symbol)))
}

/// Whether rule 3 denies the function with this demangled name (see [`DENIED_PATHS`]).
pub(crate) fn is_denied(name: &str) -> bool {
    let denied_path = |path: &str| DENIED_PATHS.iter().any(|prefix| path.starts_with(prefix));
    if DENIED_SYMBOLS.iter().any(|prefix| name.starts_with(prefix)) {
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
    // A type that is not a path has its inherent impls in `core`/`alloc`/`std` only.
    denied_path(self_type) || (!self_type.contains("::") && trait_path.is_none_or(denied_path))
}

/// What rule 3 knows about the executable.
#[derive(Debug)]
pub(crate) struct CodeMap {
    /// The executable's code, as `[start, end)` ranges in memory.
    executable: Vec<(usize, usize)>,
    /// The denied functions, sorted and merged `[start, end)` ranges in memory.
    denied: Vec<(usize, usize)>,
}

static CODE_MAP: OnceLock<CodeMap> = OnceLock::new();

/// Builds the code map (once per process). Returns how many functions are denied.
pub(crate) fn build_code_map() -> usize {
    CODE_MAP.get_or_init(CodeMap::read).denied.len()
}

impl CodeMap {
    fn read() -> CodeMap {
        let (bias, executable) = executable_segments();
        let denied = match denied_functions(bias) {
            Ok(denied) => denied,
            Err(why) => {
                eprintln!(
                    "maniac: preemption reads no symbol table ({why}); it will interrupt any \
                     code of the executable (rule 3 of maniac::preempt reduced to its first half)"
                );
                Vec::new()
            }
        };
        CodeMap { executable, denied }
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

/// The denied functions of the executable's symbol table, in memory (module doc, rule 3).
fn denied_functions(bias: usize) -> Result<Vec<(usize, usize)>, String> {
    use object::{Object, ObjectSymbol, SymbolKind};
    let path = std::env::current_exe().map_err(|e| e.to_string())?;
    let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file = object::File::parse(&*data).map_err(|e| e.to_string())?;
    let mut ranges = Vec::new();
    let mut any = false;
    for symbol in file.symbols() {
        if symbol.kind() != SymbolKind::Text || symbol.size() == 0 {
            continue;
        }
        any = true;
        let Ok(name) = symbol.name() else {
            continue;
        };
        if is_denied_symbol(name) {
            let start = bias + symbol.address() as usize;
            ranges.push((start, start + symbol.size() as usize));
        }
    }
    if !any {
        return Err("the executable is stripped".into());
    }
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    Ok(merged)
}

/// The four rules, for an interrupted `pc` and `sp`. Async-signal-safe.
pub(crate) fn check(pc: usize, sp: usize) -> Result<(), DeferReason> {
    // Rule 1.
    if context::current_task().is_none() {
        return Err(DeferReason::NotInPoll);
    }
    // Rule 2.
    if super::no_preempt_depth() != 0 {
        return Err(DeferReason::NoPreempt);
    }
    // Rule 2, std's own depth: a global atomic, then a const thread-local (no allocation).
    if std::thread::panicking() {
        return Err(DeferReason::Panicking);
    }
    // Rule 3.
    let Some(map) = CODE_MAP.get() else {
        return Err(DeferReason::OutsideExecutable);
    };
    if !CodeMap::contains(&map.executable, pc) {
        return Err(DeferReason::OutsideExecutable);
    }
    if CodeMap::contains(&map.denied, pc) {
        return Err(DeferReason::Denylisted);
    }
    // Rule 4.
    match coroutine::current_switchable_stack() {
        Some((low, high)) if sp > low + super::trampoline::frame_bytes() && sp <= high => Ok(()),
        _ => Err(DeferReason::Stack),
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
        ] {
            assert!(is_denied(denied), "{denied} is not denied");
        }
        for allowed in [
            "myapp::compute::hog",
            "<myapp::Matrix as core::ops::arith::Mul>::mul",
            "<myapp::Job as core::future::future::Future>::poll",
            "maniac::time::Instant::now",
            "maniac::task::cell::poll_user",
        ] {
            assert!(!is_denied(allowed), "{allowed} is denied");
        }
    }

    #[test]
    fn symbols_of_both_manglings_are_recognised() {
        // std's `SyncWaker::notify` (which holds the channel's waker lock), v0 and legacy.
        assert!(is_denied_symbol(
            "_RNvMs0_NtNtNtCsjrHSEGnQ3l9_3std4sync4mpmc5wakerNtB5_9SyncWaker6notify"
        ));
        assert!(is_denied_symbol(
            "_ZN3std4sync4mpmc5waker5Waker6notify17he264fc2137c85dd6E"
        ));
        assert!(!is_denied_symbol("_ZN5myapp3hog17h0123456789abcdefE"));
    }

    #[test]
    fn this_test_binary_has_its_runtime_internals_denied() {
        assert!(build_code_map() > 0);
        let map = CODE_MAP.get().unwrap();
        // A scheduler function (denied) and one of the time module's (allowed: not an internal).
        let internal = crate::scheduler::schedule_task as *const () as usize;
        assert!(CodeMap::contains(&map.executable, internal));
        assert!(
            CodeMap::contains(&map.denied, internal),
            "scheduler code not denied"
        );
        // A std generic instantiated in this crate (a v0 symbol of ours, std's path).
        let std_generic = std::sync::Mutex::<u64>::lock as *const () as usize;
        assert!(
            CodeMap::contains(&map.denied, std_generic),
            "Mutex::<u64>::lock not denied"
        );
        let allowed = crate::time::Instant::now as *const () as usize;
        assert!(CodeMap::contains(&map.executable, allowed));
        assert!(
            !CodeMap::contains(&map.denied, allowed),
            "maniac::time::Instant denied"
        );
    }
}
