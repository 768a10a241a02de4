//! Pend-with-delay: a budget of outstanding pends and their tickets.
//!
//! When a key is out of tokens but its next token is free within
//! `max_delay_ms`, and fewer than `max_pending` pends are outstanding, the
//! decision is `Pend { at }` (nginx's `burst` + `delay`): the token is
//! reserved at once and the caller accepts at `at`, then calls
//! `pend_done(ticket)`; if it gives up (the client went away, shutdown) it
//! calls `pend_abort(ticket)`. A ticket is a slot index plus a generation,
//! so a ticket completed twice, or forged, is refused (`StaleTicket`)
//! instead of freeing someone else's pend.
//!
//! An abort gives back only what no later decision depends on (the rule of
//! Go's `x/time/rate` for a cancelled reservation): each slot remembers the
//! `tat` its reservation set in the key's bucket and in the global bucket,
//! and the token goes back to a bucket only if its `tat` is still that one
//! (no take since, so nothing was computed from the reservation) and the
//! pend's time has not passed (see `Gate::pend_abort`). Otherwise nothing
//! goes back: an abort never mints a token.
//!
//! Observe mode holds no connection, so no ticket is ever completed: each
//! would-be pend is instead recorded as its accept time `at` in a min-heap
//! of `max_pending` entries, and counts against the budget until `at`, as
//! if the caller had called `pend_done` at exactly `at` (before deciding on
//! any SYN stamped `at` or later). Whether the budget has room is exact in
//! O(log n): there is room when the heap is not full or its earliest entry
//! has come due (it is then replaced).
//!
//! Slots are preallocated (`max_pending` of them) with a free stack, behind
//! their own lock, taken only on the pend paths (never while holding it is a
//! shard lock acquired, so the lock order is always shard, then pend).

use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::key::Key;
use crate::lock::RawLock;
use crate::time::Ticks;

/// Identifies one outstanding pend. Small and `Copy`; `to_u64`/`from_u64`
/// let the driver keep it in a pointer-sized field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PendTicket {
    slot: u32,
    generation: u32,
}

impl PendTicket {
    /// As one `u64` (generation high, slot low).
    pub const fn to_u64(self) -> u64 {
        ((self.generation as u64) << 32) | self.slot as u64
    }

    /// Back from [`PendTicket::to_u64`].
    pub const fn from_u64(v: u64) -> PendTicket {
        PendTicket {
            slot: v as u32,
            generation: (v >> 32) as u32,
        }
    }
}

/// `pend_done`/`pend_abort` with a ticket that is not outstanding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleTicket(pub PendTicket);

impl core::fmt::Display for StaleTicket {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "pend ticket {:#x} is not outstanding", self.0.to_u64())
    }
}

/// One bucket's part of a reservation: the take moved the bucket's `tat`
/// from `was` to `set`, both in units of `2^-units` ticks. A give back
/// restores `was` if the bucket is still at `set` in the same units: it
/// depends neither on the parameters in force at the abort (a live change
/// may have changed the interval or the units since) nor on rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Taken {
    pub set: u64,
    pub was: u64,
    pub units: u32,
}

/// What a pend reserved, kept until it is done or aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reservation {
    /// Whose token it is.
    pub key: Key,
    /// When the caller accepts (ticks).
    pub at: Ticks,
    /// The key bucket's take.
    pub key_tat: Taken,
    /// The global bucket's take, if a global limit is on.
    pub global_tat: Option<Taken>,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    res: Reservation,
    generation: u32,
    busy: bool,
}

/// Bytes per pend slot (slot, its free-stack entry, its observe-heap entry).
pub(crate) const PEND_SLOT_BYTES: usize =
    core::mem::size_of::<Slot>() + core::mem::size_of::<u32>() + core::mem::size_of::<Ticks>();

struct Inner {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Observe mode: accept times of would-be pends, a binary min-heap of
    /// at most `budget` entries.
    observed: Vec<Ticks>,
    /// `max_pending`.
    budget: usize,
}

/// Why a pend was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `max_pending` pends are outstanding.
    Budget,
    /// The global bucket had no token.
    Global,
}

/// The pend slots.
pub(crate) struct PendSlots<L: RawLock> {
    lock: L,
    inner: UnsafeCell<Inner>,
    outstanding: AtomicU64,
}

// SAFETY: `inner` is only accessed while `lock` is held (see `with`), and
// `RawLock` guarantees mutual exclusion; the other field is atomic.
unsafe impl<L: RawLock> Sync for PendSlots<L> {}
// SAFETY: nothing in PendSlots is tied to a thread; `L: Send` by the trait bound.
unsafe impl<L: RawLock> Send for PendSlots<L> {}

/// Allocation failed while building the slots.
#[derive(Debug)]
pub(crate) struct PendAllocError;

