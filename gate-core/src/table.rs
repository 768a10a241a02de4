//! The keyed table: fixed slots, bounded probe, eviction in place.
//!
//! Why not `hashbrown`: it grows by reallocating (an allocation on the
//! decision path), has no notion of evicting a *chosen* entry when full, and
//! its control bytes plus load-factor headroom (at most 7/8 full) put a
//! 40-byte entry at about 47 bytes per tracked key at best and ~90 bytes
//! right after a resize. Here instead:
//!
//! * Each shard owns a power-of-two array of 40-byte `Entry` slots,
//!   allocated once at start. A key's hash picks two start slots (two
//!   independent parts of one 64-bit hash); the key may live only in the
//!   [`WINDOW`] slots from either (linear, wrapping within the shard), so a
//!   lookup reads at most two runs of `WINDOW * 40` = 320 contiguous bytes.
//!   Two windows instead of one raise the fill at which 1 % of new keys
//!   find every slot active (and so evict an active key) from ~57 % to
//!   ~80 % (see `examples/fill.rs` and the README).
//! * Slots never go back to empty: a new key takes the first empty slot of
//!   its first window, else of its second, else an *idle* slot of either
//!   (full bucket, not banned, no recent rejections: it carries no
//!   information), else the full-table policy applies (by default the least
//!   recently seen key of both windows is replaced). Because no slot is ever
//!   emptied, a lookup can stop at the first empty slot (see `probe`).
//! * Memory is `40 * capacity` plus one 448-byte header per shard (lock,
//!   counters): 40.03 bytes per slot at 2^20 slots and 64 shards (see the
//!   README for measured figures). All slots of all shards are one
//!   allocation (shard `i` owns a contiguous range of it), so a kernel pool
//!   that backs large allocations with large pages can do so here.
//!
//! What one decision touches, and why this layout:
//!
//! * A window is 320 contiguous bytes at any 8-byte offset: 5 or 6 cache
//!   lines, normally on one page. Before taking the shard lock the gate
//!   prefetches every line of both windows (up to 12 independent reads in
//!   flight), so a key not in cache costs about one round of memory latency
//!   (the slower of the two windows), not one per line. The prefetch
//!   address is computed from the gate's read-only fields, not the shard
//!   header, so the header's line (lock and counters, written by every
//!   decision of the shard) is first touched by the lock itself: one
//!   transfer between CPUs, not a shared fetch and then an exclusive one.
//! * A fingerprint (tag) array was considered (hashbrown/F14 style: one
//!   line of one-byte tags per window, then only the matching entry). It
//!   saves bandwidth, not latency: a hit would read the tag line and then,
//!   dependently, the entry line (two rounds of memory latency instead of
//!   one, since both windows are already fetched in parallel), and the
//!   eviction choice needs each candidate's bucket state (`tat` against
//!   `now`, ban state, `last`), which does not fit in a tag. It would pay
//!   off only with that state squeezed into the tag line too (coarse
//!   idle-after time and last-seen per slot), at 6-8 more bytes per slot,
//!   within the 48-byte budget at 93 % fill but not by much.
//!
//! "Every slot holds an active key" is therefore judged per window: the
//! full-table policy applies when all `2 * WINDOW` slots a key may use are
//! active. With a keyed hash an attacker cannot aim keys at one window.

use crate::key::{Family, Key};
use crate::time::Ticks;

/// Slots a key may occupy (probe length).
pub const WINDOW: usize = 8;

const OCCUPIED: u8 = 1;
pub(crate) const V6: u8 = 2;
pub(crate) const BANNED: u8 = 4;
/// Where the entry's `tat` units (its bucket's `Interval::shift`, 0..=12)
/// sit in `meta`: the high four bits.
const UNITS_POS: u32 = 4;
const UNITS: u8 = 0xf0;

/// One tracked key: 40 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Entry {
    /// Key bytes (network address).
    pub key: [u8; 16],
    /// Bucket state: theoretical arrival time, in units of `2^-units()`
    /// ticks (the key bucket's units when the entry was last decided; a
    /// live change may since have changed them: see `Entry::units`).
    pub tat: u64,
    /// Latest `now` seen for this key (exact ticks; orders LRU, anchors the span).
    pub last: Ticks,
    /// Low 32 bits of the span (see `ban`): ban time left, or window age, in ticks.
    span_lo: u32,
    /// Rejections in the current window.
    pub rejects: u16,
    /// `OCCUPIED | V6? | BANNED?`, and the units of `tat` in the high
    /// four bits.
    pub meta: u8,
    /// High 8 bits of the span.
    span_hi: u8,
}

