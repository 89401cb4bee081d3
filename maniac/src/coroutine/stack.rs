//! Coroutine stacks: mmap'd memory with a guard page, and a bounded per-worker pool of them.
//!
//! ```text
//!   high addresses
//!   +---------------------+ <- base()  (the stack grows down from here)
//!   |                     |
//!   |   usable: `size`    |    PROT_READ | PROT_WRITE, committed page by page as touched
//!   |                     |
//!   +---------------------+ <- guard_end
//!   |   guard page        |    PROT_NONE: an overflow faults here (see `overflow`)
//!   +---------------------+ <- limit() = the mapping's start
//!   low addresses
//! ```
//!
//! Mapping a stack costs a system call or two and page faults on first touch (~9 µs here); taking
//! one from the pool costs a `Vec::pop`.
//!
//! ## Pools
//! Each worker has a [`StackPool`] of at most [`POOL_CAPACITY`] free stacks, used without a lock.
//! Behind them the runtime has one [`SharedStacks`] of at most `POOL_CAPACITY` per worker: a full
//! worker pool gives its extra stacks there, and an empty one takes from there before mapping.
//! Without it, Poll-mode tasks that start on one worker and finish on another (they may be
//! stolen between polls) would drain the first pool and overflow the second, mapping and
//! unmapping a stack each time. Both are bounded, so a burst does not keep its stacks mapped
//! forever, and both are dropped (every stack unmapped) with the runtime.

use std::io;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use corosensei::stack::StackPointer;

/// Stacks mapped and unmapped by this process (for tests and benchmarks).
static MAPPED: AtomicUsize = AtomicUsize::new(0);
static UNMAPPED: AtomicUsize = AtomicUsize::new(0);

/// The smallest stack `Builder::coroutine_stack_size` accepts: a poll needs room, and so will the
/// preemption trampoline's frame.
pub(crate) const MIN_STACK_SIZE: usize = 16 * 1024;

/// How many free stacks a worker keeps.
pub(crate) const POOL_CAPACITY: usize = 16;

/// The largest stack `Builder::coroutine_stack_size` accepts (an address-space reservation per
/// coroutine; far beyond any real need).
pub(crate) const MAX_STACK_SIZE: usize = 1 << 40;

/// A stack size as [`Stack::new`] maps it: at least [`MIN_STACK_SIZE`], in whole pages.
pub(crate) fn rounded_stack_size(size: usize) -> usize {
    size.max(MIN_STACK_SIZE).next_multiple_of(page_size())
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).expect("sysconf(_SC_PAGESIZE) failed")
}

/// One coroutine stack (layout in the module doc).
#[derive(Debug)]
pub(crate) struct Stack {
    /// Start of the mapping (the guard page).
    mapping: *mut u8,
    /// Length of the mapping, guard page included.
    len: usize,
    page: usize,
}

// SAFETY: a `Stack` is plain memory that the owner alone reaches; moving the owner to another
// thread moves nothing thread-bound.
unsafe impl Send for Stack {}

impl Stack {
    /// Maps a stack with at least `size` usable bytes (rounded up to pages) above a guard page.
    pub(crate) fn new(size: usize) -> io::Result<Stack> {
        if size > MAX_STACK_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a coroutine stack of {size} bytes is larger than {MAX_STACK_SIZE}"),
            ));
        }
        let page = page_size();
        let usable = rounded_stack_size(size);
        let len = usable + page;
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing; no
        // existing memory is affected. NORESERVE: pages are committed when first touched.
        let mapping = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if mapping == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Stack {
            mapping: mapping.cast(),
            len,
            page,
        };
        // SAFETY: the first page of the mapping we own; from now on it faults on any access.
        if unsafe { libc::mprotect(mapping, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error()); // `stack` unmaps on drop
        }
        MAPPED.fetch_add(1, Relaxed);
        Ok(stack)
    }

    /// Usable bytes (the guard page excluded).
    pub(crate) fn size(&self) -> usize {
        self.len - self.page
    }

    /// The guard page's address range.
    pub(crate) fn guard(&self) -> (usize, usize) {
        let start = self.mapping as usize;
        (start, start + self.page)
    }

    /// The usable range, lowest address first.
    pub(crate) fn usable(&self) -> (usize, usize) {
        let start = self.mapping as usize;
        (start + self.page, start + self.len)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `new` with this length and nothing else refers to it:
        // a stack is dropped only once no coroutine runs on it.
        unsafe { libc::munmap(self.mapping.cast(), self.len) };
        UNMAPPED.fetch_add(1, Relaxed);
    }
}

