//! A hierarchical timer wheel: where pending timers wait, in ticks (`driver::TICK`).
//!
//! ## Layout
//! [`LEVELS`] levels of [`SLOTS`] slots each. A slot of level `L` spans `64^L` ticks, so level 0
//! holds single ticks and level 5 spans 64^6 ticks (79 days of 100 µs ticks; longer timers wait
//! in the overflow, rule 3). `elapsed` is the last tick the
//! wheel has processed.
//!
//! ## Rules
//! 1. A timer due at tick `d > elapsed` sits at the level of the highest 6-bit group in which `d`
//!    and `elapsed` differ, in the slot given by `d`'s bits of that group. So every timer of
//!    level `L` is due within the `64^(L+1)`-tick span that `elapsed` is in, and its slot is at
//!    or after `elapsed`'s slot at that level: no slot ever holds timers of two rotations.
//! 2. Advancing to `now` repeatedly takes the earliest occupied slot whose span has begun
//!    (`next_expiration`), sets `elapsed` to that slot's start (skipping only empty slots), and
//!    empties it: timers that are due fire, the others go back in (rule 1 puts them at a lower
//!    level: they "cascade"). Then `elapsed = now`.
//! 3. A timer due beyond the top level's current span waits in an `overflow` list, outside the
//!    levels. When `elapsed` reaches the next span, the overflow is inserted again: what now fits
//!    goes into the levels, the rest waits for a later span.
//! 4. A timer due at or before `elapsed` when inserted is not stored: the caller fires it at once.
//! 5. Timers due at the same tick fire in the order they were inserted (each has a sequence
//!    number; a batch is sorted before its wakers run).
//! 6. A fired timer stays in the slab, unlinked, until its owner removes it: its key is not reused
//!    while the owner may still ask about it.
//!
//! Insert and cancel are O(1): each slot is a doubly linked list threaded through the slab of
//! entries. The per-level `occupied` bitmaps find the next slot without scanning.

use std::task::Waker;

use slab::Slab;

/// Levels of the wheel.
pub(crate) const LEVELS: usize = 6;
/// Slots per level (64: one 6-bit group of the tick count per level).
const SLOTS: usize = 64;
const SLOT_BITS: u32 = 6;
/// Ticks the wheel can hold (rule 3).
const RANGE: u64 = 1 << (SLOT_BITS as usize * LEVELS);

/// The key of a timer in the wheel.
pub(crate) type Key = usize;

#[derive(Debug)]
struct Entry {
    /// The tick it is due at.
    deadline: u64,
    /// Insertion order, for rule 5.
    seq: u64,
    waker: Option<Waker>,
    /// Where it is linked (`None`: fired, in no list; rule 6).
    place: Option<(usize, usize)>,
    prev: Option<Key>,
    next: Option<Key>,
}

#[derive(Clone, Copy, Debug, Default)]
struct List {
    head: Option<Key>,
    tail: Option<Key>,
}

/// The wheel (module doc).
#[derive(Debug)]
pub(crate) struct Wheel {
    elapsed: u64,
    next_seq: u64,
    slots: Box<[[List; SLOTS]; LEVELS]>,
    occupied: [u64; LEVELS],
    /// Rule 3 (its entries' `place` is `(LEVELS, 0)`).
    overflow: List,
    entries: Slab<Entry>,
    /// Timers linked in the wheel (the slab also holds fired, unremoved ones).
    pending: usize,
}

/// What an insert found (rule 4).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// Pending in the wheel under this key.
    Pending(Key),
    /// Already due: not stored.
    Due,
}

impl Wheel {
    pub(crate) fn new() -> Wheel {
        Wheel {
            elapsed: 0,
            next_seq: 0,
            slots: Box::new([[List::default(); SLOTS]; LEVELS]),
            occupied: [0; LEVELS],
            overflow: List::default(),
            entries: Slab::new(),
            pending: 0,
        }
    }

