//! Join and abort handles.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll, Waker};

use super::cell::{Output, TaskMeta};
use super::{Id, JoinError};

/// An owned permission to await a task's output, like `tokio::task::JoinHandle`.
///
/// Awaiting it gives `Ok(value)`, or `Err(JoinError)` if the task panicked or was cancelled.
/// Dropping it detaches the task, which keeps running. [`JoinHandle::abort`] cancels the task at its
/// next poll boundary.
pub struct JoinHandle<T> {
    /// `None` once the output has been taken.
    task: Option<async_task::FallibleTask<Output<T>, TaskMeta>>,
    /// The task's metadata, valid while `task` is `Some` (the task handle keeps the allocation).
    meta: NonNull<TaskMeta>,
    id: Id,
}

// SAFETY: the handle gives out the task's output (`T: Send` moves it across threads) and shared
// access to `TaskMeta`, which is `Sync` (atomics and an `Arc` of a `Sync` scheduler). async-task's
// own handle is `Send` under the same bound.
unsafe impl<T: Send> Send for JoinHandle<T> {}
// SAFETY: through `&JoinHandle` one can only read metadata and request an abort, both atomic.
unsafe impl<T: Send> Sync for JoinHandle<T> {}

impl<T> Unpin for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    pub(crate) fn new(task: async_task::Task<Output<T>, TaskMeta>) -> JoinHandle<T> {
        let meta = NonNull::from(task.metadata());
        let id = task.metadata().id;
        JoinHandle {
            task: Some(task.fallible()),
            meta,
            id,
        }
    }

    fn meta(&self) -> Option<&TaskMeta> {
        // SAFETY: while `task` is `Some`, the task handle holds a reference that keeps the task's
        // allocation, and so its header and metadata, alive and unmoved.
        self.task.as_ref().map(|_| unsafe { self.meta.as_ref() })
    }

    /// Cancels the task. A task that has not started never runs; a task that is waiting is
    /// dropped at once (on a worker); a task that is being polled is dropped when that poll
    /// returns. Awaiting the handle then gives a cancelled `JoinError`, unless the task completed
    /// first, in which case it gives the value.
    pub fn abort(&self) {
        if let Some(meta) = self.meta() {
            meta.request_abort();
            meta.scheduler.tasks.wake(meta.registry_slot(), meta.id);
        }
    }

    /// Whether the task has finished (completed, panicked or been cancelled). After `true`,
    /// awaiting the handle does not wait.
    pub fn is_finished(&self) -> bool {
        match (&self.task, self.meta()) {
            (Some(task), Some(meta)) => task.is_finished() || meta.is_abandoned(),
            _ => true,
        }
    }

    /// A handle that can abort the task but not await it.
    pub fn abort_handle(&self) -> AbortHandle {
        let waker = self
            .meta()
            .and_then(|meta| meta.scheduler.tasks.waker(meta.registry_slot(), meta.id));
        match waker {
            Some(waker) => AbortHandle {
                waker: Some(waker),
                meta: self.meta,
                id: self.id,
            },
            None => AbortHandle {
                waker: None,
                meta: NonNull::dangling(),
                id: self.id,
            },
        }
    }

    /// The task's id.
    pub fn id(&self) -> Id {
        self.id
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let id = self.id;
        let meta = self
            .meta()
            .expect("maniac: JoinHandle polled again after it returned Ready");
        if meta.is_abandoned() {
            // Shutdown gave up on the task in the middle of a poll: async-task will never
            // complete it (`coroutine` module doc, "Abort and shutdown").
            self.task = None;
            return Poll::Ready(Err(JoinError::cancelled(id)));
        }
        let task = self.task.as_mut().expect("checked by meta()");
        match Pin::new(task).poll(cx) {
            Poll::Pending => {
                let meta = self.meta().expect("still pending");
                meta.scheduler
                    .tasks
                    .register_join_waker(meta.registry_slot(), meta.id, cx.waker());
                if meta.is_abandoned() {
                    self.task = None;
                    return Poll::Ready(Err(JoinError::cancelled(id)));
                }
                Poll::Pending
            }
            Poll::Ready(output) => {
                self.task = None;
                // `None`: the runtime dropped the task without running it to the end (shutdown).
                Poll::Ready(output.unwrap_or_else(|| Err(JoinError::cancelled(id))))
            }
        }
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // Dropping an async-task handle would cancel the task; a dropped JoinHandle detaches.
            task.detach();
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle").field("id", &self.id).finish()
    }
}

/// A handle that cancels a task without awaiting it, like `tokio::task::AbortHandle`.
pub struct AbortHandle {
    /// A reference to the task (`None` if it had already finished when the handle was made). It
    /// keeps the allocation, and so `meta`, alive; waking it brings the task to a poll boundary.
    waker: Option<Waker>,
    /// Valid while `waker` is `Some`.
    meta: NonNull<TaskMeta>,
    id: Id,
}

// SAFETY: `Waker` is `Send + Sync`, and `meta` is only read through `&TaskMeta`, which is `Sync`;
// the waker keeps it alive on whichever thread holds the handle.
unsafe impl Send for AbortHandle {}
// SAFETY: as above; every operation through `&AbortHandle` is atomic.
unsafe impl Sync for AbortHandle {}

impl AbortHandle {
    fn meta(&self) -> Option<&TaskMeta> {
        // SAFETY: while `waker` is `Some` it holds a reference to the task, which keeps the
        // metadata alive and unmoved.
        self.waker.as_ref().map(|_| unsafe { self.meta.as_ref() })
    }

    /// Cancels the task, as [`JoinHandle::abort`].
    pub fn abort(&self) {
        if let (Some(meta), Some(waker)) = (self.meta(), &self.waker) {
            meta.request_abort();
            waker.wake_by_ref();
        }
    }

    /// Whether the task has finished (completed, panicked or been cancelled).
    pub fn is_finished(&self) -> bool {
        self.meta().is_none_or(TaskMeta::is_finished)
    }

    /// The task's id.
    pub fn id(&self) -> Id {
        self.id
    }
}

impl fmt::Debug for AbortHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbortHandle").field("id", &self.id).finish()
    }
}

/// Compile-time checks of the handles' auto traits, in the style of async-executor's.
#[allow(dead_code)]
fn assert_auto_traits() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<JoinHandle<u8>>();
    send_sync::<AbortHandle>();
    send_sync::<JoinError>();
}
