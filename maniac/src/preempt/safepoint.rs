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
//! 3. **The interrupted instruction is in the main executable's Rust code, outside the
//!    denylist.** *Why:* code in other objects (libc, the vDSO, `libgcc_s`) is not ours to
//!    reason about: `malloc` holding its arena lock, `memcpy` in the middle of a copy from a
//!    buffer another task may free; nor is C, C++ or assembly linked into the executable
//!    (a bundled SQLite holding its mutex, jemalloc), known by a symbol name that is not
//!    Rust's ([`rust_demangling`]; a few arithmetic builtins are pure, below). Inside the
//!    executable's Rust code, the denylist covers what holds locks or thread-local state on
//!    behalf of its caller: the runtime whole (its scheduling, drivers and pools, and its
//!    wakers, which other crates call with their own locks held) and corosensei's switching;
//!    the whole standard library (`std`, `core`, `alloc`: its locks are held across calls into
//!    its small generic helpers, so no list of its modules is enough); the synchronisation
//!    crates a task commonly calls into, whole (tokio, futures, async-task, crossbeam,
//!    parking_lot, event-listener, async-channel, ...). A task's own code, and the code of other
//!    crates, stay preemptible. The denylist is built once per process (with the rest of the
//!    code map, when a poll first runs its quantum: `monitor` rule 8), from the executable's
//!    symbol table (demangled names, [`is_denied`]); a stripped executable has no symbol table,
//!    and then rule 3 reduces to "in the executable" (said once on stderr).
//!
//!    **Library calls** (`unwind`): an instruction inside a *pure* library function, one that
//!    holds nothing for its caller ([`is_pure`]: every path its name mentions, type arguments
//!    included, under `core`, `alloc`, `hashbrown`, std's collections, clock or hasher; the
//!    primitive types' inherent methods; libc's `clock_gettime` and the vDSO's functions), is
//!    allowed too when the frames above it, walked with the call-frame information, pass
//!    through pure functions only up to a return into the task's own code. *Why it is safe:*
//!    such a function holds nothing of its own, and runs no code of an impure type (its name
//!    would mention it: a generic's type arguments are its code's, inlined or called); what
//!    remains is a caller holding something across the call, and the walk sees every caller up
//!    to the task's code, which could hold things at any of its own instructions anyway. A frame it cannot read, or a denied one, ends it
//!    with a deferral.
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
//! The handler reads only what this module built before any signal could arrive (sorted,
//! immutable tables behind a `OnceLock`), const-initialised thread-locals and, for a library
//! call, the interrupted stack (up to 64 frames, every word within the current generator's
//! stack): no allocation, no locks.

use std::sync::OnceLock;

use super::DeferReason;
use super::unwind;
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

/// The module of each of [`LOCK_WAITS`]'s implementations.
const LOCK_WAITS_MODULE: &str = "::futex::";

/// Which of [`LOCK_WAITS`] a demangled name is, if any (`<Type>::method` in the v0 mangling,
/// `Type::method` in the legacy one).
fn lock_wait_index(name: &str) -> Option<usize> {
    // Every one is in a `futex` module: the other names are not copied to be compared.
    if !name.contains(LOCK_WAITS_MODULE) {
        return None;
    }
    let path = match name.strip_prefix('<') {
        Some(impl_method) => impl_method.replacen(">::", "::", 1),
        None => name.to_owned(),
    };
    LOCK_WAITS.iter().position(|wait| *wait == path)
}

/// Functions with C names that Rust code calls for plain arithmetic (compiler-builtins: 128-bit
/// division and multiplication, `f64 %`, rounding, where the target has no instruction for
/// them): leaves that hold nothing, which rule 3 walks up from as from pure library functions
/// (`unwind`; their caller may be std's code holding a lock). Any other function under a name
/// that is not Rust's is denied.
pub(crate) const ARITHMETIC_BUILTINS: &[&str] = &[
    "__udivti3",
    "__umodti3",
    "__divti3",
    "__modti3",
    "__udivmodti4",
    "__divmodti4",
    "__muloti4",
    "__multi3",
    "__ashlti3",
    "__ashrti3",
    "__lshrti3",
    "fmod",
    "fmodf",
    "floor",
    "floorf",
    "ceil",
    "ceilf",
    "trunc",
    "truncf",
    "round",
    "roundf",
    "fma",
    "fmaf",
];