    /// Number of pending (not yet fired) timers.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// Adds a timer due at tick `deadline` (rules 1, 3 and 4).
    pub(crate) fn insert(&mut self, deadline: u64, waker: Waker) -> Inserted {
        if deadline <= self.elapsed {
            return Inserted::Due;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let key = self.entries.insert(Entry {
            deadline,
            seq,
            waker: Some(waker),
            place: None,
            prev: None,
            next: None,
        });
        self.link(key);
        self.pending += 1;
        Inserted::Pending(key)
    }

    /// Whether the timer `key` is still pending, and if so, makes `waker` the one it wakes.
    pub(crate) fn is_pending(&mut self, key: Key, waker: &Waker) -> bool {
        let entry = &mut self.entries[key];
        if entry.place.is_none() {
            return false;
        }
        if !entry.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            entry.waker = Some(waker.clone());
        }
        true
    }

    /// Removes the timer `key`, fired or not (cancelling it if it was pending). Returns its waker,
    /// to be dropped outside any lock.
    pub(crate) fn remove(&mut self, key: Key) -> Option<Waker> {
        if self.entries[key].place.is_some() {
            self.unlink(key);
            self.pending -= 1;
        }
        self.entries.remove(key).waker
    }

    /// The tick at which the earliest occupied slot begins, if any timer is pending. The driver
    /// must advance no later than then.
    pub(crate) fn next_expiration(&self) -> Option<u64> {
        (0..LEVELS)
            .filter_map(|level| self.next_slot(level).map(|(_, start)| start))
            .chain(self.next_span())
            .min()
    }

    /// Rule 3: the first tick of the next top-level span, if the overflow holds timers.
    fn next_span(&self) -> Option<u64> {
        self.overflow.head.map(|_| (self.elapsed | (RANGE - 1)) + 1)
    }

    /// The first occupied slot of `level` at or after `elapsed`'s, and the tick it begins at.
    fn next_slot(&self, level: usize) -> Option<(usize, u64)> {
        let shift = SLOT_BITS * level as u32;
        let position = ((self.elapsed >> shift) as usize) & (SLOTS - 1);
        // Rule 1: no occupied slot lies before `position`.
        let ahead = self.occupied[level] >> position;
        if ahead == 0 {
            return None;
        }
        let slot = position + ahead.trailing_zeros() as usize;
        let span_start = self.elapsed & !((1u64 << (shift + SLOT_BITS)) - 1);
        Some((slot, span_start + ((slot as u64) << shift)))
    }

    /// Rule 2: processes every tick up to `now`, pushing the wakers of the timers that fire, in
    /// rule-5 order, onto `fired`.
    pub(crate) fn advance(&mut self, now: u64, fired: &mut Vec<Waker>) {
        let mut batch: Vec<(u64, u64, Waker)> = Vec::new();
        loop {
            let next = (0..LEVELS)
                .filter_map(|level| {
                    self.next_slot(level)
                        .map(|(slot, start)| (start, level, slot))
                })
                .chain(self.next_span().map(|start| (start, LEVELS, 0)))
                .min();
            let Some((start, level, slot)) = next.filter(|&(start, ..)| start <= now) else {
                break;
            };
            self.elapsed = self.elapsed.max(start);
            let mut cursor = self.take_slot(level, slot);
            while let Some(key) = cursor {
                let entry = &mut self.entries[key];
                cursor = entry.next;
                entry.prev = None;
                entry.next = None;
                entry.place = None;
                if entry.deadline <= self.elapsed {
                    // Rule 6: stays in the slab, unlinked, for its owner to remove.
                    self.pending -= 1;
                    if let Some(waker) = entry.waker.take() {
                        batch.push((entry.deadline, entry.seq, waker));
                    }
                } else {
                    self.link(key); // cascades (rule 2) or is still beyond range (rule 3)
                }
            }
        }
        self.elapsed = self.elapsed.max(now);
        batch.sort_unstable_by_key(|&(deadline, seq, _)| (deadline, seq));
        fired.extend(batch.into_iter().map(|(_, _, waker)| waker));
    }

