//! Kernel spin locks: [`KSpinLock`] (the raw lock, also plugged into
//! gate-core's table as its `RawLock`) and [`SpinMutex`], data guarded by a
//! spin lock with a guard that releases it on drop. Held only briefly, at
//! DISPATCH_LEVEL; never across a wait or an allocation.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};

use gate_core::RawLock;
use gate_ksys::{KeAcquireSpinLockRaiseToDpc, KeReleaseSpinLock, KIRQL, KSPIN_LOCK};

/// A KSPIN_LOCK. An unlocked spin lock is the value 0 (what
/// KeInitializeSpinLock stores), so it can be moved while unlocked.
pub struct KSpinLock(UnsafeCell<KSPIN_LOCK>);

// SAFETY: lock() returns only once KeAcquireSpinLockRaiseToDpc owns the
// lock (mutual exclusion by the kernel), unlock() releases it with the IRQL
// it returned; both are callable at IRQL <= DISPATCH_LEVEL and do not
// allocate. The cell is only touched by those kernel routines.
unsafe impl RawLock for KSpinLock {
    type State = KIRQL;

    fn new() -> Self {
        KSpinLock(UnsafeCell::new(0))
    }

    fn lock(&self) -> KIRQL {
        // SAFETY: the cell holds an initialised KSPIN_LOCK that lives as long
        // as `self`; the caller runs at IRQL <= DISPATCH_LEVEL.
        unsafe { KeAcquireSpinLockRaiseToDpc(self.0.get()) }
    }

    unsafe fn unlock(&self, state: KIRQL) {
        // SAFETY: per the trait contract the caller holds the lock and
        // `state` is the IRQL its acquisition returned.
        unsafe { KeReleaseSpinLock(self.0.get(), state) }
    }
}

// SAFETY: a KSPIN_LOCK is designed to be shared between CPUs; all access
// goes through the kernel's interlocked routines.
unsafe impl Sync for KSpinLock {}
// SAFETY: nothing ties a spin lock to a thread.
unsafe impl Send for KSpinLock {}

/// `T` guarded by a kernel spin lock.
pub struct SpinMutex<T> {
    lock: KSpinLock,
    data: UnsafeCell<T>,
}

// SAFETY: `data` is only reachable through a `SpinGuard`, which exists only
// while the lock is held, so at most one CPU accesses it at a time.
unsafe impl<T: Send> Sync for SpinMutex<T> {}
// SAFETY: moving the mutex moves `T`, which is Send.
unsafe impl<T: Send> Send for SpinMutex<T> {}

impl<T> SpinMutex<T> {
    /// A new, unlocked mutex.
    pub fn new(data: T) -> Self {
        SpinMutex {
            lock: KSpinLock::new(),
            data: UnsafeCell::new(data),
        }
    }

    /// Acquires the lock (raising to DISPATCH_LEVEL) until the guard drops.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        let irql = self.lock.lock();
        SpinGuard { mutex: self, irql }
    }
}

/// Access to a [`SpinMutex`]'s data; releases the lock when dropped.
pub struct SpinGuard<'a, T> {
    mutex: &'a SpinMutex<T>,
    irql: KIRQL,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while the lock is held.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard exists only while the lock is held, and `&mut
        // self` makes this the only reference through it.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard holds the lock, taken with IRQL `self.irql`.
        unsafe { self.mutex.lock.unlock(self.irql) }
    }
}