/// The demangling of a raw symbol name if it is a Rust function's: v0-mangled (`_R`), or
/// legacy-mangled (`_ZN`, ending in the 16-digit hash `17h…E`, which C++ names lack), perhaps
/// with an LLVM suffix (`.llvm.123`). Rule 3 denies code under any other name (module doc): C,
/// C++ or assembly linked into the executable (a bundled SQLite holding its mutex, jemalloc's or
/// mimalloc's allocator, a static libc) is no more ours to reason about than libc's. A name of
/// either form that does not demangle is taken for C too.
fn rust_demangling(name: &str) -> Option<rustc_demangle::Demangle<'_>> {
    // Not at the first dot: legacy names spell a path's `::` inside them as `..`.
    let unsuffixed = name.find(".llvm.").map_or(name, |at| &name[..at]);
    let rust = unsuffixed.starts_with("_R")
        || unsuffixed
            .strip_prefix("_ZN")
            .and_then(|body| body.strip_suffix('E'))
            .is_some_and(|body| {
                body.len() > 19
                    && body.is_char_boundary(body.len() - 19)
                    && body[body.len() - 19..]
                        .strip_prefix("17h")
                        .is_some_and(|hash| hash.bytes().all(|b| b.is_ascii_hexdigit()))
            });
    if !rust {
        return None;
    }
    rustc_demangle::try_demangle(name).ok()
}

/// Whether `name` starts with one of [`DENIED_SYMBOLS`].
fn has_denied_symbol_prefix(name: &str) -> bool {
    DENIED_SYMBOLS.iter().any(|prefix| name.starts_with(prefix))
}

/// Writes a symbol's demangled name into `name` (emptied first; one buffer for every symbol
/// spares an allocation each), as rule 3's lists spell it.
fn write_demangled(demangling: &rustc_demangle::Demangle<'_>, name: &mut String) {
    use std::fmt::Write;
    name.clear();
    // `{:#}`: without the hashes (legacy `::h…` suffixes, and v0's `std[…]` crate
    // disambiguators, which would defeat every prefix). Writing to a String cannot fail.
    let _ = write!(name, "{demangling:#}");
}

/// Whose code a function with this demangled name is, as rule 3's path lists see it: its path;
/// for an impl `<Type as Trait>::f`, `Type`'s path, or, for a type that is not a path (a
/// primitive, a slice, a reference to one), `Trait`'s; `None` for an inherent impl of such a type
/// (`<[T]>::sort`), which only `core`, `alloc` and `std` have.
fn owner(name: &str) -> Option<&str> {
    let Some(impl_header) = name.strip_prefix('<') else {
        return Some(name);
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
    if not_a_path {
        trait_path
    } else {
        Some(self_type)
    }
}

/// Whether `path` starts with one of `prefixes` and with none of `except`.
fn is_under(path: &str, prefixes: &[&str], except: &[&str]) -> bool {
    prefixes.iter().any(|prefix| path.starts_with(prefix))
        && !except.iter().any(|prefix| path.starts_with(prefix))
}

/// Whether rule 3 denies the function with this demangled name (see [`DENIED_PATHS`]).
pub(crate) fn is_denied(name: &str) -> bool {
    has_denied_symbol_prefix(name)
        || owner(name).is_none_or(|path| is_under(path, DENIED_PATHS, EXEMPT_PATHS))
}

/// The paths (demangled, by prefix) of the executable's pure functions, which hold nothing for
/// their caller (`unwind` module doc), but for [`IMPURE_PATHS`].
pub(crate) const PURE_PATHS: &[&str] = &[
    "core::",
    "alloc::",
    "hashbrown::",
    "std::collections::",
    "std::time::",
    "std::sys::pal::unix::time::",
    "std::hash::random::DefaultHasher",
];

/// Paths under [`PURE_PATHS`] that are not: the panic machinery (a task preempted on its way
/// into a panic would be between std's panic hook and its panic count), and the allocator's
/// entry points (they call the global allocator, which may hold its per-thread state).
pub(crate) const IMPURE_PATHS: &[&str] = &["core::panicking::", "alloc::alloc::"];

/// Every path a demangled name mentions: its own, its impl's type and trait, and the generic
/// arguments, tuple members and `dyn` traits its type or function is instantiated with (but
/// not the continuations after a `>::`, which belong to a path already counted).
fn mentioned_paths(name: &str) -> impl Iterator<Item = &str> {
    name.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':' || c == '$' || c == '.'))
        .filter(|token| token.contains("::") && !token.starts_with("::"))
}