/// Bytes per slot (one tracked key).
pub const ENTRY_BYTES: usize = core::mem::size_of::<Entry>();
const _: () = assert!(ENTRY_BYTES == 40);

fn family_bits(key: &Key) -> u8 {
    match key.family() {
        Family::V4 => OCCUPIED,
        Family::V6 => OCCUPIED | V6,
    }
}

impl Entry {
    pub(crate) const EMPTY: Entry = Entry {
        key: [0; 16],
        tat: 0,
        last: 0,
        span_lo: 0,
        rejects: 0,
        meta: 0,
        span_hi: 0,
    };

    /// A fresh entry for `key` seen at `now`: bucket at `tat` (full: `now`
    /// in the bucket's units) in units of `2^-shift` ticks (0..=12), no
    /// rejections.
    pub(crate) fn new(key: &Key, now: Ticks, tat: u64, shift: u32) -> Entry {
        Entry {
            key: key.bytes(),
            tat,
            last: now,
            span_lo: 0,
            rejects: 0,
            meta: family_bits(key) | ((shift as u8) << UNITS_POS),
            span_hi: 0,
        }
    }

    /// The units of `tat`: the `Interval::shift` (0..=12) of the key
    /// bucket that last wrote it. A live change that changes the key
    /// bucket's units leaves every entry as it is (no scan of the table);
    /// a decision converts the entry it touches (`Gate::decide_keyed`).
    #[inline]
    pub(crate) fn units(&self) -> u32 {
        u32::from(self.meta >> UNITS_POS)
    }

    /// Converts `tat` to units of `2^-shift` ticks (0..=12), rounding up
    /// (see `time::rescale`), and records them.
    #[inline]
    pub(crate) fn rescale(&mut self, shift: u32) {
        self.tat = crate::time::rescale(self.tat, self.units(), shift);
        self.meta = (self.meta & !UNITS) | (((shift as u8) << UNITS_POS) & UNITS);
    }

    /// The 40-bit span (see `ban`), in ticks.
    #[inline]
    pub(crate) fn span(&self) -> Ticks {
        (u64::from(self.span_hi) << 32) | u64::from(self.span_lo)
    }

    /// Sets the span, saturating at `ban::SPAN_MAX`.
    #[inline]
    pub(crate) fn set_span(&mut self, v: Ticks) {
        let v = if v > crate::ban::SPAN_MAX {
            crate::ban::SPAN_MAX
        } else {
            v
        };
        self.span_lo = v as u32;
        self.span_hi = (v >> 32) as u8;
    }

    #[inline]
    pub(crate) fn occupied(&self) -> bool {
        self.meta & OCCUPIED != 0
    }

    #[inline]
    fn holds(&self, fam: u8, bytes: &[u8; 16]) -> bool {
        self.meta & (OCCUPIED | V6) == fam && self.key == *bytes
    }
}

/// Where a key is or may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// The key is in this slot.
    Hit(usize),
    /// Not present; this slot was never used.
    Vacant(usize),
    /// Not present; this slot holds an idle key (free to evict).
    Idle(usize),
    /// Not present; every slot of the window is active; this is the least recently seen.
    Full(usize),
}

/// Looks `key` up in its two windows (starting at `starts[0]` and
/// `starts[1]` of `slots`, whose length is a power of two) and says where it
/// would go if absent: the first vacant slot of the first window, else of
/// the second, else the first idle slot of either, else the least recently
/// seen slot of both.
///
/// Why the early exit is sound: slots never become vacant again, so if the
/// first window still has a vacant slot now it had one when the key was
/// placed, and the key was then placed there (before that vacant slot).
#[inline]
pub(crate) fn probe(
    slots: &[Entry],
    starts: [usize; 2],
    key: &Key,
    is_idle: impl Fn(&Entry) -> bool,
) -> Probe {
    let mask = slots.len().wrapping_sub(1);
    let fam = family_bits(key);
    let bytes = key.bytes();
    // First the key or a vacant slot; only when both windows are full of
    // other keys, the idle test (which reads each entry's bucket state) on
    // slots already in cache.
    for start in starts {
        for k in 0..WINDOW {
            let i = start.wrapping_add(k) & mask;
            let Some(e) = slots.get(i) else { break };
            if !e.occupied() {
                return Probe::Vacant(i);
            }
            if e.holds(fam, &bytes) {
                return Probe::Hit(i);
            }
        }
    }
    evict(slots, starts, is_idle)
}

