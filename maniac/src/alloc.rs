//! `NoPreempt<A>`: a global allocator wrapper that holds preemption off while the allocator runs.
//!
//! An allocator linked into the executable (mimalloc, jemalloc, ...) has its code inside the
//! executable, where preemption may otherwise interrupt it with its per-thread state half-updated;
//! the next task on that worker would then allocate into that state (`maniac::preempt`, "Hazards").
//! Wrap it:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: maniac::alloc::NoPreempt<mimalloc::MiMalloc> =
//!     maniac::alloc::NoPreempt(mimalloc::MiMalloc);
//! ```
//!
//! The system allocator lives in libc, outside the executable, and needs no wrapper. The wrapper
//! costs two thread-local increments per call and never allocates itself.

use std::alloc::{GlobalAlloc, Layout};

use crate::preempt::NoPreemptGuard;

/// Holds preemption off around every call of the allocator `A` (module doc).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPreempt<A>(pub A);

// SAFETY: every method forwards to `A` with the same arguments and returns its result; the guard
// only changes a thread-local counter and allocates nothing, so `A`'s contract is kept.
unsafe impl<A: GlobalAlloc> GlobalAlloc for NoPreempt<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _guard = NoPreemptGuard::new();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _guard = NoPreemptGuard::new();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _guard = NoPreemptGuard::new();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _guard = NoPreemptGuard::new();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}