// SAFETY: `base` and `limit` bound a mapping this value owns for its whole life; the lowest page
// is a guard page (PROT_NONE), the rest (at least MIN_STACK_SIZE) is readable and writable, and
// both addresses are page-aligned, so aligned to STACK_ALIGNMENT.
unsafe impl corosensei::stack::Stack for Stack {
    fn base(&self) -> StackPointer {
        NonZeroUsize::new(self.mapping as usize + self.len).expect("stack at address 0")
    }

    fn limit(&self) -> StackPointer {
        NonZeroUsize::new(self.mapping as usize).expect("stack at address 0")
    }
}

/// The runtime's free stacks behind the workers' pools (module doc, "Pools").
#[derive(Debug)]
pub(crate) struct SharedStacks {
    free: Mutex<Vec<Stack>>,
    capacity: usize,
    /// The usable size of every stack of this runtime, rounded as mapped.
    stack_size: usize,
}

impl SharedStacks {
    pub(crate) fn new(stack_size: usize, workers: usize) -> Arc<SharedStacks> {
        Arc::new(SharedStacks {
            free: Mutex::new(Vec::new()),
            capacity: POOL_CAPACITY * workers,
            stack_size: rounded_stack_size(stack_size),
        })
    }

    fn free(&self) -> std::sync::MutexGuard<'_, Vec<Stack>> {
        // Nothing panics under this lock.
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A worker's free stacks.
#[derive(Debug)]
pub(crate) struct StackPool {
    free: Vec<Stack>,
    shared: Arc<SharedStacks>,
}

impl StackPool {
    pub(crate) fn new(shared: Arc<SharedStacks>) -> StackPool {
        StackPool {
            free: Vec::with_capacity(POOL_CAPACITY),
            shared,
        }
    }

    /// A free stack (this worker's, else the runtime's), or a newly mapped one.
    pub(crate) fn take(&mut self) -> io::Result<Stack> {
        if let Some(stack) = self.free.pop() {
            return Ok(stack);
        }
        if let Some(stack) = self.shared.free().pop() {
            return Ok(stack);
        }
        Stack::new(self.shared.stack_size)
    }

    /// Keeps `stack` for reuse (here, else in the runtime's pool), unless both are full or the
    /// stack is of another size: then it is unmapped.
    pub(crate) fn give_back(&mut self, stack: Stack) {
        if stack.size() != self.shared.stack_size {
            return;
        }
        if self.free.len() < POOL_CAPACITY {
            self.free.push(stack);
            return;
        }
        let mut shared = self.shared.free();
        if shared.len() < self.shared.capacity {
            shared.push(stack);
        }
    }
}

/// Counts of stacks mapped and unmapped so far by this process.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackStats {
    /// Stacks mapped (`mmap`) so far.
    pub mapped: usize,
    /// Stacks unmapped (`munmap`) so far.
    pub unmapped: usize,
}

/// Counts of stacks mapped and unmapped so far by this process (a test and benchmark hook: a
/// pool that works maps few stacks for many coroutines, and unmaps them all at shutdown).
#[doc(hidden)]
pub fn stack_stats() -> StackStats {
    StackStats {
        mapped: MAPPED.load(Relaxed),
        unmapped: UNMAPPED.load(Relaxed),
    }
}
