//! Pend-with-delay: a budget of outstanding pends and their tickets.
//!
//! When a key is out of tokens but its next token is free within
//! `max_delay_ms`, and fewer than `max_pending` pends are outstanding, the
//! decision is `Pend { at }` (nginx's `burst` + `delay`): the token is
//! reserved at once and the caller accepts at `at`, then calls
//! `pend_done(ticket)`; if it gives up (the client went away, shutdown) it
//! calls `pend_abort(ticket)`, which returns the reserved token to the key
//! (and to the global bucket). A ticket is a slot index plus a generation,
//! so a ticket completed twice, or forged, is refused (`StaleTicket`)
//! instead of freeing someone else's pend.
//!
//! Slots are preallocated (`max_pending` of them) with a free stack, behind
//! their own lock, taken only on the pend paths (never while holding it is a
//! shard lock acquired, so the lock order is always shard, then pend).

use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::key::Key;
use crate::lock::RawLock;

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

#[derive(Clone, Copy, Debug)]
struct Slot {
    key: Key,
    generation: u32,
    busy: bool,
}

/// Bytes per pend slot (slot plus its free-stack entry).
pub(crate) const PEND_SLOT_BYTES: usize =
    core::mem::size_of::<Slot>() + core::mem::size_of::<u32>();

struct Inner {
    slots: Vec<Slot>,
    free: Vec<u32>,
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
                key: filler,
                generation: 0,
                busy: false,
            },
        );
        let mut free = Vec::new();
        free.try_reserve_exact(n_us).map_err(|_| PendAllocError)?;
        // Pop order: slot 0 first.
        free.extend((0..n).rev());
        Ok(PendSlots {
            lock: L::new(),
            inner: UnsafeCell::new(Inner { slots, free }),
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

    /// Takes a slot for `key`, or `None` if all are in use.
    pub(crate) fn take(&self, key: Key) -> Option<PendTicket> {
        let t = self.with(|inner| {
            let i = inner.free.pop()?;
            let s = inner.slots.get_mut(i as usize)?;
            s.busy = true;
            s.key = key;
            Some(PendTicket {
                slot: i,
                generation: s.generation,
            })
        });
        if t.is_some() {
            self.outstanding.fetch_add(1, Ordering::Relaxed);
        }
        t
    }

    /// Frees the ticket's slot and says whose it was.
    pub(crate) fn release(&self, t: PendTicket) -> Result<Key, StaleTicket> {
        let r = self.with(|inner| {
            let s = inner.slots.get_mut(t.slot as usize).ok_or(StaleTicket(t))?;
            if !s.busy || s.generation != t.generation {
                return Err(StaleTicket(t));
            }
            s.busy = false;
            s.generation = s.generation.wrapping_add(1);
            let key = s.key;
            // Cannot fail: `free` has capacity for every slot and this one was not in it.
            if inner.free.len() < inner.free.capacity() {
                inner.free.push(t.slot);
            }
            Ok(key)
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::SpinLock;

    #[test]
    fn budget_tickets_and_staleness() {
        let k = Key::new([10, 0, 0, 1].into(), 32, 64);
        let p: PendSlots<SpinLock> = PendSlots::new(2, k).unwrap();
        let a = p.take(k).unwrap();
        let b = p.take(k).unwrap();
        assert_ne!(a, b);
        assert!(p.take(k).is_none());
        assert_eq!(p.outstanding(), 2);
        assert_eq!(p.release(a), Ok(k));
        assert_eq!(p.release(a), Err(StaleTicket(a)));
        let c = p.take(k).unwrap();
        assert_ne!(a, c, "reused slot must carry a new generation");
        assert_eq!(PendTicket::from_u64(c.to_u64()), c);
        assert_eq!(
            p.release(PendTicket::from_u64(99)),
            Err(StaleTicket(PendTicket::from_u64(99)))
        );
        assert_eq!(p.outstanding(), 2);
    }

    #[test]
    fn zero_slots_never_pend() {
        let k = Key::new([10, 0, 0, 1].into(), 32, 64);
        let p: PendSlots<SpinLock> = PendSlots::new(0, k).unwrap();
        assert!(p.take(k).is_none());
    }
}
