//! `JoinSet`: a collection of tasks awaited in the order they finish.
//!
//! Each member's join handle is polled with a waker of its own that, when the task finishes,
//! pushes the member's index onto a shared ready list and wakes whoever waits in `join_next`. So
//! `join_next` polls only members that were woken, not all of them. A new member is put on the ready
//! list at once, so that its first poll registers its waker. A stale index (a member already taken)
//! costs one lookup and is skipped.

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::panic;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use slab::Slab;

use super::{AbortHandle, Id, JoinError, JoinHandle};
use crate::preempt;
use crate::runtime::Handle;

/// A set of tasks spawned on a runtime, awaited in the order they finish, like
/// `tokio::task::JoinSet`. Dropping the set aborts every task still in it.
pub struct JoinSet<T> {
    members: Slab<Member<T>>,
    ready: Arc<ReadyList>,
}

struct Member<T> {
    handle: JoinHandle<T>,
    waker: Waker,
}

#[derive(Default)]
struct ReadyList {
    state: Mutex<ReadyState>,
}

#[derive(Default)]
struct ReadyState {
    indices: VecDeque<usize>,
    waiter: Option<Waker>,
}

impl ReadyList {
    fn lock(&self) -> preempt::Held<'_, ReadyState> {
        // Nothing panics while this lock is held; if a waker clone did, the list is still valid.
        preempt::lock(&self.state)
    }

    fn push(&self, index: usize) {
        let waiter = {
            let mut state = self.lock();
            state.indices.push_back(index);
            state.waiter.take()
        };
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    }
}

/// The waker a member's join handle is polled with.
struct MemberWaker {
    index: usize,
    ready: Arc<ReadyList>,
}

impl Wake for MemberWaker {
    fn wake(self: Arc<Self>) {
        self.ready.push(self.index);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.push(self.index);
    }
}

impl<T> JoinSet<T> {
    /// An empty set.
    pub fn new() -> JoinSet<T> {
        JoinSet {
            members: Slab::new(),
            ready: Arc::default(),
        }
    }

    /// Number of tasks in the set (finished ones included until they are joined).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the set has no task.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn insert(&mut self, handle: JoinHandle<T>) -> AbortHandle {
        let abort = handle.abort_handle();
        let entry = self.members.vacant_entry();
        let waker = Waker::from(Arc::new(MemberWaker {
            index: entry.key(),
            ready: self.ready.clone(),
        }));
        let index = entry.key();
        entry.insert(Member { handle, waker });
        self.ready.push(index);
        abort
    }

    /// Polls for the next finished task; `Ready(None)` when the set is empty.
    pub fn poll_join_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, JoinError>>> {
        self.poll_join_next_with_id(cx)
            .map(|joined| joined.map(|result| result.map(|(_, value)| value)))
    }

    /// Polls for the next finished task, with its id; `Ready(None)` when the set is empty.
    pub fn poll_join_next_with_id(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<(Id, T), JoinError>>> {
        if self.members.is_empty() {
            return Poll::Ready(None);
        }
        loop {
            let index = {
                let mut state = self.ready.lock();
                match state.indices.pop_front() {
                    Some(index) => index,
                    None => {
                        // Registered under the lock, so a push after our pop cannot miss it.
                        if !state
                            .waiter
                            .as_ref()
                            .is_some_and(|w| w.will_wake(cx.waker()))
                        {
                            state.waiter = Some(cx.waker().clone());
                        }
                        return Poll::Pending;
                    }
                }
            };
            let Some(member) = self.members.get_mut(index) else {
                continue; // stale: already joined
            };
            let id = member.handle.id();
            let mut member_cx = Context::from_waker(&member.waker);
            if let Poll::Ready(result) = Pin::new(&mut member.handle).poll(&mut member_cx) {
                self.members.remove(index);
                return Poll::Ready(Some(result.map(|value| (id, value))));
            }
        }
    }

    /// Waits for the next task to finish and returns its result; `None` when the set is empty.
    pub async fn join_next(&mut self) -> Option<Result<T, JoinError>> {
        poll_fn(|cx| self.poll_join_next(cx)).await
    }

    /// As [`JoinSet::join_next`], with the task's id.
    pub async fn join_next_with_id(&mut self) -> Option<Result<(Id, T), JoinError>> {
        poll_fn(|cx| self.poll_join_next_with_id(cx)).await
    }

    /// The result of a task that has already finished, if any, without waiting.
    pub fn try_join_next(&mut self) -> Option<Result<T, JoinError>> {
        let mut cx = Context::from_waker(Waker::noop());
        match self.poll_join_next(&mut cx) {
            Poll::Ready(joined) => joined,
            Poll::Pending => None,
        }
    }

    /// Waits for every task and returns their values in the order they finished.
    ///
    /// # Panics
    /// If a task panicked, this resumes its panic; if one was cancelled, this panics saying so.
    /// Use [`JoinSet::join_next`] to handle those cases instead.
    pub async fn join_all(mut self) -> Vec<T> {
        let mut values = Vec::with_capacity(self.len());
        while let Some(result) = self.join_next().await {
            match result {
                Ok(value) => values.push(value),
                Err(error) if error.is_panic() => panic::resume_unwind(error.into_panic()),
                Err(error) => {
                    panic!("JoinSet::join_all: {error}; use join_next to handle cancellation")
                }
            }
        }
        values
    }

    /// Aborts every task in the set; they stay in it until joined (each then gives a cancelled
    /// error, or its value if it finished first).
    pub fn abort_all(&mut self) {
        for (_, member) in &self.members {
            member.handle.abort();
        }
    }

    /// Removes every task from the set without aborting them: they keep running, detached.
    pub fn detach_all(&mut self) {
        self.members.clear();
        self.ready.lock().indices.clear();
    }

    /// Aborts every task and waits until all of them have finished.
    pub async fn shutdown(&mut self) {
        self.abort_all();
        while self.join_next().await.is_some() {}
    }
}

impl<T: Send + 'static> JoinSet<T> {
    /// Spawns `future` on the current runtime into the set.
    ///
    /// # Panics
    /// Outside a runtime, as [`crate::spawn`].
    #[track_caller]
    pub fn spawn<F>(&mut self, future: F) -> AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
    {
        self.insert(super::spawn(future))
    }

    /// Spawns `future` on the runtime of `handle` into the set.
    pub fn spawn_on<F>(&mut self, future: F, handle: &Handle) -> AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
    {
        self.insert(handle.spawn(future))
    }

    /// Runs `f` on the current runtime's blocking pool, into the set.
    ///
    /// # Panics
    /// Outside a runtime, as [`crate::task::spawn_blocking`].
    #[track_caller]
    pub fn spawn_blocking<F>(&mut self, f: F) -> AbortHandle
    where
        F: FnOnce() -> T + Send + 'static,
    {
        self.insert(super::spawn_blocking(f))
    }

    /// Runs `f` on the blocking pool of `handle`'s runtime, into the set.
    pub fn spawn_blocking_on<F>(&mut self, f: F, handle: &Handle) -> AbortHandle
    where
        F: FnOnce() -> T + Send + 'static,
    {
        self.insert(handle.spawn_blocking(f))
    }
}

impl<T> Default for JoinSet<T> {
    fn default() -> JoinSet<T> {
        JoinSet::new()
    }
}

impl<T> Drop for JoinSet<T> {
    fn drop(&mut self) {
        self.abort_all();
    }
}

impl<T> fmt::Debug for JoinSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinSet").field("len", &self.len()).finish()
    }
}
