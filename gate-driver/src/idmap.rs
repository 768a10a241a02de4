//! Pended requests by inspect ID: an open-addressing hash index from the
//! CONTENTS of a WSK_INSPECT_ID to its pending-table slot, allocated once
//! (twice as many buckets as slots, so probes stay short).
//!
//! Linear probing with backward-shift deletion (no tombstones); the hash
//! is keyed per start. WskAbortEvent finds its request in O(1) expected
//! time instead of searching the table under its lock.

use gate_ksys::WSK_INSPECT_ID;

use crate::pool::{NoMemory, PoolVec};

/// An empty bucket.
const EMPTY: u32 = u32::MAX;

/// Inspect ID -> slot.
pub struct IdMap {
    /// Slot per bucket, or [`EMPTY`]; the length is a power of two.
    buckets: PoolVec<u32>,
    key: u64,
}

impl IdMap {
    /// An index for up to `slots` entries; `key` seeds the hash.
    pub fn new(slots: u32, key: u64) -> Result<IdMap, NoMemory> {
        let n = (slots as usize)
            .saturating_mul(2)
            .max(2)
            .checked_next_power_of_two()
            .ok_or(NoMemory { bytes: usize::MAX })?;
        let mut buckets = PoolVec::with_capacity(n)?;
        for _ in 0..n {
            let _ = buckets.push(EMPTY);
        }
        Ok(IdMap { buckets, key })
    }

    fn mask(&self) -> usize {
        self.buckets.len().saturating_sub(1)
    }

    fn home(&self, id: &WSK_INSPECT_ID) -> usize {
        // splitmix64's finaliser over both fields and the key.
        let mut x = (id.Key as u64) ^ u64::from(id.SerialNumber).rotate_left(32) ^ self.key;
        x ^= x >> 30;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 27;
        x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        (x as usize) & self.mask()
    }

    /// The slot of `id`; `id_of(slot)` gives each held slot's ID.
    pub fn find(&self, id: &WSK_INSPECT_ID, id_of: impl Fn(u32) -> WSK_INSPECT_ID) -> Option<u32> {
        let mask = self.mask();
        let mut i = self.home(id);
        for _ in 0..self.buckets.len() {
            let s = *self.buckets.get(i)?;
            if s == EMPTY {
                return None;
            }
            if id_of(s) == *id {
                return Some(s);
            }
            i = i.wrapping_add(1) & mask;
        }
        None
    }

    /// Adds `slot` under `id` (the caller keeps IDs unique); false if full.
    pub fn insert(&mut self, id: &WSK_INSPECT_ID, slot: u32) -> bool {
        let mask = self.mask();
        let mut i = self.home(id);
        for _ in 0..self.buckets.len() {
            match self.buckets.get_mut(i) {
                Some(b) if *b == EMPTY => {
                    *b = slot;
                    return true;
                }
                Some(_) => i = i.wrapping_add(1) & mask,
                None => return false,
            }
        }
        false
    }

    /// Removes `id`; returns its slot.
    pub fn remove(
        &mut self,
        id: &WSK_INSPECT_ID,
        id_of: impl Fn(u32) -> WSK_INSPECT_ID,
    ) -> Option<u32> {
        let mask = self.mask();
        let mut i = self.home(id);
        let mut found = None;
        for _ in 0..self.buckets.len() {
            let s = *self.buckets.get(i)?;
            if s == EMPTY {
                return None;
            }
            if id_of(s) == *id {
                found = Some(s);
                break;
            }
            i = i.wrapping_add(1) & mask;
        }
        let slot = found?;
        // Backward-shift deletion: move later members of the run into the
        // hole when their home does not lie cyclically in (hole, j].
        let mut hole = i;
        let mut j = i;
        for _ in 0..self.buckets.len() {
            j = j.wrapping_add(1) & mask;
            let s = *self.buckets.get(j)?;
            if s == EMPTY {
                break;
            }
            let h = self.home(&id_of(s));
            let dist_home = j.wrapping_sub(h) & mask;
            let dist_hole = j.wrapping_sub(hole) & mask;
            if dist_home >= dist_hole {
                if let Some(b) = self.buckets.get_mut(hole) {
                    *b = s;
                }
                hole = j;
            }
        }
        if let Some(b) = self.buckets.get_mut(hole) {
            *b = EMPTY;
        }
        Some(slot)
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
    use std::collections::HashSet;
    use std::vec::Vec;

    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn matches_a_hash_map_under_random_operations() {
        let n = 64u32;
        // Few distinct keys and a tiny key space: long runs and wraps.
        let mut m = IdMap::new(n, 7).unwrap();
        let ids: Vec<WSK_INSPECT_ID> = (0..n)
            .map(|s| WSK_INSPECT_ID {
                Key: (s as usize % 5) * 8,
                SerialNumber: s / 5,
            })
            .collect();
        let id_of = |s: u32| ids[s as usize];
        let mut model: HashSet<u32> = HashSet::new();
        let mut seed = 0xdead_beef_1234_5678u64;
        for _ in 0..10_000 {
            let s = (rng(&mut seed) % u64::from(n)) as u32;
            if rng(&mut seed).is_multiple_of(2) {
                if model.insert(s) {
                    assert!(m.insert(&ids[s as usize], s));
                }
            } else {
                let got = m.remove(&ids[s as usize], id_of);
                assert_eq!(got, model.remove(&s).then_some(s));
            }
            for t in 0..n {
                let want = model.contains(&t).then_some(t);
                assert_eq!(m.find(&ids[t as usize], id_of), want);
            }
        }
    }
}
