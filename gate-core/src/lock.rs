//! The lock the table shards (and the pend slots) sit behind.
//!
//! The driver plugs in a kernel spin lock (`KeAcquireSpinLockRaiseToDpc`
//! returns the old IRQL, `KeReleaseSpinLock` takes it back); host code and
//! tests use [`SpinLock`]. Locks are held only for a bounded probe of at most
//! [`crate::table::WINDOW`] slots, never across an allocation or a wait.

use core::sync::atomic::{AtomicBool, Ordering};

/// A raw mutual-exclusion lock whose `lock` returns a state token that
/// `unlock` takes back (the kernel's old IRQL).
///
/// # Safety
/// Implementations must guarantee mutual exclusion: after `lock` returns on
/// one CPU, no other call to `lock` on the same object returns until the
/// matching `unlock`. `lock` must be callable at IRQL <= DISPATCH_LEVEL in a
/// kernel implementation, and must not allocate.
pub unsafe trait RawLock: Send + Sync {
    /// What `lock` hands back and `unlock` needs (e.g. the old IRQL).
    type State;
    /// A new, unlocked lock.
    fn new() -> Self;
    /// Acquires the lock, spinning if needed.
    fn lock(&self) -> Self::State;
    /// Releases the lock.
    ///
    /// # Safety
    /// The caller holds the lock, acquired by the `lock` call that returned `state`.
    unsafe fn unlock(&self, state: Self::State);
}

/// A test-and-test-and-set spin lock for host code and tests.
#[derive(Debug, Default)]
pub struct SpinLock {
    held: AtomicBool,
}

// SAFETY: `lock` returns only after it swapped `held` from false to true with
// Acquire ordering, and `unlock` stores false with Release; so at most one
// holder exists at a time and its writes are visible to the next holder.
unsafe impl RawLock for SpinLock {
    type State = ();

    fn new() -> Self {
        SpinLock {
            held: AtomicBool::new(false),
        }
    }

    #[inline]
    fn lock(&self) {
        loop {
            if self
                .held
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
            while self.held.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
    }

    #[inline]
    unsafe fn unlock(&self, _state: ()) {
        self.held.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_lock_excludes() {
        extern crate std;
        use core::cell::UnsafeCell;
        struct Shared(SpinLock, UnsafeCell<u64>);
        // SAFETY: the counter is only touched with the lock held.
        unsafe impl Sync for Shared {}
        let s = Shared(SpinLock::new(), UnsafeCell::new(0));
        std::thread::scope(|sc| {
            for _ in 0..4 {
                let s = &s;
                sc.spawn(move || {
                    for _ in 0..10_000 {
                        s.0.lock();
                        // SAFETY: lock held.
                        unsafe { *s.1.get() += 1 };
                        // SAFETY: we hold the lock taken just above.
                        unsafe { s.0.unlock(()) };
                    }
                });
            }
        });
        assert_eq!(s.1.into_inner(), 40_000);
    }
}