/// Where a key goes when both its windows hold other keys: the first idle
/// slot, else the least recently seen (out of line: the common decision
/// finds its key or a vacant slot).
#[inline(never)]
fn evict(slots: &[Entry], starts: [usize; 2], is_idle: impl Fn(&Entry) -> bool) -> Probe {
    let mask = slots.len().wrapping_sub(1);
    let mut lru = (starts[0] & mask, Ticks::MAX);
    for start in starts {
        for k in 0..WINDOW {
            let i = start.wrapping_add(k) & mask;
            let Some(e) = slots.get(i) else { break };
            if is_idle(e) {
                return Probe::Idle(i);
            }
            if e.last < lru.1 {
                lru = (i, e.last);
            }
        }
    }
    Probe::Full(lru.0)
}

/// Looks `key` up only (no placement).
#[inline]
pub(crate) fn find(slots: &[Entry], starts: [usize; 2], key: &Key) -> Option<usize> {
    match probe(slots, starts, key, |_| false) {
        Probe::Hit(i) => Some(i),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn k(i: u8) -> Key {
        Key::new(core::net::IpAddr::from([10, 0, 0, i]), 32, 64)
    }

    #[test]
    fn insert_find_and_stop_at_empty() {
        let mut slots = vec![Entry::EMPTY; 64];
        assert_eq!(probe(&slots, [62, 30], &k(1), |_| false), Probe::Vacant(62));
        slots[62] = Entry::new(&k(1), 5, 0, 0);
        assert_eq!(probe(&slots, [62, 30], &k(2), |_| false), Probe::Vacant(63));
        slots[63] = Entry::new(&k(2), 6, 0, 0);
        // Wraps within the shard.
        assert_eq!(probe(&slots, [62, 30], &k(3), |_| false), Probe::Vacant(0));
        assert_eq!(find(&slots, [62, 30], &k(2)), Some(63));
        assert_eq!(find(&slots, [62, 30], &k(3)), None);
    }

    #[test]
    fn full_window_prefers_idle_then_lru() {
        let mut slots = vec![Entry::EMPTY; 64];
        for (i, s) in slots.iter_mut().take(WINDOW).enumerate() {
            *s = Entry::new(&k(i as u8 + 1), 100 - i as u64, 0, 0);
        }
        // Oldest `last` is the last slot of the window.
        assert_eq!(
            probe(&slots, [0, 0], &k(99), |_| false),
            Probe::Full(WINDOW - 1)
        );
        assert_eq!(
            probe(&slots, [0, 0], &k(99), |e| e.key[3] == 3),
            Probe::Idle(2)
        );
        // A present key is found even when others are idle.
        assert_eq!(probe(&slots, [0, 0], &k(5), |_| true), Probe::Hit(4));
    }

    #[test]
    fn overflows_into_second_window_and_is_found_there() {
        let mut slots = vec![Entry::EMPTY; 64];
        for (i, s) in slots.iter_mut().take(WINDOW).enumerate() {
            *s = Entry::new(&k(i as u8 + 1), 100, 0, 0);
        }
        assert_eq!(probe(&slots, [0, 32], &k(50), |_| false), Probe::Vacant(32));
        slots[32] = Entry::new(&k(50), 100, 0, 0);
        assert_eq!(find(&slots, [0, 32], &k(50)), Some(32));
        assert_eq!(probe(&slots, [0, 32], &k(51), |_| false), Probe::Vacant(33));
        // Both windows full: least recently seen of both.
        for (i, s) in slots.iter_mut().skip(32).take(WINDOW).enumerate() {
            *s = Entry::new(&k(60 + i as u8), 200 + i as u64, 0, 0);
        }
        slots[3].last = 50;
        assert_eq!(probe(&slots, [0, 32], &k(99), |_| false), Probe::Full(3));
        slots[36].last = 10;
        assert_eq!(probe(&slots, [0, 32], &k(99), |_| false), Probe::Full(36));
    }

    #[test]
    fn ipv4_and_ipv6_with_same_bytes_differ() {
        let v4 = Key::new(core::net::IpAddr::from([1, 2, 3, 4]), 32, 64);
        let v6 = Key::new("102:304::".parse().unwrap(), 32, 64);
        assert_eq!(v4.bytes(), v6.bytes());
        let mut slots = vec![Entry::EMPTY; 64];
        slots[0] = Entry::new(&v4, 1, 0, 0);
        assert_eq!(probe(&slots, [0, 0], &v6, |_| false), Probe::Vacant(1));
    }
}