/// What a generic function whose type arguments its name hides may still be judged by: the
/// methods whose work is to drop elements (a container's `Drop`, `Arc`'s `drop_slow`,
/// `truncate`, `clear`, `retain`) run their elements' drops, which may be a lock's release.
const DROPS_ELEMENTS: &[&str] = &[
    "core::ops::drop::Drop>::drop",
    "::drop_slow",
    "::truncate",
    "::clear",
    "::retain",
];

/// Whether the function with this demangled name is a pure library function (`unwind`), which
/// rule 3 lets the handler walk up through to the task's code: every path it mentions is pure,
/// and it mentions one. The type arguments count because a generic function runs their code,
/// often inlined into itself: `core::ptr::drop_in_place<std::io::StdoutLock>` is std's lock
/// release, whatever its path says. `arguments_hidden`: the symbol is legacy-mangled, so a
/// generic function instantiated in the program's own crate is named without its arguments
/// (`alloc::vec::Vec<T,A>`); then one that drops elements ([`DROPS_ELEMENTS`]) is not pure,
/// and the rest are judged by their paths (`maniac::preempt` module doc, "What is and is not
/// enforced"). An inherent method of a primitive type, a slice or a pointer is named with no
/// module in the v0 mangling (`<*const ()>::is_aligned_to`, `<[T]>::sort`, the forms std's
/// own symbols take, legacy ones saying `core::ptr::const_ptr::<impl *const T>`), and only
/// `core`, `alloc` and `std` can define one (coherence): pure, unless its arguments are not.
/// Any other name that mentions no path (a C function) is not pure.
pub(crate) fn is_pure(name: &str, arguments_hidden: bool) -> bool {
    let drops_elements = || DROPS_ELEMENTS.iter().any(|method| name.contains(method));
    // `owner` has no path only for such a method (a name that is not an impl has its own).
    let primitive_inherent = owner(name).is_none();
    !has_denied_symbol_prefix(name)
        && (primitive_inherent || mentioned_paths(name).next().is_some())
        && mentioned_paths(name).all(|path| is_under(path, PURE_PATHS, IMPURE_PATHS))
        && !(arguments_hidden && drops_elements())
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
    /// How to walk up from the code of pure library functions (`unwind`), sorted.
    pure_rows: Vec<unwind::FrameRow>,
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
    /// The frame pointer, for a walk up from a pure library function (`unwind`).
    pub(crate) rbp: usize,
}

/// Where rule 3 allows a preemption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SafePoint {
    /// A task's own code.
    Code,
    /// A wait for a std lock (rule 3's exception).
    LockWait,
    /// A pure library function called from the task's own code (`unwind`).
    LibraryCall,
}

static CODE_MAP: OnceLock<CodeMap> = OnceLock::new();

/// The code map: read on the calling thread if nobody has read it, waited for if another thread
/// is reading it (once per process).
pub(crate) fn read_code_map() -> &'static CodeMap {
    CODE_MAP.get_or_init(CodeMap::read)
}

/// Whether the code map has been read.
pub(crate) fn code_map_read() -> bool {
    CODE_MAP.get().is_some()
}

impl CodeMap {
    fn read() -> CodeMap {
        let mut objects = loaded_objects().into_iter();
        let executable = objects.next().unwrap_or_default();
        let mut pure_rows = Vec::new();
        let (allowed, lock_waits) = match functions(executable.bias, &mut pure_rows) {
            Ok(functions) => {
                // One missing function may just be unused (the linker drops it), but std uses
                // its own Mutex: none at all means LTO inlined them, or std renamed them.
                if !functions.lock_waits_found.contains(&true) {
                    super::notice(format_args!(
                        "maniac: preemption finds none of std's lock-wait functions in the \
                         executable (inlined by LTO, or renamed by this std): a task waiting for \
                         a std lock held by a task preempted on its worker will block that \
                         worker (maniac::preempt docs, \"Hazards\")"
                    ));
                }
                (Some(functions.allowed), functions.lock_waits)
            }
            Err(why) => {
                super::notice(format_args!(
                    "maniac: preemption reads no symbol table ({why}); it will interrupt any \
                     code of the executable (rule 3 of maniac::preempt reduced to its first half)"
                ));
                (None, Vec::new())
            }
        };
        for object in objects {
            if let Err(why) = object.pure_rows(&mut pure_rows) {
                no_call_frames_notice(&object.name, &why);
            }
        }
        unwind::sort_rows(&mut pure_rows);
        CodeMap {
            executable: executable.code,
            allowed,
            lock_waits,
            pure_rows,
        }
    }

