//! Hash tables a flood churns: entries inserted and removed without end
//! while the live count stays bounded (the provider's requests, the
//! half-open table, the NFQUEUE front's held SYNs).
//!
//! std's `HashMap` (hashbrown) leaves a tombstone per removal. When the
//! tombstones have used up its spare room, it rehashes in place if it is at
//! most half full, and otherwise allocates twice the buckets. So a table
//! sized for its live count (more than half full) doubles at a steady live
//! count, seconds into a flood: the RSS step after warm-up that issue 11's
//! benchmark measured. Kept at most half full, it never does.
//!
//! [`room`] is the capacity to reserve for a known live bound; [`Room`]
//! keeps a table with no known bound at most half full as its live count
//! rises, so it grows only while the live count does (during warm-up).

/// The capacity to reserve in a churned hash table holding at most `live`
/// entries: twice the bound, so it stays at most half full.
pub const fn room(live: usize) -> usize {
    live.saturating_mul(2)
}

/// The room reserved so far for one churned table (or several that always
/// hold the same number of entries).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Room(usize);

/// The least room a table is given when it first grows (entries).
const MIN_ROOM: usize = 64;

impl Room {
    /// Call before inserting into a table that holds `len` entries: if one
    /// more would make it more than half full of the room reserved so far,
    /// returns how many to `reserve` (the room doubles), else None.
    pub fn before_insert(&mut self, len: usize) -> Option<usize> {
        let need = room(len.saturating_add(1));
        if need <= self.0 {
            return None;
        }
        self.0 = need.max(room(self.0)).max(MIN_ROOM);
        Some(self.0.saturating_sub(len))
    }

    /// Notes that the table was given room for `n` entries by other means
    /// (sized for a known bound), so a later growth starts from there.
    pub fn reserved(&mut self, n: usize) {
        self.0 = self.0.max(n);
    }
}

#[cfg(test)]
mod tests {
    use super::{room, Room};
    use std::collections::HashMap;

    /// Inserts and removes `rounds * live` keys, `live` present at a time
    /// (a flood at a full table), through `insert`; returns the capacity
    /// with `live` entries before the churn and after it.
    fn churn(
        m: &mut HashMap<u64, [u64; 4]>,
        live: u64,
        rounds: u64,
        mut insert: impl FnMut(&mut HashMap<u64, [u64; 4]>, u64),
    ) -> (usize, usize) {
        for k in 0..live {
            insert(m, k);
        }
        let before = m.capacity();
        for k in live..live * rounds {
            m.remove(&(k - live));
            insert(m, k);
        }
        (before, m.capacity())
    }

    fn plain(m: &mut HashMap<u64, [u64; 4]>, k: u64) {
        m.insert(k, [k; 4]);
    }

    // (capacity() is entries plus spare room: tombstones lower it until the
    // in-place rehash; only a new allocation raises it.)

    /// The kind of fault: a churned table sized for its live bound grows
    /// at a steady live count; one sized with `room` never does.
    #[test]
    fn a_table_sized_with_room_never_grows_under_churn() {
        for live in [1000u64, 4096, 60_000] {
            let mut m = HashMap::with_capacity(live as usize);
            let (b, a) = churn(&mut m, live, 20, plain);
            assert!(
                a > b,
                "live {live}: sized for the live count only, churn grows it ({b} -> {a}): \
                 the cause this sizing avoids"
            );
            let mut m = HashMap::with_capacity(room(live as usize));
            let (b, a) = churn(&mut m, live, 20, plain);
            assert!(
                a <= b,
                "live {live}: sized with room, never grows ({b} -> {a})"
            );
        }
    }

    /// A table grown through `Room` as its live count rises never grows
    /// once the live count is steady, whatever that count is.
    #[test]
    fn a_table_grown_through_room_grows_only_with_its_live_count() {
        for live in [1u64, 63, 64, 65, 1000, 4096, 5000, 60_000] {
            let mut r = Room::default();
            let mut m = HashMap::new();
            let (b, a) = churn(&mut m, live, 20, |m, k| {
                if let Some(n) = r.before_insert(m.len()) {
                    m.reserve(n);
                }
                m.insert(k, [k; 4]);
            });
            assert!(
                a <= b,
                "live {live}: grew at a steady live count ({b} -> {a})"
            );
            assert!(
                b >= room(live as usize) && b <= 4 * room(live as usize).max(64),
                "live {live}: capacity {b}"
            );
        }
    }
}