impl<L: RawLock> PendSlots<L> {
    pub(crate) fn new(n: u32, filler: Key) -> Result<PendSlots<L>, PendAllocError> {
        let n_us = n as usize;
        let mut slots = Vec::new();
        slots.try_reserve_exact(n_us).map_err(|_| PendAllocError)?;
        slots.resize(
            n_us,
            Slot {
                res: Reservation {
                    key: filler,
                    at: 0,
                    key_tat: Taken {
                        set: 0,
                        was: 0,
                        units: 0,
                    },
                    global_tat: None,
                },
                generation: 0,
                busy: false,
            },
        );
        let mut free = Vec::new();
        free.try_reserve_exact(n_us).map_err(|_| PendAllocError)?;
        // Pop order: slot 0 first.
        free.extend((0..n).rev());
        let mut observed = Vec::new();
        observed
            .try_reserve_exact(n_us)
            .map_err(|_| PendAllocError)?;
        Ok(PendSlots {
            lock: L::new(),
            inner: UnsafeCell::new(Inner {
                slots,
                free,
                observed,
                budget: n_us,
            }),
            outstanding: AtomicU64::new(0),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let st = self.lock.lock();
        // SAFETY: we hold `lock`, which guards every access to `inner`, and
        // the reference does not outlive this call.
        let r = f(unsafe { &mut *self.inner.get() });
        // SAFETY: we hold the lock, acquired just above with state `st`.
        unsafe { self.lock.unlock(st) };
        r
    }

    /// Reserves a pend slot for `res`, then (budget granted) calls `global`,
    /// which takes the global token and returns the `tat` it set (`Ok(None)`
    /// with no global limit) or refuses. The same order and outcome as
    /// [`Self::observe`].
    pub(crate) fn take(
        &self,
        mut res: Reservation,
        global: impl FnOnce() -> Result<Option<Taken>, ()>,
    ) -> Result<PendTicket, Refused> {
        let t = self.with(|inner| {
            let Some(&i) = inner.free.last() else {
                return Err(Refused::Budget);
            };
            res.global_tat = global().map_err(|_| Refused::Global)?;
            let s = inner.slots.get_mut(i as usize).ok_or(Refused::Budget)?;
            inner.free.pop();
            s.busy = true;
            s.res = res;
            Ok(PendTicket {
                slot: i,
                generation: s.generation,
            })
        });
        if t.is_ok() {
            self.outstanding.fetch_add(1, Ordering::Relaxed);
        }
        t
    }

    /// Observe mode: counts a would-be pend accepted at `at`, decided at
    /// `now`, against the budget (pends whose `at <= now` are over), then
    /// calls `global` as [`Self::take`] does. O(log max_pending).
    pub(crate) fn observe(
        &self,
        at: Ticks,
        now: Ticks,
        global: impl FnOnce() -> Result<Option<Taken>, ()>,
    ) -> Result<(), Refused> {
        self.with(|inner| {
            let h = &mut inner.observed;
            let full = h.len() >= inner.budget;
            let due = matches!(h.first(), Some(&first) if first <= now);
            if full && !due {
                return Err(Refused::Budget);
            }
            global().map_err(|_| Refused::Global)?;
            if due {
                heap_replace_min(h, at);
            } else if h.len() < h.capacity() {
                // Always (`len < budget <= capacity`): never grows the heap.
                heap_push(h, at);
            }
            Ok(())
        })
    }

    /// Frees the ticket's slot and says what it reserved.
    pub(crate) fn release(&self, t: PendTicket) -> Result<Reservation, StaleTicket> {
        let r = self.with(|inner| {
            let s = inner.slots.get_mut(t.slot as usize).ok_or(StaleTicket(t))?;
            if !s.busy || s.generation != t.generation {
                return Err(StaleTicket(t));
            }
            s.busy = false;
            s.generation = s.generation.wrapping_add(1);
            let res = s.res;
            // Cannot fail: `free` has capacity for every slot and this one was not in it.
            if inner.free.len() < inner.free.capacity() {
                inner.free.push(t.slot);
            }
            Ok(res)
        });
        if r.is_ok() {
            self.outstanding.fetch_sub(1, Ordering::Relaxed);
        }
        r
    }

    pub(crate) fn outstanding(&self) -> u64 {
        self.outstanding.load(Ordering::Relaxed)
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.with(|inner| {
            inner
                .slots
                .capacity()
                .saturating_mul(core::mem::size_of::<Slot>())
                .saturating_add(inner.free.capacity().saturating_mul(4))
                .saturating_add(
                    inner
                        .observed
                        .capacity()
                        .saturating_mul(core::mem::size_of::<Ticks>()),
                )
        })
    }
}

/// Pushes onto a binary min-heap (the caller checks there is capacity, so
/// this never allocates).
fn heap_push(h: &mut Vec<Ticks>, v: Ticks) {
    h.push(v);
    let mut i = h.len().saturating_sub(1);
    while i > 0 {
        let parent = i.saturating_sub(1) / 2;
        match (h.get(parent), h.get(i)) {
            (Some(&p), Some(&c)) if c < p => h.swap(parent, i),
            _ => break,
        }
        i = parent;
    }
}

/// Replaces the minimum of a non-empty binary min-heap with `v`.
fn heap_replace_min(h: &mut [Ticks], v: Ticks) {
    let Some(first) = h.first_mut() else { return };
    *first = v;
    let mut i = 0usize;
    loop {
        let l = i.saturating_mul(2).saturating_add(1);
        let r = l.saturating_add(1);
        let mut m = i;
        if matches!((h.get(l), h.get(m)), (Some(a), Some(b)) if a < b) {
            m = l;
        }
        if matches!((h.get(r), h.get(m)), (Some(a), Some(b)) if a < b) {
            m = r;
        }
        if m == i {
            break;
        }
        h.swap(i, m);
        i = m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::SpinLock;

    const G5: Taken = Taken {
        set: 5,
        was: 4,
        units: 0,
    };

    fn res(k: Key) -> Reservation {
        Reservation {
            key: k,
            at: 7,
            key_tat: G5,
            global_tat: None,
        }
    }

    #[test]
    fn budget_tickets_and_staleness() {
        let k = Key::new([10, 0, 0, 1].into(), 32, 64);
        let p: PendSlots<SpinLock> = PendSlots::new(2, k).unwrap();
        let a = p.take(res(k), || Ok(None)).unwrap();
        let b = p.take(res(k), || Ok(Some(G5))).unwrap();
        assert_ne!(a, b);
        assert_eq!(p.take(res(k), || Ok(None)), Err(Refused::Budget));
        assert_eq!(p.outstanding(), 2);
        assert_eq!(p.release(a), Ok(res(k)));
        assert_eq!(p.release(a), Err(StaleTicket(a)));
        assert_eq!(p.release(b).unwrap().global_tat, Some(G5));
        // A refused global token takes no slot.
        assert_eq!(p.take(res(k), || Err(())), Err(Refused::Global));
        assert_eq!(p.outstanding(), 0);
        let c = p.take(res(k), || Ok(None)).unwrap();
        assert_ne!(a, c, "reused slot must carry a new generation");
        assert_eq!(PendTicket::from_u64(c.to_u64()), c);
        assert_eq!(
            p.release(PendTicket::from_u64(99)),
            Err(StaleTicket(PendTicket::from_u64(99)))
        );
        assert_eq!(p.outstanding(), 1);
    }

    #[test]
    fn zero_slots_never_pend() {
        let k = Key::new([10, 0, 0, 1].into(), 32, 64);
        let p: PendSlots<SpinLock> = PendSlots::new(0, k).unwrap();
        assert_eq!(p.take(res(k), || Ok(None)), Err(Refused::Budget));
        assert_eq!(p.observe(5, 0, || Ok(None)), Err(Refused::Budget));
    }

    #[test]
    fn observed_pends_hold_the_budget_until_their_time() {
        let k = Key::new([10, 0, 0, 1].into(), 32, 64);
        let p: PendSlots<SpinLock> = PendSlots::new(3, k).unwrap();
        for at in [30, 10, 20] {
            assert_eq!(p.observe(at, 0, || Ok(None)), Ok(()));
        }
        assert_eq!(p.observe(40, 9, || Ok(None)), Err(Refused::Budget));
        // A refused global token leaves the budget as it was.
        assert_eq!(p.observe(40, 10, || Err(())), Err(Refused::Global));
        assert_eq!(p.observe(40, 10, || Ok(None)), Ok(())); // replaces 10
        assert_eq!(p.observe(50, 19, || Ok(None)), Err(Refused::Budget));
        assert_eq!(p.observe(50, 20, || Ok(None)), Ok(())); // replaces 20
        assert_eq!(p.observe(60, 29, || Ok(None)), Err(Refused::Budget));
        assert_eq!(p.observe(60, 39, || Ok(None)), Ok(())); // replaces 30
        assert_eq!(p.observe(70, 39, || Ok(None)), Err(Refused::Budget));
    }

    #[test]
    fn heap_keeps_its_minimum() {
        let mut h = Vec::with_capacity(64);
        let mut x = 12345u64;
        let mut all = Vec::new();
        for _ in 0..64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            heap_push(&mut h, x >> 40);
            all.push(x >> 40);
        }
        for _ in 0..1000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let min = *all.iter().min().unwrap();
            assert_eq!(h[0], min);
            let pos = all.iter().position(|&v| v == min).unwrap();
            all[pos] = x >> 40;
            heap_replace_min(&mut h, x >> 40);
        }
    }
}