    /// Whether `address` is in the task's own code, as rule 3 allows it.
    fn is_task_code(&self, address: usize) -> bool {
        CodeMap::contains(&self.executable, address)
            && self
                .allowed
                .as_ref()
                .is_none_or(|allowed| CodeMap::contains(allowed, address))
    }

    pub(crate) fn contains(ranges: &[(usize, usize)], address: usize) -> bool {
        let after = ranges.partition_point(|&(start, _)| start <= address);
        after > 0 && address < ranges[after - 1].1
    }
}

/// Says on stderr that `object`'s pure functions cannot be walked up from (rule 3's library
/// calls), and why.
fn no_call_frames_notice(object: &str, why: &str) {
    super::notice(format_args!(
        "maniac: preemption reads no call-frame information from {object} ({why}); a poll \
         inside its library functions is preempted only once back in its own code"
    ));
}

/// An object the dynamic loader has loaded: the main executable, a shared library, the vDSO.
#[derive(Debug, Default)]
struct LoadedObject {
    /// Its path as the loader has it (the vDSO's is `linux-vdso.so.1`; the executable's empty).
    name: String,
    /// What to add to its own addresses for addresses in memory.
    bias: usize,
    /// Its executable segments, `[start, end)` in memory, sorted.
    code: Vec<(usize, usize)>,
    /// The build id in its notes, as loaded (`NT_GNU_BUILD_ID`), if it has one.
    build_id: Option<Vec<u8>>,
}

/// Every loaded object, the main executable first, from the dynamic loader.
fn loaded_objects() -> Vec<LoadedObject> {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the vector passed below; `info` is valid for this call, its name a
        // C string (or null) and its program headers array has `dlpi_phnum` entries; a note
        // segment is read only where one of the object's loaded segments maps it.
        unsafe {
            let objects = &mut *data.cast::<Vec<LoadedObject>>();
            let info = &*info;
            let name = if info.dlpi_name.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr(info.dlpi_name)
                    .to_string_lossy()
                    .into_owned()
            };
            let bias = info.dlpi_addr as usize;
            let (mut code, mut loaded, mut notes) = (Vec::new(), Vec::new(), Vec::new());
            for index in 0..usize::from(info.dlpi_phnum) {
                let header = &*info.dlpi_phdr.add(index);
                let start = bias + header.p_vaddr as usize;
                let range = (start, start + header.p_memsz as usize);
                match header.p_type {
                    libc::PT_LOAD if header.p_flags & libc::PF_X != 0 => {
                        loaded.push(range);
                        code.push(range);
                    }
                    libc::PT_LOAD => loaded.push(range),
                    libc::PT_NOTE => notes.push(range),
                    _ => {}
                }
            }
            let build_id = notes
                .into_iter()
                .filter(|&(start, end)| loaded.iter().any(|&(from, to)| from <= start && end <= to))
                .find_map(|(start, end)| {
                    let notes = std::slice::from_raw_parts(start as *const u8, end - start);
                    gnu_build_id(notes).map(<[u8]>::to_vec)
                });
            code.sort_unstable();
            objects.push(LoadedObject {
                name,
                bias,
                code,
                build_id,
            });
            0
        }
    }
    let mut objects = Vec::new();
    // SAFETY: the callback only writes into `objects`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut objects).cast()) };
    objects
}

/// The file of the running executable.
const RUNNING_EXECUTABLE: &str = "/proc/self/exe";

/// The vDSO's name in the loader's list, and the prefix of its functions' names.
const VDSO_NAME: &str = "linux-vdso.so.1";
const VDSO_PREFIX: &str = "__vdso_";

