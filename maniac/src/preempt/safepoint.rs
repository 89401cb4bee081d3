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
    let denied_path = |path: &str| {
        DENIED_PATHS.iter().any(|prefix| path.starts_with(prefix))
            && !EXEMPT_PATHS.iter().any(|prefix| path.starts_with(prefix))
    };
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
}

static CODE_MAP: OnceLock<CodeMap> = OnceLock::new();

/// Builds the code map (once per process).
pub(crate) fn build_code_map() {
    CODE_MAP.get_or_init(CodeMap::read);
}

impl CodeMap {
    fn read() -> CodeMap {
        let (bias, executable) = executable_segments();
        let allowed = match allowed_functions(bias) {
            Ok(allowed) => Some(allowed),
            Err(why) => {
                eprintln!(
                    "maniac: preemption reads no symbol table ({why}); it will interrupt any \
                     code of the executable (rule 3 of maniac::preempt reduced to its first half)"
                );
                None
            }
        };
        CodeMap {
            executable,
            allowed,
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

/// The allowed functions of the executable's symbol table, in memory (`CodeMap::allowed`).
fn allowed_functions(bias: usize) -> Result<Vec<(usize, usize)>, String> {
    use object::{Object, ObjectSymbol, SymbolKind};
    let path = std::env::current_exe().map_err(|e| e.to_string())?;
    let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file = object::File::parse(&*data).map_err(|e| e.to_string())?;
    let (mut allowed, mut denied) = (Vec::new(), Vec::new());
    for symbol in file.symbols() {
        if symbol.kind() != SymbolKind::Text || symbol.size() == 0 {
            continue;
        }
        let start = bias + symbol.address() as usize;
        let range = (start, start + symbol.size() as usize);
        // A name that cannot be read is denied: nothing says what the code does.
        match symbol.name() {
            Ok(name) if !is_denied_symbol(name) => allowed.push(range),
            _ => denied.push(range),
        }
    }
    if allowed.is_empty() && denied.is_empty() {
        return Err("the executable is stripped".into());
    }
    Ok(subtract(&merge(allowed), &merge(denied)))
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

/// The four rules, for an interrupted `pc` and `sp`. Async-signal-safe.
pub(crate) fn check(pc: usize, sp: usize) -> Result<(), DeferReason> {
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
    // Rule 3.
    let Some(map) = CODE_MAP.get() else {
        return Err(DeferReason::OutsideExecutable);
    };
    if !CodeMap::contains(&map.executable, pc) {
        return Err(DeferReason::OutsideExecutable);
    }
    if map
        .allowed
        .as_ref()
        .is_some_and(|allowed| !CodeMap::contains(allowed, pc))
    {
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
        assert!(is_denied_symbol(
            "_RNvMs0_NtNtNtCsjrHSEGnQ3l9_3std4sync4mpmc5wakerNtB5_9SyncWaker6notify"
        ));
        assert!(is_denied_symbol(
            "_ZN3std4sync4mpmc5waker5Waker6notify17he264fc2137c85dd6E"
        ));
        assert!(!is_denied_symbol("_ZN5myapp3hog17h0123456789abcdefE"));
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