    /// Rules 1 and 3: links `key` into the slot its deadline belongs to.
    fn link(&mut self, key: Key) {
        let deadline = self.entries[key].deadline;
        let (level, slot) = if deadline > self.elapsed | (RANGE - 1) {
            (LEVELS, 0) // rule 3
        } else {
            let differing = (deadline ^ self.elapsed) | (SLOTS as u64 - 1);
            let level = ((63 - differing.leading_zeros()) / SLOT_BITS) as usize;
            let slot = ((deadline >> (SLOT_BITS * level as u32)) as usize) & (SLOTS - 1);
            self.occupied[level] |= 1 << slot;
            (level, slot)
        };
        let list = self.list(level, slot);
        let previous_tail = list.tail.replace(key);
        if list.head.is_none() {
            list.head = Some(key);
        }
        let entry = &mut self.entries[key];
        entry.place = Some((level, slot));
        entry.prev = previous_tail;
        entry.next = None;
        if let Some(tail) = previous_tail {
            self.entries[tail].next = Some(key);
        }
    }

    fn unlink(&mut self, key: Key) {
        let entry = &mut self.entries[key];
        let Some((level, slot)) = entry.place.take() else {
            return;
        };
        let (prev, next) = (entry.prev.take(), entry.next.take());
        match prev {
            Some(prev) => self.entries[prev].next = next,
            None => self.list(level, slot).head = next,
        }
        match next {
            Some(next) => self.entries[next].prev = prev,
            None => self.list(level, slot).tail = prev,
        }
        if level < LEVELS && self.slots[level][slot].head.is_none() {
            self.occupied[level] &= !(1 << slot);
        }
    }

    /// The list of a slot, or the overflow (`level == LEVELS`).
    fn list(&mut self, level: usize, slot: usize) -> &mut List {
        match level {
            LEVELS => &mut self.overflow,
            _ => &mut self.slots[level][slot],
        }
    }