impl LoadedObject {
    /// Adds the rows of its pure functions (`unwind::PURE_LIBC_FUNCTIONS`,
    /// `PURE_VDSO_FUNCTIONS`) to `rows`, for libc and the vDSO; other shared objects have none.
    fn pure_rows(&self, rows: &mut Vec<unwind::FrameRow>) -> Result<(), String> {
        let file_bytes;
        let vdso = self.name == VDSO_NAME;
        let image: &[u8] = if vdso {
            vdso_image().ok_or("no vDSO image")?
        } else if self.name.contains("/libc.so") {
            // Read, not mapped (`map_running_executable`): a few MiB, and a file an upgrade
            // could truncate in place.
            file_bytes = std::fs::read(&self.name).map_err(|e| e.to_string())?;
            &file_bytes
        } else {
            return Ok(());
        };
        use object::{Object, ObjectSymbol, SymbolKind};
        let file = object::File::parse(image).map_err(|e| e.to_string())?;
        // The file at the path may have been replaced (an upgrade) since the process loaded
        // it: its symbols and call frames would describe other code.
        let file_build_id = file.build_id().map_err(|e| e.to_string())?;
        if !vdso && (file_build_id.is_none() || file_build_id != self.build_id.as_deref()) {
            return Err(
                "the file is not the one this process loaded (no or another build id)".into(),
            );
        }
        let pure = file
            .dynamic_symbols()
            .filter(|symbol| symbol.kind() == SymbolKind::Text && symbol.size() > 0)
            .filter(|symbol| {
                symbol
                    .name()
                    .is_ok_and(|name| match name.strip_prefix(VDSO_PREFIX) {
                        Some(name) if vdso => unwind::PURE_VDSO_FUNCTIONS.contains(&name),
                        _ => !vdso && unwind::PURE_LIBC_FUNCTIONS.contains(&name),
                    })
            })
            .map(|symbol| {
                let start = self.bias + symbol.address() as usize;
                (start, start + symbol.size() as usize)
            })
            .collect();
        eh_frame_rows(&file, self.bias, &merge(pure), rows)
    }
}

/// The running executable's own file (even if it was replaced or removed since it started: its
/// path would then name another file, whose symbols describe other code), mapped read-only. The
/// code map reads its symbol table and `.eh_frame`, a small part of it: a debug build's
/// executable is mostly debug information, which reading the whole file copied for nothing
/// (3.5 of the 8 ms the code map took here). The map lives only while the code map is read.
/// Not covered by the argument below: a network or FUSE filesystem that lets another machine
/// write the file in place, or truncate it (an access past its end is then a SIGBUS).
fn map_running_executable() -> Result<memmap2::Mmap, String> {
    let file = std::fs::File::open(RUNNING_EXECUTABLE)
        .map_err(|e| format!("{RUNNING_EXECUTABLE}: {e}"))?;
    // SAFETY: the bytes must not change while mapped: a local filesystem refuses to open a
    // running executable for writing (ETXTBSY), and a rebuild or upgrade makes a new inode.
    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("{RUNNING_EXECUTABLE}: {e}"))
}

/// The `NT_GNU_BUILD_ID` note's descriptor in an ELF note segment, if it has one.
fn gnu_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let word = |bytes: &[u8], at: usize| {
        bytes
            .get(at..at + 4)
            .map(|word| u32::from_ne_bytes(word.try_into().unwrap()) as usize)
    };
    let padded = |size: usize| size.checked_add(3).map(|size| size & !3);
    while notes.len() >= 12 {
        let (name_size, descriptor_size, kind) =
            (word(notes, 0)?, word(notes, 4)?, word(notes, 8)?);
        let descriptor_at = 12 + padded(name_size)?;
        let next = descriptor_at.checked_add(padded(descriptor_size)?)?;
        let name = notes.get(12..12 + name_size)?;
        if kind == NT_GNU_BUILD_ID as usize && name == b"GNU\0" {
            return notes.get(descriptor_at..descriptor_at + descriptor_size);
        }
        notes = notes.get(next..)?;
    }
    None
}

/// The vDSO's ELF image in memory (its headers, sections and code), from the auxiliary vector.
fn vdso_image() -> Option<&'static [u8]> {
    // SAFETY: getauxval has no preconditions; it returns 0 for an entry the kernel did not give.
    let base = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) } as usize;
    if base == 0 {
        return None;
    }
    // SAFETY: the kernel maps the vDSO's whole ELF image, header first, at `base`, for the
    // process's life; the section headers are its last part.
    unsafe {
        let header = &*(base as *const libc::Elf64_Ehdr);
        let size =
            header.e_shoff as usize + usize::from(header.e_shnum) * usize::from(header.e_shentsize);
        Some(std::slice::from_raw_parts(base as *const u8, size))
    }
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

