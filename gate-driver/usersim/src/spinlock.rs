//! Spin locks: real mutual exclusion between threads on the KSPIN_LOCK word
//! (0 = free, else the holder's thread token), with the simulated IRQL
//! raised to DISPATCH_LEVEL while held.

use crate::irql;
use crate::violation::{record, ViolationKind};
use gate_ksys::{DISPATCH_LEVEL, KIRQL, KSPIN_LOCK};
use std::sync::atomic::{AtomicUsize, Ordering};

/// # Safety
/// `lock` must point to a KSPIN_LOCK initialised to 0.
#[no_mangle]
pub unsafe extern "system" fn KeAcquireSpinLockRaiseToDpc(lock: *mut KSPIN_LOCK) -> KIRQL {
    let _sim = crate::fault::sim();
    crate::hold::point("KeAcquireSpinLockRaiseToDpc");
    let old = irql::current();
    if old > DISPATCH_LEVEL {
        record(
            ViolationKind::IrqlTooHigh,
            format!("KeAcquireSpinLockRaiseToDpc at IRQL {old}"),
        );
    }
    irql::set(DISPATCH_LEVEL);
    let me = irql::token();
    // SAFETY: the caller guarantees `lock` is a valid, aligned KSPIN_LOCK
    // (usize) that lives as long as it is used; all accesses are atomic.
    let word = unsafe { AtomicUsize::from_ptr(lock) };
    let mut spins: u64 = 0;
    loop {
        match word.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => {
                irql::lock_acquired();
                return old;
            }
            Err(cur) if cur == me => {
                record(
                    ViolationKind::SpinLockRecursive,
                    format!("spin lock {lock:p} acquired twice by the same thread (deadlock)"),
                );
                panic!("simulated deadlock: spin lock {lock:p} acquired recursively");
            }
            Err(_) => {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(64) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
    }
}

/// # Safety
/// `lock` must point to a KSPIN_LOCK the caller holds.
#[no_mangle]
pub unsafe extern "system" fn KeReleaseSpinLock(lock: *mut KSPIN_LOCK, new_irql: KIRQL) {
    let _sim = crate::fault::sim();
    crate::hold::point("KeReleaseSpinLock");
    let cur = irql::current();
    if cur != DISPATCH_LEVEL {
        record(
            ViolationKind::SpinLockReleaseIrql,
            format!("KeReleaseSpinLock({lock:p}) at IRQL {cur}, expected DISPATCH_LEVEL"),
        );
    }
    if new_irql > DISPATCH_LEVEL {
        record(
            ViolationKind::SpinLockReleaseIrql,
            format!("KeReleaseSpinLock({lock:p}) to IRQL {new_irql} above DISPATCH_LEVEL"),
        );
    }
    let me = irql::token();
    // SAFETY: see KeAcquireSpinLockRaiseToDpc.
    let word = unsafe { AtomicUsize::from_ptr(lock) };
    match word.compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed) {
        Ok(_) => irql::lock_released(),
        Err(cur) => record(
            ViolationKind::SpinLockNotHeld,
            format!("KeReleaseSpinLock({lock:p}) by a thread not holding it (lock word {cur:#x})"),
        ),
    }
    irql::set(new_irql);
    // The routine's next point: the lock is free again.
    crate::hold::point_after("KeReleaseSpinLock (returned)");
}
