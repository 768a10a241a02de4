//! [`Timer`]: a KTIMER with its KDPC, firing a routine at DISPATCH_LEVEL
//! after a relative delay. Like events, it must not move once initialised.

use core::cell::UnsafeCell;
use core::ffi::c_void;

use gate_ksys::*;

/// A one-shot kernel timer with a DPC.
pub struct Timer {
    timer: UnsafeCell<KTIMER>,
    dpc: UnsafeCell<KDPC>,
}

// SAFETY: KTIMER/KDPC are designed to be used from several CPUs; every
// access goes through the kernel's timer and DPC routines.
unsafe impl Sync for Timer {}
// SAFETY: nothing ties them to a thread.
unsafe impl Send for Timer {}

impl Timer {
    /// Zeroed storage; call [`Timer::init`] at the final address.
    pub const fn uninit() -> Timer {
        Timer {
            timer: UnsafeCell::new(KTIMER { Opaque: [0; 8] }),
            dpc: UnsafeCell::new(KDPC { Opaque: [0; 8] }),
        }
    }

    /// Initialises the timer and its DPC (`routine(context)` at DISPATCH_LEVEL).
    ///
    /// # Safety
    /// `self` must not move afterwards; `context` must stay valid while the
    /// timer can fire (until [`Timer::cancel`] plus a DPC flush).
    pub unsafe fn init(&self, routine: KDEFERRED_ROUTINE, context: *mut c_void) {
        // SAFETY: the caller guarantees the storage is final.
        unsafe {
            KeInitializeTimerEx(self.timer.get(), NotificationTimer);
            KeInitializeDpc(self.dpc.get(), routine, context);
        }
    }

    /// (Re)arms the timer to fire after `ticks` (100 ns units, at least 1).
    /// Re-arming replaces the previous due time.
    pub fn set_after(&self, ticks: u64) {
        let due = 0i64.saturating_sub(i64::try_from(ticks.max(1)).unwrap_or(i64::MAX));
        // SAFETY: the timer and DPC were initialised by `init`.
        unsafe { KeSetTimerEx(self.timer.get(), due, 0, self.dpc.get()) };
    }

    /// Cancels the timer if armed (a DPC already queued may still run:
    /// flush DPCs before freeing the context).
    pub fn cancel(&self) {
        // SAFETY: the timer was initialised by `init`.
        unsafe { KeCancelTimer(self.timer.get()) };
    }
}

/// Waits until every queued DPC on every CPU has run (PASSIVE_LEVEL).
pub fn flush_dpcs() {
    // SAFETY: no arguments; called at PASSIVE_LEVEL by unload/teardown.
    unsafe { KeFlushQueuedDpcs() }
}
