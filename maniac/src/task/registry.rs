//! The registry of a runtime's live tasks.
//!
//! Shutdown must drop the future of every async task, including the ones that wait for a wake-up
//! that will never come. Those are in no queue, so the registry keeps a waker of each: waking it
//! puts the task in a queue, where shutdown finds and drops it. `abort()` and `AbortHandle` also use
//! the registered waker, so a join handle needs no waker of its own. Blocking tasks are registered
//! for that reason only: they are always queued or running, so shutdown leaves them to the blocking
//! pool, and they are not counted as alive async tasks.
//!
//! ## Rules
//! 1. `Shared::spawn` and `Shared::spawn_blocking` insert a task before its first schedule; the slot is kept in the task's
//!    metadata. The task removes itself when its future is dropped (`cell` module doc, rule 4).
//!    Nothing else removes entries, so "no async entry is left" means "every async task's future is
//!    dropped".
//! 2. A slot is `key * SHARDS + shard`, in 32 bits (room for 2^32 live tasks, far more than
//!    memory holds); an entry also keeps the task id, and every lookup compares it, so a slot
//!    reused by a later task is never mistaken for the earlier one.
//! 3. Wakers are never called with a shard locked: waking schedules, scheduling at shutdown may
//!    drop a task, and a dropped task locks its shard to remove itself.
//! 4. A join handle that waits leaves its waker in the entry too (`join_waker`). async-task wakes
//!    it when the task ends, except for a task that shutdown abandoned in the middle of a poll,
//!    which async-task will never see end: [`TaskRegistry::abandon`] wakes that one. Kept here
//!    rather than in the task cell, which must stay small (`cell` module doc, "Size").
//!
//! Sharding by task id keeps spawns and completions on different workers off each other's lock
//! (tokio shards its owned-task list for the same reason).

use std::sync::Mutex;
use std::task::Waker;

use crossbeam_utils::CachePadded;
use slab::Slab;

use super::Id;
use super::cell::{NO_SLOT, TaskKind};
use crate::preempt;

/// Number of shards, a power of two.
const SHARDS: u32 = 64;

#[derive(Debug)]
struct Entry {
    id: Id,
    kind: TaskKind,
    waker: Waker,
    join_waker: Option<Waker>,
}

#[derive(Debug)]
pub(crate) struct TaskRegistry {
    shards: Box<[CachePadded<Mutex<Slab<Entry>>>]>,
}

impl TaskRegistry {
    pub(crate) fn new() -> TaskRegistry {
        TaskRegistry {
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(Mutex::new(Slab::new())))
                .collect(),
        }
    }

    fn shard(&self, index: u32) -> preempt::Held<'_, Slab<Entry>> {
        // A poisoned shard only means a waker's clone or drop panicked while it was locked; the
        // slab itself is consistent.
        preempt::lock(&self.shards[index as usize])
    }

    /// Rule 1: registers a task; returns its slot.
    pub(crate) fn insert(&self, id: Id, kind: TaskKind, waker: Waker) -> u32 {
        let shard = (id.as_u64() as u32) & (SHARDS - 1);
        let key = self.shard(shard).insert(Entry {
            id,
            kind,
            waker,
            join_waker: None,
        });
        u32::try_from(key)
            .ok()
            .and_then(|key| key.checked_mul(SHARDS))
            .map(|slot| slot + shard)
            .filter(|&slot| slot != NO_SLOT)
            .expect("maniac: more than 2^32 live tasks")
    }

    /// Rule 1: the task `id` at `slot` leaves the registry (no-op for [`NO_SLOT`]).
    pub(crate) fn remove(&self, slot: u32, id: Id) {
        if slot == NO_SLOT {
            return;
        }
        let removed = {
            let mut shard = self.shard(slot % SHARDS);
            let key = (slot / SHARDS) as usize;
            match shard.get(key) {
                Some(entry) if entry.id == id => Some(shard.remove(key)),
                _ => None,
            }
        };
        // Dropped outside the lock (rule 3): dropping a waker may free the task.
        drop(removed);
    }

    /// Rule 4: keeps the waker of the join handle of task `id` at `slot`.
    pub(crate) fn register_join_waker(&self, slot: u32, id: Id, waker: &Waker) {
        if slot == NO_SLOT {
            return;
        }
        let replaced = {
            let mut shard = self.shard(slot % SHARDS);
            match shard.get_mut((slot / SHARDS) as usize) {
                Some(entry) if entry.id == id => match &entry.join_waker {
                    Some(kept) if kept.will_wake(waker) => None,
                    _ => entry.join_waker.replace(waker.clone()),
                },
                _ => None,
            }
        };
        drop(replaced); // outside the lock (rule 3)
    }

    /// Rule 4: task `id` at `slot` leaves the registry as abandoned; its join handle is woken.
    pub(crate) fn abandon(&self, slot: u32, id: Id) {
        let join_waker = {
            let mut shard = self.shard(slot % SHARDS);
            let key = (slot / SHARDS) as usize;
            match shard.get(key) {
                Some(entry) if entry.id == id => shard.remove(key).join_waker,
                _ => None,
            }
        };
        if let Some(waker) = join_waker {
            waker.wake();
        }
    }

    /// A clone of the waker of task `id` at `slot`, if it is still registered.
    pub(crate) fn waker(&self, slot: u32, id: Id) -> Option<Waker> {
        if slot == NO_SLOT {
            return None;
        }
        let shard = self.shard(slot % SHARDS);
        match shard.get((slot / SHARDS) as usize) {
            Some(entry) if entry.id == id => Some(entry.waker.clone()),
            _ => None,
        }
    }

    /// Wakes task `id` at `slot` if it is still registered.
    pub(crate) fn wake(&self, slot: u32, id: Id) {
        if let Some(waker) = self.waker(slot, id) {
            waker.wake();
        }
    }

    /// Wakes every registered async task (rule 3: clones the wakers first, wakes with no lock
    /// held).
    pub(crate) fn wake_all_async(&self) {
        for index in 0..SHARDS {
            let wakers: Vec<Waker> = self
                .shard(index)
                .iter()
                .filter(|(_, entry)| entry.kind == TaskKind::Async)
                .map(|(_, entry)| entry.waker.clone())
                .collect();
            for waker in wakers {
                waker.wake();
            }
        }
    }

    /// Number of live async tasks (locks every shard in turn: for metrics and shutdown, not hot
    /// paths).
    pub(crate) fn async_len(&self) -> usize {
        (0..SHARDS)
            .map(|index| {
                self.shard(index)
                    .iter()
                    .filter(|(_, entry)| entry.kind == TaskKind::Async)
                    .count()
            })
            .sum()
    }
}
