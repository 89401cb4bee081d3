//! Task identifiers.

use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};

/// An opaque identifier of a task, unique among all tasks of the process while it runs
/// (like `tokio::task::Id`).
#[derive(Clone, Copy, Debug, Hash, Eq, PartialEq, Ord, PartialOrd)]
pub struct Id(NonZeroU64);

impl Id {
    pub(crate) fn next() -> Id {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        // Relaxed: uniqueness needs only the atomicity of the increment, not any ordering.
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Id(NonZeroU64::new(id).expect("task id counter wrapped around"))
    }

    pub(crate) fn as_u64(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The id of the task that is running now.
///
/// # Panics
/// Outside a task (for instance in `block_on`'s own future), with a message saying so; use
/// [`try_id`] where that can happen.
#[track_caller]
pub fn id() -> Id {
    try_id().expect("maniac::task::id() called outside a task; use maniac::task::try_id() there")
}

/// The id of the task that is running now, or `None` outside a task.
pub fn try_id() -> Option<Id> {
    crate::runtime::context::current_task_id()
}
