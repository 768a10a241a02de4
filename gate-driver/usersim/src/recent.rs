//! Bounded memory for the simulation's history: a [`Ring`] keeps the most
//! recent items of a log (lines, violations, events) with a count of all of
//! them, and a [`RecentSet`] remembers the most recent keys of a set (freed
//! addresses) so "used after free" is still detected for recent frees.
//!
//! Every record the simulation keeps per SYN, per connection or per call
//! goes through one of these (or is retired by [`crate::wsk`]'s history), so
//! a run of any length holds memory proportional to its windows, not to its
//! traffic.

use crate::FastSet as HashSet;
use std::collections::VecDeque;
use std::hash::Hash;

/// The most recent `limit` items pushed, and how many were pushed in all.
#[derive(Debug)]
pub struct Ring<T> {
    items: VecDeque<T>,
    limit: usize,
    total: u64,
}

impl<T> Ring<T> {
    /// An empty ring keeping at most `limit` items (0 keeps none, only the count).
    pub const fn new(limit: usize) -> Self {
        Ring {
            items: VecDeque::new(),
            limit,
            total: 0,
        }
    }

    /// Appends `item`, evicting the oldest one when full.
    pub fn push(&mut self, item: T) {
        self.total += 1;
        if self.limit == 0 {
            return;
        }
        while self.items.len() >= self.limit {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    /// Items pushed since the last [`Ring::clear`] (kept or evicted).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Items pushed but no longer kept.
    pub fn evicted(&self) -> u64 {
        self.total - self.items.len() as u64
    }

    /// The kept items, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The window size.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Changes the window size (evicting the oldest items beyond it).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
        while self.items.len() > limit {
            self.items.pop_front();
        }
    }

    /// Removes and returns the kept items (the total is kept).
    pub fn drain_all(&mut self) -> Vec<T> {
        self.items.drain(..).collect()
    }

    /// Keeps only the items `keep` accepts; returns the others.
    pub fn extract(&mut self, mut take: impl FnMut(&T) -> bool) -> Vec<T> {
        let (out, keep): (Vec<T>, Vec<T>) = self.items.drain(..).partition(|i| take(i));
        self.items = keep.into();
        out
    }

    /// Forgets items and count.
    pub fn clear(&mut self) {
        self.items.clear();
        self.total = 0;
    }
}

impl<T: Clone> Ring<T> {
    /// A copy of the kept items, oldest first.
    pub fn to_vec(&self) -> Vec<T> {
        self.items.iter().cloned().collect()
    }
}

/// A set that remembers only its `limit` most recently inserted keys.
#[derive(Debug)]
pub struct RecentSet<T: Hash + Eq + Copy> {
    set: HashSet<T>,
    order: VecDeque<T>,
    limit: usize,
}

impl<T: Hash + Eq + Copy> RecentSet<T> {
    pub fn new(limit: usize) -> Self {
        RecentSet {
            set: HashSet::default(),
            order: VecDeque::new(),
            limit,
        }
    }

    /// Inserts `k`, forgetting the oldest key when full.
    pub fn insert(&mut self, k: T) {
        if self.limit == 0 {
            return;
        }
        while self.order.len() >= self.limit {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(k);
        self.set.insert(k);
    }

    /// Forgets `k` (its slot in the order is reclaimed when it comes up).
    pub fn remove(&mut self, k: &T) {
        self.set.remove(k);
    }

    pub fn contains(&self, k: &T) -> bool {
        self.set.contains(k)
    }

    /// Keys remembered (at most the limit).
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

impl<T: Hash + Eq + Copy> Default for RecentSet<T> {
    fn default() -> Self {
        Self::new(FREED_LIMIT)
    }
}

/// Freed addresses remembered for double-free / use-after-free detection.
pub const FREED_LIMIT: usize = 65_536;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_window_and_counts_all() {
        let mut r = Ring::new(3);
        for i in 0..10 {
            r.push(i);
        }
        assert_eq!(r.to_vec(), vec![7, 8, 9]);
        assert_eq!((r.total(), r.evicted()), (10, 7));
        r.set_limit(1);
        assert_eq!(r.to_vec(), vec![9]);
        let mut z = Ring::new(0);
        z.push(1);
        assert_eq!((z.len(), z.total()), (0, 1));
    }

    #[test]
    fn recent_set_is_bounded_and_forgets_the_oldest() {
        let mut s = RecentSet::new(4);
        for i in 0..100u32 {
            s.insert(i);
            assert!(s.len() <= 4);
        }
        assert!(s.contains(&99) && s.contains(&96) && !s.contains(&95));
        s.remove(&99);
        assert!(!s.contains(&99));
        // Re-inserting after a remove does not grow past the limit.
        for _ in 0..10 {
            s.insert(7);
            s.remove(&7);
        }
        assert!(s.len() <= 4 && s.order.len() <= 4);
    }
}