    /// Empties a slot, returning the head of its former list.
    fn take_slot(&mut self, level: usize, slot: usize) -> Option<Key> {
        if level < LEVELS {
            self.occupied[level] &= !(1 << slot);
        }
        std::mem::take(self.list(level, slot)).head
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// A waker that records, in a shared log, the order in which timers fired.
    struct Recorder {
        name: usize,
        log: Arc<std::sync::Mutex<Vec<usize>>>,
        wakes: AtomicUsize,
    }

    impl Wake for Recorder {
        fn wake(self: Arc<Self>) {
            self.wakes.fetch_add(1, Ordering::Relaxed);
            self.log.lock().unwrap().push(self.name);
        }
    }

    fn recorder(name: usize, log: &Arc<std::sync::Mutex<Vec<usize>>>) -> Waker {
        Waker::from(Arc::new(Recorder {
            name,
            log: log.clone(),
            wakes: AtomicUsize::new(0),
        }))
    }

    fn fire(wheel: &mut Wheel, now: u64) {
        let mut fired = Vec::new();
        wheel.advance(now, &mut fired);
        fired.into_iter().for_each(Waker::wake);
    }

    #[test]
    fn fires_each_timer_at_its_tick_not_before() {
        let log = Arc::default();
        let mut wheel = Wheel::new();
        let deadlines = [
            1u64,
            2,
            63,
            64,
            65,
            4095,
            4096,
            4097,
            300_000,
            262_144 * 64 + 7,
        ];
        for (name, &deadline) in deadlines.iter().enumerate() {
            assert!(matches!(
                wheel.insert(deadline, recorder(name, &log)),
                Inserted::Pending(_)
            ));
        }
        for (name, &deadline) in deadlines.iter().enumerate() {
            fire(&mut wheel, deadline - 1);
            assert!(
                !log.lock().unwrap().contains(&name),
                "timer due at {deadline} fired early"
            );
            fire(&mut wheel, deadline);
            assert_eq!(log.lock().unwrap().last(), Some(&name), "due at {deadline}");
        }
        assert_eq!(wheel.pending(), 0);
        assert_eq!(wheel.next_expiration(), None);
    }

    #[test]
    fn a_long_jump_fires_everything_due_in_deadline_order() {
        let log = Arc::default();
        let mut wheel = Wheel::new();
        // Inserted out of order, spread over several levels.
        let deadlines = [5000u64, 3, 70, 1_000_000, 64, 4100];
        for (name, &deadline) in deadlines.iter().enumerate() {
            let _ = wheel.insert(deadline, recorder(name, &log));
        }
        fire(&mut wheel, 2_000_000);
        let mut expected: Vec<usize> = (0..deadlines.len()).collect();
        expected.sort_by_key(|&name| deadlines[name]);
        assert_eq!(*log.lock().unwrap(), expected);
    }

    #[test]
    fn equal_deadlines_fire_in_insertion_order_even_after_cascading() {
        let log = Arc::default();
        let mut wheel = Wheel::new();
        // The first goes in while the deadline is far (a high level), the second once it is
        // near (level 0): rule 5 still orders them by insertion.
        let _ = wheel.insert(10_000, recorder(0, &log));
        fire(&mut wheel, 9_990);
        let _ = wheel.insert(10_000, recorder(1, &log));
        let _ = wheel.insert(10_000, recorder(2, &log));
        fire(&mut wheel, 10_000);
        assert_eq!(*log.lock().unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn cancelled_timers_never_fire() {
        let log = Arc::default();
        let mut wheel = Wheel::new();
        let Inserted::Pending(cancelled) = wheel.insert(100, recorder(0, &log)) else {
            panic!("pending expected");
        };
        let Inserted::Pending(kept) = wheel.insert(100, recorder(1, &log)) else {
            panic!("pending expected");
        };
        assert!(wheel.remove(cancelled).is_some());
        fire(&mut wheel, 1_000);
        assert_eq!(*log.lock().unwrap(), vec![1]);
        // Rule 6: the fired timer's key is still its own until removed.
        assert!(!wheel.is_pending(kept, Waker::noop()));
        let Inserted::Pending(newer) = wheel.insert(2_000, recorder(2, &log)) else {
            panic!("pending expected");
        };
        assert_ne!(newer, kept, "a fired, unremoved timer's key was reused");
        assert!(
            wheel.remove(kept).is_none(),
            "its waker was taken when it fired"
        );
    }

    #[test]
    fn due_timers_are_not_stored() {
        let log = Arc::default();
        let mut wheel = Wheel::new();
        fire(&mut wheel, 50);
        assert_eq!(wheel.insert(50, recorder(0, &log)), Inserted::Due);
        assert_eq!(wheel.insert(10, recorder(0, &log)), Inserted::Due);
        assert_eq!(wheel.pending(), 0);
    }

    #[test]
    fn timers_beyond_the_range_fire_on_time() {
        let log = Arc::default();
        let mut wheel = Wheel::new();
        let far = RANGE * 3 + 12_345;
        let _ = wheel.insert(far, recorder(0, &log));
        fire(&mut wheel, RANGE * 2);
        assert!(log.lock().unwrap().is_empty());
        fire(&mut wheel, far - 1);
        assert!(log.lock().unwrap().is_empty());
        fire(&mut wheel, far);
        assert_eq!(*log.lock().unwrap(), vec![0]);
    }

    #[test]
    fn next_expiration_is_never_after_the_earliest_deadline() {
        let mut wheel = Wheel::new();
        let log = Arc::default();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut deadlines = Vec::new();
        for name in 0..2_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let deadline = 1 + rng % 5_000_000;
            deadlines.push(deadline);
            let _ = wheel.insert(deadline, recorder(name, &log));
        }
        deadlines.sort_unstable();
        let mut fired_so_far = 0;
        while let Some(next) = wheel.next_expiration() {
            let earliest = deadlines[fired_so_far];
            assert!(
                next <= earliest,
                "next expiration {next} after deadline {earliest}"
            );
            fire(&mut wheel, next);
            fired_so_far = log.lock().unwrap().len();
        }
        assert_eq!(fired_so_far, deadlines.len());
    }

    #[test]
    fn a_million_pending_timers() {
        let mut wheel = Wheel::new();
        let waker = Waker::noop().clone();
        let keys: Vec<Key> = (0..1_000_000u64)
            .map(|i| match wheel.insert(1 + i % 100_000, waker.clone()) {
                Inserted::Pending(key) => key,
                Inserted::Due => unreachable!(),
            })
            .collect();
        assert_eq!(wheel.pending(), 1_000_000);
        for key in keys.iter().step_by(2) {
            wheel.remove(*key);
        }
        let mut fired = Vec::new();
        wheel.advance(100_000, &mut fired);
        assert_eq!(fired.len(), 500_000);
        assert_eq!(wheel.pending(), 0);
    }
}
