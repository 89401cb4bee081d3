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
//! one from the pool costs a `Vec::pop`. The pool is bounded, so a burst of coroutines does not
//! keep its stacks mapped forever, and it is dropped (every stack unmapped) with its worker.

use std::io;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use corosensei::stack::StackPointer;

/// Stacks mapped and unmapped by this process (for tests and benchmarks).
static MAPPED: AtomicUsize = AtomicUsize::new(0);
static UNMAPPED: AtomicUsize = AtomicUsize::new(0);

/// The smallest stack `Builder::coroutine_stack_size` accepts: a poll needs room, and so will the
/// preemption trampoline's frame.
pub(crate) const MIN_STACK_SIZE: usize = 16 * 1024;

/// How many free stacks a worker keeps.
pub(crate) const POOL_CAPACITY: usize = 16;

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
        let page = page_size();
        let usable = size.max(MIN_STACK_SIZE).next_multiple_of(page);
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

/// A worker's free stacks.
#[derive(Debug)]
pub(crate) struct StackPool {
    free: Vec<Stack>,
    stack_size: usize,
}

impl StackPool {
    pub(crate) fn new(stack_size: usize) -> StackPool {
        StackPool {
            free: Vec::with_capacity(POOL_CAPACITY),
            stack_size,
        }
    }

    /// A free stack, or a newly mapped one.
    pub(crate) fn take(&mut self) -> io::Result<Stack> {
        match self.free.pop() {
            Some(stack) => Ok(stack),
            None => Stack::new(self.stack_size),
        }
    }

    /// Keeps `stack` for reuse, unless the pool is full or the stack is of another size.
    pub(crate) fn give_back(&mut self, stack: Stack) {
        if self.free.len() < POOL_CAPACITY && stack.size() == self.stack_size {
            self.free.push(stack);
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
