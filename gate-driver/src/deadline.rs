//! The pended requests ordered by deadline: an indexed binary min-heap of
//! pending-table slots, allocated once for `MaxPending` slots.
//!
//! Every operation is O(log n) or better, so the timer DPC takes the next
//! due request without looking at the others, an abort removes its slot
//! from the middle, and unload empties the heap from its end in O(1) per
//! slot (no scan of the table under the lock, whatever `MaxPending` is).

use crate::pool::{NoMemory, PoolVec};

/// "Not in the heap" in `pos`.
const NONE: u32 = u32::MAX;

/// Slots ordered by due time (interrupt-time ticks).
pub struct DeadlineHeap {
    /// (due, slot), a binary min-heap on `due`.
    heap: PoolVec<(u64, u32)>,
    /// Slot -> its index in `heap`, or [`NONE`].
    pos: PoolVec<u32>,
}

impl DeadlineHeap {
    /// An empty heap for slots `0..slots`.
    pub fn new(slots: u32) -> Result<DeadlineHeap, NoMemory> {
        let n = slots as usize;
        let heap = PoolVec::with_capacity(n)?;
        let mut pos = PoolVec::with_capacity(n)?;
        for _ in 0..n {
            let _ = pos.push(NONE);
        }
        Ok(DeadlineHeap { heap, pos })
    }

    /// Slots held.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no slot is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The earliest (due, slot).
    pub fn peek(&self) -> Option<(u64, u32)> {
        self.heap.first().copied()
    }

    /// Adds `slot` due at `due`; false if the slot is out of range or
    /// already held.
    pub fn push(&mut self, slot: u32, due: u64) -> bool {
        match self.pos.get(slot as usize) {
            Some(&NONE) => {}
            _ => return false,
        }
        let i = self.heap.len();
        if self.heap.push((due, slot)).is_err() {
            return false;
        }
        self.set_pos(slot, i);
        self.sift_up(i);
        true
    }

    /// Removes and returns the earliest (due, slot).
    pub fn pop(&mut self) -> Option<(u64, u32)> {
        let top = self.peek()?;
        self.remove(top.1);
        Some(top)
    }

    /// Removes and returns the last element of the heap array (any slot:
    /// O(1), no sifting; for emptying the heap).
    pub fn pop_last(&mut self) -> Option<(u64, u32)> {
        let last = self.heap.pop()?;
        self.set_pos(last.1, NONE as usize);
        Some(last)
    }

    /// Removes `slot`; false if it was not held.
    pub fn remove(&mut self, slot: u32) -> bool {
        let i = match self.pos.get(slot as usize) {
            Some(&p) if p != NONE => p as usize,
            _ => return false,
        };
        let Some(last) = self.heap.pop() else {
            return false;
        };
        self.set_pos(slot, NONE as usize);
        if last.1 == slot {
            // It was the last element.
            return true;
        }
        if let Some(e) = self.heap.get_mut(i) {
            *e = last;
        }
        self.set_pos(last.1, i);
        self.sift_up(i);
        self.sift_down(i);
        true
    }

    fn set_pos(&mut self, slot: u32, i: usize) {
        if let Some(p) = self.pos.get_mut(slot as usize) {
            *p = u32::try_from(i).unwrap_or(NONE);
        }
    }

    fn due_at(&self, i: usize) -> u64 {
        self.heap.get(i).map_or(u64::MAX, |e| e.0)
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        if let (Some(&ea), Some(&eb)) = (self.heap.get(a), self.heap.get(b)) {
            self.set_pos(ea.1, a);
            self.set_pos(eb.1, b);
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i.saturating_sub(1)) / 2;
            if self.due_at(parent) <= self.due_at(i) {
                return;
            }
            self.swap(parent, i);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let l = i.saturating_mul(2).saturating_add(1);
            let r = l.saturating_add(1);
            let mut m = i;
            if l < n && self.due_at(l) < self.due_at(m) {
                m = l;
            }
            if r < n && self.due_at(r) < self.due_at(m) {
                m = r;
            }
            if m == i {
                return;
            }
            self.swap(i, m);
            i = m;
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::vec::Vec;

    /// A small deterministic generator (xorshift).
    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn matches_a_sorted_set_under_random_operations() {
        let n = 200u32;
        let mut h = DeadlineHeap::new(n).unwrap();
        let mut model: BTreeSet<(u64, u32)> = BTreeSet::new();
        let mut due_of: Vec<Option<u64>> = (0..n).map(|_| None).collect();
        let mut seed = 0x1234_5678_9abc_def1u64;
        for _ in 0..20_000 {
            let slot = (rng(&mut seed) % u64::from(n)) as u32;
            match rng(&mut seed) % 4 {
                0 | 1 => {
                    let due = rng(&mut seed) % 1000;
                    let ok = h.push(slot, due);
                    assert_eq!(ok, due_of[slot as usize].is_none());
                    if ok {
                        due_of[slot as usize] = Some(due);
                        model.insert((due, slot));
                    }
                }
                2 => {
                    let ok = h.remove(slot);
                    assert_eq!(ok, due_of[slot as usize].is_some());
                    if let Some(d) = due_of[slot as usize].take() {
                        model.remove(&(d, slot));
                    }
                }
                _ => {
                    let got = h.pop();
                    let want = model.iter().next().copied();
                    assert_eq!(got.map(|g| g.0), want.map(|w| w.0));
                    if let Some((d, s)) = got {
                        assert!(model.remove(&(d, s)));
                        due_of[s as usize] = None;
                    }
                }
            }
            assert_eq!(h.len(), model.len());
            assert_eq!(h.peek().map(|p| p.0), model.iter().next().map(|m| m.0));
        }
        while let Some((d, s)) = h.pop_last() {
            assert!(model.remove(&(d, s)));
        }
        assert!(model.is_empty());
    }
}