/// Adds to `rows` the rows of the functions whose code `pure` lists (sorted and merged, in
/// memory) from `file`'s `.eh_frame`, the file loaded `bias` bytes from its own addresses.
fn eh_frame_rows(
    file: &object::File,
    bias: usize,
    pure: &[(usize, usize)],
    rows: &mut Vec<unwind::FrameRow>,
) -> Result<(), String> {
    use object::{Object, ObjectSection};
    let eh_frame = file.section_by_name(".eh_frame").ok_or("no .eh_frame")?;
    let data = eh_frame.data().map_err(|e| e.to_string())?;
    unwind::read_rows(data, eh_frame.address(), bias, pure, rows).map_err(|e| e.to_string())
}

/// Reads the executable's symbol table (`CodeMap`), and adds the rows of its pure functions
/// to `pure_rows`.
fn functions(bias: usize, pure_rows: &mut Vec<unwind::FrameRow>) -> Result<Functions, String> {
    use object::{Object, ObjectSymbol, SymbolKind};
    let data = map_running_executable()?;
    let file = object::File::parse(&*data).map_err(|e| e.to_string())?;
    let (mut allowed, mut pure, mut impure) = (Vec::new(), Vec::new(), Vec::new());
    let mut lock_waits = Vec::new();
    let mut lock_waits_found = [false; LOCK_WAITS.len()];
    let mut demangled = String::new();
    for symbol in file.symbols() {
        if symbol.kind() != SymbolKind::Text || symbol.size() == 0 {
            continue;
        }
        let start = bias + symbol.address() as usize;
        let range = (start, start + symbol.size() as usize);
        // A name that cannot be read is denied: nothing says what the code does.
        let Ok(name) = symbol.name() else {
            impure.push(range);
            continue;
        };
        // Raw as well as demangled: the sanitizers' C++ internals are matched mangled.
        if has_denied_symbol_prefix(name) {
            impure.push(range);
            continue;
        }
        // C (or C++, or assembly) linked into the executable: as little ours as libc's.
        let Some(demangling) = rust_demangling(name) else {
            if ARITHMETIC_BUILTINS.contains(&name) {
                pure.push(range);
            } else {
                impure.push(range);
            }
            continue;
        };
        let arguments_hidden = name.starts_with("_ZN");
        write_demangled(&demangling, &mut demangled);
        let name = demangled.as_str();
        if let Some(index) = lock_wait_index(name) {
            lock_waits.push(range);
            lock_waits_found[index] = true;
        }
        if !is_denied(name) {
            allowed.push(range);
        } else if is_pure(name, arguments_hidden) {
            pure.push(range);
        } else {
            impure.push(range);
        }
    }
    if allowed.is_empty() && pure.is_empty() && impure.is_empty() {
        return Err("the executable is stripped".into());
    }
    // Aliases of one body share an address (merged functions): code under any denied name is
    // denied, and under any impure one impure.
    let denied = merge(pure.iter().chain(&impure).copied().collect());
    let pure = subtract(&merge(pure), &merge(impure));
    // Without its call-frame information, the executable's pure functions are denied like the
    // rest of std (the walk finds no row); the symbol table still serves.
    if let Err(why) = eh_frame_rows(&file, bias, &pure, pure_rows) {
        no_call_frames_notice("the executable", &why);
    }
    Ok(Functions {
        allowed: subtract(&merge(allowed), &denied),
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
        return Err(DeferReason::CodeMapUnread);
    };
    let point = if map.is_task_code(at.pc) {
        SafePoint::Code
    } else if stack_has_room && map.is_library_call(at, stack_top) {
        SafePoint::LibraryCall
    } else if CodeMap::contains(&map.executable, at.pc) {
        return Err(DeferReason::Denylisted);
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
    /// Rule 3's library calls (`unwind`): whether the thread, interrupted in a pure library
    /// function, was called through pure functions only from the task's code. `stack_top`: the
    /// top of the current generator's stack, in which `at.sp` lies. Async-signal-safe.
    fn is_library_call(&self, at: &Interrupted, stack_top: usize) -> bool {
        let frame = unwind::Frame {
            pc: at.pc,
            sp: at.sp,
            rbp: at.rbp,
        };
        unwind::walks_to_task_code(&self.pure_rows, frame, stack_top, |address| {
            self.is_task_code(address)
        })
    }

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

    /// A Rust symbol's name as the code map's loop demangles it.
    fn demangled(symbol: &str) -> String {
        let mut name = String::new();
        write_demangled(
            &rust_demangling(symbol).expect("not a Rust symbol"),
            &mut name,
        );
        name
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
        assert!(
            LOCK_WAITS
                .iter()
                .all(|wait| wait.contains(LOCK_WAITS_MODULE))
        );
    }

    #[test]
    fn this_test_binary_has_every_lock_wait() {
        let bias = loaded_objects()[0].bias;
        let found = functions(bias, &mut Vec::new()).unwrap().lock_waits_found;
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
        let map = read_code_map();
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
        let bias = loaded_objects()[0].bias;
        let data = map_running_executable().unwrap();
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

    #[test]
    fn pure_names_are_the_clock_and_the_collections_not_their_callers() {
        for pure in [
            "core::slice::sort::unstable::quicksort::quicksort",
            "<alloc::vec::Vec<u8> as core::ops::drop::Drop>::drop",
            "core::slice::<impl [T]>::sort_unstable",
            "core::slice::sort::unstable::sort::<u64, <u64 as core::cmp::PartialOrd>::lt>",
            "<u64 as core::fmt::Display>::fmt",
            "<std::hash::random::DefaultHasher as core::hash::Hasher>::write",
            "hashbrown::raw::RawTable<T,A>::reserve_rehash",
            "<std::time::Instant>::elapsed",
            "<std::sys::pal::unix::time::Timespec>::now",
            "<std::collections::hash::map::HashMap<K,V,S>>::insert",
            // Inherent methods of primitives, slices and pointers, v0-mangled: no module.
            "<[T]>::sort",
            "<*const ()>::is_aligned_to",
            "<[u64]>::sort_unstable",
        ] {
            assert!(is_pure(pure, false), "{pure} is not pure");
        }
        for impure in [
            "std::sync::mpmc::waker::SyncWaker::notify",
            "<std::io::stdio::StdoutLock as std::io::Write>::write",
            "<&mut [u8] as std::io::Write>::write",
            "core::panicking::panic_fmt",
            "alloc::alloc::exchange_malloc",
            "__rust_alloc",
            "tokio::sync::mpsc::chan::Tx<T,S>::send",
            "maniac::scheduler::schedule_task",
            "std::hash::random::RandomState::new",
            // Generic code of core and alloc instantiated with impure types runs their code.
            "core::ptr::drop_in_place<std::sync::poison::mutex::MutexGuard<u8>>",
            "core::ptr::drop_in_place<std::sync::reentrant_lock::ReentrantLockGuard<\
             core::cell::RefCell<std::io::stdio::StdoutRaw>>>",
            "<alloc::boxed::Box<std::io::stdio::Stdout> as std::io::Write>::write_fmt",
            "<core::pin::Pin<&mut tokio::sync::notify::Notified> as core::future::future::Future>::poll",
            "<alloc::sync::Arc<tokio::runtime::scheduler::Handle>>::drop_slow",
            "<(alloc::vec::Vec<u8>, tokio::sync::Mutex<u8>) as core::cmp::PartialEq>::eq",
            "core::ops::function::FnOnce::call_once::<tokio::task::spawn::{closure#0}, ()>",
            "<dyn maniac::Foo>::bar",
            "core::ptr::drop_in_place<myapp::Connection>",
            // No path at all: C code linked into the executable.
            "malloc",
            // A slice's method run with a type or function that is not pure.
            "<[myapp::Row]>::sort_by::<myapp::by_name>",
            "<[T]>::sort_by::<std::sync::poison::mutex::Mutex<u8>>",
        ] {
            assert!(!is_pure(impure, false), "{impure} is pure");
        }
        // Legacy-mangled: the type arguments hidden, a function that drops elements is out.
        assert!(is_pure("alloc::vec::Vec<T,A>::push", true));
        assert!(is_pure(
            "core::slice::sort::unstable::quicksort::quicksort",
            true
        ));
        for drops in [
            "<alloc::vec::Vec<T,A> as core::ops::drop::Drop>::drop",
            "<hashbrown::raw::RawTable<T,A> as core::ops::drop::Drop>::drop",
            "alloc::sync::Arc<T,A>::drop_slow",
            "alloc::vec::Vec<T,A>::truncate",
            "alloc::collections::vec_deque::VecDeque<T,A>::clear",
            "alloc::vec::Vec<T,A>::retain_mut",
        ] {
            assert!(
                !is_pure(drops, true),
                "{drops} is pure with its arguments hidden"
            );
        }
    }

    #[test]
    fn this_test_binary_has_rows_for_the_clock_from_std_to_the_vdso() {
        let map = read_code_map();
        let covered = |address: usize| unwind::row_at(&map.pure_rows, address).is_some();
        let now = std::time::Instant::now as fn() -> std::time::Instant as usize;
        assert!(covered(now), "no row for Instant::now");
        assert!(
            !map.is_task_code(now),
            "Instant::now is taken for the task's code"
        );
        let libc_clock = libc::clock_gettime as *const () as usize;
        assert!(covered(libc_clock), "no row for libc's clock_gettime");
        let vdso = loaded_objects()
            .into_iter()
            .find(|object| object.name == VDSO_NAME)
            .expect("no vDSO loaded");
        assert!(
            map.pure_rows
                .iter()
                .any(|row| CodeMap::contains(&vdso.code, row.start)),
            "no row in the vDSO"
        );
        // A denied function that is not pure has none.
        let internal = crate::scheduler::schedule_task as *const () as usize;
        assert!(!covered(internal), "a row for the scheduler");
    }

    #[test]
    fn the_build_id_is_found_among_other_notes() {
        let note = |name: &[u8], kind: u32, descriptor: &[u8]| {
            let mut bytes = Vec::new();
            for word in [name.len() as u32, descriptor.len() as u32, kind] {
                bytes.extend(word.to_ne_bytes());
            }
            for part in [name, descriptor] {
                bytes.extend(part);
                bytes.resize(bytes.len().next_multiple_of(4), 0);
            }
            bytes
        };
        let mut notes = note(b"GNU\0", 1, &[0; 16]);
        notes.extend(note(b"GNU\0", 3, &[0xab, 0xcd, 0xef]));
        assert_eq!(gnu_build_id(&notes), Some(&[0xab, 0xcd, 0xef][..]));
        assert_eq!(gnu_build_id(&notes[..20]), None, "a note cut short");
        assert_eq!(
            gnu_build_id(&note(b"XYZ\0", 3, &[1])),
            None,
            "another vendor's note"
        );
    }

    #[test]
    fn rust_symbols_are_told_from_c_and_cpp() {
        for rust in [
            "_ZN4core3fmt5write17h0123456789abcdefE",
            "_ZN4core3fmt5write17h0123456789abcdefE.llvm.4242",
            "_ZN102_$LT$core..slice..sort..unstable..quicksort..GapGuardRaw$LT$T$GT$$u20$as$u20$\
             core..ops..drop..Drop$GT$4drop17h2b8e289d2e9acd7fE",
            "_RNvCs1234_7mycrate3hog",
        ] {
            assert!(rust_demangling(rust).is_some(), "{rust} taken for C");
        }
        for c in [
            "sqlite3_step",
            "_rjem_mallocx",
            "_ZN6__asan9Allocator8AllocateEmmPNS_20BufferedStackTraceE",
            "_ZN7snappy11RawCompressEPKcmPcPm",
            "main",
            "_RNotv0",
            // Legacy-shaped, with the hash, but not a path.
            "_ZN3fooE3bar17h0123456789abcdefE",
        ] {
            assert!(rust_demangling(c).is_none(), "{c} taken for Rust");
        }
    }

    #[test]
    fn this_test_binary_denies_its_c_code_and_walks_up_from_its_arithmetic_builtins() {
        use object::{Object, ObjectSymbol};
        let map = read_code_map();
        let bias = loaded_objects()[0].bias;
        let data = map_running_executable().unwrap();
        let file = object::File::parse(&*data).unwrap();
        let address = |name: &str| {
            let symbol = file
                .symbols()
                .find(|symbol| symbol.name() == Ok(name) && symbol.size() > 0)
                .unwrap_or_else(|| panic!("no {name} in the test binary"));
            bias + symbol.address() as usize
        };
        let start = address("_start");
        assert!(!map.is_task_code(start), "the C start-up code is allowed");
        assert!(
            unwind::row_at(&map.pure_rows, start).is_none(),
            "the C start-up code is walked up from"
        );
        // Its caller may hold a lock: a builtin is walked up from, not taken for the task's.
        let division = address("__udivti3");
        assert!(!map.is_task_code(division), "__udivti3 is allowed");
        assert!(
            unwind::row_at(&map.pure_rows, division).is_some(),
            "no row for __udivti3"
        );
    }
}
